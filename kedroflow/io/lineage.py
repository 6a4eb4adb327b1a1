"""Data lineage: the persisted datasets a run read, recorded as MLflow dataset inputs.

Each input carries its catalog name, Kedro type, source path or URI, a digest and,
for CSV and Parquet files, a schema. Nothing is uploaded and big data is never read:
the digest of a file larger than :data:`CONTENT_HASH_LIMIT` is made of its size and
modification time, a schema comes from the first rows of a CSV or a Parquet footer.
All inputs of a run are sent in one ``log_inputs`` request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, AbstractVersionedDataset
from kedro.io.core import is_parameter
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException

from kedroflow.io.artifact_dataset import MlflowArtifactDataset
from kedroflow.io.registry_dataset import MlflowModelRegistryDataset

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kedroflow.secrets import Secrets
    from kedroflow.tracking import CurrentRun

logger = logging.getLogger(__name__)

#: Files up to this size get a content hash; larger ones a size+mtime digest.
CONTENT_HASH_LIMIT = 8 * 1024 * 1024
_MAX_FILES = 10_000  # files stat-ed in a folder input
_SCHEMA_ROWS = 100  # CSV rows read to infer a schema
_CSV_ARGS = ("sep", "delimiter", "header", "encoding", "decimal", "skiprows")


def _scrubbed(dataset: Dataset, secrets: Secrets) -> Dataset:
    return Dataset(
        name=secrets.scrub(dataset.name),
        digest=dataset.digest,
        source_type=dataset.source_type,
        source=secrets.scrub(dataset.source),
        schema=dataset.schema,
        profile=secrets.scrub(dataset.profile or ""),
    )


def describe_input(name: str, dataset: AbstractDataset) -> Dataset:
    """The MLflow ``Dataset`` entity of one catalog entry, without loading it."""
    kind = f"{type(dataset).__module__}.{type(dataset).__name__}"
    profile: dict[str, Any] = {"kedro_type": kind}
    if isinstance(dataset, MlflowModelRegistryDataset):
        uri = dataset.model_uri
        return _entity(name, _text_digest(uri), "mlflow_registry", uri, None, profile)
    inner = dataset
    if isinstance(dataset, MlflowArtifactDataset):
        inner = dataset.dataset
        run_id = dataset.run_id
        if run_id:
            uri = f"runs:/{run_id}/{dataset.artifact_name()}"
            return _entity(name, _text_digest(uri), "mlflow_run", uri, None, profile)
    description = _describe(inner)
    location = description.get("filepath") or description.get("path")
    if not location:
        text = json.dumps(description, default=str, sort_keys=True)
        return _entity(name, _text_digest(text), "kedro", kind, None, profile)
    location = str(location)
    protocol, _, rest = location.partition("://") if "://" in location else ("", "", "")
    described = str(description.get("protocol") or "")
    if not protocol and described not in ("", "file", "local"):
        protocol, rest = described, location.lstrip("/")
        location = f"{protocol}://{rest}"
    if protocol and protocol not in ("file", "local"):
        return _entity(name, _text_digest(location), protocol, location, None, profile)
    path = Path(rest or location)
    path = _loaded_version(inner, path)
    digest, stats = file_digest(path)
    profile.update(stats)
    schema = _schema(path, type(inner).__name__, description.get("load_args") or {})
    return _entity(name, digest, "local", path.as_posix(), schema, profile)


def file_digest(path: Path) -> tuple[str, dict[str, Any]]:
    """A short digest of a file or folder and how it was computed, reading little.

    Small files are hashed by content; large files and folders by size and
    modification time of each file (``stat`` only).
    """
    sha = hashlib.sha256()
    if path.is_file():
        stat = path.stat()
        if stat.st_size <= CONTENT_HASH_LIMIT:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(block)
            method = "content-sha256"
        else:
            sha.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            method = "size-mtime"
        return sha.hexdigest()[:16], {"size_bytes": stat.st_size, "digest": method}
    if path.is_dir():
        size = files = 0
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for item in sorted(names):
                stat = (Path(root) / item).stat()
                relative = (Path(root) / item).relative_to(path).as_posix()
                sha.update(f"{relative}:{stat.st_size}:{stat.st_mtime_ns};".encode())
                size, files = size + stat.st_size, files + 1
                if files >= _MAX_FILES:
                    break
            if files >= _MAX_FILES:
                break
        return sha.hexdigest()[:16], {
            "size_bytes": size,
            "files": files,
            "digest": "size-mtime",
        }
    return _text_digest(path.as_posix()), {"digest": "missing"}


def _in_memory(dataset: AbstractDataset) -> bool:
    from kedro.io import MemoryDataset, SharedMemoryDataset

    ephemeral = getattr(type(dataset), "_EPHEMERAL", False)
    return ephemeral or isinstance(dataset, MemoryDataset | SharedMemoryDataset)


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _describe(dataset: AbstractDataset) -> dict[str, Any]:
    try:
        description = dataset._describe()
    except Exception:
        return {}
    return description if isinstance(description, dict) else {}


def _loaded_version(dataset: AbstractDataset, path: Path) -> Path:
    """For a versioned dataset, the version a load reads (else ``path``)."""
    if not isinstance(dataset, AbstractVersionedDataset):
        return path
    try:
        version = dataset.resolve_load_version()
    except Exception:
        return path
    return path / version / path.name if version else path


def _schema(path: Path, kind: str, load_args: dict[str, Any]) -> str | None:
    """MLflow column-spec schema of a CSV (first rows) or Parquet file (footer)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        return None
    try:
        import pandas as pd

        if "CSV" in kind or suffix in (".csv", ".tsv"):
            args = {k: v for k, v in load_args.items() if k in _CSV_ARGS}
            frame = pd.read_csv(path, nrows=_SCHEMA_ROWS, **args)
        elif "Parquet" in kind or suffix == ".parquet":
            import pyarrow.parquet as pq

            frame = pq.read_schema(path).empty_table().to_pandas()
        else:
            return None
        from mlflow.models import infer_signature

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inputs = infer_signature(frame).inputs
        return json.dumps({"mlflow_colspec": inputs.to_dict()}) if inputs else None
    except Exception as error:
        logger.debug("kedroflow: no schema for %s: %s", path, error)
        return None


def _entity(  # noqa: PLR0917
    name: str,
    digest: str,
    source_type: str,
    uri: str,
    schema: str | None,
    profile: dict[str, Any],
) -> Dataset:
    return Dataset(
        name=name[:500],
        digest=digest,
        source_type=source_type,
        source=json.dumps({"uri": uri}),
        schema=schema,
        profile=json.dumps(profile, default=str),
    )


# ------------------------------------------------------------- lineage across runs

#: Run tag ``kedroflow.output.<digest>`` = dataset name: the run wrote that data.
OUTPUT_TAG = "kedroflow.output."
#: Dataset input tag: the run that wrote the data this run read.
PRODUCED_BY = "kedroflow.produced_by"
_UNTRACEABLE = ("kedro", "mlflow_run", "mlflow_registry")  # no file to follow


def record_lineage(
    catalog: Any,
    read: Iterable[str],
    written: Iterable[str],
    *,
    run: CurrentRun,
    context: str,
    strict: bool = False,
) -> list[DatasetInput]:
    """Record what a run read and wrote, linking each input to the run that wrote it.

    ``read`` are the datasets the run's nodes load (free inputs and persisted
    intermediates), ``written`` those they save. Each persisted one is described
    once (its digest computed once even when written then read back). Written data
    becomes a ``kedroflow.output.<digest>`` run tag; each input gets the context tag
    (``training`` or ``inference``) and, when a run of the experiment wrote the same
    data, ``kedroflow.produced_by`` (one search per input, none for data this run
    wrote itself). Returns the inputs logged. A failed request is logged as a
    warning (lineage never fails a run), or raised if ``strict``. The output tags go
    in one request with the metrics the run's outbox still holds: if it fails, those
    metrics stay undelivered and the run's end reports them, as for any metric send.
    """
    from mlflow.entities import RunTag

    client, run_id = run.stores.client, run.run_id
    read, written = set(read), set(written)
    # a source URI may carry user-info or a signed-URL token, a name a secret
    described = {
        name: _scrubbed(dataset, run.secrets)
        for name, dataset in _described(catalog, sorted(read | written)).items()
    }
    outputs = {
        f"{OUTPUT_TAG}{d.digest}": name
        for name, d in described.items()
        if name in written and _traceable(d)
    }
    inputs = _inputs(run, described, read, written, context)
    try:
        tags = [RunTag(k, v) for k, v in outputs.items()]
        if run.outbox is not None and run.outbox.active:
            # with the metrics still buffered: one request for both
            run.outbox.flush_metrics(tags)
        elif tags:
            client.log_batch(run_id, tags=tags)  # MLflow splits it in batches of 100
        if inputs:
            client.log_inputs(run_id, datasets=inputs)
    except MlflowException as error:  # lineage never fails a run
        if strict:
            raise
        logger.warning(
            "kedroflow: could not record the run's lineage: %s", error.message
        )
    return inputs


def _inputs(
    run: CurrentRun,
    described: dict[str, Dataset],
    read: set[str],
    written: set[str],
    context: str,
) -> list[DatasetInput]:
    """The run's inputs, each tagged with its context and the run that produced it."""
    inputs = []
    experiment = run.experiment_id  # else looked up once, on the first search
    for name, dataset in described.items():
        if name not in read:
            continue
        tags = [InputTag("mlflow.data.context", context)]
        producer = run.run_id if name in written else None
        if producer is None and _traceable(dataset):
            if experiment is None:
                experiment = run.stores.client.get_run(run.run_id).info.experiment_id
            producer = _producer(run, experiment, dataset.digest)
        if producer:
            tags.append(InputTag(PRODUCED_BY, producer))
        inputs.append(DatasetInput(dataset, tags))
    return inputs


def _described(catalog: Any, names: Iterable[str]) -> dict[str, Dataset]:
    """The MLflow dataset entity of each persisted dataset of ``names``."""
    found: dict[str, Dataset] = {}
    for name in names:
        if is_parameter(name):
            continue
        try:
            if catalog.get_type(name) is None:
                continue
            dataset = catalog.get(name)
            if dataset is None or _in_memory(dataset) or _is_metric(dataset):
                continue
            found[name] = describe_input(name, dataset)
        except Exception as error:  # lineage never fails a run
            logger.warning("kedroflow: no lineage for dataset '%s': %s", name, error)
    return found


def _is_metric(dataset: AbstractDataset) -> bool:
    """Metrics are the run's own values in MLflow, not data it reads or writes."""
    from kedroflow.io.metric_dataset import MetricDatasetBase

    return isinstance(dataset, MetricDatasetBase)


def _traceable(dataset: Dataset) -> bool:
    if dataset.source_type in _UNTRACEABLE:
        return False
    return '"digest": "missing"' not in (dataset.profile or "")


def _producer(run: CurrentRun, experiment: str, digest: str) -> str | None:
    """The latest other run of ``experiment`` that wrote data with ``digest``."""
    found = run.stores.client.search_runs(
        [experiment],
        filter_string=f"tags.`{OUTPUT_TAG}{digest}` LIKE '%'",
        max_results=2,
        order_by=["attributes.start_time DESC"],
    )
    others = [r.info.run_id for r in found if r.info.run_id != run.run_id]
    return others[0] if others else None
