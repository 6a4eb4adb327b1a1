from kedro.pipeline import Node, Pipeline

from spaceflights_mlflow.pipelines.data_science.nodes import (
    evaluate_model,
    predict_prices,
    split_data,
    train_model,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                split_data,
                ["model_input_table", "params:model_options"],
                ["X_train", "X_test", "y_train", "y_test"],
                name="split_data_node",
            ),
            Node(
                train_model,
                ["X_train", "y_train"],
                "regressor",
                name="train_model_node",
            ),
            Node(
                evaluate_model,
                ["regressor", "X_test", "y_test"],
                "metrics",
                name="evaluate_model_node",
            ),
        ]
    )


def create_inference_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                predict_prices,
                ["regressor", "X_test"],
                "price_predictions",
                name="predict_prices_node",
            )
        ]
    )
