"""From data to a promoted model, with its trail, on a real project and SQLite store.

One project: ``etl`` writes the data, ``training`` (a ``PipelineML`` with
``evaluation=`` and a promotion gate) fits an encoder, writes features to disk and
reads them back (a persisted intermediate), trains a model and logs the inference
pipeline. Runs go through the ``kedro`` CLI, as a user runs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from tests.conftest import KedroProject

NODES = '''
"""A logistic regression on two numbers and a colour."""

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder


def make_data(size, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.random(size), "x2": rng.random(size),
                          "color": rng.choice(["red", "blue"], size)})
    y = ((frame["x1"] + 0.1 * rng.standard_normal(size)) > 0.5).astype(int)
    half = size // 2
    held_out = frame.iloc[half:].assign(y=y.iloc[half:]).reset_index(drop=True)
    return frame.iloc[:half], pd.DataFrame({"y": y.iloc[:half]}), held_out


def fit_encoder(instances):
    return OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(
        instances[["color"]])


def featurize(instances, encoder):
    onehot = encoder.transform(instances[["color"]])
    frame = instances[["x1", "x2"]].astype(float).reset_index(drop=True)
    for i, name in enumerate(encoder.categories_[0]):
        frame[f"color_{name}"] = onehot[:, i]
    return frame


def train(features, labels, c):
    return LogisticRegression(C=c).fit(features, labels["y"])


def score(model, features, labels):
    return {"accuracy": float((model.predict(features) == labels["y"]).mean())}


def predict(features, model):
    proba = model.predict_proba(features)[:, 1]
    return pd.DataFrame({"proba": proba, "pred": (proba > 0.5).astype(int)})
'''

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from kedroflow import pipeline_ml_factory
from fake_project.nodes import (fit_encoder, featurize, make_data, predict, score,
                                train)


def register_pipelines():
    etl = Pipeline([Node(make_data, ["params:size", "params:seed"],
                         ["instances", "labels", "held_out"], name="make_data")])
    training = Pipeline([
        Node(fit_encoder, "instances", "encoder", name="fit_encoder"),
        Node(featurize, ["instances", "encoder"], "features", name="featurize"),
        Node(train, ["features", "labels", "params:c"], "model", name="train"),
        Node(score, ["model", "features", "labels"], "valid_metrics", name="score"),
    ])
    inference = Pipeline([
        Node(featurize, ["instances", "encoder"], "inference_features",
             name="featurize_inference"),
        Node(predict, ["inference_features", "model"], "predictions", name="predict"),
    ])
    ml = pipeline_ml_factory(
        training=training, inference=inference, input_name="instances",
        log_model_kwargs=LOG_MODEL_KWARGS,
        **({"evaluation": EVALUATION} if EVALUATION else {}),
    )
    return {"etl": etl, "training": ml, "inference": inference, "__default__": ml}
"""

CATALOG = """
instances: {type: pandas.CSVDataset, filepath: data/instances.csv}
labels: {type: pandas.CSVDataset, filepath: data/labels.csv}
held_out: {type: pandas.CSVDataset, filepath: data/held_out.csv}
encoder: {type: pickle.PickleDataset, filepath: data/encoder.pkl}
features: {type: pandas.CSVDataset, filepath: data/features.csv}
model: {type: pickle.PickleDataset, filepath: data/model.pkl}
valid_metrics: {type: kedroflow.MlflowMetricsHistoryDataset, prefix: valid}
"""

GATED = {
    "registered_model_name": "scorer",
    "registered_model_alias": "champion",
    "promote_if": {"valid.accuracy": {"min": 0.8}, "beat_current": "valid.accuracy"},
}
EVALUATION = {
    "data": "held_out",
    "targets": "y",
    "model_type": "classifier",
    "predictions": "pred",
    "slices": ["color"],
}


def make_project(
    project: KedroProject,
    log_model_kwargs: dict | None = None,
    evaluation: dict | None = None,
) -> KedroProject:
    """Write the governed project's code and config into a fresh ``project``."""
    project.write("src/fake_project/nodes.py", NODES)
    project.write_pipelines(
        f"LOG_MODEL_KWARGS = {log_model_kwargs or {}!r}\n"
        f"EVALUATION = {evaluation!r}\n" + REGISTRY
    )
    project.write("conf/base/catalog.yml", CATALOG)
    project.write("conf/base/parameters.yml", "c: 1.0\nsize: 400\nseed: 0\n")
    return project


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, new_project: Callable[[Path], Any]
) -> KedroProject:
    """ETL, then a training that the gate rejects (C tiny), then one it promotes."""
    project = make_project(
        new_project(tmp_path_factory.mktemp("governed")), GATED, EVALUATION
    )
    project.kedro("run", "--pipeline", "etl")
    project.kedro("run", "--pipeline", "training", "--params", "c=0.00001")
    project.kedro("run", "--pipeline", "training", "--params", "c=10")
    return project


def runs_by_pipeline(project: KedroProject) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for run in project.runs():
        found.setdefault(run.data.tags.get("kedro.pipeline", ""), []).append(run)
    return found


def hand_written(
    project: KedroProject, **kpm_kwargs: Any
) -> tuple[Any, dict[str, str], pd.DataFrame]:
    """kedro-mlflow's documented steps after the ETL and training runs of ``project``.

    Returns the ``KedroPipelineModel``, its staged artifacts and the input data; MLflow
    is left configured on the project's store.
    """
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from kedroflow import KedroPipelineModel

    project.kedro("run", "--pipeline", "etl")
    project.kedro("run", "--pipeline", "training")
    bootstrap_project(project.path)
    mlflow.set_tracking_uri(project.tracking_uri)
    with KedroSession.create(project_path=project.path) as session:
        catalog = session.load_context().catalog
        model = KedroPipelineModel(
            pipeline=pipelines["training"], catalog=catalog, input_name="instances",
            **kpm_kwargs,
        )  # fmt: skip
        return model, model.extract_pipeline_artifacts(), catalog.load("instances")


def model_of(project: KedroProject, run: Any) -> Any:
    """The logged model ``run`` logged (its only one)."""
    client = project.client()
    (model,) = [
        m
        for m in client.search_logged_models([run.info.experiment_id])
        if m.source_run_id == run.info.run_id
    ]
    return model


class TestTheModelAtTheCentre:
    def test_run_params_are_the_pipelines_only(self, trained: KedroProject) -> None:
        run = runs_by_pipeline(trained)["training"][-1]
        assert run.data.params == {"c": "10"}  # and no artifacts/model/... params

    def test_logged_model_carries_run_metrics_and_inputs(
        self, trained: KedroProject
    ) -> None:
        client = trained.client()
        run = runs_by_pipeline(trained)["training"][-1]
        model = model_of(trained, run)
        linked = {m.key: m for m in model.metrics}
        assert linked["valid.accuracy"].value == run.data.metrics["valid.accuracy"]
        assert "accuracy_score" in linked  # evaluation metrics too
        assert model.tags["kedroflow.input.instances"].startswith("digest=")
        assert "produced_by=" in model.tags["kedroflow.input.instances"]
        # re-linking the run's metrics added no point to its history
        assert len(client.get_metric_history(run.info.run_id, "valid.accuracy")) == 1

    def test_logged_model_links_the_runs_dataset_inputs(
        self, trained: KedroProject
    ) -> None:
        client = trained.client()
        run = runs_by_pipeline(trained)["training"][-1]
        model = client.get_logged_model(model_of(trained, run).model_id)
        read = {
            (i.dataset.name, i.dataset.digest)
            for i in run.inputs.dataset_inputs
            if {t.key: t.value for t in i.tags}.get("mlflow.data.context") == "training"
        }
        assert {"instances", "labels", "encoder", "features"} <= {n for n, _ in read}
        # what the MLflow UI's model page lists as "Datasets used"
        linked = {(m.dataset_name, m.dataset_digest) for m in model.metrics}
        assert read <= linked
        # MLflow's search by dataset finds the model from any of its inputs
        for name, digest in read:
            try:
                found = client.search_logged_models(
                    [run.info.experiment_id],
                    datasets=[{"dataset_name": name, "dataset_digest": digest}],
                )
            except MlflowException as error:  # MLflow 3.0's SQL store cannot yet
                assert "not currently supported" in error.message
                break
            assert model.model_id in {m.model_id for m in found}, name
        # one run metric for the links, not one per input
        assert run.data.metrics["kedroflow.inputs"] == len(read)


class TestLineage:
    def test_intermediate_inputs_and_producing_runs(
        self, trained: KedroProject
    ) -> None:
        runs = runs_by_pipeline(trained)
        (etl,) = runs["etl"]
        training = runs["training"][-1]
        inputs = {
            i.dataset.name: {t.key: t.value for t in i.tags}
            for i in training.inputs.dataset_inputs
        }
        for name in ("instances", "labels", "encoder", "features"):
            assert inputs[name]["mlflow.data.context"] == "training"
        assert inputs["instances"]["kedroflow.produced_by"] == etl.info.run_id
        assert inputs["labels"]["kedroflow.produced_by"] == etl.info.run_id
        # written then read back by the training run itself
        assert inputs["features"]["kedroflow.produced_by"] == training.info.run_id

    def test_lineage_command_prints_the_chain(self, trained: KedroProject) -> None:
        runs = runs_by_pipeline(trained)
        result = trained.kedro("mlflow", "lineage", "models:/scorer@champion")
        out = result.stdout
        assert "version 2 of 'scorer'" in out
        assert f"run {runs['training'][-1].info.run_id} 'training'" in out
        assert f"run {runs['etl'][0].info.run_id} 'etl'" in out
        assert "<- instances (training)" in out


class TestEvaluationAndGate:
    def test_gate_rejects_then_promotes(self, trained: KedroProject) -> None:
        client = trained.client()
        first, second = (client.get_model_version("scorer", v) for v in ("1", "2"))
        assert first.tags["kedroflow.promotion"].startswith("rejected: valid.accuracy")
        assert "< 0.8" in first.tags["kedroflow.promotion"]
        assert second.tags["kedroflow.promotion"] == "promoted to @champion"
        assert (
            str(client.get_model_version_by_alias("scorer", "champion").version) == "2"
        )

    def test_per_slice_metrics_and_worst_slice(self, trained: KedroProject) -> None:
        metrics = runs_by_pipeline(trained)["training"][-1].data.metrics
        red, blue = (
            metrics[f"slice.color.{c}.accuracy_score"] for c in ("red", "blue")
        )
        assert metrics["worst_slice.accuracy_score"] == min(red, blue)
        assert metrics["accuracy_score"] > 0.8

    def test_model_card_describes_the_version(self, trained: KedroProject) -> None:
        run = runs_by_pipeline(trained)["training"][-1]
        card = trained.client().get_model_version("scorer", "2").description
        assert f"[{run.info.run_id}](runs:/{run.info.run_id})" in card
        assert "**Promotion gate**: promoted to @champion" in card
        assert "`instances` (training" in card and "produced by run" in card
        assert "| `c` | 10 |" in card
        assert "### Evaluation" in card and "worst_slice.accuracy_score" in card

    def test_a_candidate_that_does_not_beat_the_champion_stays_out(
        self, trained: KedroProject
    ) -> None:
        trained.kedro("run", "--pipeline", "training", "--params", "c=10")
        client = trained.client()
        third = client.get_model_version("scorer", "3")
        assert "does not beat" in third.tags["kedroflow.promotion"]
        assert (
            str(client.get_model_version_by_alias("scorer", "champion").version) == "2"
        )


class TestCompatibility:
    def test_a_model_that_cannot_be_logged_fails_before_training(
        self, kedro_project: KedroProject
    ) -> None:
        project = make_project(kedro_project)
        project.write(
            "conf/base/catalog.yml",
            CATALOG.replace("model: {type: pickle", "x: {type: pickle"),
        )
        project.kedro("run", "--pipeline", "etl")
        result = project.kedro("run", "--pipeline", "training", check=False)
        assert result.returncode != 0
        out = result.stdout + result.stderr
        assert "no model logged for PipelineML 'training'" in out
        assert "'model' was produced by this run but not kept" in out
        assert "Running node: fit_encoder" not in out  # nothing trained
        assert not (project.path / "data" / "encoder.pkl").exists()

    def test_hand_written_kedro_pipeline_model(
        self, kedro_project: KedroProject
    ) -> None:
        project = make_project(kedro_project)
        model, artifacts, instances = hand_written(
            project, copy_mode={"model": "deepcopy"}
        )
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, artifacts=artifacts
            )
        loaded = mlflow.pyfunc.load_model(info.model_uri)
        (training,) = runs_by_pipeline(project)["training"]
        logged = model_of(project, training)
        served = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
        pd.testing.assert_frame_equal(
            loaded.predict(instances), served.predict(instances)
        )

    def test_hand_written_logging_writes_the_automatic_package(
        self, kedro_project: KedroProject, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from mlflow.models import infer_signature

        project = make_project(kedro_project)
        kedro_pipeline_model, artifacts, instances = hand_written(project)
        with mlflow.start_run() as run:  # kedro-mlflow's call, made by the model
            info = kedro_pipeline_model.log_model(
                artifact_path="model", artifacts=artifacts,
                conda_env={"dependencies": ["python=3.11", {"pip": ["kedro"]}]},
                signature=infer_signature(instances),
            )  # fmt: skip
        (training,) = runs_by_pipeline(project)["training"]
        automatic = model_of(project, training)
        assert mlflow.get_logged_model(info.model_id).source_run_id == run.info.run_id
        hand = Path(mlflow.artifacts.download_artifacts(info.model_uri))
        auto = Path(
            mlflow.artifacts.download_artifacts(f"models:/{automatic.model_id}")
        )
        assert not (hand / "python_model.pkl").exists()
        flavor, auto_flavor = (
            mlflow.models.Model.load(str(d)).flavors["python_function"]
            for d in (hand, auto)
        )
        code = Path(flavor["model_code_path"]).name  # MLflow keeps the source's path
        assert code == Path(auto_flavor["model_code_path"]).name
        assert (hand / code).read_text() == (auto / code).read_text()
        assert flavor["loader_module"] == auto_flavor["loader_module"]
        assert flavor["config"] == auto_flavor["config"]  # the same model_config
        assert {p.name for p in (hand / "artifacts").iterdir()} == {
            p.name for p in (auto / "artifacts").iterdir()
        } - {"kedroflow_profile.json"}
        assert (hand / "code" / "fake_project" / "nodes.py").exists()
        # loading it unpickles nothing of MLflow's (the artifacts are Kedro's files)
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        pd.testing.assert_frame_equal(
            mlflow.pyfunc.load_model(info.model_uri).predict(instances),
            mlflow.pyfunc.load_model(f"models:/{automatic.model_id}").predict(
                instances
            ),
        )

    def test_modelify_logs_into_a_new_run_with_a_copy_mode_dict(
        self, kedro_project: KedroProject
    ) -> None:
        project = make_project(kedro_project)
        project.kedro("run", "--pipeline", "etl")
        project.kedro("run", "--pipeline", "training")
        project.kedro(
            "mlflow", "modelify", "-p", "inference", "-i", "instances",
            "--copy-mode", json.dumps({"model": "deepcopy"}),
        )  # fmt: skip
        (training,) = runs_by_pipeline(project)["training"]
        assert training.data.params == {"c": "1.0"}  # no artifacts/model/... params
        (run,) = runs_by_pipeline(project)["inference"]
        model = model_of(project, run)
        assert run.info.status == "FINISHED"
        mlflow.set_tracking_uri(project.tracking_uri)
        loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
        assert loaded.model_config["copy_mode"] == {"model": "deepcopy"}


class TestRetention:
    def test_prune_frees_space_and_keeps_what_is_registered(
        self, kedro_project: KedroProject
    ) -> None:
        project = make_project(kedro_project, {"registered_model_name": "scorer"})
        project.run(pipeline_names=["etl"])
        project.run(pipeline_names=["training"])  # registered: scorer v1
        project.kedro("mlflow", "modelify", "-p", "inference", "-i", "instances")
        project.run(pipeline_names=["etl"])
        etl_old, training, modelify, etl_new = project.runs()
        spare = model_of(project, modelify)
        spare_files = Path(spare.artifact_location.removeprefix("file://"))
        assert spare_files.is_dir()

        dry = project.kedro("mlflow", "prune", "--keep-last", "1", "--dry-run").stdout
        assert f"would delete run {modelify.info.run_id}" in dry
        assert f"would delete run {etl_old.info.run_id}" in dry
        assert "kept 1 run(s) behind registered model versions" in dry
        assert len(project.runs()) == 4

        out = project.kedro("mlflow", "prune", "--keep-last", "1").stdout
        assert "Deleted 2 run(s) and 1 logged model(s); freed" in out
        assert " 0 B of artifacts" not in out
        remaining = {r.info.run_id for r in project.runs()}
        assert remaining == {training.info.run_id, etl_new.info.run_id}
        assert not spare_files.exists()  # MLflow's gc removed the artifacts
        mlflow.set_tracking_uri(project.tracking_uri)
        assert mlflow.pyfunc.load_model("models:/scorer/1") is not None

    def test_prune_needs_a_rule(self, kedro_project: KedroProject) -> None:
        project = make_project(kedro_project)
        result = project.kedro("mlflow", "prune", "--older-than", "soon", check=False)
        assert result.returncode != 0
        assert "--older-than 'soon' is not a duration" in result.stdout + result.stderr
