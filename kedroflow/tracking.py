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
Datasets ask :func:`current_run`, never the hook.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from kedroflow import shared_runs
from kedroflow import stores as stores_
from kedroflow.config import TRACKING_OFF_ENV, WORKER_RUN_ENV
from kedroflow.errors import TrackingError
from kedroflow.interrupts import ExitGuard
from kedroflow.outbox import Outbox, undelivered_error
from kedroflow.owner import owner_tags
from kedroflow.params import clip, prepare_params
from kedroflow.secrets import LogScrubber, Secrets, scrub_exception
from kedroflow.stores import Stores, limits

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from kedroflow.config import KedroflowConfig, ParamsConfig
    from kedroflow.outbox import Undelivered
    from kedroflow.stores import SavedEnvironment

logger = logging.getLogger(__name__)

#: Exported while a run is open so that spawned ParallelRunner workers find it and
#: its stores (they inherit the environment, not this module's state).
RUN_ID_ENV_VAR = WORKER_RUN_ENV
TRACKING_URI_ENV_VAR = "_KEDROFLOW_TRACKING_URI"
REGISTRY_URI_ENV_VAR = "_KEDROFLOW_REGISTRY_URI"
ERROR_TAG = "kedroflow.error"
_KILLED = RunStatus.to_string(RunStatus.KILLED)


@dataclass(frozen=True)
class CurrentRun:
    """The run datasets log to: its id, the stores it lives in, its secrets.

    ``outbox`` buffers the run's metrics and uploads its artifacts in the background;
    None for a run this process did not open (a spawned worker, a notebook's run).
    """

    run_id: str
    stores: Stores
    secrets: Secrets = field(default_factory=Secrets)
    outbox: Outbox | None = field(default=None, compare=False)


@dataclass(frozen=True)
class _OpenRun:
    current: CurrentRun
    owned: bool  # started (or joined) by kedroflow: kedroflow ends it
    pushed: bool  # pushed on MLflow's fluent stack in this thread
    saved: SavedEnvironment  # the environment before the run, restored at its end
    participant: shared_runs.Participant | None = None  # shared run: this process


class _RunState:
    """The only mutable state of kedroflow: the run open in this process."""

    def __init__(self) -> None:
        self.run: _OpenRun | None = None
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
    return CurrentRun(active.info.run_id, Stores.from_mlflow()) if active else None


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
            opening = _Opening(config, project_path, secrets, saved, part)
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
    the datasets; after a failure, the node's error stays the one raised.
    """
    with _STATE.lock:
        run = _STATE.run
        if run is None:
            return
        undelivered = _deliver(run.current)
        failure: TrackingError | None = None
        if undelivered and status == "FINISHED":
            failure = undelivered_error(run.current.run_id, undelivered)
            status, error = "FAILED", failure
        if error is not None:
            _record_error(run.current, error)
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


def _deliver(run: CurrentRun) -> list[Undelivered]:
    """Send what the run's outbox holds; log what could not be sent."""
    undelivered = run.outbox.close() if run.outbox is not None else []
    for item in undelivered:
        logger.error(
            "kedroflow: could not log %s to MLflow run %s",
            run.secrets.scrub(str(item)),
            run.run_id,
        )
    return undelivered


def _record_error(run: CurrentRun, error: BaseException) -> None:
    scrub_exception(error, run.secrets)  # Kedro prints it after the run
    message = run.secrets.scrub(f"{type(error).__name__}: {error}")
    try:
        run.stores.client.set_tag(
            run.run_id, ERROR_TAG, clip(message, limits().tag_value)
        )
    except MlflowException:
        logger.exception("Could not record the error on MLflow run %s", run.run_id)


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


def log_tags(run: CurrentRun, tags: Mapping[str, Any]) -> None:
    """Set several tags (scrubbed, clipped) in as few requests as MLflow allows."""
    if tags:
        values = tag_values(tags, run.secrets)
        run.stores.client.log_batch(
            run.run_id, tags=[RunTag(k, v) for k, v in values.items()]
        )


def log_text(run: CurrentRun, text: str, artifact_file: str) -> None:
    """Store ``text`` (scrubbed) as an artifact of the run."""
    run.stores.client.log_text(run.run_id, run.secrets.scrub(text), artifact_file)


def tag_values(tags: Mapping[str, Any], secrets: Secrets) -> dict[str, str]:
    """Tag values as MLflow takes them: text, secrets scrubbed, clipped to its limit."""
    limit = limits().tag_value
    return {str(k): clip(secrets.scrub(str(v)), limit) for k, v in tags.items()}


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


# ------------------------------------------------------------------- opening a run


@dataclass(frozen=True)
class _Opening:
    """What opening a run needs besides its stores, name and tags."""

    config: KedroflowConfig
    project_path: Path
    secrets: Secrets
    saved: SavedEnvironment
    part: str = ""

    def open_or_go_offline(
        self, stores: Stores, run_name: str, tags: dict[str, Any]
    ) -> _OpenRun:
        """Open the run; when the server is unreachable, fail fast or go offline."""
        server = self.config.server
        reachable = False
        try:
            stores_.probe(stores, server.connect_timeout)
            reachable = True
            return self.open(stores, run_name, tags)
        except TrackingError as exc:
            if reachable:  # the server answered and refused (an unknown run id...)
                raise
            error: Exception = exc
        except (MlflowException, OSError) as exc:
            if not stores.remote:
                raise
            error = exc
        if server.on_tracking_error == "fail":
            raise TrackingError(
                f"Cannot track this run on the MLflow server {stores.display_uri}: "
                f"{error}\nStart the server or fix server.mlflow_tracking_uri in "
                "mlflow.yml; if it is only slow, raise server.connect_timeout / "
                "server.request_timeout; to run anyway and upload the tracking later "
                "with `kedro mlflow sync`, set server.on_tracking_error: continue."
            ) from None
        resume_id = self.config.tracking.run.id or os.environ.get("MLFLOW_RUN_ID")
        if resume_id:
            raise TrackingError(
                f"The MLflow server {stores.display_uri} cannot be reached ({error}), "
                f"and this kedro run joins its run '{resume_id}' (tracking.run.id or "
                "MLFLOW_RUN_ID), which only exists on that server: it cannot be joined "
                "offline. Start the server and run again, or unset the run id to "
                "track this run offline and upload it with `kedro mlflow sync`."
            ) from None
        offline = stores_.offline_stores(self.project_path, stores)
        logger.warning(
            "kedroflow: the MLflow server %s cannot be reached (%s). Tracking this run "
            "in the local offline store %s instead; upload it later with `kedro mlflow "
            "sync`.",
            stores.display_uri,
            error,
            offline.tracking_uri,
        )
        offline.activate()
        # what `kedro mlflow sync` needs: the server meant, and whether we still run
        tags = {**tags, stores_.OFFLINE_FOR_TAG: offline.offline_for, **owner_tags()}
        return self.open(offline, run_name, tags)

    def open(self, stores: Stores, run_name: str, tags: dict[str, Any]) -> _OpenRun:
        """Join the shared run, reuse the active one, or start a new run."""
        run_config = self.config.tracking.run
        active = mlflow.active_run()
        values = tag_values(tags, self.secrets)
        resume_id = run_config.id or os.environ.get("MLFLOW_RUN_ID") or None
        if resume_id:
            joined, participant = shared_runs.join(
                stores.client, resume_id, values, part=self.part,
                lease=run_config.participant_lease,
            )  # fmt: skip
            current = self._current(stores, joined.info, history_known=False)
            return _OpenRun(current, True, False, self.saved, participant)
        if active is not None:
            # kedro-mlflow's contract (tracking.run.nested true or false): a run active
            # before the session (an orchestrator's, a notebook's) is reused, left open
            current = self._current(stores, active.info, history_known=False)
            log_tags(current, values)
            return _OpenRun(current, False, False, self.saved)
        experiment_id = stores_.experiment_id(self.config, self.project_path, stores)
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=self.secrets.scrub(run_name),
            tags=values,
        )
        current = self._current(stores, run.info, history_known=True)
        return _OpenRun(current, True, True, self.saved)

    def _current(self, stores: Stores, info: Any, *, history_known: bool) -> CurrentRun:
        """The run value, with an outbox that uploads straight to its artifact root.

        ``history_known``: the run was just created, so it has no metric yet.
        """
        outbox = Outbox(
            stores.client,
            info.run_id,
            artifact_uri=info.artifact_uri,
            history_known=history_known,
        )
        return CurrentRun(info.run_id, stores, self.secrets, outbox)


# ------------------------------------------------------------------- closing a run


def _close(status: str) -> None:
    """Close the open run (lock held by the caller)."""
    run = _STATE.run
    if run is None:
        return
    _STATE.run = None
    _unexport()
    _STATE.guard.disarm()
    run_id, client = run.current.run_id, run.current.stores.client
    try:
        if run.participant:
            shared_runs.leave(run.participant, status)
        elif run.owned:
            active = mlflow.active_run()
            if run.pushed and active is not None and active.info.run_id == run_id:
                mlflow.end_run(status)
            else:
                client.set_terminated(run_id, status)
    finally:
        run.saved.restore()
        _STATE.logs.uninstall()


def _export(run: CurrentRun) -> None:
    os.environ[RUN_ID_ENV_VAR] = run.run_id
    os.environ[TRACKING_URI_ENV_VAR] = run.stores.tracking_uri
    os.environ[REGISTRY_URI_ENV_VAR] = run.stores.registry_uri or ""


def _unexport() -> None:
    for name in (RUN_ID_ENV_VAR, TRACKING_URI_ENV_VAR, REGISTRY_URI_ENV_VAR):
        os.environ.pop(name, None)


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
