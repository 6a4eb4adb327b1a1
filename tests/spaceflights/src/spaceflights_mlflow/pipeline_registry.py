"""Project pipelines: the training pipeline is bound to its inference pipeline."""

from __future__ import annotations

from kedro.pipeline import Pipeline
from kedro_mlflow.pipeline import pipeline_ml_factory  # the model of the training runs

from spaceflights_mlflow.pipelines import data_processing, data_science, reporting


def register_pipelines() -> dict[str, Pipeline]:
    processing = data_processing.create_pipeline()
    training = pipeline_ml_factory(
        training=data_science.create_pipeline(),
        inference=data_science.create_inference_pipeline(),
        input_name="X_test",
        log_model_kwargs={"registered_model_name": "spaceflights"},
    )
    plots = reporting.create_pipeline()
    return {
        "__default__": processing + training + plots,
        "data_processing": processing,
        "data_science": training,
        "reporting": plots,
    }
