"""Lineage, evaluation, the promotion gate and the model card on a real ``mlflow server``
backed by PostgreSQL (see conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.io.test_lineage import (
    TRANSCODED_CATALOG,
    TRANSCODED_NODES,
    TRANSCODED_REGISTRY,
)
from tests.test_governance import CATALOG, EVALUATION, GATED, NODES, REGISTRY

pytestmark = pytest.mark.integration


def test_gate_lineage_and_card_on_the_server(
    kedro_project: Any, tracking_server: Any
) -> None:
    name = f"scorer_{tracking_server.experiment}"
    gated = {**GATED, "registered_model_name": name}
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(
        f"LOG_MODEL_KWARGS = {gated!r}\nEVALUATION = {EVALUATION!r}\n" + REGISTRY
    )
    kedro_project.write("conf/base/catalog.yml", CATALOG)
    kedro_project.write("conf/base/parameters.yml", "c: 1.0\nsize: 400\nseed: 0\n")
    kedro_project.write("conf/local/mlflow.yml", tracking_server.mlflow_yml())
    kedro_project.run(pipeline_names=["etl"])
    kedro_project.run(pipeline_names=["training"], runtime_params={"c": 0.00001})
    kedro_project.run(pipeline_names=["training"], runtime_params={"c": 10})
    etl, _, training = tracking_server.runs()
    client = tracking_server.client
    first, second = (client.get_model_version(name, v) for v in ("1", "2"))
    assert first.tags["kedroflow.promotion"].startswith("rejected: valid.accuracy")
    assert second.tags["kedroflow.promotion"] == "promoted to @champion"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    inputs = {
        i.dataset.name: {t.key: t.value for t in i.tags}
        for i in training.inputs.dataset_inputs
    }
    assert inputs["instances"]["kedroflow.produced_by"] == etl.info.run_id
    link = (
        f"{tracking_server.url.rstrip('/')}/#/experiments/"
        f"{training.info.experiment_id}/runs/{training.info.run_id}"
    )
    assert f"]({link})" in second.description  # the card links to the server's UI
    assert "worst_slice.accuracy_score" in training.data.metrics


def test_lineage_costs_a_search_per_input_and_no_run_lookup(
    kedro_project: Any, tracking_server: Any
) -> None:
    """The producer of each input is searched once; the run is not read back."""
    kedro_project.write("src/fake_project/nodes.py", TRANSCODED_NODES)
    kedro_project.write_pipelines(TRANSCODED_REGISTRY)
    kedro_project.write("conf/base/catalog.yml", TRANSCODED_CATALOG)
    kedro_project.write("data/source.csv", "x\n1\n\n2\n")
    kedro_project.write("conf/local/mlflow.yml", tracking_server.mlflow_yml())
    calls = {}
    for pipeline in ("etl", "use"):
        with tracking_server.request_counter() as counter:
            kedro_project.run(pipeline_names=[pipeline])
        calls[pipeline] = counter.by_endpoint()
    etl, use = tracking_server.runs()

    def inputs(run: Any) -> dict[str, dict[str, str]]:
        return {
            i.dataset.name: {t.key: t.value for t in i.tags}
            for i in run.inputs.dataset_inputs
        }

    assert "kedroflow.produced_by" not in inputs(etl)["source"]
    assert inputs(use)["clean@text"]["kedroflow.produced_by"] == etl.info.run_id
    for pipeline in ("etl", "use"):
        # one input each: one search; the experiment is known from the run's start
        assert calls[pipeline]["POST /api/2.0/mlflow/runs/search"] == 1, calls
        assert "GET /api/2.0/mlflow/runs/get" not in calls[pipeline], calls
