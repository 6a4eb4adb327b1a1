"""The run of a ``kedro run``: open, join, close, interrupted runs, the log helpers.

:func:`start_run` resolves the stores once (:mod:`kedroflow.stores`), finds or
creates the experiment, opens the run with its tags in one request (or joins a shared
run, or goes offline when the server is down) and returns a :class:`CurrentRun`:
the run id, its :class:`~kedroflow.stores.Stores`, its
:class:`~kedroflow.secrets.Secrets` and its :class:`~kedroflow.outbox.Outbox` (the
metrics and uploads the datasets hand over). :func:`end_run` delivers what the outbox
holds, closes the run and restores the process environment; so do Ctrl-C and SIGTERM
(:class:`~kedroflow.interrupts.ExitGuard`). Everything logs through an explicit run id,
because MLflow's active run is thread-local and ThreadRunner/ParallelRunner workers do
not see it.
Datasets ask :func:`current_run`, never the hook. With ``on_tracking_error:
continue``, a server lost mid-run hands the rest of the run to an offline continuation
(:mod:`kedroflow.failover`, :func:`fail_over`, :func:`node_done`), which becomes the
open run.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from kedroflow import failover, shared_runs
from kedroflow import stores as stores_
from kedroflow.config import TRACKING_OFF_ENV, WORKER_RUN_ENV
from kedroflow.interrupts import ExitGuard
from kedroflow.opening import CurrentRun, Opening, OpenRun, log_tags, tag_values
from kedroflow.outbox import undelivered_error
from kedroflow.params import clip, prepare_params
from kedroflow.secrets import LogScrubber, Secrets, scrub_exception
from kedroflow.stores import Stores, limits

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from kedroflow.config import KedroflowConfig, ParamsConfig
    from kedroflow.errors import TrackingError
    from kedroflow.outbox import Undelivered

# CurrentRun, log_tags and tag_values live with the opening of a run (kedroflow.opening)
# and stay importable from here, where datasets and the hook have always found them.
__all__ = [
    "ERROR_TAG",
    "REGISTRY_URI_ENV_VAR",
    "RUN_ID_ENV_VAR",
    "TRACKING_URI_ENV_VAR",
    "CurrentRun",
    "current_run",
    "current_stores",
    "end_run",
    "fail_over",
    "log_params",
    "log_tags",
    "log_text",
    "node_done",
    "reset",
    "start_run",
    "tag_values",
    "tracking_disabled",
    "use_in_thread",
]

logger = logging.getLogger(__name__)

#: Exported while a run is open so that spawned ParallelRunner workers find it and
#: its stores (they inherit the environment, not this module's state).
RUN_ID_ENV_VAR = WORKER_RUN_ENV
TRACKING_URI_ENV_VAR = "_KEDROFLOW_TRACKING_URI"
REGISTRY_URI_ENV_VAR = "_KEDROFLOW_REGISTRY_URI"
ERROR_TAG = "kedroflow.error"
_KILLED = RunStatus.to_string(RunStatus.KILLED)


class _RunState:
    """The only mutable state of kedroflow: the run open in this process."""

    def __init__(self) -> None:
        self.run: OpenRun | None = None
        #: A thread's own current run while a node of a child run runs or saves in it
        #: (``tracking.run.child_runs``, kedroflow.child_runs).
        self.thread = threading.local()
        #: The secrets of the run being opened, before ``run`` exists.
        self.opening = Secrets()
        self.lock = threading.Lock()
        #: Ends a run left open at interpreter exit (Ctrl-C, SIGTERM).
        self.guard = ExitGuard(self._end_interrupted_run)
        #: Every log record is scrubbed while a run is open (or opening).
        self.logs = LogScrubber(self.secrets)

    def _end_interrupted_run(self) -> None:
        """At interpreter exit, a run still open was interrupted (Ctrl-C, SIGTERM).

        Its outbox delivers what the nodes saved, then the run is marked KILLED.
        """
        try:
            with self.lock:
                if self.run is not None:
                    _deliver(self.run.current)
                    _close(_KILLED)
        except Exception:  # noqa: S110 - never fail at interpreter exit
            pass

    def secrets(self) -> Secrets:
        """The secrets of the open run (or of the run being opened)."""
        run = self.run
        return run.current.secrets if run is not None else self.opening


_STATE = _RunState()


def current_run() -> CurrentRun | None:
    """The MLflow run of the ``kedro run`` in progress, in any thread or worker process.

    Falls back to MLflow's own active run, on MLflow's stores, so that datasets also
    work in a notebook where the user called ``mlflow.start_run()``.
    """
    child: CurrentRun | None = getattr(_STATE.thread, "run", None)
    if child is not None:
        return child
    run = _STATE.run
    if run is not None:
        return run.current
    run_id = os.environ.get(RUN_ID_ENV_VAR)
    if run_id:  # a spawned ParallelRunner worker: its parent exported run and stores
        uri = os.environ.get(TRACKING_URI_ENV_VAR)
        registry = os.environ.get(REGISTRY_URI_ENV_VAR) or None
        stores = Stores(uri, registry) if uri else Stores.from_mlflow()
        return CurrentRun(run_id, stores)
    active = mlflow.active_run()
    if active is None:
        return None
    info = active.info
    return CurrentRun(
        info.run_id, Stores.from_mlflow(), experiment_id=info.experiment_id
    )


def use_in_thread(run: CurrentRun | None) -> None:
    """Make ``run`` (a child run) this thread's current run; None: the run's own."""
    _STATE.thread.run = run


def current_stores() -> Stores:
    """The stores of the current run, else MLflow's (a dataset given a ``run_id``)."""
    run = current_run()
    return run.stores if run is not None else Stores.from_mlflow()


def tracking_disabled() -> bool:
    """True while a ``kedro run`` runs with tracking switched off: datasets do not log.

    Read from the environment, so that ParallelRunner workers (forked or spawned)
    and runs switched off before kedroflow.tracking was imported see it.
    """
    return bool(os.environ.get(TRACKING_OFF_ENV))


def start_run(
    config: KedroflowConfig,
    *,
    project_path: Path,
    run_name: str,
    tags: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
    context: Any = None,
    secrets: Secrets | None = None,
    part: str = "",
) -> CurrentRun:
    """Configure MLflow and open the run of this ``kedro run``.

    ``credentials`` is the project's ``credentials.yml``: the ``server.credentials``
    entry is given to the MLflow client for the run, and no value of it (nor of
    ``secrets``: the redacted parameters) ever reaches MLflow, the logs or the
    console. On failure the environment is restored. ``part`` names the node
    selection when the run is shared (:func:`kedroflow.shared_runs.part_id`).
    """
    with _STATE.lock:
        if _STATE.run is not None:
            logger.warning(
                "MLflow run %s of a previous kedro run was still open: it is marked "
                "KILLED (the previous run was interrupted).",
                _STATE.run.current.run_id,
            )
            _deliver(_STATE.run.current)
            _close(_KILLED)
        os.environ.pop(TRACKING_OFF_ENV, None)
        secrets = Secrets.from_tree(credentials or {}) | (secrets or Secrets())
        _STATE.opening = secrets
        _STATE.logs.install()
        saved = stores_.save_environment(config, credentials)
        try:
            stores = stores_.configure(config, project_path, credentials, context)
            opening = Opening(config, project_path, secrets, saved, part)
            run = opening.open_or_go_offline(stores, run_name, dict(tags))
        except BaseException:
            saved.restore()
            _STATE.logs.uninstall()
            raise
        _STATE.run = run
        _export(run.current)
        _STATE.guard.arm()
        return run.current


def end_run(status: str = "FINISHED", error: BaseException | None = None) -> None:
    """Close the run with ``status``; record ``error`` on it when there is one.

    The outbox delivers what it holds first. When some of it cannot be delivered, a
    run that would have FINISHED is FAILED instead and :class:`TrackingError` names
    the datasets; after a failure, the node's error stays the one raised. With
    ``on_tracking_error: continue``, what a lost server (or a refusing artifact
    store) did not take is kept offline instead (:mod:`kedroflow.failover`).
    """
    with _STATE.lock:
        run = _STATE.run
        if run is None:
            return
        undelivered = run.current.outbox.close() if run.current.outbox else []
        if undelivered and run.plan is not None:
            run, undelivered = failover.keep_offline(run, undelivered, status)
            _adopt(run)
        _log_undelivered(run.current, undelivered)
        failure: TrackingError | None = None
        if undelivered and status == "FINISHED":
            failure = undelivered_error(run.current.run_id, undelivered)
            status, error = "FAILED", failure
        if error is not None:
            _record_error(run, error)
        if error is None or error is failure:
            _close(status)
        else:  # the node's error is the one the user sees, not the server's
            try:
                _close(status)
            except Exception as closing:
                logger.error(
                    "kedroflow: could not close MLflow run %s (%s): %s",
                    run.current.run_id,
                    status,
                    run.current.secrets.scrub(str(closing)),
                )
    if failure is not None:
        raise failure


def fail_over() -> CurrentRun | None:
    """After a tracking request failed during the run: the run continued offline if
    its server is lost (``on_tracking_error: continue``), else None."""
    with _STATE.lock:
        run = _STATE.run
        switched = failover.switch_if_lost(run) if run is not None else None
        if switched is not None:
            _adopt(switched)
        return switched.current if switched is not None else None


def node_done() -> None:
    """After a node: send the metrics that waited too long; after a send that
    failed (once per failure), the rest goes offline if the server is lost."""
    run = _STATE.run
    outbox = run.current.outbox if run is not None else None
    if run is None or outbox is None or not outbox.active:
        return  # not the process that opened the run (a forked worker)
    outbox.flush_if_due()
    if run.plan is not None and outbox.new_failure():
        fail_over()


def _adopt(run: OpenRun) -> None:
    """``run`` (an offline continuation) becomes the open run (lock held)."""
    if run is not _STATE.run:
        _STATE.run = run
        _export(run.current)


def _deliver(run: CurrentRun) -> list[Undelivered]:
    """Send what the run's outbox holds; log what could not be sent."""
    undelivered = run.outbox.close() if run.outbox is not None else []
    _log_undelivered(run, undelivered)
    return undelivered


def _log_undelivered(run: CurrentRun, undelivered: list[Undelivered]) -> None:
    for item in undelivered:
        logger.error(
            "kedroflow: could not log %s to MLflow run %s",
            run.secrets.scrub(str(item)),
            run.run_id,
        )


def _record_error(run: OpenRun, error: BaseException) -> None:
    secrets = run.current.secrets
    scrub_exception(error, secrets)  # Kedro prints it after the run
    message = clip(
        secrets.scrub(f"{type(error).__name__}: {error}"), limits().tag_value
    )

    def record(open_run: OpenRun) -> None:
        current = open_run.current
        current.stores.client.set_tag(current.run_id, ERROR_TAG, message)

    try:
        failover.attempt(run, record, _adopt)
    except MlflowException:
        logger.exception(
            "Could not record the error on MLflow run %s", run.current.run_id
        )


def log_params(
    run: CurrentRun, params: Mapping[str, Any], settings: ParamsConfig
) -> CurrentRun:
    """Log ``params`` in batches of at most 100 per request.

    Returns ``run`` with the redacted parameter values added to its secrets (they are
    scrubbed from everything logged afterwards, by datasets too).
    """
    prepared = prepare_params(params, settings, limits=limits(), secrets=run.secrets)
    if prepared.values or prepared.tags:
        run.stores.client.log_batch(
            run.run_id,
            params=[Param(key, value) for key, value in prepared.values.items()],
            tags=[RunTag(key, value) for key, value in prepared.tags.items()],
        )
    updated = replace(run, secrets=run.secrets | prepared.secrets)
    with _STATE.lock:
        if _STATE.run is not None and _STATE.run.current.run_id == run.run_id:
            _STATE.run = replace(_STATE.run, current=updated)
    return updated


def log_text(run: CurrentRun, text: str, artifact_file: str) -> None:
    """Store ``text`` (scrubbed) as an artifact of the run."""
    run.stores.client.log_text(run.run_id, run.secrets.scrub(text), artifact_file)


def reset() -> None:
    """Forget all run state without calling MLflow (tests and interactive sessions)."""
    with _STATE.lock:
        if _STATE.run is not None:
            _STATE.run.saved.restore()
        _STATE.run = None
        _STATE.guard.disarm()
        _STATE.logs.uninstall()
        os.environ.pop(TRACKING_OFF_ENV, None)
        _unexport()


# ------------------------------------------------------------------- closing a run


def _close(status: str) -> None:
    """Close the open run (lock held by the caller); offline if its server is lost."""
    run = _STATE.run
    if run is None:
        return
    try:
        failover.attempt(run, lambda open_run: _end(open_run, status), _adopt)
    finally:
        _STATE.run = None
        _unexport()
        _STATE.guard.disarm()
        run.saved.restore()
        _STATE.logs.uninstall()


def _end(run: OpenRun, status: str) -> None:
    run_id, client = run.current.run_id, run.current.stores.client
    if run.participant:
        shared_runs.leave(run.participant, status)
    elif run.owned:
        active = mlflow.active_run()
        if run.pushed and active is not None and active.info.run_id == run_id:
            mlflow.end_run(status)
        else:
            client.set_terminated(run_id, status)


def _export(run: CurrentRun) -> None:
    os.environ[RUN_ID_ENV_VAR] = run.run_id
    os.environ[TRACKING_URI_ENV_VAR] = run.stores.tracking_uri
    os.environ[REGISTRY_URI_ENV_VAR] = run.stores.registry_uri or ""


def _unexport() -> None:
    for name in (RUN_ID_ENV_VAR, TRACKING_URI_ENV_VAR, REGISTRY_URI_ENV_VAR):
        os.environ.pop(name, None)
