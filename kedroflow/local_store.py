"""The project's local MLflow store: the files git must not track, and the UI on it.

``kedro mlflow init`` adds the store's files to ``.gitignore``; ``kedro mlflow ui``
starts MLflow's UI on it sized for one person: one server worker and no background job
runner, where MLflow's defaults (four workers and the job runner) start a dozen
processes and take several times as long to answer (``benchmarks/bench_ui.py``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

#: What kedroflow writes in a project: the default store, the artifacts next to it,
#: the offline store.
IGNORED = ("mlflow.db", "mlartifacts/", "mlflow-offline/")
#: MLflow's switch of the job runner its server starts beside the UI.
JOB_RUNNER_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def ignore_stores(project_path: Path) -> list[str]:
    """Add the missing entries of :data:`IGNORED` to the project's ``.gitignore``."""
    gitignore = project_path / ".gitignore"
    text = gitignore.read_text() if gitignore.exists() else ""
    present = {line.strip().lstrip("/") for line in text.splitlines()}
    missing = [name for name in IGNORED if name not in present]
    if missing:
        lines = text.splitlines()
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["# MLflow stores written by kedroflow", *missing]
        gitignore.write_text("\n".join(lines) + "\n")
    return missing


def ui_command(
    tracking_uri: str, registry_uri: str | None, *, host: str, port: int, workers: int
) -> list[str]:
    """The ``mlflow ui`` command line on the project's stores."""
    command = [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    if registry_uri:
        command += ["--registry-store-uri", registry_uri]
    return command
