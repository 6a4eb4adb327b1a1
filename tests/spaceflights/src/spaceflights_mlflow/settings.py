"""Project settings: the extra MLflow hook of Kedro's MLflow guide."""

from kedro.config import OmegaConfigLoader

from spaceflights_mlflow.hooks import ExtraMLflowHooks

HOOKS = (ExtraMLflowHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {"base_env": "base", "default_run_env": "local"}
