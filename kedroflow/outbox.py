"""What a run sends off the critical path: metrics in batches, artifacts in a pool.

One :class:`Outbox` per run, held by the run value (``kedroflow.tracking.CurrentRun``):

* **Metrics** saved by the datasets are buffered and sent in one ``log_batch`` when the
  run ends (MLflow's client splits it in requests of 1,000 metrics), or earlier when
  they have waited :data:`FLUSH_SECONDS` or fill a batch, and before anything reads
  the run's metrics back. Each metric keeps the timestamp and step of its save, and
  the batch keeps the order of the saves, so the run holds what unbuffered saves
  would have written.
* **Steps without a read**: the outbox knows the last step of every key logged in this
  run, so a metric dataset chooses its step without asking the server. The history is
  read (once per key) only for a run that existed before: a resumed or shared run, or
  an MLflow run the user opened.
* **Artifacts** are uploaded by a pool of :data:`UPLOAD_WORKERS` threads while the
  pipeline goes on, straight to the run's artifact repository (no lookup of the run).
  A local artifact root is written at once with ``copyfile``
  (:mod:`kedroflow.local_artifacts`): a kernel copy costs less than waking a thread.

:meth:`Outbox.close` sends what is left, waits for every upload and returns what could
not be delivered, each naming the dataset it came from; the run's end decides what a
failure means. A process that did not open the outbox (a forked ParallelRunner worker
inherits a copy) sends everything at once instead: nothing waits in a process that
may end before the run does.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedroflow.errors import TrackingError
from kedroflow.local_artifacts import LocalArtifacts, local_artifact_root

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

#: A buffered metric is sent at the next save or node end after waiting this long, so
#: a long training shows its metrics in the UI while it runs.
FLUSH_SECONDS = 10.0
#: MLflow's ``MAX_METRICS_PER_BATCH``: a full batch is sent at once.
BATCH_SIZE = 1000
#: Concurrent artifact uploads of one run.
UPLOAD_WORKERS = 4


@dataclass(frozen=True)
class Undelivered:
    """Something a dataset saved that did not reach the run, and why."""

    source: str  # the dataset, as its errors name it: "'scores' (MlflowMetricDataset)"
    what: str  # "3 metrics", "artifact reports/a.json"
    error: BaseException
    metrics: tuple[Metric, ...] = ()
    files: tuple[tuple[str, str | None], ...] = ()

    def __str__(self) -> str:
        return (
            f"{self.what} of {self.source}: {type(self.error).__name__}: {self.error}"
        )


@dataclass
class _Buffer:
    """Metrics waiting to be sent, with the dataset each came from."""

    metrics: list[Metric] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    since: float | None = None  # monotonic time of the oldest buffered metric


class Outbox:
    """The metric buffer and upload pool of one run; see the module docstring.

    Thread-safe: ThreadRunner nodes and async saves share it.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        artifact_uri: str | None = None,
        history_known: bool = False,
    ) -> None:
        """Create the outbox of ``run_id``.

        Args:
            client: The client of the run's stores.
            run_id: The run everything goes to.
            artifact_uri: The run's artifact root, when known: uploads then go straight
                to it instead of looking the run up.
            history_known: True for a run this process just created: it has no metric
                before this outbox, so no history is ever read.
        """
        self.run_id = run_id
        self._client = client
        self._artifact_uri = artifact_uri
        self._history_known = history_known
        self._pid = os.getpid()
        self._lock = threading.Lock()  # buffer, steps, uploads, failures
        self._send_lock = threading.Lock()  # one metric batch in flight: order kept
        self._buffer = _Buffer()
        self._steps: dict[str, int | None] = {}
        self._pool: ThreadPoolExecutor | None = None  # started by the first upload
        self._uploads: list[Future[None]] = []
        self._failures: list[Undelivered] = []
        self._seen = 0  # failures already reported by new_failure()
        self._repository: Any = None
        self._closed = False

    def successor(
        self, client: MlflowClient, run_id: str, artifact_uri: str | None
    ) -> Outbox:
        """The outbox of the run that continues this one (kedroflow.failover).

        It knows the steps logged here, so metric datasets go on where they were.
        """
        outbox = Outbox(
            client,
            run_id,
            artifact_uri=artifact_uri,
            history_known=self._history_known,
        )
        with self._lock:
            outbox._steps = dict(self._steps)
        return outbox

    def new_failure(self) -> bool:
        """True if a send or an upload failed since the last call (each failure is
        kept for :meth:`close`): the run then checks whether its server is lost."""
        with self._lock:
            seen, self._seen = self._seen, len(self._failures)
            return self._seen > seen

    @property
    def active(self) -> bool:
        """False in a process that did not create it (a forked worker) or once closed."""
        return os.getpid() == self._pid and not self._closed

    # ------------------------------------------------------------------ metrics

    def last_step(self, key: str) -> int | None:
        """The last step of ``key`` in the run (None: never logged).

        The history is read at most once per key, and only for a run that existed
        before this outbox; inactive (another process logs too), it is read each time.
        """
        active = self.active
        with self._lock:
            if active and (key in self._steps or self._history_known):
                return self._steps.get(key)
        history = self._client.get_metric_history(self.run_id, key)
        last = max((m.step for m in history), default=None)
        with self._lock:
            known = self._steps.get(key)
            if last is not None and (known is None or last > known):
                self._steps[key] = last
            elif key not in self._steps:
                self._steps[key] = None
            return self._steps[key]

    def log_metrics(self, source: str, metrics: list[Metric]) -> None:
        """Buffer ``metrics`` saved by the dataset ``source`` (sent now if inactive)."""
        if not metrics:
            return
        with self._lock:
            for metric in metrics:
                known = self._steps.get(metric.key)
                self._steps[metric.key] = (
                    metric.step if known is None else max(known, metric.step)
                )
        if not self.active:
            self._client.log_batch(self.run_id, metrics=metrics)
            return
        with self._lock:
            buffer = self._buffer
            buffer.metrics.extend(metrics)
            buffer.sources.extend([source] * len(metrics))
            buffer.since = buffer.since or time.monotonic()
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Send the buffer in the background if it is full or has waited long enough."""
        if not self.active:
            return
        with self._lock:
            since, size = self._buffer.since, len(self._buffer.metrics)
        if since is not None and (
            size >= BATCH_SIZE or time.monotonic() - since >= FLUSH_SECONDS
        ):
            self._submit(self.flush_metrics)

    def flush_metrics(self, tags: Sequence[RunTag] = ()) -> None:
        """Send every buffered metric now, in one batch (failures kept for ``close``).

        ``tags`` go in the same request (the run's lineage tags at its end: one request
        less); if it fails, the metrics are kept and the error is raised for the tags.
        """
        with self._send_lock:
            with self._lock:
                buffer, self._buffer = self._buffer, _Buffer()
            if not buffer.metrics and not tags:
                return
            try:
                self._client.log_batch(
                    self.run_id, metrics=buffer.metrics, tags=list(tags)
                )
            except Exception as error:  # kept, reported by close(): nothing is lost
                self._fail_metrics(buffer, error)
                if tags:
                    raise

    def _fail_metrics(self, buffer: _Buffer, error: Exception) -> None:
        by_source: dict[str, list[Metric]] = {}
        for source, metric in zip(buffer.sources, buffer.metrics, strict=True):
            by_source.setdefault(source, []).append(metric)
        with self._lock:
            for source, metrics in by_source.items():
                what = f"{len(metrics)} metric{'s' * (len(metrics) > 1)}"
                self._failures.append(
                    Undelivered(source, what, error, metrics=tuple(metrics))
                )

    # ---------------------------------------------------------------- artifacts

    def upload(self, source: str, files: list[tuple[str, str | None]]) -> None:
        """Upload ``(local path, artifact folder)`` pairs, in the background if active.

        Inactive (another process, or closed), the upload happens now and raises.
        """
        if not self.active:
            self._upload(files)
            return

        def upload() -> None:
            try:
                self._upload(files)
            except Exception as error:  # reported by close(), with the dataset
                names = ", ".join(
                    _artifact_name(local, folder) for local, folder in files
                )
                with self._lock:
                    self._failures.append(
                        Undelivered(
                            source, f"artifact {names}", error, files=tuple(files)
                        )
                    )

        if isinstance(self._repository_or_none(), LocalArtifacts):
            upload()  # a kernel copy on this disk: quicker than waking a pool thread
        else:
            self._submit(upload)

    def _upload(self, files: list[tuple[str, str | None]]) -> None:
        upload_files(self._client, self.run_id, files, self._repository_or_none())

    def _repository_or_none(self) -> Any:
        """The run's artifact repository, built from its URI without a request."""
        if self._artifact_uri is None:
            return None
        with self._lock:
            if self._repository is None:
                self._repository = _artifact_repository(
                    self._artifact_uri, self._client.tracking_uri
                )
            return self._repository

    # ------------------------------------------------------------------ closing

    def _submit(self, task: Any) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    UPLOAD_WORKERS, thread_name_prefix="kedroflow-outbox"
                )
            self._uploads.append(self._pool.submit(task))

    def close(self) -> list[Undelivered]:
        """Send what is buffered, wait for every upload, return what was not delivered.

        Idempotent; after it, the outbox sends everything at once.
        """
        if os.getpid() != self._pid:
            return []
        self.flush_metrics()
        while True:
            with self._lock:
                pending, self._uploads = self._uploads, []
            if not pending:
                break
            for future in pending:
                future.exception()  # waits; errors are recorded by the task itself
        self.flush_metrics()  # a background flush may have raced the first one
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            failures, self._failures = self._failures, []
        if pool is not None:
            pool.shutdown(wait=True)
        return failures


def upload_files(
    client: MlflowClient,
    run_id: str,
    files: list[tuple[str, str | None]],
    repository: Any = None,
) -> None:
    """Upload ``(local file or folder, artifact folder)`` pairs to the run, in order.

    Through ``repository`` (the run's artifact repository) when given, else through
    the client (which looks the run up once per process to find its artifact root).
    """
    for local, folder in files:
        if Path(local).is_dir():
            target = _artifact_name(local, folder)
            if repository is None:
                client.log_artifacts(run_id, local, target)
            else:
                repository.log_artifacts(local, target)
        elif repository is None:
            client.log_artifact(run_id, local, folder)
        else:
            repository.log_artifact(local, folder)


def _artifact_name(local: str, folder: str | None) -> str:
    name = Path(local).name
    return f"{folder}/{name}" if folder else name


def _artifact_repository(artifact_uri: str, tracking_uri: str) -> Any:
    root = local_artifact_root(artifact_uri)
    if root is not None:  # a folder on this disk: copyfile, not MLflow's Python loop
        return LocalArtifacts(root)
    from mlflow.store.artifact.artifact_repository_registry import (
        get_artifact_repository,
    )

    # MLflow 3.0 takes the URI only (and reads the tracking URI from its globals)
    if "tracking_uri" in inspect.signature(get_artifact_repository).parameters:
        return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
    return get_artifact_repository(artifact_uri)


def undelivered_error(run_id: str, undelivered: list[Undelivered]) -> TrackingError:
    """The error that fails a run whose datasets' output did not all reach it."""
    items = "; ".join(str(item) for item in undelivered)
    return TrackingError(
        f"The pipeline ran, but MLflow run {run_id} misses what these datasets saved: "
        f"{items}. Their files are still on disk: check the tracking server and the "
        "artifact store, then run again."
    )
