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

#: Everything ``kedroflow`` exports: the version and the names above, listed once.
__all__ = ["__version__", *_LAZY]  # noqa: PLE0604 - strings: the keys of _LAZY

# A computed __all__ is opaque to type checkers: the names are re-exported explicitly.
if TYPE_CHECKING:  # pragma: no cover
    from kedroflow.hooks import MlflowHook as MlflowHook
    from kedroflow.io import MlflowArtifactDataset as MlflowArtifactDataset
    from kedroflow.io import MlflowMetricDataset as MlflowMetricDataset
    from kedroflow.io import MlflowMetricHistoryDataset as MlflowMetricHistoryDataset
    from kedroflow.io import MlflowMetricsHistoryDataset as MlflowMetricsHistoryDataset
    from kedroflow.io import (
        MlflowModelLocalFileSystemDataset as MlflowModelLocalFileSystemDataset,
    )
    from kedroflow.io import MlflowModelRegistryDataset as MlflowModelRegistryDataset
    from kedroflow.io import MlflowModelTrackingDataset as MlflowModelTrackingDataset
    from kedroflow.io import MlflowPromptDataset as MlflowPromptDataset
    from kedroflow.model import KedroPipelineModel as KedroPipelineModel
    from kedroflow.pipeline import PipelineML as PipelineML
    from kedroflow.pipeline import pipeline_ml_factory as pipeline_ml_factory


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kedroflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
