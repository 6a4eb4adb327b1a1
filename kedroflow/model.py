"""``KedroPipelineModel``: the inference pipeline served as an MLflow pyfunc model."""

from __future__ import annotations

from typing import Any


def log_training_model(
    run_params: dict[str, Any], pipeline: Any, catalog: Any, run_id: str
) -> None:
    """Log the inference pipeline bound to the training pipeline that just ran."""
