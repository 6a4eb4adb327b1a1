"""The trail of a model or run, back to raw data: ``kedro mlflow lineage``.

Reads what kedroflow records (see :mod:`kedroflow.io.lineage`): a registered version
or logged model leads to the run that logged it; a run lists its persisted dataset
inputs, each with the run that produced the file it read (``kedroflow.produced_by``);
that run is followed in turn, down to data no tracked run produced.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from kedroflow.errors import KedroflowError

if TYPE_CHECKING:
    from mlflow import MlflowClient

PRODUCED_BY = "kedroflow.produced_by"
_MAX_DEPTH = 12
#: Contexts of the data a run read (kedroflow's); others are MLflow evaluation inputs.
_DATA_CONTEXTS = ("training", "inference", "input")


def trail(client: MlflowClient, target: str) -> list[str]:
    """Lines describing ``target`` (a run id or a ``models:/`` URI) and its trail."""
    from mlflow.exceptions import MlflowException

    try:
        lines, run_id = _start(client, target)
        if run_id:
            _walk(client, run_id, 0, lines, set())
    except MlflowException as exc:
        raise KedroflowError(
            f"Cannot follow the lineage of '{target}': {exc.message}. Give a run id or "
            "a models:/<name>/<version>, models:/<name>@<alias> or models:/<model_id> "
            "URI of the project's store."
        ) from None
    return lines


def _start(client: MlflowClient, target: str) -> tuple[list[str], str | None]:
    if not target.startswith("models:/"):
        return [], target
    ref = target[len("models:/") :].strip("/")
    if ref.startswith("m-") and "/" not in ref and "@" not in ref:
        model = client.get_logged_model(ref)
        return [f"{target}: logged model {model.name} ({model.model_id})"], (
            model.source_run_id
        )
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    elif "/" in ref:
        name, number = ref.rsplit("/", 1)
        version = client.get_model_version(name, number)
    else:
        raise KedroflowError(
            f"'{target}' names no version: use models:/{ref}/<version> or "
            f"models:/{ref}@<alias>."
        )
    gate = (version.tags or {}).get("kedroflow.promotion")
    line = f"{target}: version {version.version} of '{version.name}'"
    if getattr(version, "model_id", None):
        line += f", logged model {version.model_id}"
    if gate:
        line += f" [{gate}]"
    return [line], version.run_id


def _walk(
    client: MlflowClient, run_id: str, depth: int, lines: list[str], seen: set[str]
) -> None:
    pad = "  " * depth
    run = client.get_run(run_id)
    started = dt.datetime.fromtimestamp(run.info.start_time / 1000).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    commit = run.data.tags.get("git.commit", "")[:7]
    lines.append(
        f"{pad}run {run_id} '{run.info.run_name}' {run.info.status} {started}"
        + (f" git {commit}" if commit else "")
    )
    if run_id in seen or depth >= _MAX_DEPTH:
        lines.append(f"{pad}  (already shown above)")
        return
    seen.add(run_id)
    inputs = run.inputs.dataset_inputs if run.inputs else []
    data = [i for i in inputs if _context(i) in _DATA_CONTEXTS]
    evaluated = sorted(i.dataset.name for i in inputs if i not in data)
    if not data:
        lines.append(f"{pad}  (no persisted dataset input recorded)")
    if evaluated:
        lines.append(f"{pad}  evaluated on {', '.join(evaluated)}")
    for item in sorted(data, key=lambda i: i.dataset.name):
        tags = {t.key: t.value for t in item.tags}
        context = _context(item)
        lines.append(
            f"{pad}  <- {item.dataset.name} ({context}) {_source(item.dataset)} "
            f"digest {item.dataset.digest}"
        )
        producer = tags.get(PRODUCED_BY)
        if producer == run_id:
            lines.append(f"{pad}     written by this run")
        elif producer:
            _walk(client, producer, depth + 2, lines, seen)
        else:
            lines.append(f"{pad}     no tracked run produced it (raw data)")


def _context(item: Any) -> str:
    tags = {t.key: t.value for t in item.tags}
    return str(tags.get("mlflow.data.context", "input"))


def _source(dataset: Any) -> str:
    import json

    try:
        return str(json.loads(dataset.source)["uri"])
    except (ValueError, KeyError, TypeError):
        return str(dataset.source_type)
