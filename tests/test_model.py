"""KedroPipelineModel logged by real training runs (KedroSession and `kedro` CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import sklearn

NODES = '''
"""Nodes of the test project: a one-hot encoder and a logistic regression."""

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

FEATURES = ["x1", "x2"]


def fit_encoder(instances: pd.DataFrame) -> OneHotEncoder:
    return OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(
        instances[["color"]]
    )


def featurize(instances: pd.DataFrame, encoder: OneHotEncoder) -> pd.DataFrame:
    onehot = encoder.transform(instances[["color"]])
    frame = instances[FEATURES].astype(float).reset_index(drop=True)
    for i, name in enumerate(encoder.categories_[0]):
        frame[f"color_{name}"] = onehot[:, i]
    return frame


def train(features: pd.DataFrame, labels: pd.DataFrame, c: float) -> LogisticRegression:
    return LogisticRegression(C=c).fit(features, labels["y"])


def predict(
    features: pd.DataFrame, model: LogisticRegression, threshold: float
) -> pd.DataFrame:
    proba = model.predict_proba(features)[:, 1]
    return pd.DataFrame({"proba": proba, "pred": (proba > threshold).astype(int)})
'''

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from kedroflow import pipeline_ml_factory
from fake_project.nodes import featurize, fit_encoder, predict, train


def register_pipelines():
    training = Pipeline(
        [
            Node(fit_encoder, "instances", "encoder", name="fit_encoder", tags="prep"),
            Node(featurize, ["instances", "encoder"], "features", name="featurize"),
            Node(train, ["features", "labels", "params:c"], "model", name="train"),
        ],
        tags="training",
    )
    inference = Pipeline(
        [
            Node(featurize, ["instances", "encoder"], "inference_features",
                 name="featurize_inference"),
            Node(predict, ["inference_features", "model", "params:threshold"],
                 "predictions", name="predict"),
        ]
    )
    training_ml = pipeline_ml_factory(
        training=training, inference=inference, input_name="instances",
        log_model_kwargs=LOG_MODEL_KWARGS,
    )
    etl = Pipeline([Node(lambda x: x, "params:c", "c_copy", name="etl")])
    return {
        "training": training_ml,
        "inference": inference,
        "etl": etl,
        "__default__": training_ml + etl,
    }
"""

CATALOG = """
instances:
  type: pandas.CSVDataset
  filepath: data/instances.csv
labels:
  type: pandas.CSVDataset
  filepath: data/labels.csv
encoder:
  type: pickle.PickleDataset
  filepath: data/encoder.pkl
model:
  type: pickle.PickleDataset
  filepath: data/model.pkl
"""

PARAMETERS = "c: 1.0\nthreshold: 0.5\n"

INSTANCES = pd.DataFrame(
    {
        "x1": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        "x2": [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
        "color": ["red", "blue", "red", "green", "blue", "green", "red", "blue"],
    }
)
LABELS = pd.DataFrame({"y": [0, 0, 0, 1, 0, 1, 1, 1]})


def setup_project(project: Any, log_model_kwargs: dict | None = None) -> Any:
    """Write the training/inference project into ``project``."""
    project.write("src/fake_project/nodes.py", NODES)
    kwargs = log_model_kwargs if log_model_kwargs is not None else {}
    project.write_pipelines(f"LOG_MODEL_KWARGS = {kwargs!r}\n" + REGISTRY)
    project.write("conf/base/catalog.yml", CATALOG)
    project.write("conf/base/parameters.yml", PARAMETERS)
    (project.path / "data").mkdir(exist_ok=True)
    INSTANCES.to_csv(project.path / "data" / "instances.csv", index=False)
    LABELS.to_csv(project.path / "data" / "labels.csv", index=False)
    return project


def logged_models(project: Any) -> list[Any]:
    client = project.client()
    experiment = client.get_experiment_by_name("fake_project")
    if experiment is None:
        return []
    return list(client.search_logged_models([experiment.experiment_id]))


def inference_output(project: Any, data: pd.DataFrame, **params: Any) -> pd.DataFrame:
    """What the inference pipeline itself returns, run by Kedro on the project."""
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro.io import MemoryDataset
    from kedro.runner import SequentialRunner

    bootstrap_project(project.path)
    with KedroSession.create(project_path=project.path) as session:
        catalog = session.load_context().catalog
    catalog["instances"] = MemoryDataset(data)
    for key, value in params.items():
        catalog[f"params:{key}"] = MemoryDataset(value)
    result = SequentialRunner().run(pipelines["inference"], catalog)
    return result["predictions"].load()


@pytest.fixture
def project(kedro_project: Any) -> Any:
    return setup_project(kedro_project)


def set_uri(project: Any) -> None:
    mlflow.set_tracking_uri(project.tracking_uri)
    mlflow.set_registry_uri(project.tracking_uri)


class TestTrainingRunLogsTheModel:
    def test_session_run_logs_a_model_that_predicts_like_the_pipeline(
        self, project: Any
    ) -> None:
        project.run(pipeline_names=["training"])
        run = project.only_run()
        (logged,) = logged_models(project)
        assert logged.source_run_id == run.info.run_id
        assert logged.tags["kedroflow.pipeline"] == "training"
        set_uri(project)
        model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
        new = INSTANCES.iloc[[0, 3, 6]].reset_index(drop=True)
        expected = inference_output(project, new)
        pd.testing.assert_frame_equal(model.predict(new), expected)
        low = model.predict(new, params={"threshold": 0.0})
        assert low["pred"].tolist() == [1, 1, 1]
        pd.testing.assert_frame_equal(model.predict(new), expected)  # call-scoped

    def test_model_is_data_not_pickled_kedro_objects(self, project: Any) -> None:
        project.run(pipeline_names=["training"])
        (logged,) = logged_models(project)
        set_uri(project)
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{logged.model_id}"))
        assert not (local / "python_model.pkl").exists()
        assert sorted(p.name for p in (local / "artifacts").iterdir()) == [
            "encoder.pkl",
            "kedroflow_profile.json",  # the training input's profile (drift)
            "model.pkl",
        ]
        assert (local / "code" / "fake_project" / "nodes.py").exists()
        mlmodel = (local / "MLmodel").read_text()
        assert "fake_project.nodes:featurize" in mlmodel
        requirements = (local / "requirements.txt").read_text().splitlines()
        names = {r.split("==")[0].lower() for r in requirements}
        assert {"mlflow", "kedro", "kedroflow", "scikit-learn", "pandas"} <= names
        assert "kedro-datasets" in names
        assert f"scikit-learn=={sklearn.__version__}" in requirements
        assert f"pandas=={pd.__version__}" in requirements
        info = mlflow.models.get_model_info(f"models:/{logged.model_id}")
        assert info.signature.inputs.input_names() == ["x1", "x2", "color"]
        assert info.signature.outputs.input_names() == ["proba", "pred"]
        assert {p.name for p in info.signature.params} == {"threshold"}
        example = json.loads((local / "serving_input_example.json").read_text())
        assert len(example["dataframe_split"]["data"]) == 5

    def test_mlflow_reload_check_on_request(self, kedro_project: Any) -> None:
        project = setup_project(kedro_project, {"validate_serving_input": True})
        project.run(pipeline_names=["training"])
        (logged,) = logged_models(project)
        set_uri(project)
        model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
        new = INSTANCES.iloc[[1, 4]].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            model.predict(new), inference_output(project, new)
        )

    def test_default_pipeline_sum_logs_the_model(self, project: Any) -> None:
        project.run()
        assert len(logged_models(project)) == 1

    def test_tag_filter_logs_the_model(self, project: Any) -> None:
        project.run(pipeline_names=["training"], tags=["training"])
        assert len(logged_models(project)) == 1

    def test_filter_reusing_stored_artifacts_logs_the_model(self, project: Any) -> None:
        project.run(pipeline_names=["training"])
        project.run(pipeline_names=["training"], node_names=["featurize", "train"])
        assert len(logged_models(project)) == 2

    def test_filter_without_artifacts_fails_before_training(self, project: Any) -> None:
        from kedroflow.errors import ModelError

        with pytest.raises(ModelError) as raised:
            project.run(pipeline_names=["training"], tags=["prep"])
        message = str(raised.value)  # what the end of the run used to warn
        assert "no model logged for PipelineML 'training'" in message
        assert "'model' is missing" in message and "['train'] did not run" in message
        assert "--tags prep" in message
        assert not (project.path / "data" / "encoder.pkl").exists()  # nothing ran
        assert project.runs() == []  # no MLflow run either

    def test_other_pipeline_logs_nothing(self, project: Any) -> None:
        project.run(pipeline_names=["etl"])
        assert logged_models(project) == []


class TestRegistry:
    def test_registered_version_and_alias(self, kedro_project: Any) -> None:
        project = setup_project(
            kedro_project,
            {"registered_model_name": "scorer", "registered_model_alias": "champion"},
        )
        project.run(pipeline_names=["training"])
        project.run(pipeline_names=["training"])
        client = project.client()
        version = client.get_model_version_by_alias("scorer", "champion")
        assert str(version.version) == "2"
        assert version.run_id == project.runs()[-1].info.run_id
        set_uri(project)
        model = mlflow.pyfunc.load_model("models:/scorer@champion")
        assert model.predict(INSTANCES.head(2))["pred"].tolist() == [0, 0]

    def test_run_training_no_artifact_registers_nothing(
        self, kedro_project: Any
    ) -> None:
        project = setup_project(
            kedro_project,
            {"registered_model_name": "scorer", "registered_model_alias": "champion"},
        )
        project.run(pipeline_names=["training"])
        # `featurize` only: both artifacts come from storage, nothing new was trained
        project.run(pipeline_names=["training"], node_names=["featurize"])
        assert len(logged_models(project)) == 1
        project.write(
            "conf/local/mlflow.yml",
            "tracking:\n  pipeline_model:\n    log_untrained: true\n",
        )
        project.run(pipeline_names=["training"], node_names=["featurize"])
        models = logged_models(project)
        assert len(models) == 2  # asked for: logged, but no new version
        client = project.client()
        versions = client.search_model_versions("name = 'scorer'")
        assert [int(v.version) for v in versions] == [1]
        champion = client.get_model_version_by_alias("scorer", "champion")
        assert champion.run_id == project.runs()[0].info.run_id
        last = project.runs()[-1].info.run_id
        assert [m.source_run_id for m in models].count(last) == 1


class TestCli:
    def test_kedro_run_logs_and_model_loads_in_a_fresh_process(
        self, project: Any, tmp_path: Path, pipelines_option: str
    ) -> None:
        project.kedro("run", pipelines_option, "training", "--tags", "training")
        (logged,) = logged_models(project)
        script = textwrap.dedent(f"""
            import sys, json
            import mlflow, pandas as pd
            assert not any("fake-project" in p for p in sys.path), sys.path
            mlflow.set_tracking_uri({project.tracking_uri!r})
            model = mlflow.pyfunc.load_model("models:/{logged.model_id}")
            data = pd.DataFrame({{"x1": [1.0, 8.0], "x2": [8.0, 1.0],
                                  "color": ["red", "blue"]}})
            print(json.dumps(model.predict(data)["pred"].tolist()))
        """)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=elsewhere, capture_output=True,
            text=True, timeout=120, check=False, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == [0, 1]

    def test_kedro_run_with_nodes_filter_logs_the_model(
        self, project: Any, pipelines_option: str
    ) -> None:
        project.kedro("run", pipelines_option, "training")
        project.kedro("run", pipelines_option, "training", "--nodes", "fit_encoder")
        assert len(logged_models(project)) == 2


class TestModelify:
    def test_modelify_logs_a_registered_pipeline(
        self, project: Any, pipelines_option: str
    ) -> None:
        project.kedro("run", pipelines_option, "training")
        (run,) = project.runs()
        result = project.kedro(
            "mlflow", "modelify", "--pipeline", "inference", "--input-name",
            "instances", "--model-name", "scorer", "--run-id", run.info.run_id,
            "--registered-model-name", "scorer", "--alias", "champion",
            "--infer-signature", "--infer-input-example",
        )  # fmt: skip
        assert "Registered as scorer v1" in result.stdout
        models = logged_models(project)
        assert len(models) == 2
        assert {m.source_run_id for m in models} == {run.info.run_id}
        set_uri(project)
        model = mlflow.pyfunc.load_model("models:/scorer@champion")
        assert model.metadata.signature is not None
        pd.testing.assert_frame_equal(
            model.predict(INSTANCES), inference_output(project, INSTANCES)
        )

    def test_modelify_without_a_run_id_makes_a_run_in_the_project_experiment(
        self, project: Any, pipelines_option: str
    ) -> None:
        untracked = {**os.environ, "KEDROFLOW_DISABLE_TRACKING": "1", "COLUMNS": "400"}
        project.kedro("run", pipelines_option, "training", env=untracked)
        assert logged_models(project) == []  # no experiment yet
        project.kedro("mlflow", "modelify", "-p", "inference", "-i", "instances")
        (logged,) = logged_models(project)
        (run,) = project.runs()  # a new run of the project's experiment
        assert logged.source_run_id == run.info.run_id
        assert run.info.status == "FINISHED"
        # stored where the project's runs store theirs, not in MLflow's ./mlruns
        beside_the_store = (project.path / "mlartifacts").as_uri()
        experiment = project.client().get_experiment(logged.experiment_id)
        assert experiment.artifact_location.startswith(beside_the_store)
        assert logged.artifact_location.startswith(beside_the_store)
        set_uri(project)
        model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
        pd.testing.assert_frame_equal(
            model.predict(INSTANCES), inference_output(project, INSTANCES)
        )

    def test_modelify_rejects_an_unknown_input(self, project: Any) -> None:
        result = project.kedro(
            "mlflow", "modelify", "-p", "inference", "-i", "nope", check=False
        )
        assert result.returncode != 0
        assert "--input-name 'nope' is not an input of pipeline 'inference'" in (
            result.stdout + result.stderr
        )
