"""MLflow's own API inside nodes and notebooks, through real sessions on SQLite."""

from __future__ import annotations

from typing import Any

import mlflow
import pytest
from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner

NODES = """
import mlflow


def fluent(a):
    run = mlflow.active_run()
    mlflow.set_tag("seen_active_run", run.info.run_id if run else "none")
    mlflow.log_metric("from_node", 1.5)
    with mlflow.start_run(nested=True, run_name="trial"):
        mlflow.log_param("lr", a)
    return a


def also_fluent(a):
    mlflow.log_metric("from_other_node", 2.0)
    return a


def end_kedro_run(a):
    mlflow.end_run()
    return a


def leave_child_open(a):
    mlflow.start_run(nested=True, run_name="forgotten")
    return a
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import also_fluent, end_kedro_run, fluent, leave_child_open


def register_pipelines():
    fluent_pipe = Pipeline(
        [
            Node(fluent, "params:a", "x", name="fluent"),
            Node(also_fluent, "params:a", "y", name="also_fluent"),
        ]
    )
    return {
        "__default__": fluent_pipe,
        "fluent": fluent_pipe,
        "end": Pipeline(
            [
                Node(end_kedro_run, "params:a", "e", name="end_kedro_run"),
                Node(also_fluent, "e", "f", name="after_end"),
            ]
        ),
        "open_child": Pipeline(
            [
                Node(leave_child_open, "params:a", "o", name="leave_child_open"),
                Node(also_fluent, "o", "p", name="after_open"),
            ]
        ),
    }
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/parameters.yml", "a: 3\n")
    return kedro_project


def _kedro_run_and_children(project: Any) -> tuple[Any, list[Any]]:
    runs = project.runs()
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.data.tags.get("mlflow.runName") for r in runs]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents[0], children


def _no_stray_run(project: Any) -> None:
    client = project.client()
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name != "fake_project"] == ["Default"]
    assert client.search_runs(["0"]) == []


class TestNodesSeeTheKedroRun:
    @pytest.mark.parametrize(
        "runner",
        [SequentialRunner, lambda: ThreadRunner(max_workers=2)],
        ids=["sequential", "thread"],
    )
    def test_fluent_calls_log_into_and_under_the_kedro_run(
        self, project: Any, runner: Any
    ) -> None:
        project.run(runner=runner())
        self._assert_fluent_run(project)
        assert mlflow.active_run() is None

    def test_parallel_runner_workers(self, project: Any) -> None:
        project.run(runner=ParallelRunner(max_workers=2))
        self._assert_fluent_run(project)

    @staticmethod
    def _assert_fluent_run(project: Any) -> None:
        run, children = _kedro_run_and_children(project)
        assert run.data.tags["seen_active_run"] == run.info.run_id
        assert run.data.metrics == {"from_node": 1.5, "from_other_node": 2.0}
        assert run.info.status == "FINISHED"
        (child,) = children
        assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
        assert child.data.tags["mlflow.runName"] == "trial"
        assert child.data.params == {"lr": "3"}
        assert child.info.status == "FINISHED"
        _no_stray_run(project)

    def test_a_node_cannot_end_the_kedro_run(self, project: Any) -> None:
        project.run(pipeline_names=["end"])
        run, children = _kedro_run_and_children(project)
        assert children == []
        # the node after the one that called mlflow.end_run() still logs into it
        assert run.data.metrics == {"from_other_node": 2.0}
        assert run.info.status == "FINISHED"
        _no_stray_run(project)

    def test_a_child_left_open_by_a_node_is_ended(self, project: Any) -> None:
        project.run(pipeline_names=["open_child"])
        run, (child,) = _kedro_run_and_children(project)
        assert child.info.status == "FINISHED"
        assert run.data.metrics == {"from_other_node": 2.0}  # not in the child
        assert run.info.status == "FINISHED"


class TestOutsideAKedroRun:
    def test_load_context_configures_mlflow_from_mlflow_yml(
        self, project: Any, tracking_uri: str
    ) -> None:
        """A notebook: ``session.load_context()``, then plain ``mlflow`` calls."""
        from kedro.framework.session import KedroSession
        from kedro.framework.startup import bootstrap_project

        project.write(
            "conf/local/mlflow.yml",
            f"server:\n  mlflow_tracking_uri: {tracking_uri}\n"
            "tracking:\n  experiment:\n    name: notebook-exp\n",
        )
        bootstrap_project(project.path)
        with KedroSession.create(project_path=project.path) as session:
            session.load_context()
            assert mlflow.active_run() is None  # configured, no run left open
            with mlflow.start_run() as run:
                mlflow.log_metric("from_notebook", 1.0)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        found = client.get_run(run.info.run_id)
        assert found.data.metrics == {"from_notebook": 1.0}
        experiment = client.get_experiment(found.info.experiment_id)
        assert experiment.name == "notebook-exp"

    def test_orchestrator_run_is_reused_and_left_open(self, project: Any) -> None:
        """kedro-mlflow's ``tracking.run.nested: true`` (the default): reuse it."""
        mlflow.set_tracking_uri(project.tracking_uri)
        mlflow.set_experiment("orchestrator")
        with mlflow.start_run() as outer:
            project.run(pipeline_names=["fluent"])
            still = mlflow.active_run()
            assert still is not None and still.info.run_id == outer.info.run_id
            assert project.client().get_run(outer.info.run_id).info.status == "RUNNING"
        runs = project.runs("orchestrator")
        (run,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert run.info.run_id == outer.info.run_id
        assert run.data.params == {"a": "3"}
        assert run.data.metrics == {"from_node": 1.5, "from_other_node": 2.0}
