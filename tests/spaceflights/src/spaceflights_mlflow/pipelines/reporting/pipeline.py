from kedro.pipeline import Node, Pipeline

from spaceflights_mlflow.pipelines.reporting.nodes import (
    capacity_by_type,
    capacity_figure,
    confusion_matrix_plot,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                capacity_by_type,
                "preprocessed_shuttles",
                "shuttle_passenger_capacity_plot_exp",
                name="capacity_by_type_node",
            ),
            Node(
                capacity_figure,
                "preprocessed_shuttles",
                "shuttle_passenger_capacity_plot_go",
                name="capacity_figure_node",
            ),
            Node(
                confusion_matrix_plot,
                "companies",
                "dummy_confusion_matrix",
                name="confusion_matrix_node",
            ),
        ]
    )
