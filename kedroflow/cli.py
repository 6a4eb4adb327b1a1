"""``kedro mlflow init | ui | sync | close | modelify | migrate``.

Kedro imports every plugin's CLI module on every ``kedro`` command, so this module
imports nothing heavy: MLflow and the project are loaded inside the command bodies.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from importlib import resources
from typing import TYPE_CHECKING, Any

import click
from click import ClickException as KedroflowCliError
from kedro.framework.cli.utils import env_option

from kedroflow.cli_project import (
    cli_errors,
    command_target_run,
    env_dir,
    inference_pipeline,
    load_project_config,
    project_stores,
)
from kedroflow.secrets import mask_uri

if TYPE_CHECKING:
    from collections.abc import Callable

    from kedro.framework.startup import ProjectMetadata

DEFAULT_ENV = "local"
#: Kedro's own ``--env`` option; kedroflow's commands default to ``local``, where
#: ``kedro mlflow init`` writes (Kedro's default is None: its default run env).
env: Callable[[Callable[..., Any]], Callable[..., Any]] = env_option(
    default=DEFAULT_ENV, show_default=True
)
#: ``kedro mlflow sync --env``: no default, each run goes where it was tracked.
override_env: Callable[[Callable[..., Any]], Callable[..., Any]] = env_option(
    help="Upload every run to this environment's server (default: each run to the "
    "server and with the settings of the environment it was tracked with)."
)


@click.group(name="kedroflow")
def commands() -> None:
    """kedroflow commands."""


@commands.group(name="mlflow")
def mlflow_commands() -> None:
    """Track Kedro runs in MLflow and serve pipelines as MLflow models."""


@mlflow_commands.command(name="init")
@env
@click.option("--force", "-f", is_flag=True, help="Overwrite an existing mlflow.yml.")
@click.option("--silent", "-s", is_flag=True, help="Print nothing on success.")
@click.pass_obj
def init(metadata: ProjectMetadata, env: str, force: bool, silent: bool) -> None:
    """Write a commented ``conf/<env>/mlflow.yml`` (default env: local)."""
    target = env_dir(metadata, env) / "mlflow.yml"
    if target.exists() and not force:
        raise KedroflowCliError(
            f"{target} already exists. Pass --force to overwrite it with the template."
        )
    template = resources.files("kedroflow").joinpath("templates/mlflow.yml").read_text()
    target.write_text(template.replace("{{ experiment_name }}", metadata.package_name))
    from kedroflow.local_store import ignore_stores

    ignored = ignore_stores(metadata.project_path)
    if not silent:
        click.secho(
            f"'{target.relative_to(metadata.project_path)}' written.", fg="green"
        )
        if ignored:
            click.echo(f"Added {', '.join(ignored)} to .gitignore.")


@mlflow_commands.command(name="ui")
@env
@click.option("--port", "-p", type=int, default=None, help="Port (default: ui.port).")
@click.option("--host", "-h", default=None, help="Host (default: ui.host).")
@click.option("--workers", "-w", type=click.IntRange(1), default=1, show_default=True, help="Server worker processes (MLflow's default: 4).")  # fmt: skip
@click.option("--job-runner/--no-job-runner", default=False, show_default=True, help="Start MLflow's background job runner too.")  # fmt: skip
@click.pass_obj
def ui(  # noqa: PLR0917
    metadata: ProjectMetadata, env: str, port: int | None, host: str | None,
    workers: int, job_runner: bool,
) -> None:  # fmt: skip
    """Open the MLflow UI on the project's tracking store (kedroflow.local_store)."""
    config = load_project_config(metadata, env)
    uri = config.tracking_uri(metadata.project_path)
    host = host or config.ui.host
    port = port or config.ui.port
    if uri.startswith(("http://", "https://")):
        import webbrowser

        click.echo(f"The tracking server is remote: opening {mask_uri(uri)}")
        webbrowser.open(uri)
        return
    if uri.startswith("databricks"):
        raise KedroflowCliError(
            "The tracking URI is Databricks: open the Experiments page of your "
            "workspace instead of `kedro mlflow ui`."
        )
    from kedroflow.local_store import JOB_RUNNER_ENV, ui_command

    registry = config.registry_uri(metadata.project_path)
    command = ui_command(uri, registry, host=host, port=port, workers=workers)
    click.echo(
        f"MLflow UI on http://{host}:{port} for {mask_uri(uri)} (Ctrl-C to stop)"
    )
    sys.stdout.flush()
    os.environ[JOB_RUNNER_ENV] = str(job_runner).lower()
    os.chdir(metadata.project_path)
    try:
        # exec: `mlflow ui` takes this process's place, so Ctrl-C and SIGTERM reach it
        os.execv(sys.executable, command)
    except OSError as exc:
        raise KedroflowCliError(f"Could not start `mlflow ui`: {exc}") from exc


@mlflow_commands.command(name="sync")
@override_env
@click.option("--lock-timeout", type=float, default=60, show_default=True,
              help="Seconds to wait for another sync of this project to end.")  # fmt: skip
@click.pass_obj
def sync(metadata: ProjectMetadata, env: str | None, lock_timeout: float) -> None:
    """Upload runs tracked offline (server unreachable) to their tracking server."""
    from kedroflow.offline import RETRY_HINT, kedro_environments, sync_offline_runs
    from kedroflow.stores import offline_store

    store = offline_store(metadata.project_path)
    if not store.exists():
        click.echo(f"Nothing to upload: no offline store at {store}.")
        return
    if env is not None:
        env_dir(metadata, env)  # a wrong --env fails before anything is read
    with contextlib.ExitStack() as sessions, cli_errors():
        resolve = kedro_environments(
            metadata.project_path, functools.partial(load_project_config, metadata),
            sessions, DEFAULT_ENV,
        )  # fmt: skip
        report = sync_offline_runs(
            metadata.project_path, resolve, env=env, lock_timeout=lock_timeout
        )
    click.echo("\n".join(report.lines()))
    if report.errors:
        raise KedroflowCliError(RETRY_HINT)


@mlflow_commands.command(name="close")
@click.option("--run-id", required=True, help="The (shared) MLflow run to end.")
@click.option(
    "--status",
    type=click.Choice(["FINISHED", "FAILED", "KILLED"]),
    default=None,
    help="Final status (default: FAILED if a part failed, KILLED if one was "
    "killed, else FINISHED).",
)
@click.option(
    "--force", is_flag=True, help="End it even if processes still renew their lease."
)
@env
@click.pass_obj
def close(
    metadata: ProjectMetadata, run_id: str, status: str | None, force: bool, env: str
) -> None:
    """End a run shared by several processes whose last one never left (SIGKILL)."""
    config = load_project_config(metadata, env)
    from kedroflow import shared_runs

    with (
        cli_errors(f"Cannot end MLflow run {run_id}"),
        project_stores(metadata, config, env, run_id) as (_, used),
    ):
        final = shared_runs.close(
            used.stores.client, run_id, status=status, force=force
        )
    click.echo(f"MLflow run {run_id}: {final}")


@mlflow_commands.command(name="modelify")
@click.option(
    "--pipeline",
    "-p",
    "pipeline_name",
    required=True,
    help="Registered pipeline to log as a model (its inference part).",
)
@click.option(
    "--input-name",
    "-i",
    required=True,
    help="Pipeline input fed with the data given to predict().",
)
@click.option("--output-name", help="Output predict() returns (if there are several).")
@env
@click.option(
    "--model-name", default="model", show_default=True, help="Name of the logged model."
)
@click.option(
    "--run-id",
    default=None,
    help="Log the model into this MLflow run (default: a new run of the project's "
    "experiment).",
)
@click.option("--registered-model-name", help="Register a version of this model.")
@click.option("--alias", help="Point this alias (e.g. champion) at the version.")
@click.option("--infer-signature", is_flag=True, help="Signature from the input.")
@click.option("--infer-input-example", is_flag=True, help="Its first rows as example.")
@click.option(
    "--copy-mode",
    default="assign",
    show_default=True,
    callback=lambda ctx, param, value: _copy_mode(value),
    help="How artifacts are passed to the nodes on each call: assign, copy or "
    'deepcopy, or a JSON object per dataset, e.g. \'{"model": "deepcopy"}\'.',
)
@click.option("--code-paths", multiple=True, help="Extra code (beside the package).")
@click.option(
    "--pip-requirements",
    default=None,
    help="requirements.txt path or comma-separated pins (default: pinned "
    "from this environment).",
)
@click.option(
    "--extra-pip-requirements",
    default=None,
    help="requirements.txt path or comma-separated pins added to the defaults.",
)
@click.pass_obj
def modelify(  # noqa: PLR0917
    metadata: ProjectMetadata,
    pipeline_name: str,
    input_name: str,
    output_name: str | None,
    env: str,
    model_name: str,
    run_id: str | None,
    registered_model_name: str | None,
    alias: str | None,
    infer_signature: bool,
    infer_input_example: bool,
    copy_mode: str | dict[str, str],
    code_paths: tuple[str, ...],
    pip_requirements: str | None,
    extra_pip_requirements: str | None,
) -> None:
    """Log any registered pipeline as an MLflow model, from the stored artifacts."""
    log_model_kwargs = _log_model_kwargs(
        model_name, signature=infer_signature, input_example=infer_input_example,
        code_paths=code_paths, registered_model_name=registered_model_name,
        alias=alias, pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
    )  # fmt: skip
    config = load_project_config(metadata, env)
    from kedroflow.packaging import log_pipeline_model
    from kedroflow.secrets import Secrets, project_credentials

    pipeline = inference_pipeline(pipeline_name, input_name)
    with cli_errors("MLflow refused the model"), project_stores(
        metadata, config, env, run_id
    ) as (context, used), command_target_run(
        metadata, used, "modelify", pipeline_name, run_id
    ) as target:  # fmt: skip
        info = log_pipeline_model(
            pipeline, context.catalog, input_name=input_name,
            output_name=output_name, run_id=target,
            kpm_kwargs={"copy_mode": copy_mode},
            log_model_kwargs=log_model_kwargs,
            tags={"kedroflow.pipeline": pipeline_name},
            client=used.stores.client,
            redact=config.tracking.params.redact,
            secrets=Secrets.from_tree(project_credentials(context)),
        )  # fmt: skip
    click.echo(
        f"Model of pipeline '{pipeline_name}' logged: {info.model_uri} "
        f"(tracking store {used.stores.display_uri})"
    )
    if info.registered_model_version:
        click.echo(
            f"Registered as {registered_model_name} v{info.registered_model_version}"
        )


def _log_model_kwargs(
    name: str,
    *,
    signature: bool,
    input_example: bool,
    code_paths: tuple[str, ...],
    registered_model_name: str | None,
    alias: str | None,
    pip_requirements: str | None,
    extra_pip_requirements: str | None,
) -> dict[str, Any]:
    """``log_model`` arguments from modelify's options: the ones given, plus
    ``signature`` and ``input_example`` always (None: not inferred)."""
    if alias and not registered_model_name:
        raise KedroflowCliError("--alias needs --registered-model-name.")
    kwargs: dict[str, Any] = {
        "name": name,
        "code_paths": list(code_paths) or None,
        "registered_model_name": registered_model_name,
        "registered_model_alias": alias,
    }
    for key, value in (("pip_requirements", pip_requirements),
                       ("extra_pip_requirements", extra_pip_requirements)):  # fmt: skip
        if value:
            kwargs[key] = value if os.path.isfile(value) else value.split(",")
    given = {k: v for k, v in kwargs.items() if v is not None}
    return given | {
        "signature": "auto" if signature else None,
        "input_example": "auto" if input_example else None,
    }


@mlflow_commands.command(name="lineage")
@click.argument("target")
@env
@click.pass_obj
def lineage(metadata: ProjectMetadata, target: str, env: str) -> None:
    """Where a run or a model (models:/name@alias, models:/name/3) comes from."""
    config = load_project_config(metadata, env)
    from kedroflow.stores import command_stores
    from kedroflow.trail import trail

    with command_stores(config, project_path=metadata.project_path) as used:
        with cli_errors():
            click.echo("\n".join(trail(used.stores.client, target)))


@mlflow_commands.command(name="prune")
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the N newest runs.")
@click.option("--older-than", help="Delete only runs started before, e.g. 30d, 12h.")
@click.option("--dry-run", is_flag=True, help="Show what would go; delete nothing.")
@env
@click.pass_obj
def prune(
    metadata: ProjectMetadata,
    keep_last: int | None,
    older_than: str | None,
    dry_run: bool,
    env: str,
) -> None:
    """Delete old runs of the project's experiment, never one behind a registered
    model version; then MLflow's garbage collection frees their storage."""
    config = load_project_config(metadata, env)
    from kedroflow import retention
    from kedroflow.stores import command_stores

    with command_stores(config, project_path=metadata.project_path) as used:
        with cli_errors():
            lines = retention.prune(
                used.stores, used.experiment_id, keep_last=keep_last,
                older_than=older_than, dry_run=dry_run,
            )  # fmt: skip
    click.echo("\n".join(lines))


def _copy_mode(value: str) -> str | dict[str, str]:
    from kedroflow.errors import PipelineMLError
    from kedroflow.pipeline import parse_copy_mode

    try:
        return parse_copy_mode(value)
    except PipelineMLError as exc:
        raise click.BadParameter(str(exc)) from None


@mlflow_commands.command(name="migrate")
@click.option(
    "--write", is_flag=True, help="Rewrite the files (default: only show the diff)."
)
@click.pass_obj
def migrate(metadata: ProjectMetadata, write: bool) -> None:
    """Rewrite kedro-mlflow catalog types and imports for kedroflow."""
    from kedroflow.migrate import migrate_project, report

    changes = migrate_project(metadata.project_path, write=write)
    click.echo(report(changes, metadata.project_path, written=write))
