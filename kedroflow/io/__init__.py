"""Catalog datasets that log to MLflow, and the catalog helpers the hook uses.

Use them in ``catalog.yml`` as ``type: kedroflow.<Name>`` (or ``kedroflow.io.<Name>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kedroflow.io._base import MlflowBaseDataset
from kedroflow.io.artifact_dataset import MlflowArtifactDataset
from kedroflow.io.local_model_dataset import MlflowModelLocalFileSystemDataset
from kedroflow.io.metric_dataset import MlflowMetricDataset, MlflowMetricHistoryDataset
from kedroflow.io.metrics_history_dataset import MlflowMetricsHistoryDataset
from kedroflow.io.model_dataset import MlflowModelTrackingDataset
from kedroflow.io.prompt_dataset import MlflowPromptDataset
from kedroflow.io.registry_dataset import MlflowModelRegistryDataset

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "MlflowArtifactDataset",
    "MlflowBaseDataset",
    "MlflowMetricDataset",
    "MlflowMetricHistoryDataset",
    "MlflowMetricsHistoryDataset",
    "MlflowModelLocalFileSystemDataset",
    "MlflowModelRegistryDataset",
    "MlflowModelTrackingDataset",
    "MlflowPromptDataset",
    "bind_catalog_names",
]


def bind_catalog_names(catalog: Any, names: Iterable[str]) -> None:
    """Give kedroflow datasets their catalog entry name (the default metric key).

    Types are read with ``catalog.get_type`` (nothing is materialised); only kedroflow
    entries, including those made by dataset factory patterns, are fetched and bound.
    """
    for name in names:
        kind = catalog.get_type(name)
        if not kind or ("kedroflow" not in kind and "Mlflow" not in kind):
            continue
        dataset = catalog.get(name)
        if isinstance(dataset, MlflowBaseDataset):
            dataset.bind_name(name)
