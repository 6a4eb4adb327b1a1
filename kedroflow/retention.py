"""Retention: delete the old runs of an experiment, never what the registry relies on.

``kedro mlflow prune --keep-last 20 --older-than 30d`` selects the finished runs of the
project's experiment that are neither among the 20 newest nor younger than 30 days,
and keeps every run behind a registered model version (hence behind every alias).
It deletes them with their logged models, then runs MLflow's own garbage collection
(``mlflow gc``) on those ids so that their rows and artifacts are really gone, and
reports the bytes freed. On a remote tracking server only the deletion is possible
from here: the server's administrator runs ``mlflow gc`` to free the space.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from kedroflow.errors import KedroflowError

if TYPE_CHECKING:
    from mlflow import MlflowClient

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PAGE = 1000
_KILO = 1000


@dataclass
class PrunePlan:
    """What a prune deletes (or would delete) and what it keeps on purpose."""

    runs: list[Any] = field(default_factory=list)  # mlflow Run entities
    models: list[Any] = field(default_factory=list)  # their LoggedModel entities
    protected: list[str] = field(default_factory=list)  # run ids kept for the registry
    bytes: int = 0  # artifact bytes of the selected runs and models (local stores)
    freed: int = 0  # bytes that are gone after the prune


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``1d12h``, ``90m``.

    Examples:
        >>> parse_duration("1d12h")
        129600.0
    """
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(a + b for a, b in parts) != text.strip():
        raise KedroflowError(
            f"--older-than '{text}' is not a duration: write it as a number followed "
            "by d, h, m or s, e.g. 30d, 12h or 1d12h."
        )
    return float(sum(float(n) * _SECONDS[unit] for n, unit in parts))


def plan(
    client: MlflowClient,
    experiment_id: str,
    *,
    keep_last: int | None,
    older_than: float | None,
) -> PrunePlan:
    """Select the runs to delete (newest first); nothing is changed."""
    if keep_last is None and older_than is None:
        raise KedroflowError(
            "Say which runs to delete: --keep-last N (keep the N newest), "
            "--older-than 30d (delete runs started before), or both."
        )
    runs = _all_runs(client, experiment_id)
    registered = _registered_run_ids(client)
    cutoff = time.time() * 1000 - older_than * 1000 if older_than is not None else None
    result = PrunePlan()
    for rank, run in enumerate(runs):
        if keep_last is not None and rank < keep_last:
            continue
        if cutoff is not None and run.info.start_time >= cutoff:
            continue
        if run.info.status in ("RUNNING", "SCHEDULED"):
            continue
        if run.info.run_id in registered:
            result.protected.append(run.info.run_id)
            continue
        result.runs.append(run)
    selected = {r.info.run_id for r in result.runs}
    result.models = [
        m
        for m in client.search_logged_models([experiment_id], max_results=_PAGE)
        if m.source_run_id in selected
    ]
    result.bytes = sum(_size(r.info.artifact_uri) for r in result.runs) + sum(
        _size(m.artifact_location) for m in result.models
    )
    return result


def prune(
    stores: Any,
    experiment_id: str,
    *,
    keep_last: int | None,
    older_than: str | None,
    dry_run: bool,
) -> list[str]:
    """``kedro mlflow prune``: plan, delete (unless ``dry_run``), report the lines."""
    seconds = parse_duration(older_than) if older_than else None
    client = stores.client
    selected = plan(client, experiment_id, keep_last=keep_last, older_than=seconds)
    collected = None if dry_run else execute(client, selected, stores.tracking_uri)
    return report(selected, collected)


def execute(client: MlflowClient, selected: PrunePlan, tracking_uri: str) -> bool:
    """Delete the planned runs and models; collect garbage when the store is local.

    Returns whether MLflow's garbage collection ran (False on a remote server).
    """
    locations = [r.info.artifact_uri for r in selected.runs]
    locations += [m.artifact_location for m in selected.models]
    before = sum(_size(loc) for loc in locations)
    for model in selected.models:
        client.delete_logged_model(model.model_id)
    for run in selected.runs:
        client.delete_run(run.info.run_id)
    collected = False
    if not tracking_uri.startswith(("http://", "https://", "databricks")):
        _gc(tracking_uri, selected)
        collected = True
    selected.freed = before - sum(_size(loc) for loc in locations)
    return collected


def report(selected: PrunePlan, collected: bool | None) -> list[str]:
    """What ``kedro mlflow prune`` prints; ``collected`` is None for a dry run."""
    verb = "would delete" if collected is None else "deleted"
    lines = [
        f"{verb} run {r.info.run_id} '{r.info.run_name}' ({r.info.status}, started "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(r.info.start_time / 1000))})"
        for r in selected.runs
    ]
    if selected.protected:
        lines.append(
            f"kept {len(selected.protected)} run(s) behind registered model versions"
        )
    counts = f"{len(selected.runs)} run(s) and {len(selected.models)} logged model(s)"
    if collected is None:
        lines.append(f"Dry run: {counts}, {human(selected.bytes)} of artifacts.")
    elif collected:
        lines.append(f"Deleted {counts}; freed {human(selected.freed)} of artifacts.")
    else:
        lines.append(
            f"Deleted {counts}. The store is a server: run `mlflow gc` there to free "
            f"their {human(selected.bytes)}."
        )
    return lines


def _gc(tracking_uri: str, selected: PrunePlan) -> None:
    """MLflow's ``gc`` on exactly the deleted ids, in this process."""
    from mlflow.cli import gc
    from mlflow.store.artifact.artifact_repository_registry import (
        get_artifact_repository,
    )

    args = ["--backend-store-uri", tracking_uri]
    if selected.runs:
        args += ["--run-ids", ",".join(r.info.run_id for r in selected.runs)]
    options = {p.name for p in gc.params}
    if selected.models and "logged_model_ids" in options:
        args += ["--logged-model-ids", ",".join(m.model_id for m in selected.models)]
    elif selected.models:  # MLflow < 3.x gc does not know logged models
        for model in selected.models:
            repository = get_artifact_repository(model.artifact_location)
            repository.delete_artifacts()  # type: ignore[no-untyped-call]
    if "--run-ids" in args or "--logged-model-ids" in args:
        gc.main(args, standalone_mode=False)


def _all_runs(client: MlflowClient, experiment_id: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=_PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _registered_run_ids(client: MlflowClient) -> set[str]:
    """Runs behind any registered model version (every alias points at one)."""
    found: set[str] = set()
    token = None
    while True:
        page = client.search_model_versions(max_results=_PAGE, page_token=token)
        found.update(v.run_id for v in page if v.run_id)
        token = page.token
        if not token:
            return found


def _size(uri: str | None) -> int:
    """Bytes under a local artifact location (0 for remote ones, or when gone)."""
    if not uri:
        return 0
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return 0
    root = Path(unquote(parsed.path))
    if root.is_file():
        return root.stat().st_size
    total = 0
    for folder, _, names in os.walk(root):
        total += sum((Path(folder) / n).stat().st_size for n in names)
    return total


def human(size: int) -> str:
    """``1.2 MB``.

    Examples:
        >>> human(1_234_567)
        '1.2 MB'
    """
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < _KILO or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= _KILO
    return f"{value:.1f} GB"  # pragma: no cover
