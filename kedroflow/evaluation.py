"""Evaluate a logged model on held-out data with MLflow's own evaluation, per slice too.

``pipeline_ml_factory(..., evaluation={"data": "held_out", "targets": "label",
"model_type": "classifier", "slices": ["length"]})`` makes every training run that
logs the model load it back through MLflow (what serving loads), predict the catalog
dataset ``held_out`` once, and call :func:`mlflow.models.evaluate` on those
predictions: once on the whole set, once per value of each slice column. The metrics
go to the run and to the logged model (``model_id``), with the data as an evaluation
input. Slice metrics are named ``slice.<column>.<value>.<metric>``; the worst value
of each metric over all slices is ``worst_slice.<metric>`` (lowest for a score,
highest for an error such as ``mean_squared_error``): the metric a fairness threshold
of the promotion gate reads.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import pandas as pd
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

#: Metrics of MLflow's default evaluator where lower is better.
LOWER_IS_BETTER = re.compile(
    r"(log_loss|error|mean_squared|mean_absolute|_loss$|false_positives|"
    r"false_negatives|max_error|^mse|^rmse|^mae)"
)
_KEY = re.compile(r"[^\w\-. /]")
_MAX_SLICE_VALUES = 50  # values of one slice column evaluated (the most frequent)
_COUNTS = {"example_count", "true_negatives", "true_positives"}


def greater_is_better(metric: str) -> bool:
    """Whether a higher value of ``metric`` (a default-evaluator name) is better."""
    return not LOWER_IS_BETTER.search(metric.rsplit(".", 1)[-1])


def evaluate_model(
    client: MlflowClient,
    model_uri: str,
    *,
    model_id: str | None,
    data: pd.DataFrame,
    spec: Mapping[str, Any],
    run_id: str,
) -> dict[str, float]:
    """Evaluate the model at ``model_uri`` on ``data``; return every metric logged.

    ``spec`` is the ``evaluation`` argument of ``pipeline_ml_factory``. Logs to
    ``run_id`` (made MLflow's active run for the call, through the stores MLflow is
    configured with) and links to ``model_id``.
    """
    import mlflow

    frame = _with_predictions(mlflow.pyfunc.load_model(model_uri), data, spec)
    name = str(spec["data"])
    metrics: dict[str, float] = {}
    with _active_run(client, run_id), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics.update(_evaluate(frame, spec, model_id, name, prefix=""))
        for column in spec.get("slices") or []:
            values = frame[column].value_counts().index[:_MAX_SLICE_VALUES]
            for value in values:
                part = frame[frame[column] == value]
                prefix = (
                    f"slice.{_KEY.sub('_', str(column))}.{_KEY.sub('_', str(value))}."
                )
                metrics.update(
                    _evaluate(part, spec, model_id, f"{name}[{column}={value}]", prefix)
                )
        worst = worst_slices(metrics)
        if worst:
            client.log_batch(run_id, metrics=_as_metrics(worst, model_id))
            metrics.update(worst)
    return metrics


def worst_slices(metrics: Mapping[str, float]) -> dict[str, float]:
    """``worst_slice.<metric>``: the worst value of ``<metric>`` over every slice.

    Examples:
        >>> worst_slices(
        ...     {
        ...         "slice.len.short.f1_score": 0.9,
        ...         "slice.len.long.f1_score": 0.7,
        ...         "slice.len.short.log_loss": 0.2,
        ...         "slice.len.long.log_loss": 0.5,
        ...     }
        ... )
        {'worst_slice.f1_score': 0.7, 'worst_slice.log_loss': 0.5}
    """
    found: dict[str, float] = {}
    for key, value in metrics.items():
        if not key.startswith("slice."):
            continue
        metric = key.rsplit(".", 1)[-1]
        if metric in _COUNTS:
            continue
        name = f"worst_slice.{metric}"
        if name not in found:
            found[name] = value
        elif greater_is_better(metric):
            found[name] = min(found[name], value)
        else:
            found[name] = max(found[name], value)
    return found


def _with_predictions(
    model: Any, data: pd.DataFrame, spec: Mapping[str, Any]
) -> pd.DataFrame:
    """``data`` plus a ``__prediction`` column: the model's output, predicted once."""
    import pandas as pd

    from kedroflow.errors import ModelError

    targets = spec["targets"]
    schema = model.metadata.get_input_schema()
    names = (
        schema.input_names() if schema is not None and schema.has_input_names() else []
    )
    features = data[names] if names else data.drop(columns=[targets])
    output = model.predict(features)
    if isinstance(output, pd.DataFrame):
        column = spec.get("predictions") or (
            output.columns[0] if len(output.columns) == 1 else None
        )
        if column not in output.columns:
            raise ModelError(
                f"evaluation: the model returns the columns {list(output.columns)}; "
                "name the one holding the prediction with evaluation={'predictions': "
                "<column>, ...} in pipeline_ml_factory."
            )
        output = output[column]
    frame = data.reset_index(drop=True).copy()
    frame["__prediction"] = pd.Series(list(output) if not hasattr(output, "values") else output.values)  # fmt: skip
    return frame


def _evaluate(
    frame: pd.DataFrame,
    spec: Mapping[str, Any],
    model_id: str | None,
    name: str,
    prefix: str,
) -> dict[str, float]:
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    targets = spec["targets"]
    dataset = from_pandas(
        frame[[targets, "__prediction"]],
        targets=targets,
        predictions="__prediction",
        name=name[:500],
    )
    config = {
        "log_model_explainability": False,
        **dict(spec.get("evaluator_config") or {}),
        "metric_prefix": prefix,
    }
    try:
        result = mlflow.models.evaluate(  # type: ignore[no-untyped-call]
            data=dataset,
            model_type=spec["model_type"],
            evaluator_config=config,
            model_id=model_id,
        )
    except Exception as error:  # a slice with one class cannot be scored
        if not prefix:
            raise
        logger.warning("kedroflow: no metrics for slice %s: %s", name, error)
        return {}
    return {k: float(v) for k, v in result.metrics.items() if _is_number(v)}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_metrics(values: Mapping[str, float], model_id: str | None) -> list[Any]:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, v, now, 0, model_id=model_id) for k, v in values.items()]


@contextlib.contextmanager
def _active_run(client: MlflowClient, run_id: str) -> Iterator[None]:
    """``run_id`` as MLflow's active run in this thread (evaluate logs to it).

    A run kedroflow did not push in this thread is pushed and popped again without
    being ended: its status stays RUNNING for its owner to close.
    """
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    mlflow.start_run(run_id=run_id, nested=active is not None)
    try:
        yield
    finally:
        mlflow.end_run()
        client.update_run(run_id, status="RUNNING")
