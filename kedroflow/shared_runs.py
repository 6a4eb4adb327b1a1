"""A run shared by several ``kedro run`` processes (split execution on Airflow, Argo...).

Processes given the same run id (``tracking.run.id`` or ``MLFLOW_RUN_ID``) each join
it as a *participant*: a tag ``kedroflow.participant.<id>`` holding the part it runs
and a lease expiry that a daemon thread pushes forward every third of the lease
(``tracking.run.participant_lease``, 60 s by default). A *part* is a node selection
(its tag ``kedroflow.part.<hash of the node names>`` holds its last status), so a
part run again after a failure replaces that failure.

The participant that leaves last closes the run: FAILED if a part's last status is
FAILED, else KILLED if one was killed, else FINISHED. A participant whose lease has
expired (SIGKILL, a lost machine) no longer counts: the next one to leave, or
``kedro mlflow close``, removes it and marks its part KILLED.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from kedroflow.errors import TrackingError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

PARTICIPANT_PREFIX = "kedroflow.participant."
PART_PREFIX = "kedroflow.part."
#: The default lease of a participant, in seconds (``tracking.run.participant_lease``).
DEFAULT_LEASE = 60.0
_ORDER = ("FAILED", "KILLED")  # the worst last status of a part wins


def part_id(node_names: Iterable[str]) -> str:
    """The part of a shared run a node selection is: a short hash of its node names."""
    text = "\n".join(sorted(node_names))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Participant:
    """This process in a shared run: its tag, its part, and the lease it keeps alive."""

    client: MlflowClient
    run_id: str
    part: str
    lease: float
    tag: str = field(
        default_factory=lambda: f"{PARTICIPANT_PREFIX}{uuid.uuid4().hex[:12]}"
    )
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def value(self) -> str:
        """The participant tag: part, lease expiry (epoch seconds), process."""
        return json.dumps(
            {
                "part": self.part,
                "until": round(time.time() + self.lease, 1),
                "pid": os.getpid(),
                "host": socket.gethostname(),
            }
        )

    def start_heartbeat(self) -> None:
        """Refresh the lease every third of it, from a daemon thread, until stopped."""
        self._thread = threading.Thread(
            target=self._beat, name=f"kedroflow-lease-{self.run_id[:8]}", daemon=True
        )
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        interval = max(self.lease / 3, 0.5)
        while not self._stop.wait(interval):
            try:
                self.client.set_tag(self.run_id, self.tag, self.value())
            except Exception as error:  # the server may be down for a while
                logger.debug("kedroflow: lease of %s not renewed: %s", self.tag, error)


def join(
    client: MlflowClient,
    run_id: str,
    tags: Mapping[str, str],
    *,
    part: str,
    lease: float = DEFAULT_LEASE,
) -> tuple[Run, Participant]:
    """Join run ``run_id`` with ``tags`` (scrubbed and clipped by the caller).

    The participant is recorded *before* the run goes back to RUNNING, so that a
    participant leaving meanwhile sees it and does not close the run.
    """
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(
            f"Cannot resume MLflow run '{run_id}' (from tracking.run.id or "
            f"MLFLOW_RUN_ID): {exc.message}. Check the id, or unset it for a new run."
        ) from None
    if run.info.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow run '{run_id}' is deleted: restore it or unset tracking.run.id / "
            "MLFLOW_RUN_ID."
        )
    me = Participant(client, run_id, part, lease)
    all_tags = {**tags, me.tag: me.value(), PART_PREFIX + part: "RUNNING"}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
    client.update_run(run_id, status="RUNNING")
    me.start_heartbeat()
    return run, me


def leave(me: Participant, status: str) -> str | None:
    """Record this part's ``status`` and leave; the last one out closes the run.

    Returns the run's final status when this participant closed it.
    """
    me.stop_heartbeat()
    client, run_id = me.client, me.run_id
    client.set_tag(run_id, PART_PREFIX + me.part, status)
    client.delete_tag(run_id, me.tag)
    return close_if_last(client, run_id)


def close_if_last(
    client: MlflowClient, run_id: str, *, status: str | None = None, force: bool = False
) -> str | None:
    """Close the run if no live participant is left (expired ones are removed).

    ``status`` overrides the status computed from the parts; ``force`` removes live
    participants too. Returns the final status, or None when the run stays open.
    """
    tags = client.get_run(run_id).data.tags
    live = reap(client, run_id, tags, force=force)
    if live:
        logger.info(
            "kedroflow: MLflow run %s stays open for its %d other process(es)",
            run_id,
            len(live),
        )
        return None
    final = status or final_status(client.get_run(run_id).data.tags)
    client.set_terminated(run_id, final)
    # a participant may have joined between our read and the close: reopen for it
    if live_participants(client.get_run(run_id).data.tags):
        client.update_run(run_id, status="RUNNING")
        return None
    return final


def live_participants(tags: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The participants whose lease has not expired, by tag."""
    now = time.time()
    return {
        key: lease
        for key, lease in participants(tags).items()
        if float(lease.get("until", 0)) > now
    }


def participants(tags: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every participant of the run, by tag, with its part and lease."""
    found = {}
    for key, value in tags.items():
        if key.startswith(PARTICIPANT_PREFIX):
            try:
                found[key] = dict(json.loads(value))
            except (ValueError, TypeError):  # written by an older kedroflow
                found[key] = {"part": None, "until": float("inf")}
    return found


def reap(
    client: MlflowClient, run_id: str, tags: Mapping[str, str], *, force: bool = False
) -> dict[str, dict[str, Any]]:
    """Remove participants whose lease expired (all with ``force``), their parts
    marked KILLED; returns the live ones left."""
    live = {} if force else live_participants(tags)
    running = {lease.get("part") for lease in live.values()}
    for key, lease in participants(tags).items():
        if key in live:
            continue
        part = f"{PART_PREFIX}{lease.get('part')}"
        if lease.get("part") not in running and tags.get(part) == "RUNNING":
            client.set_tag(run_id, part, "KILLED")
        client.delete_tag(run_id, key)
        logger.warning(
            "kedroflow: participant %s of MLflow run %s (pid %s on %s) stopped "
            "renewing its lease: its part is marked KILLED.",
            key.removeprefix(PARTICIPANT_PREFIX),
            run_id,
            lease.get("pid"),
            lease.get("host"),
        )
    return live


def final_status(tags: Mapping[str, str]) -> str:
    """FAILED if a part's last status is FAILED, else KILLED if one was, else FINISHED."""
    statuses = {v for k, v in tags.items() if k.startswith(PART_PREFIX)}
    return next((s for s in _ORDER if s in statuses), "FINISHED")


def close(
    client: MlflowClient, run_id: str, *, status: str | None = None, force: bool = False
) -> str:
    """End a shared run from outside (``kedro mlflow close``); returns its status.

    Refuses while a participant still renews its lease, unless ``force``.
    """
    run = client.get_run(run_id)
    if run.info.status != "RUNNING":
        if status is None:
            return str(run.info.status)
        client.set_terminated(run_id, status)
        return status
    live = {} if force else live_participants(run.data.tags)
    if live:
        until = max(float(lease.get("until", 0)) for lease in live.values())
        where = ", ".join(
            f"pid {lease.get('pid')} on {lease.get('host')}" for lease in live.values()
        )
        raise TrackingError(
            f"MLflow run {run_id} still has {len(live)} live process(es) ({where}); "
            f"their lease runs for {max(until - time.time(), 0):.0f} s more. Wait "
            "for them to end (or their lease to expire), or pass --force to end the "
            "run now."
        )
    final = close_if_last(client, run_id, status=status, force=force)
    return final or "RUNNING"
