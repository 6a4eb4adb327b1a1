"""A run shared by several ``kedro run`` processes (split execution on Airflow, Argo...).

Processes given the same run id (``tracking.run.id`` or ``MLFLOW_RUN_ID``) each mark
themselves with a participant tag while they run; the one that ends last, finding no
other participant, closes the run, FAILED if any part failed.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from kedroflow.errors import TrackingError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

PARTICIPANT_PREFIX = "kedroflow.participant."
FAILED_TAG = "kedroflow.failed"


def join(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> tuple[Run, str]:
    """Join run ``run_id`` with ``tags`` (scrubbed and clipped by the caller).

    Returns the run and this process's participant tag.
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
    participant = f"{PARTICIPANT_PREFIX}{uuid.uuid4().hex[:12]}"
    client.update_run(run_id, status="RUNNING")
    all_tags = {**tags, participant: "running"}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
    return run, participant


def leave(client: MlflowClient, run_id: str, participant: str, status: str) -> None:
    """Leave the shared run; the last participant out closes it."""
    if status != "FINISHED":
        client.set_tag(run_id, FAILED_TAG, status)
    client.delete_tag(run_id, participant)
    tags = client.get_run(run_id).data.tags
    if any(key.startswith(PARTICIPANT_PREFIX) for key in tags):
        logger.info(
            "kedroflow: MLflow run %s stays open for its other processes", run_id
        )
        return
    final = tags.get(FAILED_TAG, status) if status == "FINISHED" else status
    client.set_terminated(run_id, final)
