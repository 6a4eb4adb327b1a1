"""The tracking hook against a real ``mlflow server`` backed by PostgreSQL.

Every test tracks into its own experiment on the session's server (see conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
from kedro.runner import ThreadRunner

import kedroflow

pytestmark = pytest.mark.integration

NODES = """
import threading
import time

from kedroflow import tracking


def combine(alpha, model):
    return {"alpha": alpha, "depth": model["depth"]}


def fail(alpha):
    raise ValueError(f"boom with alpha={alpha}")


def where_am_i(alpha, index):
    # Runs in a ThreadRunner worker: log through the run id, as kedroflow's datasets do.
    time.sleep(0.2)  # keep several nodes in flight at once
    run = tracking.current_run()
    run_id = run.run_id
    run.stores.client.log_metric(run_id, f"node_{index}", alpha)
    return {"run_id": run_id, "thread": threading.get_ident()}
"""

REGISTRY = """
from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from fake_project.nodes import combine, fail, where_am_i


def _threaded():
    nodes = []
    for i in range(4):
        func = update_wrapper(partial(where_am_i, index=i), where_am_i)
        nodes.append(Node(func, "params:alpha", f"seen_{i}", name=f"where_{i}"))
    return Pipeline(nodes)


def register_pipelines():
    training = Pipeline([Node(combine, ["params:alpha", "params:model"], "out", name="combine")])
    return {
        "__default__": training,
        "failing": Pipeline([Node(fail, "params:alpha", "never", name="fail")]),
        "threaded": _threaded(),
    }
"""

PARAMETERS = """
alpha: 0.5
model:
  depth: 3
  criterion: gini
"""


@pytest.fixture
def project(kedro_project: Any, tracking_server: Any) -> Any:
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/parameters.yml", PARAMETERS)
    kedro_project.write(
        "conf/local/mlflow.yml",
        tracking_server.mlflow_yml("  run:\n    tags:\n      team: forecasting\n"),
    )
    return kedro_project


class TestRunOnServer:
    def test_kedro_run_makes_one_finished_run_with_params_and_tags(
        self, project: Any, tracking_server: Any
    ) -> None:
        project.run()
        run = tracking_server.only_run()
        assert run.info.status == "FINISHED"
        assert run.data.params["alpha"] == "0.5"
        assert "'depth': 3" in run.data.params["model"]
        tags = run.data.tags
        assert tags["kedro.pipeline"] == "__default__"
        assert tags["kedro.env"] == "local"
        assert tags["kedroflow.version"] == kedroflow.__version__
        assert tags["team"] == "forecasting"
        assert mlflow.active_run() is None
        # nothing went to the local default store
        assert project.runs(tracking_server.experiment) == []

    def test_failing_node_marks_the_run_failed_with_the_error(
        self, project: Any, tracking_server: Any
    ) -> None:
        with pytest.raises(ValueError, match=r"boom with alpha=0\.5"):
            project.run(pipeline_names=["failing"])
        run = tracking_server.only_run()
        assert run.info.status == "FAILED"
        assert run.data.tags["kedroflow.error"] == "ValueError: boom with alpha=0.5"
        assert mlflow.active_run() is None

    def test_thread_runner_nodes_log_into_the_one_run(
        self, project: Any, tracking_server: Any
    ) -> None:
        outputs = project.run(
            pipeline_names=["threaded"], runner=ThreadRunner(max_workers=4)
        )
        run = tracking_server.only_run()
        assert run.info.status == "FINISHED"
        seen = [outputs[f"seen_{i}"].load() for i in range(4)]  # free outputs: datasets
        assert {s["run_id"] for s in seen} == {run.info.run_id}
        assert len({s["thread"] for s in seen}) > 1  # really ran in several threads
        assert run.data.metrics == {f"node_{i}": 0.5 for i in range(4)}
        assert run.data.tags["kedro.runner"] == "ThreadRunner"


@pytest.mark.slow
class TestConcurrentCli:
    def test_four_concurrent_kedro_runs_make_four_complete_runs(
        self, project: Any, tracking_server: Any
    ) -> None:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        for name in (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_RUN_ID",
            "_KEDROFLOW_ACTIVE_RUN_ID",
        ):
            env.pop(name, None)
        kedro = str(Path(sys.executable).parent / "kedro")
        processes = [
            subprocess.Popen(
                [kedro, "run", "--params", f"run_index={i}"],
                cwd=project.path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            for i in range(4)
        ]
        failures = []
        try:
            for process in processes:
                _, stderr = process.communicate(timeout=300)
                if process.returncode != 0:
                    failures.append(stderr[-3000:])
        finally:
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, 9)
                    process.wait(timeout=30)
        assert not failures, "\n---\n".join(failures)
        runs = tracking_server.runs()
        assert len(runs) == 4
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert sorted(r.data.params["run_index"] for r in runs) == ["0", "1", "2", "3"]
        for run in runs:
            assert run.data.params["alpha"] == "0.5"
            assert run.data.tags["kedro.command"].startswith("kedro run")
        # Kedro's session id is a millisecond timestamp: two processes started in the
        # same millisecond share it, so only its presence is checked
        assert all(r.data.tags.get("kedro.session_id") for r in runs)
