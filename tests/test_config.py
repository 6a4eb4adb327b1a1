from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from kedroflow.config import (
    DEFAULT_REDACT_PATTERNS,
    KedroflowConfig,
    resolve_uri,
    validate_config,
)
from kedroflow.errors import ConfigError

# kedro-mlflow 2.x's own template, as its users have it in conf/local/mlflow.yml
KEDRO_MLFLOW_FILE = """
server:
  mlflow_tracking_uri: sqlite:///mlflow.db
  mlflow_registry_uri: null
  credentials: null
  request_header_provider:
    type: null
    pass_context: False
    init_kwargs: {}
tracking:
  disable_tracking:
    pipelines: []
    disable_autologging: True
  experiment:
    name: my_project
    create_experiment_kwargs:
      artifact_location: null
      tags: null
    restore_if_deleted: True
  run:
    id: null
    name: null
    nested: True
  params:
    dict_params:
      flatten: False
      recursive: True
      sep: "."
    long_params_strategy: fail
ui:
  port: "5000"
  host: "127.0.0.1"
"""


class TestSchema:
    def test_kedro_mlflow_file_works_unchanged(self) -> None:
        config = validate_config(yaml.safe_load(KEDRO_MLFLOW_FILE))
        assert config.tracking.experiment.name == "my_project"
        assert config.ui.port == 5000
        assert config.tracking.run.nested is True

    def test_template_is_valid_and_matches_defaults(self) -> None:
        text = resources.files("kedroflow").joinpath("templates/mlflow.yml").read_text()
        raw = yaml.safe_load(text.replace("{{ experiment_name }}", "proj"))
        config = validate_config(raw)
        defaults = KedroflowConfig()
        assert config.tracking.params.redact == list(DEFAULT_REDACT_PATTERNS)
        assert (
            config.model_dump()
            == defaults.model_copy(
                update={
                    "tracking": defaults.tracking.model_copy(
                        update={
                            "experiment": defaults.tracking.experiment.model_copy(
                                update={"name": "proj"}
                            )
                        }
                    )
                }
            ).model_dump()
        )

    def test_empty_file_means_defaults(self) -> None:
        assert validate_config(None) == KedroflowConfig()

    def test_every_problem_in_one_error(self) -> None:
        raw = {
            "tracking": {
                "experimnt": {"name": "x"},
                "params": {"long_params_strategy": "truncat"},
                "run": {"nested": "yes"},
            },
            "ui": {"port": 99999},
            "sever": {},
        }
        with pytest.raises(ConfigError, match="5 problems") as info:
            validate_config(raw)
        message = str(info.value)
        assert "tracking.experimnt: unknown key. Did you mean 'experiment'?" in message
        assert (
            "tracking.params.long_params_strategy: 'truncat' is not allowed" in message
        )
        assert "'fail', 'truncate' or 'tag'" in message
        assert "Did you mean 'truncate'?" in message
        assert "tracking.run.nested: 'yes' is not a boolean" in message
        assert "ui.port" in message and "99999" in message
        assert "sever: unknown key. Did you mean 'server'?" in message
        assert "kedro mlflow init --force" in message
        assert len(info.value.problems) == 5

    def test_unknown_key_lists_allowed_keys(self) -> None:
        with pytest.raises(
            ConfigError, match=r"Allowed keys here: id, name, nested, tags, child_runs"
        ):
            validate_config({"tracking": {"run": {"nme": "x"}}})

    def test_section_of_wrong_type(self) -> None:
        with pytest.raises(ConfigError, match=r"tracking.run: expected a mapping"):
            validate_config({"tracking": {"run": "abc"}})

    def test_not_a_mapping(self) -> None:
        with pytest.raises(ConfigError, match=r"must be a mapping of sections"):
            validate_config(["server"])  # type: ignore[arg-type]

    def test_bad_regex_in_redact(self) -> None:
        with pytest.raises(
            ConfigError, match=r"tracking.params.redact: .*not a valid regular"
        ):
            validate_config({"tracking": {"params": {"redact": ["("]}}})

    def test_bad_run_id(self) -> None:
        with pytest.raises(
            ConfigError, match=r"tracking.run.id: .*is not an MLflow run id"
        ):
            validate_config({"tracking": {"run": {"id": "../etc"}}})


class TestUris:
    @pytest.mark.parametrize(
        ("uri", "expected"),
        [
            ("sqlite:///mlflow.db", "sqlite:////proj/mlflow.db"),
            ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
            ("mlruns", "file:///proj/mlruns"),
            ("file:///abs/mlruns", "file:///abs/mlruns"),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
            ("postgresql://u:p@h/db", "postgresql://u:p@h/db"),
            ("databricks", "databricks"),
            ("databricks-uc", "databricks-uc"),
            ("databricks://profile", "databricks://profile"),
        ],
    )
    def test_resolve(self, uri: str, expected: str) -> None:
        assert resolve_uri(uri, Path("/proj")) == expected

    def test_databricks_kept(self) -> None:
        config = validate_config({"server": {"mlflow_tracking_uri": "databricks"}})
        assert config.tracking_uri("/proj") == "databricks"

    def test_default_is_sqlite_at_project_root(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert KedroflowConfig().tracking_uri("/proj") == "sqlite:////proj/mlflow.db"

    def test_env_var_is_the_fallback(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1234")
        assert KedroflowConfig().tracking_uri("/proj") == "http://127.0.0.1:1234"


class TestDisabledPipelines:
    def test_all_selected_must_be_disabled(self) -> None:
        config = validate_config(
            {"tracking": {"disable_tracking": {"pipelines": ["etl"]}}}
        )
        assert config.is_pipeline_disabled(["etl"])
        assert not config.is_pipeline_disabled(["etl", "training"])
        assert not config.is_pipeline_disabled([])

    def test_default_pipeline(self) -> None:
        config = validate_config(
            {"tracking": {"disable_tracking": {"pipelines": ["__default__"]}}}
        )
        assert config.is_pipeline_disabled([])
