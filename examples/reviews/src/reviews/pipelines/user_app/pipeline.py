"""``user_app``: what the business runs on new data (``--params split=new``)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from kedroflow.monitoring import drift_metrics

from .nodes import flag_for_follow_up, score_reviews


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                score_reviews,
                ["registered_model", "instances"],
                "scored_reviews",
                name="score_reviews",
            ),
            Node(  # compares the batch with the model's training reviews
                drift_metrics,
                ["registered_model", "instances"],
                "drift",
                name="monitor_drift",
            ),
            Node(
                flag_for_follow_up,
                ["scored_reviews", "params:user_app"],
                "follow_ups",
                name="flag_for_follow_up",
            ),
        ]
    )
