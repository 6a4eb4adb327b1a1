"""``user_app``: what the business runs on new data (``--params split=new``)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

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
            Node(
                flag_for_follow_up,
                ["scored_reviews", "params:user_app"],
                "follow_ups",
                name="flag_for_follow_up",
            ),
        ]
    )
