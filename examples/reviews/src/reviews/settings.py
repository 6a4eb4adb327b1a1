"""Project settings: only what differs from Kedro's defaults.

Nothing here mentions kedroflow: the plugin registers its ``MlflowHook`` itself
(entry point ``kedro.hooks``) and reads ``conf/<env>/mlflow.yml``. To run without it,
add ``DISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",)``.
"""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
