"""kedroflow: track every ``kedro run`` in MLflow and serve the inference pipeline.

``import kedroflow`` is cheap: the datasets and pipeline helpers below are imported on
first access, so ``type: kedroflow.MlflowArtifactDataset`` in ``catalog.yml`` works
without importing MLflow for commands that never touch it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "MlflowArtifactDataset": "kedroflow.io",
    "MlflowMetricDataset": "kedroflow.io",
    "MlflowMetricHistoryDataset": "kedroflow.io",
    "MlflowMetricsHistoryDataset": "kedroflow.io",
    "MlflowModelTrackingDataset": "kedroflow.io",
    "MlflowModelLocalFileSystemDataset": "kedroflow.io",
    "MlflowModelRegistryDataset": "kedroflow.io",
    "MlflowPromptDataset": "kedroflow.io",
    "PipelineML": "kedroflow.pipeline",
    "pipeline_ml_factory": "kedroflow.pipeline",
    "KedroPipelineModel": "kedroflow.model",
    "MlflowHook": "kedroflow.hooks",
}

__all__ = [
    "KedroPipelineModel",
    "MlflowArtifactDataset",
    "MlflowHook",
    "MlflowMetricDataset",
    "MlflowMetricHistoryDataset",
    "MlflowMetricsHistoryDataset",
    "MlflowModelLocalFileSystemDataset",
    "MlflowModelRegistryDataset",
    "MlflowModelTrackingDataset",
    "MlflowPromptDataset",
    "PipelineML",
    "__version__",
    "pipeline_ml_factory",
]

if TYPE_CHECKING:  # pragma: no cover
    from kedroflow.hooks import MlflowHook
    from kedroflow.io import (
        MlflowArtifactDataset,
        MlflowMetricDataset,
        MlflowMetricHistoryDataset,
        MlflowMetricsHistoryDataset,
        MlflowModelLocalFileSystemDataset,
        MlflowModelRegistryDataset,
        MlflowModelTrackingDataset,
        MlflowPromptDataset,
    )
    from kedroflow.model import KedroPipelineModel
    from kedroflow.pipeline import PipelineML, pipeline_ml_factory


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kedroflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
