"""Project pipelines.

=================  ===============================================================
``etl_instances``  make the review texts of a split (``--params split=train|test|new``)
``etl_labels``     make their sentiments (training data only)
``training``       fit, log the inference pipeline, evaluate it on held-out data,
                   register it; the gate moves ``champion`` only to a better model
``inference``      predict with the files of the last training (no registry needed)
``user_app``       score new reviews with the registered model, flag follow-ups
=================  ===============================================================
"""

from kedro.pipeline import Pipeline

from kedroflow import pipeline_ml_factory

from .pipelines import etl, ml_app, user_app

MODEL_NAME = "reviews_classifier"


def register_pipelines() -> dict[str, Pipeline]:
    ml = ml_app.create_pipeline()
    inference = ml.only_nodes_with_tags(ml_app.pipeline.INFERENCE)
    training = pipeline_ml_factory(
        training=ml.only_nodes_with_tags(ml_app.pipeline.TRAINING),
        inference=inference,
        input_name="instances",
        log_model_kwargs={
            "registered_model_name": MODEL_NAME,
            "registered_model_alias": "champion",
            # the new version becomes champion only if it is good enough, fair
            # enough across review lengths, and better than the current champion
            "promote_if": {
                "valid.f1": {"min": 0.8},
                "worst_slice.f1_score": {"min": 0.7},
                "beat_current": "f1_score",
            },
        },
        # scored on the held-out test split, overall and per review length
        evaluation={
            "data": "held_out",
            "targets": "label",
            "model_type": "classifier",
            "predictions": "sentiment",
            "slices": ["length"],
            "evaluator_config": {"pos_label": "positive"},
        },
    )
    return {
        "etl_instances": etl.create_instances_pipeline(),
        "etl_labels": etl.create_labels_pipeline(),
        "training": training,
        "inference": inference,
        "user_app": user_app.create_pipeline(),
        "__default__": training,
    }
