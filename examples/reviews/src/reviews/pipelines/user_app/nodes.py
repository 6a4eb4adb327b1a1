"""Nodes of the business application.

The model arrives as an MLflow pyfunc model loaded from the Model Registry
(``reviews_classifier@champion``): this code does not know how it was trained, only
that ``predict`` takes review texts and returns a sentiment and a confidence.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)


def score_reviews(model: Any, instances: pd.DataFrame) -> pd.DataFrame:
    """Predict the sentiment of each review with the registered model."""
    predictions = pd.DataFrame(model.predict(instances)).reset_index(drop=True)
    return pd.concat([instances.reset_index(drop=True), predictions], axis=1)


def flag_for_follow_up(scored: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Select the reviews the customer team must read: negative ones, and any review
    the model is unsure about, most urgent (most confidently negative) first."""
    negative = scored["sentiment"] == params["follow_up_sentiment"]
    unsure = scored["confidence"] < float(params["min_confidence"])
    flagged = scored[negative | unsure].copy()
    flagged["reason"] = [
        "negative" if is_negative else "unsure"
        for is_negative in negative[negative | unsure]
    ]
    flagged = flagged.sort_values(["reason", "confidence"], ascending=[True, False])
    logger.info(
        "%d of %d reviews need a follow-up (%d negative, %d unsure)",
        len(flagged),
        len(scored),
        int((flagged["reason"] == "negative").sum()),
        int((flagged["reason"] == "unsure").sum()),
    )
    return flagged.reset_index(drop=True)
