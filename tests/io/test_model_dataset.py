"""Model datasets through ``KedroSession.run`` (3 runners) and directly."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow
import pytest
from kedro.io import DataCatalog, DatasetError, Version
from mlflow.entities import LoggedModelStatus
from sklearn.dummy import DummyClassifier

from kedroflow import tracking
from kedroflow.config import TRACKING_OFF_ENV
from kedroflow.errors import MlflowDatasetError
from kedroflow.io import (
    MlflowModelLocalFileSystemDataset,
    MlflowModelRegistryDataset,
    MlflowModelTrackingDataset,
)

SAVE_ARGS = {"pip_requirements": ["scikit-learn"]}


def model() -> DummyClassifier:
    return DummyClassifier(strategy="constant", constant=1).fit([[0], [1]], [0, 1])


class TestModelsThroughKedroRun:
    def test_logged_models_are_linked_to_the_one_run(self, tracked_run: Any) -> None:
        run_id = tracked_run.run.info.run_id
        client = tracked_run.client
        outputs = client.get_run(run_id).outputs.model_outputs
        models = [client.get_logged_model(o.model_id) for o in outputs]
        assert sorted(m.name for m in models) == ["classifier", "fake-classifier"]
        assert {m.source_run_id for m in models} == {run_id}
        assert {m.status for m in models} == {LoggedModelStatus.READY}
        assert models[0].params == {"C": "2.0"}  # the run's params, copied by MLflow

    def test_registry_save_registers_and_sets_the_alias(self, tracked_run: Any) -> None:
        version = tracked_run.client.get_model_version_by_alias(
            "fake-classifier", "champion"
        )
        assert version.run_id == tracked_run.run.info.run_id

    def test_local_model_folder_is_versioned(self, tracked_run: Any) -> None:
        versions = list((tracked_run.project.path / "data" / "model_folder").iterdir())
        assert len(versions) == 1
        assert (versions[0] / "model_folder" / "MLmodel").exists()


class TestMlflowModelTrackingDataset:
    def test_a_worker_thread_links_the_model_to_the_run(
        self, run_id: str, tracking_uri: str, monkeypatch: Any
    ) -> None:
        # as in a kedro run: the run is known to kedroflow, not active in the thread
        monkeypatch.setenv(tracking.RUN_ID_ENV_VAR, run_id)
        monkeypatch.setenv(tracking.TRACKING_URI_ENV_VAR, tracking_uri)
        dataset = MlflowModelTrackingDataset(
            flavor="mlflow.sklearn", save_args={**SAVE_ARGS, "name": "clf"}
        )
        with ThreadPoolExecutor(1) as pool:  # no active run in that thread
            pool.submit(dataset.save, model()).result()
        logged = mlflow.get_logged_model(str(dataset.model_id))
        assert logged.source_run_id == run_id
        assert logged.name == "clf"
        outputs = mlflow.MlflowClient().get_run(run_id).outputs.model_outputs
        assert [o.model_id for o in outputs] == [dataset.model_id]
        assert dataset.load().predict([[5]]).tolist() == [1]

    def test_load_a_given_uri_and_refuse_to_save(self, run_id: str) -> None:
        saver = MlflowModelTrackingDataset(flavor="mlflow.sklearn", save_args=SAVE_ARGS)
        saver.save(model())
        loader = MlflowModelTrackingDataset(
            flavor="mlflow.pyfunc",
            pyfunc_workflow="python_model",
            load_args={"model_uri": f"models:/{saver.model_id}"},
        )
        assert loader.load().predict([[5]]).tolist() == [1]
        with pytest.raises(MlflowDatasetError, match=r"remove `load_args\.model_uri`"):
            loader.save(model())

    def test_nothing_to_load(self) -> None:
        dataset = MlflowModelTrackingDataset(flavor="mlflow.sklearn")
        with pytest.raises(MlflowDatasetError, match="has no model to load"):
            dataset.load()

    def test_tracking_off(self, run_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(TRACKING_OFF_ENV, "1")
        dataset = MlflowModelTrackingDataset(flavor="mlflow.sklearn")
        dataset.save(model())
        assert dataset.model_id is None

    def test_tracking_off_with_another_run_pinned(
        self, run_id: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Off means nothing is logged: no complaint about the run it would go to."""
        monkeypatch.setenv(TRACKING_OFF_ENV, "1")
        dataset = MlflowModelTrackingDataset(flavor="mlflow.sklearn", run_id="0" * 32)
        dataset.save(model())
        assert dataset.model_id is None
        assert mlflow.search_logged_models(output_format="list") == []

    def test_no_run(self, tracking_uri: str) -> None:
        mlflow.set_tracking_uri(tracking_uri)
        dataset = MlflowModelTrackingDataset(flavor="mlflow.sklearn")
        with pytest.raises(MlflowDatasetError, match="cannot log its model: no MLflow"):
            dataset.save(model())

    def test_bad_flavor(self) -> None:
        with pytest.raises(
            MlflowDatasetError, match=r"'mlflow\.nope' cannot be imported"
        ):
            MlflowModelTrackingDataset(flavor="mlflow.nope")
        with pytest.raises(MlflowDatasetError, match="'json' is not an MLflow flavor"):
            MlflowModelTrackingDataset(flavor="json")

    def test_pyfunc_needs_a_workflow(self) -> None:
        with pytest.raises(MlflowDatasetError, match="pyfunc_workflow: python_model"):
            MlflowModelTrackingDataset(flavor="mlflow.pyfunc")


class TestMlflowModelRegistryDataset:
    def test_load_by_version(self, run_id: str) -> None:
        dataset = MlflowModelRegistryDataset(
            model_name="reg", flavor="mlflow.sklearn", save_args=SAVE_ARGS
        )
        dataset.save(model())
        by_version = MlflowModelRegistryDataset(
            model_name="reg", stage_or_version=1, flavor="mlflow.sklearn"
        )
        assert by_version.load().predict([[0]]).tolist() == [1]
        assert dataset.load().predict([[0]]).tolist() == [1]  # latest
        with pytest.raises(MlflowDatasetError, match="cannot save: the registry"):
            by_version.save(model())

    def test_unknown_model(self, run_id: str) -> None:
        dataset = MlflowModelRegistryDataset(model_name="ghost", alias="champion")
        with pytest.raises(
            MlflowDatasetError, match="cannot load models:/ghost@champion"
        ):
            dataset.load()

    def test_alias_and_version_are_exclusive(self) -> None:
        with pytest.raises(MlflowDatasetError, match="either `alias` or"):
            MlflowModelRegistryDataset(model_name="m", alias="a", stage_or_version=1)


class TestMlflowModelLocalFileSystemDataset:
    def test_versioned_round_trip(self, tmp_path: Path) -> None:
        dataset = MlflowModelLocalFileSystemDataset(
            filepath=str(tmp_path / "m"),
            flavor="mlflow.sklearn",
            save_args=SAVE_ARGS,
            version=Version(None, "2026-01-01T00.00.00.000Z"),
        )
        dataset.save(model())
        assert (tmp_path / "m" / "2026-01-01T00.00.00.000Z" / "m" / "MLmodel").exists()
        assert dataset.exists()
        assert dataset.load().predict([[0]]).tolist() == [1]

    def test_remote_path_is_refused(self) -> None:
        with pytest.raises(MlflowDatasetError, match="must be local"):
            MlflowModelLocalFileSystemDataset(
                filepath="s3://b/m", flavor="mlflow.sklearn"
            )

    def test_a_failed_save_keeps_the_previous_model(self, tmp_path: Path) -> None:
        dataset = MlflowModelLocalFileSystemDataset(
            filepath=str(tmp_path / "m"), flavor="mlflow.sklearn", save_args=SAVE_ARGS
        )
        dataset.save(model())
        with pytest.raises(DatasetError, match="Failed while saving"):
            dataset.save(i for i in [])  # a generator: the flavor cannot pickle it
        assert dataset.load().predict([[0]]).tolist() == [1]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # nothing left over


NULL_ARGS_NODES = """
import pandas as pd
from sklearn.dummy import DummyClassifier


def train():
    model = DummyClassifier(strategy="constant", constant=1).fit([[0], [1]], [0, 1])
    table = pd.DataFrame({"x": [1, 2]})
    return model, model, 0.5, [1.0, 0.5], {"auc": 0.75}, table


def check(model, registered, score, history, scores, table):
    return {
        "model": model.predict([[3]]).tolist(),
        "registered": registered.predict([[3]]).tolist(),
        "score": score,
        "history": history,
        "auc": scores["auc"]["value"],
        "rows": len(table),
    }
"""

NULL_ARGS_REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import check, train

OUTPUTS = ["model", "registered", "score", "history", "scores", "table"]


def register_pipelines():
    return {
        "__default__": Pipeline(
            [
                Node(train, None, OUTPUTS, name="train"),
                Node(check, OUTPUTS, "loaded", name="check"),
            ]
        )
    }
"""

# Every optional argument of every kedroflow dataset given as a runtime parameter
# that is not passed: `${runtime_params:...,null}` resolves to None.
NULL_ARGS_CATALOG = """
model:
  type: kedroflow.MlflowModelTrackingDataset
  flavor: mlflow.sklearn
  run_id: ${runtime_params:run,null}
  pyfunc_workflow: ${runtime_params:workflow,null}
  load_args:
    model_uri: ${runtime_params:model_uri,null}
  save_args:
    registered_model_name: ${runtime_params:registered,null}
    pip_requirements: [scikit-learn]
registered:
  type: kedroflow.MlflowModelRegistryDataset
  model_name: null-args
  flavor: mlflow.sklearn
  alias: ${runtime_params:alias,null}
  stage_or_version: ${runtime_params:version,null}
  pyfunc_workflow: ${runtime_params:workflow,null}
  save_args:
    pip_requirements: [scikit-learn]
score:
  type: kedroflow.MlflowMetricDataset
  key: ${runtime_params:key,null}
  run_id: ${runtime_params:run,null}
  load_args:
    step: ${runtime_params:step,null}
  save_args:
    mode: ${runtime_params:mode,null}
    step: ${runtime_params:step,null}
history:
  type: kedroflow.MlflowMetricHistoryDataset
  key: ${runtime_params:key,null}
  run_id: ${runtime_params:run,null}
  load_args:
    mode: ${runtime_params:mode,null}
  save_args:
    mode: ${runtime_params:mode,null}
scores:
  type: kedroflow.MlflowMetricsHistoryDataset
  prefix: ${runtime_params:prefix,null}
  run_id: ${runtime_params:run,null}
table:
  type: kedroflow.MlflowArtifactDataset
  run_id: ${runtime_params:run,null}
  artifact_path: ${runtime_params:folder,null}
  credentials: ${runtime_params:credentials,null}
  dataset:
    type: pandas.CSVDataset
    filepath: data/table.csv
loaded:
  type: json.JSONDataset
  filepath: data/loaded.json
"""


class TestNullArguments:
    def test_null_means_not_set_for_every_optional_argument(
        self, kedro_project: Any
    ) -> None:
        kedro_project.write("src/fake_project/nodes.py", NULL_ARGS_NODES)
        kedro_project.write_pipelines(NULL_ARGS_REGISTRY)
        kedro_project.write("conf/base/catalog.yml", NULL_ARGS_CATALOG)
        kedro_project.run()
        run = kedro_project.only_run()
        assert run.info.status == "FINISHED"
        assert run.data.metrics == {"score": 0.5, "history": 0.5, "scores.auc": 0.75}
        loaded = json.loads((kedro_project.path / "data" / "loaded.json").read_text())
        assert loaded == {
            "model": [1],
            "registered": [1],
            "score": 0.5,
            "history": [1.0, 0.5],
            "auc": 0.75,
            "rows": 2,
        }
        client = kedro_project.client()
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["table.csv"]
        assert client.search_registered_models()[0].name == "null-args"


NO_RUN_NODES = "def train():\n    return 1.0\n"


class TestNoRunOpen:
    @pytest.mark.parametrize(
        ("entry", "suggests_run_id"),
        [
            (
                "type: kedroflow.MlflowModelTrackingDataset\n  flavor: mlflow.sklearn",
                True,
            ),
            ("type: kedroflow.MlflowModelRegistryDataset\n  model_name: m", False),
        ],
    )
    def test_run_id_is_suggested_only_where_it_exists(
        self, kedro_project: Any, entry: str, suggests_run_id: bool
    ) -> None:
        kedro_project.write(
            "src/fake_project/settings.py",
            'DISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",)\n',
        )
        kedro_project.write("src/fake_project/nodes.py", NO_RUN_NODES)
        kedro_project.write_pipelines(
            """
            from kedro.pipeline import Node, Pipeline
            from fake_project.nodes import train
            def register_pipelines():
                return {"__default__": Pipeline([Node(train, None, "model")])}
            """
        )
        kedro_project.write("conf/base/catalog.yml", f"model:\n  {entry}\n")
        with pytest.raises(DatasetError, match="no MLflow run is open") as error:
            kedro_project.run()
        assert ("`run_id:`" in str(error.value)) is suggests_run_id


class TestCatalogConfig:
    def test_model_entries_describe_themselves_as_written(self) -> None:
        """``catalog.to_config()`` (``kedro catalog``, the pipeline model's stored
        entries) gives back entries that build the same datasets."""
        config = {
            "model": {
                "type": "kedroflow.MlflowModelTrackingDataset",
                "flavor": "mlflow.sklearn",
                "save_args": {"pip_requirements": ["scikit-learn"]},
            },
            "champion": {
                "type": "kedroflow.MlflowModelRegistryDataset",
                "model_name": "clf",
                "alias": "champion",
                "load_args": {"dst_path": None},
            },
        }
        catalog = DataCatalog.from_config(config)
        built = {name: catalog[name] for name in config}  # no longer lazy entries
        described = catalog.to_config()[0]
        again = DataCatalog.from_config(described)
        for name, entry in config.items():
            assert described[name]["save_args" if "save_args" in entry else "load_args"]
            assert again[name]._describe() == built[name]._describe()
