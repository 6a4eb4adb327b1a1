"""spaceflights-mlflow: the shape of Kedro's spaceflights starter, tracked in MLflow."""

__version__ = "0.1"
