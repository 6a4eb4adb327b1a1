"""A tracking server that dies in the middle of a run (the module's real server)."""

from __future__ import annotations

from typing import Any

import pytest
from fault_harness import FaultServer, Gate, Processes

#: A node that fails on its own, after the ``pause`` node of the harness.
OWN_FAILURE = """

def own_failure(x):
    raise ValueError("the node's own error")
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import identity, own_failure, pause


def register_pipelines():
    failing = Pipeline([
        Node(identity, "params:a", "a1", name="first"),
        Node(pause, "a1", "a2", name="pause"),
        Node(own_failure, "a2", "a3", name="own_failure"),
    ])
    return {"__default__": failing}
"""

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


@pytest.fixture
def failing_project(harness_project: Any, server: FaultServer) -> Any:
    from fault_harness import NODES

    project = harness_project
    project.write("src/fake_project/nodes.py", NODES + OWN_FAILURE)
    project.write_pipelines(REGISTRY)
    project.write("src/fake_project/settings.py", SETTINGS)
    project.write(
        "conf/local/mlflow.yml",
        f"server:\n  mlflow_tracking_uri: {server.url}\n  connect_timeout: 2\n"
        "  request_retries: 0\n  request_timeout: 5\n"
        f"tracking:\n  experiment:\n    name: {project.experiment}\n"
        # MLflow's own trace export retries for minutes at exit on a dead server
        "  tracing:\n    enabled: false\n",
    )
    return project


class TestFailMode:
    def test_the_nodes_error_wins_and_the_projects_hooks_run(
        self,
        failing_project: Any,
        server: FaultServer,
        processes: Processes,
        gate: Gate,
    ) -> None:
        run = processes.kedro(failing_project, "run", env=gate.env())
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
