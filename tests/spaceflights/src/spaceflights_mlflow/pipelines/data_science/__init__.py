"""Split, train and evaluate the price regressor; and the pipeline that serves it."""

from spaceflights_mlflow.pipelines.data_science.pipeline import (
    create_inference_pipeline,
    create_pipeline,
)

__all__ = ["create_inference_pipeline", "create_pipeline"]
