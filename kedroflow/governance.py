"""What follows the logging of a training run's model: the model at the centre.

1. The logged model is linked to the run's data and metrics: each persisted dataset
   input is linked to the model's ``model_id`` (a point of the ``kedroflow.inputs``
   metric naming the dataset: :func:`dataset_links`) and described by a
   ``kedroflow.input.<name>`` tag (digest, source, producing run); the latest value of each of the run's metrics is
   linked to the model, so the MLflow UI's model page shows them (MLflow links those
   the run had when the model was logged; the others are linked here, with the
   model's input dataset). The run's metric history is unchanged: the same points are
   sent again, which the store does not duplicate.
2. With ``evaluation=``, the model is evaluated on held-out data
   (:mod:`kedroflow.evaluation`).
3. With a registered version and an alias, the promotion gate decides whether the
   alias moves (:mod:`kedroflow.promotion`).
4. The version's description becomes its model card (:mod:`kedroflow.model_card`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from kedroflow import model_card
from kedroflow.evaluation import evaluate_model
from kedroflow.promotion import promote

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

INPUT_TAG = "kedroflow.input."
#: The number of dataset inputs of the training run; its points link them to the model.
INPUTS_METRIC = "kedroflow.inputs"
PRODUCED_BY = "kedroflow.produced_by"
_TAG_LIMIT = 5000


def govern_model(
    client: MlflowClient,
    info: Any,
    *,
    run_id: str,
    catalog: Any,
    input_name: str,
    evaluation: Mapping[str, Any] | None,
    registered_model_name: str | None,
    alias: str | None,
    promote_if: Mapping[str, Any] | None,
    tracking_uri: str,
) -> None:
    """Link, evaluate, gate and describe the model ``info`` logged by ``run_id``."""
    run = client.get_run(run_id)
    link_to_run(client, info.model_id, run, input_name)
    metrics = dict(run.data.metrics)
    evaluated: dict[str, float] | None = None
    if evaluation:
        data = catalog.load(evaluation["data"])
        evaluated = evaluate_model(
            client, info.model_uri, model_id=info.model_id, data=data,
            spec=evaluation, run_id=run_id,
        )  # fmt: skip
        metrics.update(evaluated)
    name, version = registered_model_name, info.registered_model_version
    if not (name and version):
        return
    decision = None
    if alias:
        decision = promote(
            client, name=name, version=str(version), alias=alias,
            promote_if=promote_if, metrics=metrics,
        ).text  # fmt: skip
    run = client.get_run(run_id) if evaluated else run  # with the evaluation inputs
    card = model_card.render(
        run,
        run_link=model_card.run_link(tracking_uri, run),
        model_uri=info.model_uri,
        evaluation=evaluated,
        decision=decision,
    )
    model_card.write(client, name, str(version), card)


def link_to_run(client: MlflowClient, model_id: str, run: Any, input_name: str) -> None:
    """Give the logged model the run's dataset inputs and its latest metrics.

    The same three requests whatever the number of inputs: the model's tags, its
    linked metrics, and one batch (chunked at MLflow's limit) of metrics: the run's latest values not linked yet,
    with the model's input dataset, and :func:`dataset_links`.
    """
    from mlflow.entities import Metric

    inputs = list(run.inputs.dataset_inputs if run.inputs else [])
    model_input = next(
        (i.dataset for i in inputs if i.dataset.name == input_name), None
    )
    tags = _input_tags(inputs)
    if tags:
        client.set_logged_model_tags(model_id, tags)
    # MLflow links the metrics a run has when the model is logged: the others only
    linked_already = {m.key for m in client.get_logged_model(model_id).metrics or []}
    linked = [
        Metric(
            m.key,
            m.value,
            m.timestamp,
            m.step,
            model_id=model_id,
            dataset_name=model_input.name if model_input else None,
            dataset_digest=model_input.digest if model_input else None,
        )
        for m in (Metric.from_proto(p) for p in run.data.to_proto().metrics)
        if m.key not in linked_already
    ]
    linked += dataset_links(model_id, inputs)
    for start in range(0, len(linked), 1000):  # MLflow's batch limit
        client.log_batch(run.info.run_id, metrics=linked[start : start + 1000])


def _input_tags(inputs: list[Any]) -> dict[str, str]:
    """``kedroflow.input.<name>`` model tags: digest, source and producing run."""
    tags = {}
    for item in inputs:
        dataset = item.dataset
        context = {t.key: t.value for t in item.tags}
        described = f"digest={dataset.digest} source={dataset.source}"
        if context.get(PRODUCED_BY):
            described += f" produced_by={context[PRODUCED_BY]}"
        tags[f"{INPUT_TAG}{dataset.name}"] = described[:_TAG_LIMIT]
    return tags


def dataset_links(model_id: str, inputs: list[Any]) -> list[Any]:
    """The model's links to the run's dataset inputs: one :data:`INPUTS_METRIC` point each.

    MLflow 3 links a dataset to a logged model only through a metric of the model
    that names the dataset: the MLflow UI's "Datasets used" on the model page,
    ``get_logged_model(...).metrics`` and ``search_logged_models(datasets=[...])`` read
    those (``log_inputs(models=[LoggedModelInput])`` says a run *used* a model, and
    no model view reads it). One metric key for all the inputs, point ``i`` naming
    input ``i``, so the run gains one metric, not one per input: the number of
    datasets the model was trained from.
    """
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(
            INPUTS_METRIC,
            float(len(inputs)),
            now,
            step,
            model_id=model_id,
            dataset_name=item.dataset.name,
            dataset_digest=item.dataset.digest,
        )
        for step, item in enumerate(inputs)
    ]
