"""Catalog datasets that log to MLflow, and the catalog helpers the hook uses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def bind_catalog_names(catalog: Any, names: Iterable[str]) -> None:
    """Give kedroflow datasets their catalog entry name (the default metric key)."""


def log_dataset_inputs(catalog: Any, names: Iterable[str], run_id: str) -> None:
    """Record the persisted datasets a run read as MLflow dataset inputs."""
