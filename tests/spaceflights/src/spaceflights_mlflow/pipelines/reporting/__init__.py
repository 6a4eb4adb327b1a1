"""Plots of the preprocessed tables."""

from spaceflights_mlflow.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
