"""``tracking.run.child_runs``: a child run per namespace, through a real session."""

from __future__ import annotations

from typing import Any

import pytest
from kedro.runner import ParallelRunner, SequentialRunner

NODES = """
import mlflow


def score(x):
    mlflow.log_metric("fluent_in_node", float(x))
    return float(x) * 2


def explode(x):
    raise RuntimeError("model_b broke")
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import explode, score


def register_pipelines():
    base = Pipeline([Node(score, "params:x", "accuracy", name="score")])
    broken = Pipeline([Node(explode, "params:x", "accuracy", name="score")])
    shared = Pipeline([Node(score, "params:shared", "shared_out", name="shared")])
    a = Pipeline(base, namespace="model_a")
    return {
        "__default__": a + Pipeline(base, namespace="model_b") + shared,
        "failing": a + Pipeline(broken, namespace="model_b"),
    }
"""

CATALOG = """
"{namespace}.accuracy":
  type: kedroflow.MlflowMetricDataset
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write(
        "conf/base/parameters.yml", "model_a: {x: 1}\nmodel_b: {x: 2}\nshared: 5\n"
    )
    kedro_project.write("conf/base/catalog.yml", CATALOG)
    kedro_project.write(
        "conf/local/mlflow.yml", "tracking:\n  run:\n    child_runs: namespace\n"
    )
    return kedro_project


def family(project: Any) -> tuple[Any, dict[str, Any]]:
    runs = project.runs()
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["mlflow.runName"]: r for r in runs if r is not parent}
    for child in children.values():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.experiment_id == parent.info.experiment_id
    return parent, children


class TestChildRunPerNamespace:
    @pytest.mark.parametrize(
        "runner",
        # ParallelRunner's workers are forked here (Linux): they know the children
        [SequentialRunner, lambda: ParallelRunner(max_workers=2)],
        ids=["sequential", "parallel"],
    )
    def test_each_namespace_has_its_params_and_metrics(
        self, project: Any, runner: Any
    ) -> None:
        project.run(runner=runner())
        parent, children = family(project)
        assert sorted(children) == ["model_a", "model_b"]
        a, b = children["model_a"], children["model_b"]
        assert a.data.params == {"model_a.x": "1"}
        assert b.data.params == {"model_b.x": "2"}
        assert a.data.metrics == {"model_a.accuracy": 2.0, "fluent_in_node": 1.0}
        assert b.data.metrics == {"model_b.accuracy": 4.0, "fluent_in_node": 2.0}
        # the parent: the nodes outside any namespace, every parameter, the tags
        assert parent.data.metrics == {"fluent_in_node": 5.0}
        assert parent.data.params["shared"] == "5"
        assert parent.data.tags["kedro.pipeline"] == "__default__"
        assert {r.info.status for r in (parent, a, b)} == {"FINISHED"}

    def test_the_failing_namespace_fails(self, project: Any) -> None:
        with pytest.raises(RuntimeError, match="model_b broke"):
            project.run(pipeline_names=["failing"])
        parent, children = family(project)
        assert parent.info.status == "FAILED"
        assert children["model_b"].info.status == "FAILED"
