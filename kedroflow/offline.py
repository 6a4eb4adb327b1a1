"""Upload runs kept in the local offline store to the real tracking server.

With ``server.on_tracking_error: continue``, a ``kedro run`` that cannot reach its
tracking server tracks into ``<project>/mlflow-offline/`` instead. ``kedro mlflow
sync`` calls :func:`sync_offline_runs` to replay each such run on the server: name,
tags, parameters, full metric histories, artifacts, dataset inputs, logged models and
status. Each offline run is tagged with the id it got on the server, so syncing twice
uploads nothing twice.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Metric
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kedroflow.stores import OFFLINE_FOR_TAG

logger = logging.getLogger(__name__)

SYNCED_TAG = "kedroflow.synced_to"


@dataclass(frozen=True)
class SyncedRun:
    """One offline run and the id it got on the server."""

    offline_run_id: str
    run_id: str
    experiment: str
    models: int


def sync_offline_runs(
    offline_uri: str, tracking_uri: str, registry_uri: str | None = None
) -> list[SyncedRun]:
    """Replay every not yet synced offline run on ``tracking_uri``."""
    source = MlflowClient(tracking_uri=offline_uri, registry_uri=offline_uri)
    target = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    synced: list[SyncedRun] = []
    for experiment in source.search_experiments():
        runs = source.search_runs(
            [experiment.experiment_id], order_by=["attributes.start_time ASC"]
        )
        for run in runs:
            tags = run.data.tags
            if OFFLINE_FOR_TAG not in tags or SYNCED_TAG in tags:
                continue
            synced.append(_sync_run(source, target, experiment.name, run))
    return synced


def _sync_run(
    source: MlflowClient, target: MlflowClient, experiment: str, run: object
) -> SyncedRun:
    info, data = run.info, run.data  # type: ignore[attr-defined]
    found = target.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id if found else target.create_experiment(experiment)
    )
    tags = {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")}
    tags["kedroflow.synced_from"] = info.run_id
    created = target.create_run(
        experiment_id, start_time=info.start_time, tags=tags, run_name=info.run_name
    )
    run_id = created.info.run_id
    from mlflow.entities import Param

    metrics = [
        Metric(m.key, m.value, m.timestamp, m.step)
        for key in data.metrics
        for m in source.get_metric_history(info.run_id, key)
    ]
    target.log_batch(
        run_id, metrics=metrics, params=[Param(k, v) for k, v in data.params.items()]
    )
    inputs = getattr(run, "inputs", None)
    if inputs is not None and inputs.dataset_inputs:
        target.log_inputs(run_id, datasets=list(inputs.dataset_inputs))
    with tempfile.TemporaryDirectory() as tmp:
        if source.list_artifacts(info.run_id):
            local = source.download_artifacts(info.run_id, "", dst_path=tmp)
            target.log_artifacts(run_id, local)
        models = _sync_models(
            source=source,
            target=target,
            info=info,
            experiment_id=experiment_id,
            run_id=run_id,
            tmp=Path(tmp),
        )
    target.set_terminated(run_id, info.status, end_time=info.end_time)
    source.set_tag(info.run_id, SYNCED_TAG, run_id)
    logger.info("kedroflow: offline run %s uploaded as %s", info.run_id, run_id)
    return SyncedRun(info.run_id, run_id, experiment, models)


def _sync_models(
    *,
    source: MlflowClient,
    target: MlflowClient,
    info: object,
    experiment_id: str,
    run_id: str,
    tmp: Path,
) -> int:
    source_run = info.run_id  # type: ignore[attr-defined]
    try:
        models = source.search_logged_models(
            experiment_ids=[info.experiment_id],  # type: ignore[attr-defined]
            filter_string=f"source_run_id = '{source_run}'",
        )
    except MlflowException:  # pragma: no cover - very old MLflow 3 stores
        return 0
    for index, model in enumerate(models):
        copy = target.create_logged_model(
            experiment_id,
            name=model.name,
            source_run_id=run_id,
            params=model.params or None,
            tags={
                k: v
                for k, v in (model.tags or {}).items()
                if not k.startswith("mlflow.")
            },
            model_type=model.model_type,
        )
        local = _download_model(model.artifact_location, tmp / f"model-{index}")
        target.log_model_artifacts(copy.model_id, str(local))
        target.finalize_logged_model(copy.model_id, LoggedModelStatus.READY)
    return len(models)


def _download_model(artifact_location: str, destination: Path) -> Path:
    from mlflow.artifacts import download_artifacts

    destination.mkdir(parents=True)
    return Path(
        download_artifacts(artifact_uri=artifact_location, dst_path=str(destination))
    )
