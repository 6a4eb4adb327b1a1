"""Opening the run of a ``kedro run``: the :class:`CurrentRun` value and how it is opened.

:class:`Opening` joins the shared run (``tracking.run.id`` or ``MLFLOW_RUN_ID``),
reuses a run already active (a notebook's, an orchestrator's) or starts a new one
with its tags in one request; when the server cannot be reached it fails with the
fix, or (``on_tracking_error: continue``) opens the run in the offline store. What
is open is handed back as an :class:`OpenRun`; :mod:`kedroflow.tracking` keeps it
as the process's run state and closes it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from kedroflow import shared_runs
from kedroflow import stores as stores_
from kedroflow.errors import TrackingError
from kedroflow.offline_tags import OFFLINE_FOR_TAG
from kedroflow.outbox import Outbox
from kedroflow.owner import owner_tags
from kedroflow.params import clip
from kedroflow.secrets import Secrets
from kedroflow.stores import limits

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from kedroflow.config import KedroflowConfig
    from kedroflow.stores import SavedEnvironment, Stores

logger = logging.getLogger(__name__)


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
    #: The run's experiment when known at opening (saves lineage a lookup).
    experiment_id: str | None = None


@dataclass(frozen=True)
class OpenRun:
    """The run open in this process, with what closing it needs."""

    current: CurrentRun
    owned: bool  # started (or joined) by kedroflow: kedroflow ends it
    pushed: bool  # pushed on MLflow's fluent stack in this thread
    saved: SavedEnvironment  # the environment before the run, restored at its end
    participant: shared_runs.Participant | None = None  # shared run: this process
    #: on_tracking_error: continue, on a server: how the rest goes offline if it is lost
    plan: Plan | None = None


@dataclass(frozen=True)
class Plan:
    """What the offline continuation of a run needs (:mod:`kedroflow.failover`)."""

    config: KedroflowConfig
    project_path: Path
    run_name: str
    tags: Mapping[str, str]  # the run's own tags, as logged (scrubbed)

    @property
    def timeout(self) -> float:
        return self.config.server.connect_timeout


@dataclass(frozen=True)
class Opening:
    """What opening a run needs besides its stores, name and tags."""

    config: KedroflowConfig
    project_path: Path
    secrets: Secrets
    saved: SavedEnvironment
    part: str = ""

    def open_or_go_offline(
        self, stores: Stores, run_name: str, tags: dict[str, Any]
    ) -> OpenRun:
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
        tags = {**tags, OFFLINE_FOR_TAG: offline.offline_for, **owner_tags()}
        return self.open(offline, run_name, tags)

    def open(self, stores: Stores, run_name: str, tags: dict[str, Any]) -> OpenRun:
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
            return OpenRun(current, True, False, self.saved, participant)
        if active is not None:
            # kedro-mlflow's contract (tracking.run.nested true or false): a run active
            # before the session (an orchestrator's, a notebook's) is reused, left open
            current = self._current(stores, active.info, history_known=False)
            log_tags(current, values)
            return OpenRun(current, False, False, self.saved)
        experiment_id = stores_.experiment_id(self.config, self.project_path, stores)
        name = self.secrets.scrub(run_name)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=values)
        current = self._current(stores, run.info, history_known=True)
        plan = None
        if self.config.server.on_tracking_error == "continue" and stores.remote:
            plan = Plan(self.config, self.project_path, name, values)
        return OpenRun(current, True, True, self.saved, plan=plan)

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
        return CurrentRun(info.run_id, stores, self.secrets, outbox, info.experiment_id)


def log_tags(run: CurrentRun, tags: Mapping[str, Any]) -> None:
    """Set several tags (scrubbed, clipped) in as few requests as MLflow allows."""
    if tags:
        values = tag_values(tags, run.secrets)
        run.stores.client.log_batch(
            run.run_id, tags=[RunTag(k, v) for k, v in values.items()]
        )


def tag_values(tags: Mapping[str, Any], secrets: Secrets) -> dict[str, str]:
    """Tag values as MLflow takes them: text, secrets scrubbed, clipped to its limit."""
    limit = limits().tag_value
    return {str(k): clip(secrets.scrub(str(v)), limit) for k, v in tags.items()}
