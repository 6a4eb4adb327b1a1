"""One pipeline, two views: ``only_nodes_with_tags("training")`` fits and evaluates the
model, ``only_nodes_with_tags("inference")`` predicts. Nodes tagged with both are the
preprocessing shared by the two, so serving can never drift from training."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

TRAINING = "training"
INFERENCE = "inference"
BOTH = [TRAINING, INFERENCE]


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            # -- shared preprocessing
            Node(nodes.lowercase, "instances", "lower_texts", tags=BOTH),
            Node(
                nodes.remove_stopwords,
                ["lower_texts", "stopwords"],
                "texts_without_stopwords",
                tags=BOTH,
            ),
            Node(
                nodes.remove_punctuation,
                "texts_without_stopwords",
                "clean_texts",
                tags=BOTH,
            ),
            Node(nodes.vectorize, ["vectorizer", "clean_texts"], "features", tags=BOTH),
            # -- training
            Node(
                nodes.fit_vectorizer,
                ["clean_texts", "params:vectorizer"],
                "vectorizer",
                tags=TRAINING,
            ),
            Node(nodes.fit_label_encoder, "labels", "label_encoder", tags=TRAINING),
            Node(
                nodes.encode_labels,
                ["label_encoder", "labels"],
                "target",
                tags=TRAINING,
            ),
            Node(
                nodes.split_train_valid,
                ["features", "target", "params:training"],
                ["x_train", "x_valid", "y_train", "y_valid"],
                tags=TRAINING,
            ),
            Node(
                nodes.train_classifier,
                ["x_train", "y_train", "x_valid", "y_valid", "params:training"],
                ["classifier", "train_log_loss", "valid_log_loss"],
                tags=TRAINING,
            ),
            Node(
                nodes.evaluate,
                ["classifier", "x_valid", "y_valid"],
                "evaluation_metrics",
                tags=TRAINING,
            ),
            Node(
                nodes.plot_learning_curve,
                [
                    "train_log_loss",
                    "valid_log_loss",
                    "classifier",
                    "vectorizer",
                    "label_encoder",
                ],
                "learning_curve",
                tags=TRAINING,
            ),
            Node(
                nodes.make_held_out,
                ["test_instances", "test_labels"],
                "held_out",
                tags=TRAINING,
            ),
            # -- inference
            Node(
                nodes.predict,
                ["classifier", "features"],
                "probabilities",
                tags=INFERENCE,
            ),
            Node(
                nodes.decode_predictions,
                ["label_encoder", "probabilities"],
                "predictions",
                tags=INFERENCE,
            ),
        ]
    )
