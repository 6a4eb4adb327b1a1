"""``tracking.artifacts.auto_log`` against a real ``mlflow server`` (proxied artifacts)."""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pytest
from kedro.runner import ParallelRunner
from test_auto_log import CATALOG, EXPECTED, NODES, REGISTRY, RULES

pytestmark = pytest.mark.integration


def auto_log_project(project: Any, server: Any) -> None:
    project.write("src/fake_project/nodes.py", NODES)
    project.write_pipelines(REGISTRY)
    project.write("conf/base/catalog.yml", CATALOG)
    # tracing off: MLflow 3.0 uploads a trace's data as one more artifact PUT
    project.write(
        "conf/local/mlflow.yml",
        server.mlflow_yml(RULES + "  tracing:\n    enabled: false\n"),
    )
    project.write("data/parts/stale.txt", "from an earlier run")


def _artifacts(client: Any, run_id: str, path: str | None = None) -> list[str]:
    found: list[str] = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(found)


class TestAutoLogOnServer:
    def test_one_upload_per_file_and_nothing_else_per_output(
        self, kedro_project: Any, tracking_server: Any
    ) -> None:
        auto_log_project(kedro_project, tracking_server)
        with tracking_server.request_counter() as counter:
            kedro_project.run()

        run = tracking_server.only_run()
        mlflow.set_tracking_uri(tracking_server.url)  # MLflow 3.0 resolves globally
        assert _artifacts(tracking_server.client, run.info.run_id) == EXPECTED
        capped = json.loads(run.data.tags["kedroflow.auto_log.big"])
        assert capped["size_bytes"] == 4096
        calls = counter.by_endpoint()
        # one PUT per file logged (6 by the rules, 1 by the MlflowArtifactDataset),
        # no run lookup; the capped output costs its one tag
        assert calls["PUT /api/2.0/mlflow-artifacts/artifacts/..."] == len(EXPECTED)
        assert "GET /api/2.0/mlflow/runs/get" not in calls, calls
        assert calls["POST /api/2.0/mlflow/runs/set-tag"] == 1, calls

    def test_parallel_runner_workers_upload_to_the_one_run(
        self, kedro_project: Any, tracking_server: Any
    ) -> None:
        auto_log_project(kedro_project, tracking_server)
        kedro_project.run(runner=ParallelRunner(max_workers=2))

        run = tracking_server.only_run()
        assert run.info.status == "FINISHED"
        mlflow.set_tracking_uri(tracking_server.url)
        assert _artifacts(tracking_server.client, run.info.run_id) == EXPECTED
