"""``tracking.artifacts.auto_log`` against a real ``mlflow server`` (proxied artifacts).

The project of ``test_auto_log`` (every rule kind, first-match order, the size cap,
versioned and partitioned outputs, an ``MlflowArtifactDataset`` entry), tracked to the
PostgreSQL-backed server: each output is one upload, and ParallelRunner workers (forked
or spawned, through ``kedro run``) upload to the one run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
import pytest
from test_auto_log import EXPECTED, RULES, RUNNERS, auto_log_project

pytestmark = pytest.mark.integration
#: tracing off: MLflow 3.0 uploads a trace's data as one more artifact PUT
SETTINGS = RULES + "  tracing:\n    enabled: false\n"


def _artifacts(client: Any, run_id: str, path: str | None = None) -> list[str]:
    found: list[str] = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(found)


def _assert_logged(project: Any, server: Any) -> None:
    """The run holds the selected outputs as written, and only ``big`` is capped."""
    run = server.only_run()
    assert run.info.status == "FINISHED"
    run_id = run.info.run_id
    mlflow.set_tracking_uri(server.url)  # MLflow 3.0 resolves runs globally
    assert _artifacts(server.client, run_id) == EXPECTED
    # first match wins: chart (rule 2, 100 MB) is logged, not capped by rule 4
    tags = [t for t in run.data.tags if t.startswith("kedroflow.auto_log.")]
    assert tags == ["kedroflow.auto_log.big"]
    assert json.loads(run.data.tags["kedroflow.auto_log.big"])["size_bytes"] == 4096
    data, target = project.path / "data", project.path / "downloaded"
    (version,) = [p.name for p in (data / "small.json").iterdir()]
    for artifact, local in [
        ("small_versioned/small.json", data / "small.json" / version / "small.json"),
        ("parts/sub/p2.txt", data / "parts" / "sub" / "p2.txt"),
        ("chart/chart.csv", data / "chart.csv"),
    ]:
        path = server.client.download_artifacts(run_id, artifact, str(target))
        assert Path(path).read_bytes() == local.read_bytes()


class TestAutoLogOnServer:
    def test_one_upload_per_file_and_nothing_else_per_output(
        self, kedro_project: Any, tracking_server: Any
    ) -> None:
        auto_log_project(kedro_project, tracking_server.mlflow_yml(SETTINGS))
        with tracking_server.request_counter() as counter:
            kedro_project.run()

        _assert_logged(kedro_project, tracking_server)
        calls = counter.by_endpoint()
        # one PUT per file logged (8 by the rules, 1 by the MlflowArtifactDataset),
        # no run lookup; the capped output costs its one tag. MLflow's background
        # export of the run's trace may upload its spans' file as well: not an output
        uploads = [p for m, p in counter.calls if m == "PUT" and "/traces/" not in p]
        assert len(uploads) == len(EXPECTED), uploads
        assert "GET /api/2.0/mlflow/runs/get" not in calls, calls
        assert calls["POST /api/2.0/mlflow/runs/set-tag"] == 1, calls

    @pytest.mark.parametrize("runner", ["parallel-fork", "parallel-spawn"])
    def test_parallel_runner_workers_upload_to_the_one_run(
        self, kedro_project: Any, tracking_server: Any, runner: str
    ) -> None:
        auto_log_project(kedro_project, tracking_server.mlflow_yml(SETTINGS))
        args, env = RUNNERS[runner]
        kedro_project.kedro("run", *args, env={**os.environ, **env})

        _assert_logged(kedro_project, tracking_server)
