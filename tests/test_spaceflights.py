"""Kedro's own MLflow guide, followed with kedroflow on a spaceflights-shaped project.

Kedro documents MLflow with kedro-mlflow (``docs/integrations-and-plugins/mlflow.md``
in the kedro repository) on its ``spaceflights-pandas`` starter. ``tests/spaceflights``
is a project of that shape (three raw tables, preprocessing, a model input table, a
split, a regressor trained and evaluated, reporting plots as plotly JSON and a versioned
PNG) with the guide's catalog entries and ``mlflow.yml`` written for kedro-mlflow, its
"extra metadata" hook, a ``pipeline_ml_factory`` binding and the starter's
``logging.yml``. The module fixture copies it once, makes its raw data, and takes it
through the guide with the real ``kedro`` CLI on a real SQLite store:

1. ``kedro mlflow migrate`` (preview), a ``kedro run`` still on the guide's file store,
   ``kedro mlflow migrate --write``;
2. ``kedro run`` (the training run), ``kedro run --to-outputs=X_test,y_test`` and the
   guide's evaluation run ``kedro run --from-nodes=evaluate_model_node --params
   mlflow_run_id=<the training run>``;
3. the same ``--to-outputs`` run with tracking off, and a run whose project hook fails.

Each test then checks one promise of the guide, or of kedroflow on top of it, against
the store and the console output. Serving one row goes through ``mlflow.pyfunc`` in
this process (``mlflow models serve`` itself is covered by tests/test_serving.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow
TEMPLATE = Path(__file__).resolve().parent / "spaceflights"
BIN = Path(sys.executable).parent
PACKAGE = "spaceflights_mlflow"
EXPERIMENT = "spaceflights_mlflow"
RESOLVER_WARNING = "register_new_resolver() is deprecated"


def write_raw_data(project: Path, rows: int = 120, seed: int = 14) -> None:
    """Companies, shuttles and reviews as the starter's raw tables look, made up."""
    rng = np.random.default_rng(seed)
    raw = project / "data" / "01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    companies = pd.DataFrame(
        {
            "id": np.arange(1, 21),
            "company_rating": [f"{r}%" for r in rng.integers(50, 101, 20)],
            "company_location": rng.choice(["Niue", "Anguilla", "Nauru"], 20),
            "iata_approved": rng.choice(["t", "f"], 20),
        }
    )
    shuttles = pd.DataFrame(
        {
            "id": np.arange(1000, 1000 + rows),
            "company_id": rng.integers(1, 21, rows),
            "shuttle_type": rng.choice(["Type V5", "Type F5", "Type D5"], rows),
            "engines": rng.integers(1, 5, rows).astype(float),
            "passenger_capacity": rng.integers(2, 9, rows),
            "crew": rng.integers(1, 7, rows).astype(float),
            "d_check_complete": rng.choice(["t", "f"], rows),
            "moon_clearance_complete": rng.choice(["t", "f"], rows),
        }
    )
    reviews = pd.DataFrame(
        {
            "shuttle_id": shuttles["id"],
            "review_scores_rating": rng.uniform(60, 100, rows).round(1),
        }
    )
    rating = companies.set_index("id").loc[shuttles["company_id"], "company_rating"]
    price = (
        400 * shuttles["engines"]
        + 150 * shuttles["passenger_capacity"]
        + 90 * shuttles["crew"]
        + 8 * reviews["review_scores_rating"]
        + 3 * rating.str.rstrip("%").astype(float).to_numpy()
        + rng.normal(0, 40, rows)
    )
    shuttles["price"] = [f"${p:,.1f}" for p in price]
    companies.to_csv(raw / "companies.csv", index=False)
    shuttles.to_csv(raw / "shuttles.csv", index=False)
    reviews.to_csv(raw / "reviews.csv", index=False)


@dataclass
class Guide:
    """The project after the guide's steps, and what each command printed."""

    path: Path
    preview: subprocess.CompletedProcess[str]
    catalog_after_preview: str
    file_store: subprocess.CompletedProcess[str]
    write: subprocess.CompletedProcess[str]
    training: subprocess.CompletedProcess[str]
    to_outputs: subprocess.CompletedProcess[str]
    evaluation: subprocess.CompletedProcess[str]
    untracked: subprocess.CompletedProcess[str]
    broken_hook: subprocess.CompletedProcess[str]

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.path / 'mlflow.db'}"

    def client(self) -> Any:
        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def run(self, command: str) -> Any:
        """The MLflow run whose ``kedro.command`` tag is ``command``."""
        client = self.client()
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None, "no experiment: no run was tracked"
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`kedro.command` = '{command}'",
        )
        assert len(runs) == 1, f"{len(runs)} runs of {command!r}"
        return runs[0]

    def models_of(self, run: Any) -> list[Any]:
        client = self.client()
        return [
            m
            for m in client.search_logged_models([run.info.experiment_id])
            if m.source_run_id == run.info.run_id
        ]

    def versions(self, name: str) -> list[int]:
        found = self.client().search_model_versions(f"name = '{name}'")
        return sorted(int(v.version) for v in found)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{output(result)[-6000:]}"


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Guide:
    path = tmp_path_factory.mktemp("guide") / "spaceflights-mlflow"
    shutil.copytree(TEMPLATE, path)
    write_raw_data(path)
    shutil.copy(migrated_db, path / "mlflow.db")  # what the first run would create
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(COLUMNS="250", KEDRO_DISABLE_TELEMETRY="1", MLFLOW_DISABLE_TELEMETRY="1")

    def kedro(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kedro"), *args], cwd=path, env={**env, **extra_env},
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip

    preview = kedro("mlflow", "migrate")
    catalog_after_preview = (path / "conf/base/catalog.yml").read_text()
    file_store = kedro("run")
    write = kedro("mlflow", "migrate", "--write")
    registry = path / "src" / PACKAGE / "pipeline_registry.py"
    registry.write_text(  # kedroflow's addition: the champion alias follows training
        registry.read_text().replace(
            '{"registered_model_name": "spaceflights"}',
            '{"registered_model_name": "spaceflights", '
            '"registered_model_alias": "champion"}',
        )
    )
    training = kedro("run")
    to_outputs = kedro("run", "--to-outputs=X_test,y_test")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    trained = (
        client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`kedro.command` = 'kedro run'",
        )
        if experiment
        else []
    )
    run_id = trained[0].info.run_id if trained else "no-training-run"
    evaluation = kedro(
        "run", "--from-nodes=evaluate_model_node", "--params", f"mlflow_run_id={run_id}"
    )
    untracked = kedro(
        "run", "--to-outputs=X_test,y_test", KEDROFLOW_DISABLE_TRACKING="1"
    )
    broken_hook = kedro("run", "--params", "break_extra_hook=true")
    return Guide(
        path, preview, catalog_after_preview, file_store, write, training,
        to_outputs, evaluation, untracked, broken_hook,
    )  # fmt: skip


class TestMigrate:
    def test_preview_shows_the_changes_and_writes_nothing(self, guide: Guide) -> None:
        assert guide.preview.returncode == 0, explain(guide.preview)
        shown = guide.preview.stdout
        assert "+  type: kedroflow.MlflowModelTrackingDataset" in shown
        assert "+  mlflow_tracking_uri: sqlite:///mlflow.db" in shown
        assert "the file store 'mlflow_runs' becomes sqlite:///mlflow.db" in shown
        assert "kedro_mlflow.io.models" in guide.catalog_after_preview

    def test_write_gives_a_kedroflow_project(self, guide: Guide) -> None:
        assert guide.write.returncode == 0, explain(guide.write)
        catalog = yaml.safe_load((guide.path / "conf/base/catalog.yml").read_text())
        assert catalog["regressor"]["type"] == "kedroflow.MlflowModelTrackingDataset"
        assert catalog["regressor"]["run_id"] == "${runtime_params:mlflow_run_id,null}"
        assert catalog["metrics"]["type"] == "kedroflow.MlflowMetricsHistoryDataset"
        mlflow_yml = yaml.safe_load((guide.path / "conf/local/mlflow.yml").read_text())
        assert mlflow_yml == {"server": {"mlflow_tracking_uri": "sqlite:///mlflow.db"}}
        registry = (guide.path / "src" / PACKAGE / "pipeline_registry.py").read_text()
        # the space before the inline comment is kept (ruff and flake8 want two)
        assert (
            "from kedroflow import pipeline_ml_factory  # the model of the training runs"
            in registry
        )

    @pytest.mark.skipif(
        tuple(int(p) for p in version("mlflow").split(".")[:2]) < (3, 7),
        reason="MLflow before 3.7 accepts file stores",
    )
    def test_file_store_fails_with_one_clear_message(self, guide: Guide) -> None:
        result = guide.file_store
        assert result.returncode != 0
        text = output(result)
        assert "server.mlflow_tracking_uri: 'mlflow_runs' is a local file store" in text
        assert "sqlite:///mlflow.db" in text
        assert "MLFLOW_ALLOW_FILE_STORE=true" in text
        assert "Traceback" not in text and "╭" not in text, text[-3000:]


class TestTrainingRun:
    def test_tracks_params_metrics_plots_and_the_extra_hook_tags(
        self, guide: Guide
    ) -> None:
        assert guide.training.returncode == 0, explain(guide.training)
        run = guide.run("kedro run")
        assert run.info.status == "FINISHED"
        assert "'test_size': 0.25" in run.data.params["model_options"]
        assert run.data.metrics["metrics.r2_score"] > 0.9
        assert {"metrics.mae", "metrics.max_error"} <= run.data.metrics.keys()
        assert run.data.tags["custom_version"] == "0.1.0"  # the guide's extra hook
        artifacts = {a.path for a in guide.client().list_artifacts(run.info.run_id)}
        assert {
            "shuttle_passenger_capacity_plot_exp.json",
            "shuttle_passenger_capacity_plot_go.json",
            "dummy_confusion_matrix.png",
        } <= artifacts
        versions = list(
            (guide.path / "data/08_reporting/dummy_confusion_matrix.png").iterdir()
        )
        assert len(versions) == 1  # versioned locally, logged as it was written

    def test_registers_the_regressor_and_the_pipeline_model(self, guide: Guide) -> None:
        run = guide.run("kedro run")
        assert sorted(m.name for m in guide.models_of(run)) == ["model", "regressor"]
        client = guide.client()
        regressor = client.get_model_version("spaceflights-regressor", "1")
        champion = client.get_model_version_by_alias("spaceflights", "champion")
        assert regressor.run_id == champion.run_id == run.info.run_id

    def test_kedroflow_lines_reach_the_starter_console(self, guide: Guide) -> None:
        # conf/logging.yml (the starter's) gives a level to `kedro` and the project only
        text = output(guide.training)
        run = guide.run("kedro run")
        assert f"kedroflow: MLflow run {run.info.run_id}" in text
        assert "logged model m-" in text
        assert "registered as spaceflights v1" in text

    def test_pipeline_model_references_the_logged_regressor(self, guide: Guide) -> None:
        run = guide.run("kedro run")
        (regressor,) = [m for m in guide.models_of(run) if m.name == "regressor"]
        mlflow.set_tracking_uri(guide.uri)
        local = Path(
            mlflow.artifacts.download_artifacts("models:/spaceflights@champion")
        )
        mlmodel = yaml.safe_load((local / "MLmodel").read_text())
        config = mlmodel["flavors"]["python_function"]["config"]
        assert config["artifacts"]["regressor"]["model_uri"] == (
            f"models:/{regressor.model_id}"
        )
        stored = [p.name for p in (local / "artifacts").glob("*")]
        assert not [name for name in stored if "regressor" in name]  # not copied

    def test_serves_one_row_like_the_regressor(self, guide: Guide) -> None:
        mlflow.set_tracking_uri(guide.uri)
        mlflow.set_registry_uri(guide.uri)
        row = pd.read_parquet(guide.path / "data/05_model_input/X_test.parquet").iloc[
            [0]
        ]
        try:
            served = mlflow.pyfunc.load_model("models:/spaceflights@champion")
            predicted = served.predict(row)
        finally:
            for module in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
                del sys.modules[module]
        regressor = mlflow.sklearn.load_model("models:/spaceflights-regressor/1")
        assert predicted["price"].tolist() == pytest.approx(regressor.predict(row))


class TestRunsThatTrainNothing:
    def test_evaluation_loads_the_regressor_of_the_given_run(
        self, guide: Guide
    ) -> None:
        assert guide.evaluation.returncode == 0, explain(guide.evaluation)
        trained = guide.run("kedro run")
        command = (
            "kedro run --from-nodes evaluate_model_node --params "
            f"mlflow_run_id={trained.info.run_id}"
        )
        evaluation = guide.run(command)
        assert evaluation.info.status == "FINISHED"
        scores = {  # kedroflow.inputs: the trained model's links to its data
            k: v for k, v in trained.data.metrics.items() if k != "kedroflow.inputs"
        }
        assert evaluation.data.metrics == pytest.approx(scores)

    @pytest.mark.parametrize("step", ["to_outputs", "evaluation"])
    def test_log_and_register_no_model(self, guide: Guide, step: str) -> None:
        result = getattr(guide, step)
        assert result.returncode == 0, explain(result)
        assert "WARNING" in output(result)
        assert "no model logged for PipelineML 'data_science'" in output(result)
        trained = guide.run("kedro run")
        for run in guide.client().search_runs([trained.info.experiment_id]):
            if run.info.run_id != trained.info.run_id:
                assert guide.models_of(run) == [], run.data.tags["kedro.command"]
        assert guide.versions("spaceflights") == [1]
        assert guide.versions("spaceflights-regressor") == [1]
        champion = guide.client().get_model_version_by_alias("spaceflights", "champion")
        assert int(champion.version) == 1


class TestConsole:
    def test_kedroflow_adds_no_deprecation_warning(self, guide: Guide) -> None:
        tracked, untracked = output(guide.to_outputs), output(guide.untracked)
        assert guide.untracked.returncode == 0, explain(guide.untracked)
        assert tracked.count(RESOLVER_WARNING) == untracked.count(RESOLVER_WARNING)
        for line in tracked.splitlines():
            assert not (RESOLVER_WARNING in line and "kedroflow" in line), line


class TestProjectHooks:
    def test_failing_project_hook_fails_the_run_with_its_error(
        self, guide: Guide
    ) -> None:
        assert guide.broken_hook.returncode != 0
        run = guide.run("kedro run --params break_extra_hook=True")
        assert run.info.status == "FAILED"
        assert run.data.tags["kedroflow.error"] == "KeyError: 'pipeline_name'"
