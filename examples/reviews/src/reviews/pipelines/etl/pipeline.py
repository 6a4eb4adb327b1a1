"""Two pipelines, because labels do not exist at inference time: ``etl_instances``
makes the texts for any split, ``etl_labels`` the matching sentiments."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import create_instances, create_labels


def create_instances_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                create_instances,
                inputs=["params:split", "params:etl"],
                outputs="instances",
                name="create_instances",
            )
        ]
    )


def create_labels_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                create_labels,
                inputs=["params:split", "params:etl"],
                outputs="labels",
                name="create_labels",
            )
        ]
    )
