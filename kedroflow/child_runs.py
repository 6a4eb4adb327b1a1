"""Child runs of a ``kedro run``: one per top-level namespace or per pipeline.

``tracking.run.child_runs: namespace`` opens, under the run of the ``kedro run``, one
nested run per top-level namespace of the selected nodes (``pipeline``: one per
pipeline given to ``--pipelines``). Each child holds the parameters its nodes consume
and what the datasets its nodes write log (metrics, artifacts, models): while a node
of a group runs or saves, its child is the current run of the thread
(:func:`kedroflow.tracking.use_in_thread`) and MLflow's active run in the node. The
parent keeps the shared tags and the status of the whole; a child whose node failed
ends FAILED, the others FINISHED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kedroflow import tracking

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from kedro.pipeline import Node, Pipeline
    from mlflow.entities import Run

    from kedroflow.config import KedroflowConfig
    from kedroflow.tracking import CurrentRun

PARENT_TAG = "mlflow.parentRunId"


def group_of(node: Node, mode: str, pipelines: dict[str, set[str]]) -> str | None:
    """The child run a node belongs to (None: the parent run itself)."""
    if mode == "namespace":
        return node.namespace.split(".")[0] if node.namespace else None
    for name, nodes in pipelines.items():
        if node.name in nodes:
            return name
    return None


def pipeline_nodes(names: Iterable[str]) -> dict[str, set[str]]:
    """The node names of each registered pipeline given to ``--pipelines``."""
    from kedro.framework.project import pipelines

    return {name: {n.name for n in pipelines[name].nodes} for name in names}


@dataclass
class ChildRuns:
    """The open child runs of one ``kedro run``, by group."""

    runs: dict[str, tuple[Run, CurrentRun]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # node name -> group
    failed: set[str] = field(default_factory=set)

    @classmethod
    def open(
        cls,
        config: KedroflowConfig,
        parent: CurrentRun,
        *,
        experiment_id: str,
        pipeline: Pipeline,
        pipeline_names: list[str],
        consumed_params: Callable[[Pipeline], dict[str, Any]],
    ) -> ChildRuns:
        """Open one child per group of ``pipeline``, with its nodes' parameters."""
        mode = config.tracking.run.child_runs
        by_pipeline = pipeline_nodes(pipeline_names) if mode == "pipeline" else {}
        children = cls()
        members: dict[str, list[Node]] = {}
        for node in pipeline.nodes:
            group = group_of(node, mode, by_pipeline)
            if group is not None:
                children.groups[node.name] = group
                members.setdefault(group, []).append(node)
        client = parent.stores.client
        try:
            for group, nodes in members.items():
                tags = {PARENT_TAG: parent.run_id, f"kedro.{mode}": group}
                run = client.create_run(experiment_id, tags=tags, run_name=group)
                child = tracking.CurrentRun(
                    run.info.run_id, parent.stores, parent.secrets,
                    experiment_id=experiment_id,
                )  # fmt: skip
                children.runs[group] = (run, child)
                params = consumed_params(pipeline.only_nodes(*(n.name for n in nodes)))
                tracking.log_params(child, params, config.tracking.params)
        except BaseException:
            children.close(failed=True)
            raise
        return children

    def of(self, node: Node) -> tuple[Run, CurrentRun] | None:
        """The child run of ``node``'s group, or None for the parent run."""
        group = self.groups.get(node.name)
        return self.runs[group] if group is not None else None

    def node_failed(self, node: Node) -> None:
        group = self.groups.get(node.name)
        if group is not None:
            self.failed.add(group)

    def close(self, *, failed: bool = False) -> None:
        """End every child: FAILED where a node failed (or all, ``failed``)."""
        for group, (_, child) in self.runs.items():
            status = "FAILED" if failed or group in self.failed else "FINISHED"
            child.stores.client.set_terminated(child.run_id, status)
        self.runs.clear()
