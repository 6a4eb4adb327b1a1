"""Autolog and system metrics from mlflow.yml: real sessions on SQLite, real sklearn."""

from __future__ import annotations

from typing import Any

import pytest
from kedro.runner import ThreadRunner

NODES = """
import threading
import time

import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression


def fit(a):
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    return LogisticRegression(C=a).fit(x, np.array([0, 0, 1, 1]))


def count_monitors(*_):
    time.sleep(0.3)
    alive = sum(t.name == "SystemMetricsMonitor" for t in threading.enumerate())
    # every node reports; the run keeps the largest value (one metric, many steps)
    mlflow.log_metric("monitors_alive", alive)
    return 1
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import count_monitors, fit


def register_pipelines():
    nodes = [Node(fit, "params:a", "model", name="fit")]
    nodes += [
        Node(count_monitors, "params:a", f"n{i}", name=f"count_{i}") for i in range(12)
    ]
    return {"__default__": Pipeline(nodes)}
"""

MLFLOW_YML = """
tracking:
  autolog:
    sklearn: {log_models: false, log_datasets: false}
  system_metrics: {enabled: true, sampling_interval: 0.1}
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    pytest.importorskip("psutil")
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/parameters.yml", "a: 0.5\n")
    kedro_project.write("conf/local/mlflow.yml", MLFLOW_YML)
    return kedro_project


def all_runs(project: Any) -> list[Any]:
    client = project.client()
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids))


class TestAutologAndSystemMetrics:
    @pytest.mark.parametrize("threads", [False, True], ids=["sequential", "thread"])
    def test_land_in_the_kedro_run_with_no_stray_run(
        self, project: Any, threads: bool
    ) -> None:
        import threading

        project.run(runner=ThreadRunner(max_workers=3) if threads else None)
        (run,) = all_runs(project)
        assert run.data.tags["kedro.pipeline"] == "__default__"
        # sklearn's autolog, attributed to the kedro run
        assert run.data.params["C"] == "0.5"
        assert "training_accuracy_score" in run.data.metrics
        # system metrics: ONE monitor for the run's 13 nodes, stopped with the run
        assert any(key.startswith("system/cpu") for key in run.data.metrics)
        history = project.client().get_metric_history(run.info.run_id, "monitors_alive")
        assert {m.value for m in history} == {1.0}
        assert not any(t.name == "SystemMetricsMonitor" for t in threading.enumerate())

    def test_autolog_is_off_after_the_run(self, project: Any) -> None:
        import mlflow
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        project.run()
        mlflow.set_tracking_uri(project.tracking_uri)
        LogisticRegression().fit(np.array([[0.0], [1.0]]), np.array([0, 1]))
        assert len(all_runs(project)) == 1  # the fit after the run made no run

    def test_unknown_flavor_is_one_clear_error(self, project: Any) -> None:
        from kedroflow.errors import ConfigError

        project.write("conf/local/mlflow.yml", "tracking:\n  autolog: {sklern: {}}\n")
        with pytest.raises(ConfigError, match=r"tracking.autolog.sklern.*'sklearn'"):
            project.run()
        assert all_runs(project)[0].info.status == "FAILED"
