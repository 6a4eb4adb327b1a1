"""The run's outbox: buffered metrics and background uploads lose nothing.

Real ``kedro run`` calls (KedroSession in this process, or the ``kedro`` CLI in a
subprocess that gets a real SIGINT/SIGTERM) on a real SQLite store. Whatever stops the
run, the metrics and artifacts its nodes saved are in the MLflow run, at the steps
unbuffered saves would have given them.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import mlflow
import pytest
from kedro.runner import ParallelRunner, ThreadRunner
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kedroflow.errors import TrackingError
from kedroflow.outbox import Outbox
from tests.conftest import WAITING_NODE

NODES = (
    """
import time
from pathlib import Path


def scores(x):
    history = [1.0, 0.5, 0.25]
    evaluation = {"auc": 0.9, "f1": [{"value": 0.7, "step": 0}, {"value": 0.8, "step": 1}]}
    return x * 0.5, history, evaluation, {"x": x}, x


def more(acc):
    return acc + 0.1, acc + 0.2


def fail(x):
    raise RuntimeError(f"node failed after its upstream saved metrics (x={x})")

"""
    + WAITING_NODE
)

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import fail, more, scores, wait


def register_pipelines():
    first = Pipeline([Node(scores, "params:x",
                           ["acc_first", "loss_history", "evaluation", "report", "x_out"],
                           name="scores")])
    # loads acc_first back: the buffered metric must be readable
    second = Pipeline([Node(more, "acc_first", ["acc_second", "loss_next"], name="more")])
    return {
        "__default__": first + second,
        "scores": first,
        "failing": first + Pipeline([Node(fail, "x_out", "never", name="fail")]),
        "interrupted": first + Pipeline(
            [Node(wait, ["x_out", "params:marker"], "never", name="wait")]
        ),
    }
"""

CATALOG = """
acc_first:
  type: kedroflow.MlflowMetricDataset
  key: acc
  save_args: {mode: append}
acc_second:
  type: kedroflow.MlflowMetricDataset
  key: acc
  save_args: {mode: append}
loss_history:
  type: kedroflow.MlflowMetricHistoryDataset
  key: loss
loss_next:
  type: kedroflow.MlflowMetricDataset
  key: loss
  save_args: {mode: append}
evaluation:
  type: kedroflow.MlflowMetricsHistoryDataset
  prefix: eval
report:
  type: kedroflow.MlflowArtifactDataset
  artifact_path: reports
  dataset:
    type: json.JSONDataset
    filepath: data/08_reporting/report.json
"""

#: What the "scores" node logs, as (step, value) per key: the same as unbuffered saves.
FIRST = {
    "acc": [(0, 1.0)],
    "loss": [(0, 1.0), (1, 0.5), (2, 0.25)],
    "eval.auc": [(0, 0.9)],
    "eval.f1": [(0, 0.7), (1, 0.8)],
}
#: ...and the "more" node after it: appends continue after what "scores" logged.
BOTH = {**FIRST, "acc": [(0, 1.0), (1, 1.1)], "loss": [*FIRST["loss"], (3, 1.2)]}


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/catalog.yml", CATALOG)
    marker = kedro_project.path / "node-started"
    kedro_project.write("conf/base/parameters.yml", f"x: 2.0\nmarker: {marker}\n")
    return kedro_project


def logged(project: Any, run: Any) -> dict[str, list[tuple[int, float]]]:
    """Every metric history of ``run``, in (step, value) order."""
    client = project.client()
    return {
        key: sorted(
            (m.step, round(m.value, 6))
            for m in client.get_metric_history(run.info.run_id, key)
        )
        for key in run.data.metrics
    }


def reports(project: Any, run: Any) -> list[str]:
    mlflow.set_tracking_uri(project.tracking_uri)  # MLflow 3.0 resolves runs globally
    return [a.path for a in project.client().list_artifacts(run.info.run_id, "reports")]


class TestNothingLost:
    @pytest.mark.parametrize(
        "runner", [None, ThreadRunner(), ParallelRunner(max_workers=2)]
    )
    def test_every_metric_and_report_at_its_step(
        self, project: Any, runner: Any
    ) -> None:
        project.run(runner=runner)
        run = project.only_run()
        assert run.info.status == "FINISHED"
        assert logged(project, run) == BOTH
        assert reports(project, run) == ["reports/report.json"]

    def test_a_failing_node_keeps_what_the_nodes_before_it_saved(
        self, project: Any
    ) -> None:
        with pytest.raises(RuntimeError, match="node failed after its upstream"):
            project.run(pipeline_names=["failing"])
        run = project.only_run()
        assert run.info.status == "FAILED"
        assert "node failed after its upstream" in run.data.tags["kedroflow.error"]
        assert logged(project, run) == FIRST
        assert reports(project, run) == ["reports/report.json"]

    def test_a_resumed_run_continues_after_its_history(
        self, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        project.run(pipeline_names=["scores"])
        run_id = project.only_run().info.run_id
        monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
        project.run()  # both nodes, into the same run
        run = project.only_run()
        assert run.info.status == "FINISHED"
        history = logged(project, run)
        # "append" continues after the steps of the first kedro run: 0, then 1 and 2
        assert history["acc"] == [(0, 1.0), (1, 1.0), (2, 1.1)]
        # the history dataset logs its own steps again; "append" goes after them
        assert history["loss"] == [
            (0, 1.0), (0, 1.0), (1, 0.5), (1, 0.5), (2, 0.25), (2, 0.25), (3, 1.2),
        ]  # fmt: skip


class TestInterrupted:
    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    def test_a_signal_during_a_node_keeps_what_was_saved_and_kills_the_run(
        self, project: Any, pipelines_option: str, signum: int
    ) -> None:
        marker = project.path / "node-started"
        code, output = project.interrupt(
            [pipelines_option, "interrupted"], marker, signum
        )
        assert code != 0, output
        run = project.only_run()
        assert run.info.status == "KILLED", output
        assert logged(project, run) == FIRST
        assert reports(project, run) == ["reports/report.json"]


class TestFailedUpload:
    def test_the_run_fails_naming_the_dataset(self, project: Any) -> None:
        blocker = project.path / "not-a-folder"
        blocker.write_text("a file where the artifact store should be")
        project.write(
            "conf/local/mlflow.yml",
            f"""
            tracking:
              experiment:
                name: blocked
                create_experiment_kwargs:
                  artifact_location: {blocker / "artifacts"}
            """,
        )
        with pytest.raises(TrackingError, match=r"'report' \(MlflowArtifactDataset\)"):
            project.run()
        run = project.only_run("blocked")
        assert run.info.status == "FAILED"
        assert "'report' (MlflowArtifactDataset)" in run.data.tags["kedroflow.error"]
        assert logged(project, run) == BOTH  # the metrics are delivered all the same

    def test_an_artifact_path_out_of_the_run_is_refused_naming_the_dataset(
        self, project: Any
    ) -> None:
        # a local artifact store is written by kedroflow itself: never outside the run
        catalog = (project.path / "conf" / "base" / "catalog.yml").read_text()
        project.write(
            "conf/base/catalog.yml",
            catalog.replace("artifact_path: reports", "artifact_path: ../../reports"),
        )
        with pytest.raises(TrackingError, match=r"'report' \(MlflowArtifactDataset\)"):
            project.run()
        run = project.only_run()
        assert run.info.status == "FAILED"
        assert "leaves the run's artifact folder" in run.data.tags["kedroflow.error"]
        assert project.client().list_artifacts(run.info.run_id) == []
        root = Path(run.info.artifact_uri.removeprefix("file://")).parent.parent
        assert not list(root.rglob("report.json"))


class TestLineageTagsWithTheMetrics:
    def test_one_request_and_the_metrics_kept_when_it_is_refused(
        self, tmp_path: Path, migrated_db: Path
    ) -> None:
        """Lineage's output tags ride on the metric batch; a failure loses no metric."""
        shutil.copy(migrated_db, tmp_path / "mlflow.db")
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        experiment = client.create_experiment("o", (tmp_path / "art").as_uri())
        run_id = client.create_run(experiment).info.run_id
        outbox = Outbox(client, run_id, history_known=True)
        source = "'acc' (MlflowMetricDataset)"
        outbox.log_metrics(source, [Metric("acc", 0.5, 0, 0)])
        outbox.flush_metrics([RunTag("kedroflow.output.abc", "report")])
        data = client.get_run(run_id).data
        assert data.metrics == {"acc": 0.5}
        assert data.tags["kedroflow.output.abc"] == "report"

        outbox.log_metrics(source, [Metric("acc", 0.7, 0, 1)])
        client.delete_run(run_id)  # the store now refuses every write to the run
        with pytest.raises(MlflowException):
            outbox.flush_metrics([RunTag("kedroflow.output.def", "model")])
        (undelivered,) = outbox.close()
        assert undelivered.source == source
        assert [(m.value, m.step) for m in undelivered.metrics] == [(0.7, 1)]
