"""The rest of a run kept in the offline store when its server is lost mid-run.

With ``server.on_tracking_error: continue``, a run whose server cannot be reached when
it starts is tracked offline from the start (:mod:`kedroflow.tracking`). This module is
for a server lost *during* the run, and for an upload the artifact store refuses:

* :func:`server_lost` tells a lost server (no answer to ``/health`` within
  ``connect_timeout``) from a request the server answered and refused: only a lost
  server moves the rest of the run offline;
* :func:`open_continuation` opens, in the project's offline store, the run that holds
  the rest. It is mapped to the server run it continues the way ``kedro mlflow sync``
  maps an upload it has started (``kedroflow.synced_to``, ``kedroflow.sync_state:
  uploading``; :mod:`kedroflow.replay`), so sync merges it into that same run. It also
  records the server it was meant for, the run's tags (its Kedro environment) and its
  process, like any offline run. Its outbox knows the steps already logged, so metric
  datasets go on where they were;
* :func:`redeliver` hands it what the server did not acknowledge: the metrics and the
  files (still on disk) the old outbox could not deliver;
* :func:`forget_active_run` takes the server run off MLflow's active-run stack without
  a request (ending it would need the server).

:func:`switch` does all of it and returns the :class:`~kedroflow.opening.OpenRun` now
open; :func:`attempt` and :func:`keep_offline` switch when a request fails or what was
saved was not delivered. :mod:`kedroflow.tracking` adopts the run they return.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from kedroflow import stores as stores_
from kedroflow.errors import TrackingError
from kedroflow.offline_tags import (
    CONTINUES_TAG,
    OFFLINE_FOR_TAG,
    PENDING_TAG,
    STATE_TAG,
    SYNCED_TAG,
    UPLOADING,
)
from kedroflow.opening import CurrentRun, OpenRun
from kedroflow.outbox import Outbox
from kedroflow.owner import owner_tags

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from kedroflow.opening import Plan
    from kedroflow.outbox import Undelivered
    from kedroflow.stores import Stores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Continuation:
    """The offline run that holds the rest of a server run."""

    stores: Stores
    run_id: str
    outbox: Outbox
    experiment_id: str


def switch(run: OpenRun, undelivered: list[Undelivered]) -> OpenRun:
    """The rest of ``run`` goes to an offline continuation: the run now open.

    ``undelivered``: what its outbox already gave back; the rest it holds is taken too.
    """
    plan = run.plan
    assert plan is not None  # noqa: S101 - only runs with a plan fail over
    old = run.current
    pending = undelivered + (old.outbox.close() if old.outbox is not None else [])
    continuation = open_continuation(plan, old.stores, old.run_id, old.outbox)
    redeliver(continuation.outbox, pending)
    if run.pushed:
        forget_active_run(old.run_id)
    logger.warning(lost_message(plan, old.stores, old.run_id, continuation.run_id))
    current = CurrentRun(
        continuation.run_id, continuation.stores, old.secrets, continuation.outbox,
        continuation.experiment_id,
    )  # fmt: skip
    return OpenRun(current, owned=True, pushed=False, saved=run.saved)


def switch_if_lost(run: OpenRun) -> OpenRun | None:
    """:func:`switch` if ``run`` can fail over and its server is lost, else None."""
    if run.plan is None or not server_lost(run.current.stores, run.plan.timeout):
        return None
    return switch(run, [])


def attempt(
    run: OpenRun,
    action: Callable[[OpenRun], None],
    adopt: Callable[[OpenRun], None],
) -> None:
    """``action`` on ``run``; if it fails because the server is lost, on the offline
    continuation, which ``adopt`` makes the open run first. Other errors are raised."""
    try:
        action(run)
        return
    except Exception:
        switched = switch_if_lost(run)
        if switched is None:
            raise
    adopt(switched)
    action(switched)


def keep_offline(
    run: OpenRun, undelivered: list[Undelivered], status: str
) -> tuple[OpenRun, list[Undelivered]]:
    """What the server did not take, kept offline: all of the rest if the server is
    lost, else the uploads it refused. Returns the run now open and what is left."""
    plan = run.plan
    assert plan is not None  # noqa: S101 - checked by the caller
    if server_lost(run.current.stores, plan.timeout):
        switched = switch(run, undelivered)
        outbox = switched.current.outbox
        return switched, outbox.close() if outbox is not None else []
    files = [item for item in undelivered if item.files and not item.metrics]
    if not files:
        return run, undelivered
    current = run.current
    left = keep_files(plan, current.stores, current.run_id, files, status)
    return run, [item for item in undelivered if item not in files] + left


def server_lost(server: Stores, timeout: float) -> bool:
    """True when ``server`` does not answer ``/health`` within ``timeout`` seconds."""
    try:
        stores_.probe(server, timeout)
    except TrackingError:
        return True
    return False


def open_continuation(
    plan: Plan, server: Stores, server_run_id: str, outbox: Outbox | None
) -> Continuation:
    """Open the offline run that continues ``server_run_id``; see the module doc."""
    offline = stores_.offline_stores(plan.project_path, server)
    client = offline.client
    experiment = _experiment_id(offline, plan.config.tracking.experiment.name)
    tags = {
        **plan.tags,
        OFFLINE_FOR_TAG: offline.offline_for or "",
        **owner_tags(),
        SYNCED_TAG: server_run_id,
        STATE_TAG: UPLOADING,
        CONTINUES_TAG: server_run_id,
    }
    info = client.create_run(experiment, run_name=plan.run_name, tags=tags).info
    if outbox is not None:
        successor = outbox.successor(client, info.run_id, info.artifact_uri)
    else:
        successor = Outbox(client, info.run_id, artifact_uri=info.artifact_uri)
    return Continuation(offline, info.run_id, successor, experiment)


def _experiment_id(offline: Stores, name: str) -> str:
    """The experiment ``name`` of the offline store, created next to its file."""
    client = offline.client
    found = client.get_experiment_by_name(name)
    if found is None:
        location = stores_.sqlite_artifact_location(offline.tracking_uri, name)
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException as exc:  # another run created it meanwhile
            found = client.get_experiment_by_name(name)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" or found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


def redeliver(outbox: Outbox, undelivered: Iterable[Undelivered]) -> None:
    """Hand what the server did not acknowledge to the continuation's outbox."""
    for item in undelivered:
        if item.metrics:
            outbox.log_metrics(item.source, list(item.metrics))
        files = [pair for pair in item.files if Path(pair[0]).exists()]
        if len(files) < len(item.files):
            logger.error(
                "kedroflow: files of %s are gone from disk and cannot be kept offline",
                item.source,
            )
        if files:
            outbox.upload(item.source, files)


def keep_files(
    plan: Plan,
    server: Stores,
    server_run_id: str,
    files: list[Undelivered],
    status: str,
) -> list[Undelivered]:
    """Uploads the artifact store refused, while the server answers: kept offline.

    They go to an offline continuation ended ``status``; the server run is tagged
    with where they wait until ``kedro mlflow sync`` adds them. Returns what could
    not be kept either.
    """
    continuation = open_continuation(plan, server, server_run_id, None)
    redeliver(continuation.outbox, files)
    left = continuation.outbox.close()
    continuation.stores.client.set_terminated(continuation.run_id, status)
    names = "; ".join(f"{item.what} of {item.source}" for item in files)
    where = stores_.offline_store(plan.project_path)
    server.client.set_tag(
        server_run_id,
        PENDING_TAG,
        f"{names}: kept in {where} (offline run {continuation.run_id}) until "
        "`kedro mlflow sync`",
    )
    logger.warning(
        "kedroflow: MLflow run %s could not receive %s (%s). They are kept in the local "
        "offline store %s (offline run %s); once the artifact store accepts them, "
        "`kedro mlflow sync` adds them to run %s.",
        server_run_id,
        names,
        files[0].error,
        where,
        continuation.run_id,
        server_run_id,
    )
    return left


def lost_message(
    plan: Plan, server: Stores, server_run_id: str, offline_run_id: str
) -> str:
    """What the console says, once, when the rest of the run goes offline."""
    return (
        f"kedroflow: the MLflow server {server.display_uri} was lost during the run "
        f"(no answer within {plan.timeout:g} s). The rest of MLflow run {server_run_id} "
        "(what the server had not acknowledged, what the run logs from now on and its "
        f"end) is kept in the local offline store "
        f"{stores_.offline_store(plan.project_path)} (offline run {offline_run_id}). "
        f"Once the server is back, `kedro mlflow sync` merges it into run "
        f"{server_run_id}."
    )


def forget_active_run(run_id: str) -> None:
    """Take ``run_id`` (and runs above it) off MLflow's active-run stack, no request.

    Like :mod:`kedroflow.fluent`, this touches MLflow's fluent internals
    (``_active_run_stack``, in every MLflow 3.x): ``mlflow.end_run`` would ask the
    server that is gone, and leave the run on the stack when that fails.
    """
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()  # type: ignore[attr-defined, no-untyped-call]
    for index in range(len(stack) - 1, -1, -1):
        if stack[index].info.run_id == run_id:
            del stack[index:]
            return
