"""What a ``kedro mlflow`` command needs of the project, and its one clear error.

The project's ``mlflow.yml`` for an env, the ``conf/<env>`` folder, the project's
context and MLflow on its stores, the inference pipeline it packages and the run it
logs to (:func:`command_run`); kedroflow's and MLflow's errors turned into the
command's error (URIs masked). Imports nothing heavy at load time, like the CLI.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from click import ClickException as KedroflowCliError

from kedroflow.secrets import mask_uri

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from kedro.framework.startup import ProjectMetadata

    from kedroflow.stores import Stores


@contextlib.contextmanager
def cli_errors(mlflow_failure: str = "MLflow refused the request") -> Iterator[None]:
    """kedroflow's and MLflow's errors as the command's one clear error (exit 1)."""
    from mlflow.exceptions import MlflowException

    from kedroflow.errors import KedroflowError

    try:
        yield
    except KedroflowError as exc:
        raise KedroflowCliError(mask_uri(str(exc))) from None
    except MlflowException as exc:
        raise KedroflowCliError(f"{mlflow_failure}: {mask_uri(exc.message)}") from None


@contextlib.contextmanager
def project_stores(
    metadata: ProjectMetadata, config: Any, env: str, run_id: str | None
) -> Iterator[tuple[Any, Any]]:
    """The project's context and MLflow on its stores, for a command outside a run."""
    from kedro.framework.session import KedroSession

    from kedroflow.stores import command_stores

    with KedroSession.create(project_path=metadata.project_path, env=env) as session:
        context = session.load_context()  # type: ignore[attr-defined]
        with command_stores(
            config, project_path=metadata.project_path, context=context, run_id=run_id
        ) as used:
            yield context, used


def load_project_config(metadata: ProjectMetadata, env: str) -> Any:
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    from kedroflow.config import load_config
    from kedroflow.errors import ConfigError
    from kedroflow.run_names import register_resolvers

    bootstrap_project(metadata.project_path)
    conf_root = env_dir(metadata, env).parent
    register_resolvers()
    loader_args = dict(getattr(settings, "CONFIG_LOADER_ARGS", {}) or {})
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(conf_root), env=env, **loader_args
    )
    try:
        return load_config(loader, metadata.package_name)
    except ConfigError as exc:
        raise KedroflowCliError(str(exc)) from None


def env_dir(metadata: ProjectMetadata, env: str) -> Path:
    """``conf/<env>``, or an error listing the environments that exist."""
    from kedro.framework.project import settings

    conf_root: Path = metadata.project_path / settings.CONF_SOURCE
    folder = conf_root / env
    if not folder.is_dir():
        envs = (
            sorted(p.name for p in conf_root.iterdir() if p.is_dir())
            if conf_root.is_dir()
            else []
        )
        raise KedroflowCliError(
            f"No Kedro environment '{env}': {folder} does not exist. Create the folder "
            f"first, or pass --env with one of: {', '.join(envs) or '(none found)'}."
        )
    return folder


@contextlib.contextmanager
def command_run(
    stores: Stores,
    experiment_id: str,
    *,
    run_id: str | None,
    run_name: str,
    tags: Mapping[str, str],
) -> Iterator[str]:
    """``run_id``, else a new run of ``experiment_id`` for a command such as
    ``kedro mlflow modelify``: FINISHED when the block succeeds, FAILED otherwise."""
    if run_id:
        yield run_id
        return
    run = stores.client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    status = "FAILED"
    try:
        yield run.info.run_id
        status = "FINISHED"
    finally:
        stores.client.set_terminated(run.info.run_id, status)


def command_target_run(
    metadata: ProjectMetadata,
    used: Any,
    command: str,
    pipeline_name: str,
    run_id: str | None,
) -> contextlib.AbstractContextManager[str]:
    """The run a command logs to: ``--run-id``, else a new run of the experiment
    (``<command>-<pipeline>``, tagged with the command, pipeline and git state)."""
    from kedroflow.provenance import git_info

    return command_run(
        used.stores, used.experiment_id, run_id=run_id,
        run_name=f"{command}-{pipeline_name}",
        tags={**git_info(metadata.project_path)[0],
              "kedro.pipeline": pipeline_name, "kedroflow.command": command},
    )  # fmt: skip


def inference_pipeline(pipeline_name: str, input_name: str) -> Any:
    """The registered pipeline (a ``PipelineML``'s inference part) that takes
    ``input_name`` (``kedro mlflow modelify``)."""
    from kedro.framework.project import pipelines

    if pipeline_name not in pipelines:
        raise KedroflowCliError(
            f"No pipeline '{pipeline_name}'; registered: {', '.join(sorted(pipelines))}."
        )
    pipeline = pipelines[pipeline_name]
    pipeline = getattr(pipeline, "inference", pipeline)
    if input_name not in pipeline.inputs():
        raise KedroflowCliError(
            f"--input-name '{input_name}' is not an input of pipeline "
            f"'{pipeline_name}'; its inputs are {sorted(pipeline.inputs())}."
        )
    return pipeline
