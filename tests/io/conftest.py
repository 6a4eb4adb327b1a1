"""Shared fixtures of the dataset tests.

``tracked_project`` runs ONE real Kedro project that uses every kedroflow dataset
through ``KedroSession.run``, once per runner (Sequential, Thread, Parallel), and is
shared by the test modules that assert on what ended up in the MLflow run: four
in-process ``kedro run`` calls (the fourth with ``is_async=True``) for the whole
``tests/io`` suite.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner

PACKAGE = "fake_project"

NODES = """
import pandas as pd
from sklearn.linear_model import LogisticRegression


def featurize(raw, reference, C):
    features = raw.assign(x3=raw["x1"] * C)
    report = {"rows": len(raw), "C": C, "reference": reference["name"]}
    partitions = {"a": "first partition", "sub/b": "second partition"}
    return features, report, partitions


def train(features):
    model = LogisticRegression().fit(features[["x1", "x2", "x3"]], features["y"])
    return model, model, model


def evaluate(features, model):
    accuracy = float(model.score(features[["x1", "x2", "x3"]], features["y"]))
    loss = {0: 1.0, 1: 0.5, 2: 0.25}
    scores = {"auc": 0.75, "f1": [{"value": 0.5, "step": 0}, {"value": 0.6, "step": 1}]}
    return accuracy, loss, scores, 0.5
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import evaluate, featurize, train


def register_pipelines():
    pipeline = Pipeline(
        [
            Node(
                featurize,
                ["raw", "reference", "params:C"],
                ["features", "report", "partitions"],
                name="featurize",
            ),
            Node(train, "features", ["classifier", "model_folder", "registered"], name="train"),
            Node(
                evaluate,
                ["features", "model_folder"],
                ["accuracy", "loss_history", "scores", "f1_metric"],
                name="evaluate",
            ),
        ]
    )
    return {"__default__": pipeline}
"""

CATALOG = """
raw:
  type: pandas.CSVDataset
  filepath: data/raw.csv

reference:
  type: json.JSONDataset
  filepath: data/reference.json

features:
  type: kedroflow.MlflowArtifactDataset
  artifact_path: data
  dataset:
    type: pandas.CSVDataset
    filepath: data/features.csv

report:
  type: kedroflow.MlflowArtifactDataset
  dataset:
    type: json.JSONDataset
    filepath: data/report.json
    versioned: true

partitions:
  type: kedroflow.MlflowArtifactDataset
  dataset:
    type: partitions.PartitionedDataset
    path: data/parts
    dataset: text.TextDataset
    filename_suffix: .txt

accuracy:
  type: kedroflow.MlflowMetricDataset

loss_history:
  type: kedroflow.MlflowMetricHistoryDataset
  save_args:
    mode: dict

scores:
  type: kedroflow.MlflowMetricsHistoryDataset

"{name}_metric":
  type: kedroflow.MlflowMetricDataset

classifier:
  type: kedroflow.MlflowModelTrackingDataset
  flavor: mlflow.sklearn
  save_args:
    pip_requirements: [scikit-learn]

model_folder:
  type: kedroflow.MlflowModelLocalFileSystemDataset
  filepath: data/model_folder
  flavor: mlflow.sklearn
  versioned: true
  save_args:
    pip_requirements: [scikit-learn]

registered:
  type: kedroflow.MlflowModelRegistryDataset
  model_name: fake-classifier
  alias: champion
  flavor: mlflow.sklearn
  save_args:
    pip_requirements: [scikit-learn]
"""

RAW_CSV = "x1,x2,y\n" + "".join(
    f"{i},{(i * 7) % 11},{int(i % 3 == 0)}\n" for i in range(30)
)


def write_project(project: Any) -> None:
    """Write the nodes, pipeline, catalog and input data of the shared project."""
    project.write(f"src/{PACKAGE}/nodes.py", NODES)
    project.write_pipelines(REGISTRY)
    project.write("conf/base/catalog.yml", CATALOG)
    project.write("conf/base/parameters.yml", "C: 2.0\n")
    project.write("data/raw.csv", RAW_CSV)
    project.write("data/reference.json", '{"name": "ref-v1"}')
    project.write("data/parts/stale.txt", "left over by an earlier run")


@pytest.fixture
def project_writer() -> Any:
    """:func:`write_project`, for tests that run the shared project themselves."""
    return write_project


@dataclass
class TrackedRun:
    """A project after one ``KedroSession.run``, and the MLflow run it made."""

    runner: str
    project: Any
    run: Any

    @property
    def client(self) -> Any:
        return self.project.client()

    def artifacts(self, folder: str | None = None) -> list[str]:
        """All artifact paths of the run under ``folder``, recursively."""
        import mlflow

        mlflow.set_tracking_uri(
            self.project.tracking_uri
        )  # MLflow 3.0 resolves runs globally
        client, out = self.client, []
        pending = [folder]
        while pending:
            for item in client.list_artifacts(self.run.info.run_id, pending.pop()):
                (pending if item.is_dir else out).append(item.path)
        return sorted(out)


RUNNERS: dict[str, Any] = {
    "SequentialRunner": SequentialRunner,
    "ThreadRunner": ThreadRunner,
    "ParallelRunner": ParallelRunner,
    # --async: datasets load and save in worker threads
    "SequentialRunner-async": lambda: SequentialRunner(is_async=True),
}


@pytest.fixture(scope="session", params=list(RUNNERS))
def tracked_run(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    new_project: Callable[[Path], Any],
    isolation: Callable[[], AbstractContextManager[None]],
) -> TrackedRun:
    """The shared project run once with ``request.param`` as runner."""
    project = new_project(tmp_path_factory.mktemp(f"io-{request.param}"))
    write_project(project)
    with isolation():
        project.run(runner=RUNNERS[request.param]())
    runs = project.runs()
    assert len(runs) == 1, f"{request.param}: expected one MLflow run, got {len(runs)}"
    assert runs[0].data.tags["kedro.runner"] == request.param.split("-")[0]
    assert runs[0].info.status == "FINISHED"
    return TrackedRun(request.param, project, runs[0])


@pytest.fixture
def run_id(tracking_uri: str, tmp_path: Path) -> str:
    """An active MLflow run (fluent) on a fresh store, artifacts under tmp_path."""
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment(
        "io-tests", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    return mlflow.start_run(experiment_id=experiment).info.run_id
