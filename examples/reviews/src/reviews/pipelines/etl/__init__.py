"""ETL: create the ``instances`` (review texts) and ``labels`` (sentiments) datasets."""

from .pipeline import create_instances_pipeline, create_labels_pipeline

__all__ = ["create_instances_pipeline", "create_labels_pipeline"]
