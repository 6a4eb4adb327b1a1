"""Replay one offline run on a server run, idempotently: a retry adds only what is missing.

Order of writes, each safe to repeat:

1. the server run: the one the offline run is mapped to (tag ``kedroflow.synced_to``),
   else one tagged ``kedroflow.synced_from`` with its id (created by a sync killed
   before it could record the mapping), else a new one; the mapping is then recorded
   on the offline run, with ``kedroflow.sync_state: uploading``, before any data;
2. tags and parameters (same values again are accepted by MLflow), and only the metric
   points and dataset inputs the server run does not already have;
3. artifacts (written again under the same paths) and logged models (each tagged with
   its offline model id; a READY copy is not uploaded again);
4. the status and end time, and last ``kedroflow.sync_state: done`` on the offline run.
"""

from __future__ import annotations

import collections
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.exceptions import MlflowException

from kedroflow.offline_tags import (
    CONTINUES_TAG,
    DONE,
    PENDING_TAG,
    STATE_TAG,
    SYNCED_TAG,
    UPLOADING,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from mlflow.entities import Run
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.tracking import MlflowClient

T = TypeVar("T")

SYNCED_FROM_TAG = "kedroflow.synced_from"  # on server runs and models: the offline id
_OWN_TAGS = {SYNCED_TAG, STATE_TAG, CONTINUES_TAG}


@dataclass(frozen=True)
class SyncedRun:
    """One offline run and the server run it now is."""

    offline_run_id: str
    run_id: str
    experiment: str
    models: int
    status: str
    resumed: bool  # an interrupted upload was completed
    continued: bool = False  # the rest of a server run its server lost mid-run


def is_uploaded(tags: Mapping[str, str]) -> bool:
    """True once an offline run is completely on its server.

    A mapping without a state was written by an earlier kedroflow, after the upload.
    """
    return SYNCED_TAG in tags and tags.get(STATE_TAG, DONE) == DONE


def paged(fetch: Callable[[str | None], PagedList[T]]) -> Iterator[T]:
    """Every item of a paged MLflow search: ``fetch(page_token)`` until no token."""
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


def upload_run(
    source: MlflowClient, target: MlflowClient, run: Run, experiment: str
) -> SyncedRun:
    """Make ``run`` of the offline store complete on ``target``; see the module doc."""
    info = run.info
    experiment_id = _experiment_id(target, experiment)
    run_id, resumed = _server_run(source, target, run, experiment_id)
    _log_data(source, target, run, run_id, resumed)
    with tempfile.TemporaryDirectory() as tmp:
        if source.list_artifacts(info.run_id):
            local = source.download_artifacts(info.run_id, "", dst_path=tmp)
            target.log_artifacts(run_id, local)
        models = _upload_models(
            source=source,
            target=target,
            run=run,
            experiment_id=experiment_id,
            run_id=run_id,
            tmp=Path(tmp),
        )
    target.set_terminated(run_id, info.status, end_time=info.end_time)
    continued = CONTINUES_TAG in run.data.tags
    if continued and PENDING_TAG in target.get_run(run_id).data.tags:
        target.delete_tag(run_id, PENDING_TAG)  # the run is complete now
    source.set_tag(info.run_id, STATE_TAG, DONE)
    return SyncedRun(
        info.run_id, run_id, experiment, models, info.status, resumed, continued
    )


def _experiment_id(target: MlflowClient, name: str) -> str:
    found = target.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(target.create_experiment(name))
    except MlflowException as exc:  # created meanwhile by a `kedro run`
        found = target.get_experiment_by_name(name)
        if exc.error_code != "RESOURCE_ALREADY_EXISTS" or found is None:
            raise
        return str(found.experiment_id)


def _server_run(
    source: MlflowClient, target: MlflowClient, run: Run, experiment_id: str
) -> tuple[str, bool]:
    """The server run of ``run`` and whether it existed; the mapping recorded first."""
    offline_id = run.info.run_id
    mapped = run.data.tags.get(SYNCED_TAG)
    if mapped and _exists(target, mapped):
        return mapped, True
    found = target.search_runs(
        [experiment_id],
        filter_string=f"tags.`{SYNCED_FROM_TAG}` = '{offline_id}'",
        max_results=1,
    )
    if found:
        run_id, resumed = found[0].info.run_id, True
    else:
        created = target.create_run(
            experiment_id,
            start_time=run.info.start_time,
            tags={SYNCED_FROM_TAG: offline_id},
            run_name=run.info.run_name,
        )
        run_id, resumed = created.info.run_id, False
    source.log_batch(
        offline_id, tags=[RunTag(SYNCED_TAG, run_id), RunTag(STATE_TAG, UPLOADING)]
    )
    return run_id, resumed


def _exists(target: MlflowClient, run_id: str) -> bool:
    try:
        return bool(target.get_run(run_id).info.lifecycle_stage == "active")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def _log_data(
    source: MlflowClient, target: MlflowClient, run: Run, run_id: str, resumed: bool
) -> None:
    """Tags, parameters, metric points and dataset inputs the server run lacks."""
    data, offline_id = run.data, run.info.run_id
    tags = {
        k: v
        for k, v in data.tags.items()
        if not k.startswith("mlflow.") and k not in _OWN_TAGS
    }
    tags[SYNCED_FROM_TAG] = offline_id
    metrics = [
        metric
        for key in sorted(data.metrics)
        for metric in _missing_points(
            source=source,
            target=target,
            offline_id=offline_id,
            run_id=run_id,
            key=key,
            resumed=resumed,
        )
    ]
    target.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(k, v) for k, v in data.params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    inputs = getattr(run, "inputs", None)
    if inputs is None or not inputs.dataset_inputs:
        return
    have = set()
    if resumed:
        existing = getattr(target.get_run(run_id), "inputs", None)
        have = {_dataset_key(i) for i in (existing.dataset_inputs if existing else [])}
    new = [i for i in inputs.dataset_inputs if _dataset_key(i) not in have]
    if new:
        target.log_inputs(run_id, datasets=new)


def _missing_points(
    *,
    source: MlflowClient,
    target: MlflowClient,
    offline_id: str,
    run_id: str,
    key: str,
    resumed: bool,
) -> list[Metric]:
    """The points of metric ``key`` that the server run does not have yet."""
    history = source.get_metric_history(offline_id, key)
    have = collections.Counter(
        _point(m) for m in (target.get_metric_history(run_id, key) if resumed else [])
    )
    missing = []
    for metric in history:
        point = _point(metric)
        if have[point] > 0:
            have[point] -= 1
        else:
            missing.append(Metric(key, metric.value, metric.timestamp, metric.step))
    return missing


def _point(metric: Metric) -> tuple[int, int, Any]:
    value = metric.value
    return metric.timestamp, metric.step, "nan" if math.isnan(value) else value


def _dataset_key(dataset_input: Any) -> tuple[str, str]:
    return dataset_input.dataset.name, dataset_input.dataset.digest


def _upload_models(
    *,
    source: MlflowClient,
    target: MlflowClient,
    run: Run,
    experiment_id: str,
    run_id: str,
    tmp: Path,
) -> int:
    """Copy the run's logged models; a copy already READY is not uploaded again."""
    offline_id = run.info.run_id
    try:
        models = list(
            paged(
                lambda token: source.search_logged_models(
                    experiment_ids=[run.info.experiment_id],
                    filter_string=f"source_run_id = '{offline_id}'",
                    page_token=token,
                )
            )
        )
    except MlflowException:  # pragma: no cover - very old MLflow 3 stores
        return 0
    copies = {} if not models else _model_copies(target, experiment_id, run_id)
    for index, model in enumerate(models):
        copy = copies.get(model.model_id)
        if copy is not None and copy.status == LoggedModelStatus.READY:
            continue
        if copy is None:
            tags = {
                k: v
                for k, v in (model.tags or {}).items()
                if not k.startswith("mlflow.")
            }
            copy = target.create_logged_model(
                experiment_id,
                name=model.name,
                source_run_id=run_id,
                params=model.params or None,
                tags={**tags, SYNCED_FROM_TAG: model.model_id},
                model_type=model.model_type,
            )
        local = _download_model(model.artifact_location, tmp / f"model-{index}")
        target.log_model_artifacts(copy.model_id, str(local))
        target.finalize_logged_model(copy.model_id, LoggedModelStatus.READY)
    return len(models)


def _model_copies(
    target: MlflowClient, experiment_id: str, run_id: str
) -> dict[str, Any]:
    """Models already copied to the server run, by their offline model id."""
    found = paged(
        lambda token: target.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=f"source_run_id = '{run_id}'",
            page_token=token,
        )
    )
    return {
        m.tags[SYNCED_FROM_TAG]: m for m in found if SYNCED_FROM_TAG in (m.tags or {})
    }


def _download_model(artifact_location: str, destination: Path) -> Path:
    from mlflow.artifacts import download_artifacts

    destination.mkdir(parents=True)
    return Path(
        download_artifacts(artifact_uri=artifact_location, dst_path=str(destination))
    )
