"""Node outputs logged as run artifacts by the rules of ``tracking.artifacts.auto_log``.

Before the first node, :func:`plan` matches each output of the pipeline against the
rules once (first match wins) and keeps, for each selected output, what finding the
files of its save needs: the local path, the version the run writes (versioned) or the
filename suffix (partitioned), and the size cap. Outputs kept in memory, outputs
written elsewhere than the local disk, and kedroflow's own datasets (an
``MlflowArtifactDataset`` logs itself) are never selected. The plan is a small value:
forked ParallelRunner workers inherit it, spawned ones read it from the environment.

After Kedro saves a selected output (hook ``after_dataset_saved``),
:meth:`AutoLog.saved` hands the files this save wrote to the run's outbox, which
uploads them under ``<dataset name>/`` while the pipeline goes on: the files as
written, never loaded.
What is over the cap is not copied: a run tag records its path, digest and size.
A ParallelRunner worker uploads in its own process right after the save (a worker may
end before the run does, so nothing waits there); the other workers go on meanwhile.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractVersionedDataset
from mlflow.exceptions import MlflowException

from kedroflow.config import AUTO_LOG_ENV
from kedroflow.errors import TrackingError
from kedroflow.io._base import MlflowBaseDataset
from kedroflow.io.lineage import file_digest
from kedroflow.outbox import upload_files

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from kedro.io import AbstractDataset
    from kedro.pipeline import Pipeline

    from kedroflow.config import ArtifactRule
    from kedroflow.tracking import CurrentRun

logger = logging.getLogger(__name__)

#: Run tag prefix of an output over its size cap: ``kedroflow.auto_log.<name>``.
CAPPED_TAG = "kedroflow.auto_log."
_MB = 1024 * 1024


@dataclass(frozen=True)
class Selected:
    """An output a rule selected: where its save writes, and its size cap."""

    name: str
    path: str  # the local file or folder of the dataset (unversioned)
    rule: int  # 1-based, as messages name it
    max_size_mb: float
    version: str | None = None  # versioned: the version this run writes
    suffix: str | None = None  # partitioned: the partitions' filename suffix

    def written(self, data: Any) -> list[tuple[str, str | None]]:
        """(local path, artifact folder) of what the save of ``data`` wrote."""
        root = self.path.rstrip("/")
        if self.suffix is not None and isinstance(data, dict):
            out: list[tuple[str, str | None]] = []
            for partition in sorted(str(key) for key in data):
                sub = PurePosixPath(partition).parent
                folder = self.name if str(sub) == "." else f"{self.name}/{sub}"
                out.append((f"{root}/{partition}{self.suffix}", folder))
            return out
        if self.version is not None:
            return [(f"{root}/{self.version}/{PurePosixPath(root).name}", self.name)]
        return [(root, self.name)]


def plan(rules: Sequence[ArtifactRule], pipeline: Pipeline, catalog: Any) -> AutoLog:
    """The outputs of ``pipeline`` the ``rules`` select.

    Cheap when nothing matches: names, node tags and the layers of the catalog's
    configuration are matched first; a dataset is built only for a selected output.
    """
    if not rules:
        return AutoLog({})
    tags = _node_tags(pipeline)
    needs_layer = any(rule.layers is not None for rule in rules)
    selected: dict[str, Selected] = {}
    for name in sorted(pipeline.all_outputs()):
        layer = _layer(catalog, name) if needs_layer else None
        index = first_match(rules, name, layer, tags.get(name, set()))
        if index is None:
            continue
        dataset = _persisted(catalog, name)
        found = _select(name, dataset, index, rules[index]) if dataset else None
        if found is not None:
            selected[name] = found
    if selected:
        logger.info(
            "kedroflow: auto_log logs %d output(s) as artifacts: %s",
            len(selected),
            ", ".join(selected),
        )
    return AutoLog(selected)


def first_match(
    rules: Sequence[ArtifactRule], name: str, layer: str | None, tags: set[str]
) -> int | None:
    """Index of the first rule selecting the output ``name``, None when none does."""
    for index, rule in enumerate(rules):
        if rule.datasets is not None and not _glob(name, rule.datasets):
            continue
        if rule.layers is not None and layer not in rule.layers:
            continue
        if rule.tags is not None and not tags.intersection(rule.tags):
            continue
        if not _glob(name, rule.exclude):
            return index
    return None


class AutoLog:
    """The outputs the rules selected for one run, and how to log what a save wrote."""

    def __init__(self, selected: Mapping[str, Selected]) -> None:
        self.selected = dict(selected)

    def __bool__(self) -> bool:
        return bool(self.selected)

    def saved(self, name: str, data: Any, run: CurrentRun) -> None:
        """Kedro saved ``name``: log what it wrote (or record it, over the cap).

        Each output is its own upload task, handed over as soon as it is saved: the
        pool's threads upload several outputs at once while the next nodes run.
        """
        selected = self.selected.get(name)
        if selected is None:
            return
        written = selected.written(data)
        files = [(local, folder) for local, folder in written if os.path.exists(local)]
        if not files:
            return
        size = sum(_size(Path(local)) for local, _ in files)
        source = f"'{name}' (auto_log rule {selected.rule})"
        try:
            if size > selected.max_size_mb * _MB:
                _record_capped(selected, files, size, run)
            elif run.outbox is not None:  # in the background (a forked worker: now)
                run.outbox.upload(source, files)
            else:  # a spawned ParallelRunner worker: now
                upload_files(run.stores.client, run.run_id, files)
        except (MlflowException, OSError, ValueError) as error:
            # a worker's upload happens here: OSError from a local store or the network
            reason = (
                getattr(error, "message", None) or f"{type(error).__name__}: {error}"
            )
            raise TrackingError(
                f"kedroflow could not log the output {source} to MLflow run "
                f"{run.run_id}: {reason}. Its files are still on disk "
                f"({files[0][0]}); check the tracking server and the artifact store."
            ) from error

    def to_env(self) -> str:
        """The selection as JSON, for :data:`AUTO_LOG_ENV`."""
        return json.dumps([asdict(item) for item in self.selected.values()])

    @classmethod
    def from_env(cls) -> AutoLog:
        """The selection a spawned worker's parent exported (empty when none was)."""
        raw = os.environ.get(AUTO_LOG_ENV)
        items = json.loads(raw) if raw else []
        return cls({item["name"]: Selected(**item) for item in items})


def _record_capped(
    selected: Selected, files: list[tuple[str, str | None]], size: int, run: CurrentRun
) -> None:
    """Lineage instead of a copy: path, digest and size in one run tag."""
    root = files[0][0] if len(files) == 1 else selected.path
    digest, _ = file_digest(Path(root))
    record = {
        "logged": False,
        "reason": f"{size:,} bytes > max_size_mb {selected.max_size_mb:g} (auto_log "
        f"rule {selected.rule}): path, digest and size recorded, file not copied",
        "path": root,
        "digest": digest,
        "size_bytes": size,
    }
    logger.info("kedroflow: '%s' not logged: %s", selected.name, record["reason"])
    text = run.secrets.scrub(json.dumps(record))  # what leaves the process is scrubbed
    run.stores.client.set_tag(run.run_id, f"{CAPPED_TAG}{selected.name}", text)


def _select(
    name: str, dataset: AbstractDataset, index: int, rule: ArtifactRule
) -> Selected | None:
    """What logging the saves of ``dataset`` needs; None for a non-local one."""
    if isinstance(dataset, MlflowBaseDataset):
        return None  # logs itself (artifact) or is no file (metrics, models)
    partitioned = hasattr(dataset, "_filename_suffix") and hasattr(dataset, "_path")
    path = _local_path(dataset)
    if path is None:
        logger.info("kedroflow: auto_log skips '%s': not a local file", name)
        return None
    version = None
    if isinstance(dataset, AbstractVersionedDataset) and not partitioned:
        version = dataset.resolve_save_version()
    return Selected(
        name=name,
        path=path,
        rule=index + 1,
        max_size_mb=rule.max_size_mb,
        version=version,
        suffix=str(getattr(dataset, "_filename_suffix", "")) if partitioned else None,
    )


def _local_path(dataset: AbstractDataset) -> str | None:
    """The local file or folder ``dataset`` writes, None when it writes elsewhere."""
    try:
        description = dataset._describe()
    except Exception:
        return None
    location = description.get("filepath") or description.get("path")
    if not location:
        return None
    location = str(location)
    protocol = str(description.get("protocol") or "")
    if "://" in location:
        protocol, _, location = location.partition("://")
    if protocol not in ("", "file", "local"):
        return None
    return location


def _persisted(catalog: Any, name: str) -> AbstractDataset | None:
    """The catalog entry of ``name`` when it persists its data, else None."""
    try:
        # None for a runtime MemoryDataset; built once, the instance the runner saves
        # with (get_type first would resolve the entry's class a second time)
        dataset: AbstractDataset | None = catalog.get(name)
    except Exception as error:
        logger.warning("kedroflow: auto_log cannot inspect '%s': %s", name, error)
        return None
    if dataset is None or getattr(type(dataset), "_EPHEMERAL", False):
        return None
    return dataset


def _layer(catalog: Any, name: str) -> str | None:
    """The ``metadata.kedro-viz.layer`` of a catalog entry, from its configuration.

    An entry added in code (no configuration) is built to read its ``metadata``.
    """
    resolver = getattr(catalog, "config_resolver", None)
    try:
        config = resolver.config.get(name) if resolver is not None else None
        if config is None and resolver and resolver.match_dataset_pattern(name):
            config = resolver.resolve_pattern(name)
        if config is not None:
            metadata = config.get("metadata")
        elif catalog.get_type(name) is not None:
            metadata = getattr(catalog.get(name), "metadata", None)
        else:
            return None
    except Exception:  # an entry that cannot be read is not selected by its layer
        return None
    viz = metadata.get("kedro-viz") if isinstance(metadata, dict) else None
    layer = viz.get("layer") if isinstance(viz, dict) else None
    return str(layer) if layer is not None else None


def _node_tags(pipeline: Pipeline) -> dict[str, set[str]]:
    tags: dict[str, set[str]] = {}
    for node in pipeline.nodes:
        for output in node.outputs:
            tags.setdefault(output, set()).update(node.tags)
    return tags


def _glob(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
