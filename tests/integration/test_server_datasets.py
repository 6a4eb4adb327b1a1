"""Datasets and the pipeline model against a real ``mlflow server`` with PostgreSQL.

Artifacts go through the server (``--serve-artifacts``): nothing is written to the
store's disk by the client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
from kedro.runner import ParallelRunner
from test_model import INSTANCES, setup_project

pytestmark = pytest.mark.integration

N_METRICS = 8
N_ARTIFACTS = 4

NODES = """
def metric(alpha, index):
    return alpha * index


def report(alpha, index):
    return {"index": index, "alpha": alpha}


def history(alpha):
    return [alpha / (step + 1) for step in range(100)]
"""

REGISTRY = f"""
from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from fake_project.nodes import history, metric, report


def _node(func, index, output):
    bound = update_wrapper(partial(func, index=index), func)
    return Node(bound, "params:alpha", output, name=output)


def register_pipelines():
    nodes = [_node(metric, i, f"m{{i}}_metric") for i in range({N_METRICS})]
    nodes += [_node(report, i, f"r{{i}}_report") for i in range({N_ARTIFACTS})]
    nodes.append(Node(history, "params:alpha", "loss_history", name="history"))
    return {{"__default__": Pipeline(nodes)}}
"""

CATALOG = """
"{name}_metric":
  type: kedroflow.MlflowMetricDataset
"{name}_report":
  type: kedroflow.MlflowArtifactDataset
  artifact_path: reports
  dataset:
    type: json.JSONDataset
    filepath: data/{name}.json
loss_history:
  type: kedroflow.MlflowMetricHistoryDataset
"""


def datasets_project(project: Any, server: Any) -> None:
    """The project of this module: metric and artifact datasets, tracked on ``server``."""
    project.write("src/fake_project/nodes.py", NODES)
    project.write_pipelines(REGISTRY)
    project.write("conf/base/catalog.yml", CATALOG)
    project.write("conf/base/parameters.yml", "alpha: 2.0\n")
    project.write("conf/local/mlflow.yml", server.mlflow_yml())


class TestParallelRunnerOnServer:
    def test_four_workers_put_every_metric_and_artifact_in_the_one_run(
        self, kedro_project: Any, tracking_server: Any
    ) -> None:
        datasets_project(kedro_project, tracking_server)
        kedro_project.run(runner=ParallelRunner(max_workers=4))

        run = tracking_server.only_run()
        assert run.info.status == "FINISHED"
        assert run.data.tags["kedro.runner"] == "ParallelRunner"
        expected = {f"m{i}_metric": 2.0 * i for i in range(N_METRICS)}
        expected["loss_history"] = 2.0 / 100
        assert run.data.metrics == expected
        steps = tracking_server.client.get_metric_history(
            run.info.run_id, "loss_history"
        )
        assert [m.step for m in steps] == list(range(100))
        mlflow.set_tracking_uri(
            tracking_server.url
        )  # MLflow 3.0 resolves runs globally
        artifacts = tracking_server.client.list_artifacts(run.info.run_id, "reports")
        assert sorted(Path(a.path).name for a in artifacts) == [
            f"r{i}.json" for i in range(N_ARTIFACTS)
        ]


class TestRequestsOnServer:
    def test_metric_datasets_cost_no_request_each(
        self, kedro_project: Any, tracking_server: Any
    ) -> None:
        """8 metric saves and a history go in one batch, without reading histories."""
        datasets_project(kedro_project, tracking_server)
        with tracking_server.request_counter() as counter:
            kedro_project.run()

        run = tracking_server.only_run()
        assert len(run.data.metrics) == N_METRICS + 1
        calls = counter.by_endpoint()
        assert "GET /api/2.0/mlflow/metrics/get-history" not in calls, calls
        # one batch of parameters, one of the metrics with the lineage tags of the
        # outputs written: not one request per metric save
        assert calls["POST /api/2.0/mlflow/runs/log-batch"] == 2, calls
        # MLflow 3.0 uploads the run's trace as one more artifact: not an output
        uploads = [p for m, p in counter.calls if m == "PUT" and "/traces/" not in p]
        assert len(uploads) == N_ARTIFACTS, calls
        # the probe, the experiment (looked up, then created), the run, 2 batches,
        # the uploads, the end; the trace (tracing on, the default) in at most 3 more
        # and MLflow's check of the server's version (once per process)
        assert counter.count <= 7 + N_ARTIFACTS + 3 + 1, calls


class TestPipelineModelOnServer:
    def test_training_logs_registers_and_serves_from_the_server(
        self, kedro_project: Any, tracking_server: Any
    ) -> None:
        name = f"scorer-{tracking_server.experiment[-6:]}"
        setup_project(
            kedro_project,
            {"registered_model_name": name, "registered_model_alias": "champion"},
        )
        kedro_project.write("conf/local/mlflow.yml", tracking_server.mlflow_yml())
        kedro_project.run(pipeline_names=["training"])

        run = tracking_server.only_run()
        assert run.info.status == "FINISHED"
        version = tracking_server.client.get_model_version_by_alias(name, "champion")
        assert version.run_id == run.info.run_id
        mlflow.set_tracking_uri(tracking_server.url)
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        predictions = model.predict(INSTANCES)
        assert len(predictions) == len(INSTANCES)
        assert set(predictions["pred"]) <= {0, 1}
        inputs = {d.dataset.name for d in run.inputs.dataset_inputs}
        assert {"instances", "labels"} <= inputs
