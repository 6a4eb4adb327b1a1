"""Raw tables -> one model input table."""

from spaceflights_mlflow.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
