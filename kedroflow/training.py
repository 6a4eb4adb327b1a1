"""What the hook logs at the end of a run: lineage and, for training, its model.

Kedro hooks get a plain ``Pipeline``: the ``PipelineML`` bindings are found again in
the project's pipeline registry by the run's pipeline names. Each binding whose
artifacts all exist, and that the run trained, is logged as a pipeline model linked to
the run (:func:`kedroflow.packaging.log_pipeline_model`); otherwise a WARNING says
which artifacts are missing or that nothing was trained, and what to do. A run that
trains a model which could not be logged fails before it trains
(:func:`check_training_models`); a run that trains none of its artifacts (Kedro's
``--to-outputs=X_test,y_test``, ``--from-nodes=evaluate_model_node``) runs, and logs
no model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kedroflow import provenance
from kedroflow.errors import ModelError
from kedroflow.provenance import filter_options

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from kedro.pipeline import Pipeline
    from mlflow.tracking import MlflowClient

    from kedroflow.config import KedroflowConfig
    from kedroflow.pipeline import PipelineML
    from kedroflow.secrets import Secrets
    from kedroflow.tracking import CurrentRun

logger = logging.getLogger(__name__)


def log_run_outputs(
    run_params: dict[str, Any],
    pipeline: Pipeline,
    catalog: Any,
    config: KedroflowConfig,
) -> None:
    """Record the run's lineage and, for a training pipeline, its governed model.

    If the server is lost meanwhile (``on_tracking_error: continue``), they are
    recorded on the run's offline continuation instead (:func:`tracking.fail_over`).
    """
    from kedro.framework.project import pipelines as registry
    from mlflow.exceptions import MlflowException

    from kedroflow import tracking
    from kedroflow.pipeline import find_pipeline_ml

    run = tracking.current_run()
    if run is None:
        return
    names = provenance.pipeline_names(run_params)
    training = bool(find_pipeline_ml(registry, names, pipeline))
    lineage = (catalog, pipeline.all_inputs(), pipeline.all_outputs())
    context = "training" if training else "inference"
    try:
        _record_lineage(lineage, run, context)
    except MlflowException as error:  # lineage never fails a run
        continued = tracking.fail_over()
        if continued is None:
            logger.warning("kedroflow: could not record the run's lineage: %s", error)
        else:
            run = continued
            _record_lineage(lineage, run, context)
    if not training:
        return
    try:
        _log_model(run, run_params, pipeline, catalog, config)
    except Exception:
        continued = tracking.fail_over()
        if continued is None:
            raise
        _log_model(continued, run_params, pipeline, catalog, config)


def _record_lineage(
    lineage: tuple[Any, Iterable[str], Iterable[str]], run: CurrentRun, context: str
) -> None:
    from kedroflow.io.lineage import record_lineage

    catalog, read, written = lineage
    record_lineage(catalog, read, written, run=run, context=context, strict=True)


def _log_model(
    run: CurrentRun,
    run_params: dict[str, Any],
    pipeline: Pipeline,
    catalog: Any,
    config: KedroflowConfig,
) -> None:
    """Log the training run's model and govern it (gate, card, registration)."""
    from kedroflow.governance import govern_model

    if run.outbox is not None:
        # the model, its gate and card read the run's metrics: send them first
        run.outbox.flush_metrics()
    logged = log_training_model(
        provenance.pipeline_names(run_params), run_params, pipeline, catalog,
        run_id=run.run_id, client=run.stores.client,
        redact=config.tracking.params.redact, secrets=run.secrets,
        log_untrained=config.tracking.pipeline_model.log_untrained,
    )  # fmt: skip
    for ml, info in logged:
        govern_model(
            run.stores.client, info, run_id=run.run_id, catalog=catalog,
            input_name=ml.input_name, evaluation=ml.evaluation,
            registered_model_name=ml.log_model_kwargs.get("registered_model_name"),
            alias=ml.log_model_kwargs.get("registered_model_alias"),
            promote_if=ml.log_model_kwargs.get("promote_if"),
            tracking_uri=run.stores.tracking_uri,
        )  # fmt: skip


def check_training_models(
    pipeline_names: list[str],
    run_params: Mapping[str, Any],
    pipeline: Any,
    catalog: Any,
) -> None:
    """Fail a training run whose model could not be logged, before it trains.

    Reads only the catalog: an artifact the run produces must be a persisted dataset
    (kept after its last use), any other must be in storage, and the ``evaluation``
    data must be a persisted dataset.

    Raises:
        ModelError: What :func:`log_training_model` would warn about at the end of
            the run, with the same message, or the evaluation data's problem.
    """
    from kedro.framework.project import pipelines as registry

    from kedroflow.pipeline import find_pipeline_ml

    produced = pipeline.all_outputs()
    for name, ml in find_pipeline_ml(registry, pipeline_names, pipeline):
        if not _trains(ml, produced):
            continue  # no new model: nothing to check, nothing will be logged
        missing = _missing_artifacts(ml, catalog, produced, run_params, before_run=True)
        if missing:
            raise ModelError(_no_model(name, ml, missing))
        data = (ml.evaluation or {}).get("data")
        kind = catalog.get_type(data) if data else ""
        if kind is None or (kind and "MemoryDataset" in kind):
            raise ModelError(
                f"PipelineML '{name}': the evaluation data '{data}' is not a "
                "persisted dataset of the catalog. Declare it in catalog.yml."
            )


def log_training_model(
    pipeline_names: list[str],
    run_params: Mapping[str, Any],
    pipeline: Any,
    catalog: Any,
    *,
    run_id: str,
    client: MlflowClient | None = None,
    redact: Iterable[str] = (),
    secrets: Secrets | None = None,
    log_untrained: bool = False,
) -> list[tuple[PipelineML, Any]]:
    """Log the inference pipeline bound to the training pipeline that just ran.

    ``redact`` and ``secrets`` (the run's) keep secret parameters out of the model.

    A binding is logged when the run executed some of its training nodes, trained at
    least one artifact of its inference pipeline, and every other artifact can be
    loaded from storage. ``run_params`` (normalised) name the run's filters in
    messages. With ``log_untrained`` (``tracking.pipeline_model.log_untrained``) a run
    that trained none of them logs the model too, never registered: it is no new
    model. The alias is not moved here: the promotion gate does it
    (:mod:`kedroflow.governance`). Returns each binding logged with its ``ModelInfo``.
    """
    from kedro.framework.project import pipelines as registry

    from kedroflow.pipeline import find_pipeline_ml

    produced = pipeline.all_outputs()
    logged = []
    for name, ml in find_pipeline_ml(registry, pipeline_names, pipeline):
        if not _to_log(name, ml, catalog, produced, run_params, log_untrained):
            continue
        # MLflow's model code (mlflow.pyfunc) is imported by runs that log a model only
        from kedroflow.packaging import log_pipeline_model

        info = log_pipeline_model(
            ml.inference, catalog, input_name=ml.input_name,
            output_name=ml.output_name, run_id=run_id, kpm_kwargs=ml.kpm_kwargs,
            log_model_kwargs=_model_kwargs(ml, trained=_trains(ml, produced)),
            tags={"kedroflow.pipeline": name},
            client=client, redact=redact, secrets=secrets,
        )  # fmt: skip
        logged.append((ml, info))
    return logged


def _to_log(  # noqa: PLR0917
    name: str,
    ml: PipelineML,
    catalog: Any,
    produced: set[str],
    run_params: Mapping[str, Any],
    log_untrained: bool,
) -> bool:
    """Whether the run logs this binding's model: every artifact is there, and the run
    trained one (or ``log_untrained``). Says which artifacts are reused."""
    missing = _missing_artifacts(ml, catalog, produced, run_params, before_run=False)
    if missing:
        logger.warning(_no_model(name, ml, missing))
        return False
    if not _trains(ml, produced) and not _log_untrained(
        name, ml, run_params, log_untrained
    ):
        return False
    reused = sorted(ml.artifact_names - produced)
    if reused:
        logger.info(
            "kedroflow: PipelineML '%s': artifacts %s were not produced by this run; "
            "the model uses their stored version.", name, reused,
        )  # fmt: skip
    return True


def _model_kwargs(ml: PipelineML, *, trained: bool) -> dict[str, Any]:
    """``log_model`` arguments: no alias and gate (governance's), and no registration
    for a model the run did not train."""
    unregistered = () if trained else ("registered_model_name",)
    return {
        k: v
        for k, v in ml.log_model_kwargs.items()
        if k not in ("registered_model_alias", "promote_if", *unregistered)
    }


def _missing_artifacts(
    ml: PipelineML,
    catalog: Any,
    produced: set[str],
    run_params: Mapping[str, Any],
    *,
    before_run: bool,
) -> dict[str, str]:
    """The binding's artifacts that cannot be stored with the model, and why.

    Before the run only the catalog is read: an artifact the run produces must be a
    persisted dataset; any other must be in storage.
    """
    missing = {}
    for artifact in sorted(ml.artifact_names):
        if artifact in produced and before_run:
            kind = catalog.get_type(artifact)
            if kind is not None and "MemoryDataset" not in kind:
                continue
        elif artifact in catalog and catalog.exists(artifact):
            continue
        producers = [n.name for n in ml.nodes if artifact in n.outputs]
        missing[artifact] = (
            "was produced by this run but not kept (a MemoryDataset released after "
            "its last use: persist it in catalog.yml)"
            if artifact in produced
            else f"is missing: its training node(s) {producers} did not run "
            f"({_filters(run_params)}) and no earlier run stored it"
        )
    return missing


def _trains(ml: PipelineML, produced: set[str]) -> bool:
    """Whether the run trains the model: it produces one of the artifacts the training
    pipeline makes (those it only reads do not count), or there is none to make."""
    trainable = ml.artifact_names & ml.all_outputs()
    return not trainable or bool(trainable & produced)


def _log_untrained(
    name: str, ml: PipelineML, run_params: Mapping[str, Any], log_untrained: bool
) -> bool:
    """A run that trained none of the artifacts has no new model: log it only if asked."""
    if not log_untrained:
        logger.warning(
            "kedroflow: no model logged for PipelineML '%s': this run trained none "
            "of its artifacts %s (%s), so it has no new model. To log it anyway "
            "(never registered), set tracking.pipeline_model.log_untrained: true in "
            "mlflow.yml.", name, sorted(ml.artifact_names & ml.all_outputs()),
            _filters(run_params),
        )  # fmt: skip
    return log_untrained


def _no_model(name: str, ml: PipelineML, missing: Mapping[str, str]) -> str:
    reasons = "; ".join(f"'{a}' {why}" for a, why in missing.items())
    return (
        f"kedroflow: no model logged for PipelineML '{name}': {reasons}. Run the whole "
        "training pipeline, or log the model later with `kedro mlflow modelify "
        f"--pipeline {name} --input-name {ml.input_name}`."
    )


def _filters(run_params: Mapping[str, Any]) -> str:
    used = filter_options(run_params)
    return " ".join(f"{opt} {','.join(values)}" for opt, values in used) or "no filter"
