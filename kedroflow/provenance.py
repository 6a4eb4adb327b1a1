"""Where a run comes from: git state, runner, the ``kedro run`` command, the run's tags,
the parameters it consumes.

Nothing here writes to MLflow: the hook hands these tags to
:func:`kedroflow.tracking.start_run`, which scrubs and clips them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from kedroflow.config import normalize_run_params
from kedroflow.params import flatten
from kedroflow.secrets import REDACTED, compile_patterns, matches

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline

    from kedroflow.config import KedroflowConfig

_RUNNER_NAME = re.compile(r"(\w*Runner)\b")
#: run_params key -> the ``kedro run`` option that sets it, in the command's order.
_FILTER_OPTIONS = {
    "tags": "--tags",
    "node_names": "--nodes",
    "from_nodes": "--from-nodes",
    "to_nodes": "--to-nodes",
    "from_inputs": "--from-inputs",
    "to_outputs": "--to-outputs",
    "namespaces": "--namespaces",
}


def pipeline_names(run_params: Mapping[str, Any]) -> list[str]:
    """Selected pipelines of normalised ``run_params`` (none means ``__default__``)."""
    return list(run_params["pipeline_names"] or ["__default__"])


def git_info(project_path: Path) -> tuple[dict[str, str], str | None]:
    """Tags describing the project's git state, and the uncommitted diff if dirty."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", str(project_path), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}, None
    tags = {"git.commit": commit.strip(), "mlflow.source.git.commit": commit.strip()}
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    if branch:
        tags["git.branch"] = branch.strip()
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = bool(status and status.strip())
    tags["git.dirty"] = str(dirty).lower()
    diff = git("diff", "HEAD") if dirty else None
    return tags, diff


def runner_name(runner: Any) -> str:
    """``SequentialRunner`` from Kedro's ``run_params['runner']`` string."""
    match = _RUNNER_NAME.search(str(runner))
    return match.group(1) if match else "SequentialRunner"


def filter_options(run_params: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """The node filters of ``run_params`` as (``kedro run`` option, values)."""
    used = []
    for key, option in _FILTER_OPTIONS.items():
        values = run_params.get(key)
        if values:
            items = [values] if isinstance(values, str) else list(values)
            used.append((option, [str(v) for v in items]))
    return used


def kedro_command(run_params: Mapping[str, Any], redact: Iterable[str] = ()) -> str:
    """A ``kedro run`` command line that reproduces the run (redacted ``--params``).

    The run's secrets are scrubbed from it with the other tags, by the tracking layer.
    """
    run_params = normalize_run_params(run_params)
    patterns = compile_patterns(redact)
    parts = ["kedro", "run"]

    def add(option: str, values: list[str]) -> None:
        if values:
            parts.extend([option, shlex.quote(",".join(values))])

    add(
        run_params.get("_pipeline_option", "--pipelines"),
        [str(name) for name in run_params["pipeline_names"] or []],
    )
    if run_params.get("env"):
        parts.extend(["--env", shlex.quote(str(run_params["env"]))])
    runner = runner_name(run_params.get("runner"))
    if runner != "SequentialRunner":
        parts.extend(["--runner", runner])
    for option, values in filter_options(run_params):
        add(option, values)
    load_versions = run_params.get("load_versions") or {}
    add("--load-versions", [f"{k}:{v}" for k, v in load_versions.items()])
    runtime = flatten(dict(run_params.get("runtime_params") or {}), "", ".", True)
    add(
        "--params",
        [
            f"{k.lstrip('.')}={REDACTED if matches(k, patterns) else v}"
            for k, v in runtime.items()
        ],
    )
    if run_params.get("only_missing_outputs"):
        parts.append("--only-missing-outputs")
    return " ".join(parts)


def run_tags(
    config: KedroflowConfig,
    run_params: Mapping[str, Any],
    *,
    env: str | None,
    project_path: Path,
) -> dict[str, Any]:
    """The tags of a run: how to reproduce it, what ran it, the user's static tags.

    ``run_params`` are normalised; ``env`` is the run's Kedro environment (the
    context's when ``--env`` was not given).
    """
    import kedro
    import mlflow

    names = pipeline_names(run_params)
    package = _package_name()
    tags: dict[str, Any] = {
        "kedro.pipeline": "+".join(names),
        "kedro.env": run_params.get("env") or env or _default_env(),
        "kedro.session_id": run_params.get("run_id"),
        "kedro.runner": runner_name(run_params.get("runner")),
        "kedro.command": kedro_command(run_params, config.tracking.params.redact),
        "kedro.project": project_path.name,
        "kedro.version": kedro.__version__,
        "kedroflow.version": _kedroflow_version(),
        "kedroflow.mlflow_version": mlflow.__version__,
        "kedro.package": package,
    }
    tags.update({str(k): v for k, v in config.tracking.run.tags.items()})
    return {k: v for k, v in tags.items() if v is not None}


def consumed_params(
    pipeline: Pipeline, catalog: CatalogProtocol, run_params: dict[str, Any]
) -> dict[str, Any]:
    """Parameters the selected pipeline consumes, plus ``--params`` overrides."""
    from kedro.io.core import is_parameter

    from kedroflow.params import parameter_name

    params: dict[str, Any] = {}
    for name in sorted(filter(is_parameter, pipeline.all_inputs())):
        if name == "parameters":
            params.update(catalog[name].load())
        else:
            params[parameter_name(name)] = catalog[name].load()
    runtime = run_params.get("runtime_params") or {}
    for dotted, value in flatten(dict(runtime), "", ".", True).items():
        key = dotted.lstrip(".")
        parts = key.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        if not prefixes & params.keys():
            params[key] = value
    return params


def _kedroflow_version() -> str:
    # read from the imported package: `from kedroflow import __version__` would make
    # this module import up the layers (the package's lazy names point at io, hooks)
    return str(sys.modules["kedroflow"].__version__)


def _package_name() -> str | None:
    from kedro.framework.project import PACKAGE_NAME

    return PACKAGE_NAME


def _default_env() -> str:
    from kedro.framework.project import settings

    args = getattr(settings, "CONFIG_LOADER_ARGS", {}) or {}
    return str(args.get("default_run_env", "local"))
