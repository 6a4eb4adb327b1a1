"""A tracking server that dies in the middle of a run (the module's real server).

With ``on_tracking_error: fail`` the node's own error wins; with ``continue`` the
pipeline goes on, the rest of the run is kept in the offline store and ``kedro mlflow
sync`` merges it into the same server run (once); an upload the artifact store refuses
is kept offline the same way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest
from fault_harness import FaultServer, Gate, KedroProcess, Processes

if TYPE_CHECKING:
    from collections.abc import Callable

#: The project's own hook: it must run even when closing the MLflow run fails.
SETTINGS = """
from pathlib import Path

from kedro.framework.hooks import hook_impl


class ProjectHooks:
    @hook_impl
    def on_pipeline_error(self, error):
        Path("project-hook-ran").write_text(repr(error))


HOOKS = (ProjectHooks(),)
"""


def mlflow_yml(url: str, experiment: str, on_error: str, extra: str = "") -> str:
    """Fail fast on a dead server: no retries, short timeouts, no trace export."""
    return (
        f"server:\n  mlflow_tracking_uri: {url}\n  on_tracking_error: {on_error}\n"
        "  connect_timeout: 2\n  request_retries: 0\n  request_timeout: 5\n"
        f"tracking:\n  experiment:\n    name: {experiment}\n{extra}"
        # MLflow's own trace export retries for minutes at exit on a dead server
        "  tracing:\n    enabled: false\n"
    )


def with_nodes(project: Any, nodes: str, registry: str, server_url: str) -> Any:
    """``project`` with the harness's nodes plus ``nodes``, ``registry``, and
    ``on_tracking_error: fail`` on ``server_url``."""
    from fault_harness import NODES

    project.write("src/fake_project/nodes.py", NODES + nodes)
    project.write_pipelines(registry)
    continue_on(project, server_url, "fail")
    return project


def continue_on(project: Any, server_url: str, on_error: str = "continue") -> None:
    yml = mlflow_yml(server_url, project.experiment, on_error)
    project.write("conf/local/mlflow.yml", yml)


@pytest.fixture
def failing_project(harness_project: Any, server: FaultServer) -> Any:
    """The harness's ``failing`` pipeline (``first`` -> ``pause`` -> ``own_failure``)
    with the project's own hook and ``on_tracking_error: fail`` on ``server``."""
    continue_on(harness_project, server.url, "fail")
    harness_project.write("src/fake_project/settings.py", SETTINGS)
    return harness_project


def failing(project: Any) -> tuple[str, str]:
    """The ``kedro run`` options that select the harness's ``failing`` pipeline."""
    return project.pipelines_option, "failing"


@pytest.fixture
def lose_server(
    server: FaultServer, processes: Processes, gate: Gate
) -> Callable[[Any], KedroProcess]:
    """Start ``kedro run *options`` in a project; SIGKILL the server while ``pause``
    runs."""

    def lose(project: Any, *options: str) -> KedroProcess:
        run = processes.kedro(project, "run", *options, env=gate.env())
        gate.wait_reached(run)
        server.kill()
        gate.release()
        return run

    return lose


class TestFailMode:
    def test_the_nodes_error_wins_and_the_projects_hooks_run(
        self,
        failing_project: Any,
        server: FaultServer,
        processes: Processes,
        gate: Gate,
    ) -> None:
        run = processes.kedro(
            failing_project, "run", *failing(failing_project), env=gate.env()
        )
        gate.wait_reached(run)
        server.kill()  # the server dies while the pipeline runs
        gate.release()
        assert run.wait(180) != 0
        output = run.output()
        last = output.strip().splitlines()[-1]
        assert "ValueError: the node's own error" in last, output[-3000:]
        assert "could not be closed" in output or "could not close" in output
        hook = failing_project.path / "project-hook-ran"
        assert hook.exists(), output[-3000:]
        assert "the node's own error" in hook.read_text()


#: Nodes around the harness's ``pause``: metrics and a report before and after it.
OUTPUTS = """

def scores(x):
    return x, float(x), [0.5, 0.25, 0.125]


def report(x):
    return {"x": x}, float(x) + 1.0
"""

CONTINUED_REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import pause, report, scores


def register_pipelines():
    tracked = Pipeline([
        Node(scores, "params:a", ["a1", "early", "loss"], name="scores"),
        Node(pause, "a1", "a2", name="pause"),
        Node(report, "a2", ["report", "late"], name="report"),
    ])
    return {"__default__": tracked}
"""

CATALOG = """
early:
  type: kedroflow.MlflowMetricDataset
loss:
  type: kedroflow.MlflowMetricHistoryDataset
late:
  type: kedroflow.MlflowMetricDataset
report:
  type: kedroflow.MlflowArtifactDataset
  artifact_path: reports
  dataset:
    type: json.JSONDataset
    filepath: data/report.json
"""


@pytest.fixture
def continued_project(harness_project: Any, server: FaultServer) -> Any:
    project = with_nodes(harness_project, OUTPUTS, CONTINUED_REGISTRY, server.url)
    project.write("conf/base/catalog.yml", CATALOG)
    continue_on(project, server.url)
    return project


@pytest.fixture
def failing_continued(failing_project: Any, server: FaultServer) -> Any:
    """``failing_project`` with ``on_tracking_error: continue``."""
    continue_on(failing_project, server.url)
    return failing_project


def server_runs(server: FaultServer, experiment: str) -> list[Any]:
    client = server.client()
    found = client.get_experiment_by_name(experiment)
    return list(client.search_runs([found.experiment_id])) if found else []


def complete(server: FaultServer, run_id: str) -> dict[str, Any]:
    """What a user checks in the server run: status, params, histories, reports."""
    import mlflow

    client = server.client()
    run = client.get_run(run_id)
    mlflow.set_tracking_uri(server.url)  # MLflow 3.0 lists sub-folders globally
    return {
        "status": run.info.status,
        "params": run.data.params,
        "metrics": {
            key: sorted(
                (m.step, m.value) for m in client.get_metric_history(run_id, key)
            )
            for key in sorted(run.data.metrics)
        },
        "reports": [a.path for a in client.list_artifacts(run_id, "reports")],
        "pending": "kedroflow.pending_sync" in run.data.tags,
    }


EXPECTED = {
    "status": "FINISHED",
    "params": {"a": "1"},
    "metrics": {
        "early": [(0, 1.0)],
        "late": [(0, 2.0)],
        "loss": [(0, 0.5), (1, 0.25), (2, 0.125)],
    },
    "reports": ["reports/report.json"],
    "pending": False,
}


class TestContinueMode:
    def test_the_rest_of_the_run_is_kept_offline_and_merged_into_the_same_run(
        self, continued_project: Any, server: FaultServer, lose_server: Any
    ) -> None:
        project = continued_project
        run = lose_server(project)
        assert run.wait(180) == 0, run.output()[-4000:]
        output = run.output()
        assert output.count("was lost during the run") == 1, output[-4000:]
        assert "`kedro mlflow sync` merges it into run" in output
        server.start()

        (server_run,) = server_runs(server, project.experiment)
        run_id = server_run.info.run_id
        assert server_run.info.status == "RUNNING"  # what the dead server last knew
        assert f"merges it into run {run_id}" in output
        result = project.kedro("mlflow", "sync")
        assert "1 run(s) uploaded" in result.stdout, result.stdout + result.stderr
        assert f"-> run {run_id} (FINISHED)" in result.stdout
        (merged,) = server_runs(server, project.experiment)
        assert merged.info.run_id == run_id
        assert complete(server, run_id) == EXPECTED
        # lineage, sent with the last metrics after the loss: the report it wrote
        outputs = {
            v for k, v in merged.data.tags.items() if k.startswith("kedroflow.output.")
        }
        assert outputs == {"report"}

        again = project.kedro("mlflow", "sync")
        assert "0 run(s) uploaded" in again.stdout
        assert len(server_runs(server, project.experiment)) == 1
        assert complete(server, run_id) == EXPECTED

    def test_an_upload_the_artifact_store_refuses_is_kept_offline_then_synced(
        self, continued_project: Any, server: FaultServer
    ) -> None:
        project = continued_project
        blocker = project.path / "not-a-folder"
        blocker.write_text("a file where the artifact store should be")
        location = (
            "    create_experiment_kwargs:\n"
            f"      artifact_location: {(blocker / 'artifacts').as_uri()}\n"
        )
        project.write(
            "conf/local/mlflow.yml",
            mlflow_yml(server.url, project.experiment, "continue", location),
        )
        # the warning names two long paths: wide enough that rich does not wrap it
        result = project.kedro("run", env={**os.environ, "COLUMNS": "2000"})
        output = result.stdout + result.stderr
        assert "'report' (MlflowArtifactDataset)" in output
        assert "kept in the local offline store" in output
        (server_run,) = server_runs(server, project.experiment)
        run_id = server_run.info.run_id
        before = complete(server, run_id)
        assert before["status"] == "FINISHED"
        assert before["reports"] == []
        assert before["pending"]

        blocker.unlink()  # the artifact store is repaired
        synced = project.kedro("mlflow", "sync")
        assert "1 run(s) uploaded" in synced.stdout, synced.stdout + synced.stderr
        assert len(server_runs(server, project.experiment)) == 1
        assert complete(server, run_id) == EXPECTED
        again = project.kedro("mlflow", "sync")
        assert "0 run(s) uploaded" in again.stdout
        assert complete(server, run_id) == EXPECTED

    def test_a_node_failing_after_the_loss_ends_the_run_failed_with_its_error(
        self, failing_continued: Any, server: FaultServer, lose_server: Any
    ) -> None:
        project = failing_continued
        run = lose_server(project, *failing(project))
        assert run.wait(180) != 0
        output = run.output()
        assert "ValueError: the node's own error" in output.strip().splitlines()[-1]
        assert output.count("was lost during the run") == 1, output[-4000:]
        assert "the node's own error" in (project.path / "project-hook-ran").read_text()
        server.start()

        result = project.kedro("mlflow", "sync")
        assert "1 run(s) uploaded" in result.stdout, result.stdout + result.stderr
        (merged,) = server_runs(server, project.experiment)
        assert merged.info.status == "FAILED"
        assert merged.data.params == {"a": "1"}
        error = merged.data.tags["kedroflow.error"]
        assert error == "ValueError: the node's own error"
