"""What the hook logs at the end of a training run: the bound inference pipeline.

Kedro hooks get a plain ``Pipeline``: the ``PipelineML`` bindings are found again in
the project's pipeline registry by the run's pipeline names. Each binding whose
artifacts all exist is logged as a pipeline model linked to the run
(:func:`kedroflow.packaging.log_pipeline_model`); otherwise a WARNING says which
artifacts are missing, why, and how to log the model later.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kedroflow.provenance import filter_options

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlflow.tracking import MlflowClient

    from kedroflow.pipeline import PipelineML

logger = logging.getLogger(__name__)


def log_training_model(
    pipeline_names: list[str],
    run_params: Mapping[str, Any],
    pipeline: Any,
    catalog: Any,
    *,
    run_id: str,
    client: MlflowClient | None = None,
) -> None:
    """Log the inference pipeline bound to the training pipeline that just ran.

    A binding is logged when the run executed some of its training nodes and every
    artifact of its inference pipeline was produced by the run or can be loaded from
    storage. ``run_params`` (normalised) name the run's filters in messages.
    """
    from kedro.framework.project import pipelines as registry

    from kedroflow.pipeline import find_pipeline_ml

    produced = pipeline.all_outputs()
    for name, ml in find_pipeline_ml(registry, pipeline_names, pipeline):
        missing = _missing_artifacts(ml, catalog, produced, run_params)
        if missing:
            logger.warning(
                "kedroflow: no model logged for PipelineML '%s': %s. Run the whole "
                "training pipeline, or log the model later with `kedro mlflow modelify "
                "--pipeline %s --input-name %s`.", name,
                "; ".join(f"'{a}' is {why}" for a, why in missing.items()), name, ml.input_name,
            )  # fmt: skip
            continue
        reused = sorted(ml.artifact_names - produced)
        if reused:
            logger.info(
                "kedroflow: PipelineML '%s': artifacts %s were not produced by this run; "
                "the model uses their stored version.", name, reused,
            )  # fmt: skip
        # MLflow's model code (mlflow.pyfunc) is imported by runs that log a model only
        from kedroflow.packaging import log_pipeline_model

        log_pipeline_model(
            ml.inference, catalog, input_name=ml.input_name,
            output_name=ml.output_name, run_id=run_id, kpm_kwargs=ml.kpm_kwargs,
            log_model_kwargs=ml.log_model_kwargs, tags={"kedroflow.pipeline": name},
            client=client,
        )  # fmt: skip


def _missing_artifacts(
    ml: PipelineML, catalog: Any, produced: set[str], run_params: Mapping[str, Any]
) -> dict[str, str]:
    """The binding's artifacts that cannot be stored with the model, and why."""
    missing = {}
    for artifact in sorted(ml.artifact_names):
        if artifact in catalog and catalog.exists(artifact):
            continue
        producers = [n.name for n in ml.nodes if artifact in n.outputs]
        missing[artifact] = (
            "produced by this run but not kept (a MemoryDataset released after "
            "its last use: persist it in catalog.yml)"
            if artifact in produced
            else f"its training node(s) {producers} did not run ({_filters(run_params)})"
            " and it is not in storage from an earlier run"
        )
    return missing


def _filters(run_params: Mapping[str, Any]) -> str:
    used = filter_options(run_params)
    return " ".join(f"{opt} {','.join(values)}" for opt, values in used) or "no filter"
