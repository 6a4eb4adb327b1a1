"""The trace of a ``kedro run`` against a real ``mlflow server`` with PostgreSQL.

A traced run sends its spans once, when it ends: the same requests for 5 nodes as for
50, and the trace is complete on the server as soon as the run returns.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from kedro.runner import ParallelRunner, SequentialRunner

pytestmark = pytest.mark.integration

REGISTRY = """
from kedro.pipeline import Node, Pipeline


def first(k):
    return k


def step(previous, k):
    return previous + k


def chain(n):
    nodes = [Node(first, "params:k", "d0", name="node_0")]
    nodes += [
        Node(step, [f"d{i - 1}", "params:k"], f"d{i}", name=f"node_{i}")
        for i in range(1, n)
    ]
    return Pipeline(nodes)


def register_pipelines():
    return {"__default__": chain(2), "n5": chain(5), "n50": chain(50)}
"""

#: MLflow asks a server for its version once per process, before its first spans.
ONCE_PER_PROCESS = "GET /version"
#: MLflow 3.0 names the trace in the path of the request that tags it.
TRACE_ID = re.compile(r"/(tr-)?[0-9a-f]{32}\b")


@pytest.fixture
def project(kedro_project: Any, tracking_server: Any) -> Any:
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/parameters.yml", "k: 1\n")
    kedro_project.write("conf/local/mlflow.yml", tracking_server.mlflow_yml())
    # made beforehand: the first run would otherwise also create it
    tracking_server.client.create_experiment(tracking_server.experiment)
    return kedro_project


def node_spans(server: Any, run_id: str) -> list[str]:
    """Names of the node spans in the run's kedro trace, read from the server."""
    experiment = server.client.get_experiment_by_name(server.experiment)
    found = server.client.search_traces(experiment_ids=[experiment.experiment_id])
    (summary,) = [
        t for t in found if t.info.request_metadata.get("mlflow.sourceRun") == run_id
    ]
    trace = server.client.get_trace(summary.info.request_id)
    return sorted(s.name for s in trace.data.spans if s.name.startswith("node_"))


def traced_run(project: Any, server: Any, pipeline: str, runner: Any) -> dict:
    """Run ``pipeline``: its requests by endpoint, its node spans checked."""
    before = {run.info.run_id for run in server.runs()}
    with server.request_counter() as counter:
        project.run(pipeline_names=[pipeline], runner=runner())
    (run,) = [run for run in server.runs() if run.info.run_id not in before]
    assert run.info.status == "FINISHED"
    nodes = int(pipeline[1:])
    # read right after the run returned: its end waited for the trace to be sent
    assert node_spans(server, run.info.run_id) == sorted(
        f"node_{i}" for i in range(nodes)
    )
    calls: Counter[str] = Counter()
    for endpoint, count in counter.by_endpoint().items():
        calls[TRACE_ID.sub("/<trace id>", endpoint)] += count
    calls.pop(ONCE_PER_PROCESS, None)
    return dict(calls)


class TestTraceRequests:
    @pytest.mark.parametrize(
        "runner",
        [SequentialRunner, lambda: ParallelRunner(max_workers=2)],
        ids=["sequential", "parallel"],
    )
    def test_a_traced_run_costs_the_same_requests_with_5_or_50_nodes(
        self, project: Any, tracking_server: Any, runner: Any
    ) -> None:
        five = traced_run(project, tracking_server, "n5", runner)
        fifty = traced_run(project, tracking_server, "n50", runner)
        assert fifty == five
        # newest MLflow: the spans in one request, the trace in one more; MLflow 3.0:
        # the trace, its spans as an artifact, its tags
        traces = {k: v for k, v in fifty.items() if "traces" in k or "artifacts" in k}
        assert sum(traces.values()) <= 3, fifty
