"""A corpus of broken ``mlflow.yml`` files: each gets ONE clear error, nothing from pydantic."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kedroflow.config import validate_config
from kedroflow.errors import ConfigError

# (yaml text, text the error must contain)
CORPUS = [
    ("- a\n- b\n", "must be a mapping of sections"),
    ("just a string\n", "must be a mapping of sections"),
    ("sever: {}\n", "sever: unknown key. Did you mean 'server'?"),
    ("server: 3\n", "server: expected a mapping with keys mlflow_tracking_uri"),
    ("server:\n  mlflow_tracking_url: x\n", "Did you mean 'mlflow_tracking_uri'?"),
    ("server:\n  mlflow_tracking_uri: [1]\n", "server.mlflow_tracking_uri"),
    ("server:\n  credentials: {a: 1}\n", "server.credentials"),
    ("server:\n  request_header_provider: {typ: x}\n", "Did you mean 'type'?"),
    ("server:\n  request_header_provider: {pass_context: maybe}\n", "is not a boolean"),
    ("server:\n  request_header_provider: {init_kwargs: [1]}\n", "init_kwargs"),
    ("server:\n  connect_timeout: 0\n", "server.connect_timeout"),
    ("server:\n  connect_timeout: slow\n", "server.connect_timeout"),
    ("server:\n  request_retries: -1\n", "server.request_retries"),
    ("server:\n  on_tracking_error: ignore\n", "'fail' or 'continue'"),
    ("server:\n  on_tracking_error: contineu\n", "Did you mean 'continue'?"),
    ("tracking: []\n", "tracking: expected a mapping"),
    ("tracking:\n  disable_tracking: {pipeline: [a]}\n", "Did you mean 'pipelines'?"),
    (
        "tracking:\n  disable_tracking: {pipelines: a}\n",
        "tracking.disable_tracking.pipelines",
    ),
    ("tracking:\n  disable_tracking: {disable_autologging: 1}\n", "is not a boolean"),
    ("tracking:\n  experiment: {name: ''}\n", "experiment name must not be empty"),
    ("tracking:\n  experiment: {name: [x]}\n", "tracking.experiment.name"),
    ("tracking:\n  experiment: {restore_if_deleted: 'no'}\n", "is not a boolean"),
    (
        "tracking:\n  experiment: {create_experiment_kwargs: {artifact_loc: x}}\n",
        "Did you mean 'artifact_location'?",
    ),
    ("tracking:\n  run: {id: 'not a run id!'}\n", "is not an MLflow run id"),
    (
        "tracking:\n  run: {nested: 'true'}\n",
        "tracking.run.nested: 'true' is not a boolean",
    ),
    ("tracking:\n  run: {tags: [a, b]}\n", "tracking.run.tags"),
    ("tracking:\n  run: {nmae: x}\n", "Did you mean 'name'?"),
    (
        "tracking:\n  params: {long_params_strategy: truncated}\n",
        "Did you mean 'truncate'?",
    ),
    ("tracking:\n  params: {dict_params: {flaten: true}}\n", "Did you mean 'flatten'?"),
    (
        "tracking:\n  params: {dict_params: {recursive: yes please}}\n",
        "is not a boolean",
    ),
    ("tracking:\n  params: {redact: '['}\n", "tracking.params.redact"),
    ("tracking:\n  params: {redact: ['[']}\n", "is not a valid regular expression"),
    ("tracking:\n  params: {max_length: 0}\n", "tracking.params.max_length"),
    (
        "tracking:\n  artifacts: {auto_log: [{max_size_mb: 5}]}\n",
        "tracking.artifacts.auto_log.0: select outputs with `datasets`, `layers` or `tags`",
    ),
    (
        "tracking:\n  artifacts: {auto_log: [{dataset: 'a*'}]}\n",
        "tracking.artifacts.auto_log.0.dataset: unknown key. Did you mean 'datasets'?",
    ),
    (
        "tracking:\n  artifacts: {auto_log: [{layers: [r], max_size_mb: 0}]}\n",
        "tracking.artifacts.auto_log.0.max_size_mb",
    ),
    (
        "tracking:\n  artifacts: {auto_log: {datasets: '*'}}\n",
        "tracking.artifacts.auto_log: expected a list (items starting with '- ')",
    ),
    ("tracking:\n  artifacts: {autolog: []}\n", "Did you mean 'auto_log'?"),
    ("ui:\n  port: 70000\n", "ui.port"),
    ("ui:\n  port: http\n", "ui.port"),
    ("ui:\n  hots: 0.0.0.0\n", "Did you mean 'host'?"),
]


@pytest.mark.parametrize(("text", "expected"), CORPUS, ids=range(len(CORPUS)))
def test_one_clear_error(text: str, expected: str) -> None:
    raw: Any = yaml.safe_load(text)
    with pytest.raises(ConfigError) as info:
        validate_config(raw, "conf/local/mlflow.yml")
    message = str(info.value)
    assert expected in message
    assert message.startswith("conf/local/mlflow.yml")
    assert "pydantic" not in message  # no pydantic internals or URLs
    assert "kedro mlflow init" in message
    assert info.value.__cause__ is None  # no pydantic traceback chained below it
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


def test_several_problems_are_all_listed() -> None:
    raw = {
        "sever": {},
        "tracking": {"run": {"nmae": "x"}, "params": {"max_length": 0}},
        "ui": {"port": 70000, "hots": "h"},
    }
    with pytest.raises(ConfigError, match=r"\(5 problems\)") as info:
        validate_config(raw)
    assert len(info.value.problems) == 5
