from __future__ import annotations

import pytest
from mlflow.utils import validation as mlflow_limits

from kedroflow.config import ParamsConfig
from kedroflow.errors import TrackingError
from kedroflow.params import Limits, PreparedParams, sanitize_key
from kedroflow.params import prepare_params as _prepare
from kedroflow.provenance import kedro_command, runner_name
from kedroflow.secrets import Secrets
from kedroflow.stores import limits

LIMITS: Limits = limits()


def prepare_params(
    params: dict, settings: ParamsConfig, secrets: Secrets | None = None
) -> PreparedParams:
    return _prepare(params, settings, limits=LIMITS, secrets=secrets or Secrets())


class TestPrepareParams:
    def test_values_are_strings_and_prefix_dropped(self) -> None:
        values, tags, _ = prepare_params({"params:a": 1, "b": [1, 2]}, ParamsConfig())
        assert values == {"a": "1", "b": "[1, 2]"}
        assert tags == {}

    def test_flatten_recursive(self) -> None:
        settings = ParamsConfig.model_validate({"dict_params": {"flatten": True}})
        values, _, _ = prepare_params(
            {"model": {"lr": 0.1, "opt": {"beta": 2}}}, settings
        )
        assert values == {"model.lr": "0.1", "model.opt.beta": "2"}

    def test_flatten_one_level_with_sep(self) -> None:
        settings = ParamsConfig.model_validate(
            {"dict_params": {"flatten": True, "recursive": False, "sep": "/"}}
        )
        values, _, _ = prepare_params(
            {"model": {"lr": 0.1, "opt": {"beta": 2}}}, settings
        )
        assert values == {"model/lr": "0.1", "model/opt": "{'beta': 2}"}

    @pytest.mark.parametrize(
        "name",
        ["password", "db_password", "DB_PASSWD", "api_key", "apiKey", "API-KEY",
         "aws_secret_access_key", "hf_token", "client_secret", "gcp_credentials",
         "private_key", "access_key", "db.pwd"],
    )  # fmt: skip
    def test_default_redaction(self, name: str) -> None:
        values, _, _ = prepare_params({name: "hunter2"}, ParamsConfig())
        assert values == {name: "***"}

    @pytest.mark.parametrize("name", ["tokenizer", "max_tokens", "author", "n_keys"])
    def test_no_false_positive_on_common_names(self, name: str) -> None:
        values, _, _ = prepare_params({name: "value"}, ParamsConfig())
        assert values == {name: "value"}

    def test_redaction_inside_dict_values(self) -> None:
        values, _, _ = prepare_params(
            {"db": {"host": "h", "password": "hunter2", "nested": [{"token": "t0k"}]}},
            ParamsConfig(),
        )
        assert "hunter2" not in values["db"]
        assert "t0k" not in values["db"]
        assert "'host': 'h'" in values["db"]

    def test_redaction_with_flatten(self) -> None:
        settings = ParamsConfig.model_validate({"dict_params": {"flatten": True}})
        values, _, _ = prepare_params({"db": {"host": "h", "password": "x"}}, settings)
        assert values == {"db.host": "h", "db.password": "***"}

    def test_custom_patterns_replace_defaults(self) -> None:
        settings = ParamsConfig.model_validate({"redact": ["^seed$"]})
        values, _, _ = prepare_params({"seed": 3, "password": "p"}, settings)
        assert values == {"seed": "***", "password": "p"}

    def test_long_value_fails_with_the_fix(self) -> None:
        long = "x" * (mlflow_limits.MAX_PARAM_VAL_LENGTH + 1)
        with pytest.raises(
            TrackingError, match=r"long_params_strategy to 'truncate' or 'tag'"
        ):
            prepare_params({"big": long}, ParamsConfig())

    def test_long_value_truncate(self) -> None:
        long = "x" * (mlflow_limits.MAX_PARAM_VAL_LENGTH + 10)
        settings = ParamsConfig(long_params_strategy="truncate")
        values, _, _ = prepare_params({"big": long}, settings)
        assert len(values["big"]) == mlflow_limits.MAX_PARAM_VAL_LENGTH

    def test_long_value_tag_is_clipped_to_tag_limit(self) -> None:
        long = "x" * (mlflow_limits.MAX_TAG_VAL_LENGTH + 10)
        values, tags, _ = prepare_params(
            {"big": long}, ParamsConfig(long_params_strategy="tag")
        )
        assert values == {}
        assert len(tags["big"]) == mlflow_limits.MAX_TAG_VAL_LENGTH

    def test_configured_max_length(self) -> None:
        settings = ParamsConfig(long_params_strategy="truncate", max_length=5)
        values, _, _ = prepare_params({"a": "abcdefgh"}, settings)
        assert values == {"a": "abcde"}


class TestKeys:
    @pytest.mark.parametrize(
        ("name", "key"),
        [("params:a.b", "a.b"), ("a@b", "a_b"), ("/lead", "lead"), ("a..b", "a_.b")],
    )
    def test_sanitize(self, name: str, key: str) -> None:
        assert sanitize_key(name, LIMITS.key) == key


class TestKedroCommand:
    def test_every_option(self) -> None:
        run_params = {
            "pipeline_names": ["training", "eval"],
            "env": "prod",
            "runner": "<kedro.runner.thread_runner.ThreadRunner object at 0x1>",
            "tags": ["a", "b"],
            "node_names": ["n1"],
            "from_nodes": ["f"],
            "to_nodes": ["t"],
            "from_inputs": ["i"],
            "to_outputs": ["o1", "o2"],
            "namespaces": ["ns"],
            "load_versions": {"model": "2024-01-01T00.00.00.000Z"},
            "runtime_params": {"a": 3, "nested": {"k": 2}, "api_key": "s3cr3t"},
            "only_missing_outputs": True,
        }
        command = kedro_command(run_params, ParamsConfig().redact)
        assert command == (
            "kedro run --pipelines training,eval --env prod --runner ThreadRunner "
            "--tags a,b --nodes n1 --from-nodes f --to-nodes t --from-inputs i "
            "--to-outputs o1,o2 --namespaces ns "
            "--load-versions model:2024-01-01T00.00.00.000Z "
            "--params 'a=3,nested.k=2,api_key=***' --only-missing-outputs"
        )

    def test_plain_run(self) -> None:
        assert kedro_command({"pipeline_names": [], "runner": "None"}) == "kedro run"

    def test_runner_name(self) -> None:
        assert runner_name("None") == "SequentialRunner"
        assert (
            runner_name("<kedro.runner.ParallelRunner object at 0x>")
            == "ParallelRunner"
        )
