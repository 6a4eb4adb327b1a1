"""``PipelineML``: a training pipeline bound to the inference pipeline it serves.

Register the binding in ``pipeline_registry.py``; every tracked ``kedro run`` that
executes the training pipeline (by name, inside ``__default__``, or filtered with
``--tags``/``--nodes``/``--namespaces``/``--to-outputs``) then logs the inference
pipeline, with the artifacts it needs, as one MLflow model linked to the run:

```python
from kedroflow import pipeline_ml_factory


def register_pipelines():
    ml = create_ml_pipeline()
    training = pipeline_ml_factory(
        training=ml.only_nodes_with_tags("training"),
        inference=ml.only_nodes_with_tags("inference"),
        input_name="instances",
        log_model_kwargs={
            "registered_model_name": "reviews",
            "registered_model_alias": "champion",
        },
    )
    return {"training": training, "__default__": training}
```

Kedro 1.x rebuilds the pipeline it runs with ``+`` and ``.filter()``, so hooks receive
a plain ``Pipeline``: kedroflow finds the binding again in the project's pipeline
registry (:func:`find_pipeline_ml`). This module does not import MLflow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kedro.io.core import is_parameter
from kedro.pipeline import Pipeline

from kedroflow.errors import PipelineMLError
from kedroflow.gate_config import check_evaluation, check_promote_if

logger = logging.getLogger(__name__)

#: ``kpm_kwargs`` keys understood by ``KedroPipelineModel``.
KPM_KWARGS = {"copy_mode", "output_name"}
_COPY_MODES = {"assign", "copy", "deepcopy"}
#: ``log_model_kwargs`` keys: those of ``mlflow.pyfunc.log_model`` kedroflow leaves to
#: the user, plus ``registered_model_alias``; ``validate_serving_input`` (off by
#: default, see kedroflow.packaging) is ``Model.log``'s.
LOG_MODEL_KWARGS = {
    "name",
    "registered_model_name",
    "registered_model_alias",
    "await_registration_for",
    "signature",
    "input_example",
    "code_paths",
    "pip_requirements",
    "extra_pip_requirements",
    "conda_env",
    "metadata",
    "tags",
    "params",
    "model_type",
    "step",
    "resources",
    "validate_serving_input",
    "promote_if",
}
_OWNED_BY_KEDROFLOW = {
    "python_model",
    "artifacts",
    "loader_module",
    "data_path",
    "model_config",
}
LOG_MODEL_DEFAULTS: dict[str, Any] = {"name": "model", "signature": "auto"}


class PipelineML(Pipeline):
    """A Kedro ``Pipeline`` (the training nodes) that carries its inference pipeline.

    Build it with :func:`pipeline_ml_factory`. It behaves as the training pipeline
    everywhere (``kedro run``, ``kedro viz``, ``+``, filters, which return plain
    ``Pipeline`` objects as in Kedro); the binding is found again through the
    project's pipeline registry after a run.

    Examples:
        >>> from kedro.pipeline import Node, Pipeline
        >>> def fit(x):
        ...     return max(x)
        >>> def predict(x, m):
        ...     return [v / m for v in x]
        >>> ml = pipeline_ml_factory(
        ...     training=Pipeline([Node(fit, "data", "model", name="fit")]),
        ...     inference=Pipeline(
        ...         [Node(predict, ["instances", "model"], "scores", name="predict")]
        ...     ),
        ...     input_name="instances",
        ... )
        >>> ml.input_name, ml.output_name, sorted(ml.artifact_names)
        ('instances', 'scores', ['model'])
    """

    def __init__(
        self,
        nodes: Iterable[Any] | Pipeline,
        *,
        inference: Pipeline,
        input_name: str,
        kpm_kwargs: Mapping[str, Any] | None = None,
        log_model_kwargs: Mapping[str, Any] | None = None,
        tags: str | Iterable[str] | None = None,
        evaluation: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(nodes, tags=tags)
        if not isinstance(inference, Pipeline):
            raise PipelineMLError(
                f"'inference' must be a kedro Pipeline, got {type(inference).__name__}."
            )
        self._inference = inference
        self._input_name = input_name
        self.kpm_kwargs = _check_kpm_kwargs(dict(kpm_kwargs or {}))
        self.log_model_kwargs = _check_log_model_kwargs(dict(log_model_kwargs or {}))
        #: Held-out evaluation settings (kedroflow.gate_config.Evaluation), or None.
        self.evaluation = check_evaluation(evaluation)
        self._output_name = self._check_binding()

    @property
    def training(self) -> Pipeline:
        """The training nodes as a plain ``Pipeline``."""
        return Pipeline(self.nodes)

    @property
    def inference(self) -> Pipeline:
        """The pipeline logged and served as the model."""
        return self._inference

    @property
    def input_name(self) -> str:
        """The inference input fed with the data given to ``predict``."""
        return self._input_name

    @property
    def output_name(self) -> str:
        """The inference output returned by ``predict``."""
        return self._output_name

    @property
    def parameter_names(self) -> set[str]:
        """Inference inputs that are parameters (``params:*`` or ``parameters``)."""
        return {n for n in self._inference.inputs() if is_parameter(n)}

    @property
    def artifact_names(self) -> set[str]:
        """Inference inputs stored with the model (fitted objects, lookup files...)."""
        return self._inference.inputs() - {self._input_name} - self.parameter_names

    def _check_binding(self) -> str:
        inputs = self._inference.inputs()
        if self._input_name not in inputs:
            raise PipelineMLError(
                f"input_name '{self._input_name}' is not an input of the inference "
                f"pipeline, whose free inputs are {sorted(inputs)}. Pass one of them "
                "as input_name (the dataset that predict() receives)."
            )
        training_datasets = self.all_outputs() | self.inputs()
        unknown = sorted(self.artifact_names - training_datasets)
        if unknown:
            raise PipelineMLError(
                f"The inference pipeline needs {unknown}, which the training pipeline "
                "neither produces nor reads, so the model could not be rebuilt from a "
                "training run. Produce or read them in the training pipeline, or make "
                f"them parameters; input_name is '{self._input_name}'."
            )
        outputs = sorted(self._inference.outputs())
        wanted = self.kpm_kwargs.get("output_name")
        if wanted is not None:
            if wanted not in self._inference.all_outputs():
                raise PipelineMLError(
                    f"kpm_kwargs output_name '{wanted}' is not an output of the "
                    f"inference pipeline; its free outputs are {outputs}."
                )
            return str(wanted)
        if len(outputs) != 1:
            raise PipelineMLError(
                f"The inference pipeline must have exactly one free output (what "
                f"predict() returns), it has {len(outputs)}: {outputs}. Remove the "
                "extra outputs, or name the one to return with "
                "kpm_kwargs={'output_name': ...}."
            )
        return outputs[0]

    def __repr__(self) -> str:
        return (
            f"PipelineML({len(self.nodes)} training nodes, "
            f"{len(self._inference.nodes)} inference nodes, "
            f"input_name={self._input_name!r}, output_name={self._output_name!r})"
        )


def pipeline_ml_factory(
    training: Pipeline,
    inference: Pipeline,
    input_name: str,
    kpm_kwargs: Mapping[str, Any] | None = None,
    log_model_kwargs: Mapping[str, Any] | None = None,
    *,
    evaluation: Mapping[str, Any] | None = None,
) -> PipelineML:
    """Bind ``training`` to ``inference``; every training run logs ``inference``.

    Args:
        training: The nodes that fit the artifacts (run by ``kedro run``).
        inference: The nodes served as the model. Its free inputs must be
            ``input_name``, parameters, or datasets the training pipeline reads or
            writes (the artifacts stored with the model).
        input_name: The inference input fed with ``predict``'s data.
        kpm_kwargs: ``output_name`` (when the inference pipeline has several free
            outputs) and ``copy_mode`` (``"assign"`` by default: artifacts are
            passed to the nodes as is, never copied; a mode, or a dict of dataset
            name to ``"copy"``/``"deepcopy"``, for nodes that mutate their inputs).
        log_model_kwargs: ``mlflow.pyfunc.log_model`` arguments (``name``,
            ``registered_model_name``, ``signature`` (``"auto"``, None or a
            ``ModelSignature``), ``input_example``, ``code_paths``,
            ``pip_requirements``, ``extra_pip_requirements``, ``metadata``, ...) plus
            ``registered_model_alias`` (e.g. ``"champion"``) to point an alias at
            the registered version. ``artifact_path`` is accepted as ``name``.
            ``validate_serving_input=True`` makes MLflow reload the saved model to
            predict its input example (off: kedroflow predicts on it before saving).
            ``promote_if`` (thresholds on the run's metrics and ``beat_current``)
            gates the alias: see :mod:`kedroflow.promotion`.
        evaluation: ``{"data": <catalog dataset>, "targets": <column>,
            "model_type": "classifier" | "regressor", "slices": [<column>, ...]}``:
            evaluate the logged model on held-out data with
            ``mlflow.models.evaluate``, per slice too (see :mod:`kedroflow.evaluation`).

    Returns:
        The training pipeline, carrying the binding.

    Raises:
        PipelineMLError: The binding is inconsistent; the message names the
            datasets or keys at fault.
    """
    return PipelineML(
        training,
        inference=inference,
        input_name=input_name,
        kpm_kwargs=kpm_kwargs,
        log_model_kwargs=log_model_kwargs,
        evaluation=evaluation,
    )


def _check_kpm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - KPM_KWARGS)
    if unknown:
        raise PipelineMLError(
            f"Unknown kpm_kwargs {unknown}; allowed: {sorted(KPM_KWARGS)}. (The "
            "runner option of kedro-mlflow is gone: nodes are called directly.)"
        )
    mode = kwargs.get("copy_mode", "assign")
    modes = mode.values() if isinstance(mode, Mapping) else [mode]
    bad = sorted(str(m) for m in modes if m not in _COPY_MODES)
    if bad:
        raise PipelineMLError(
            f"kpm_kwargs copy_mode {bad} is not one of {sorted(_COPY_MODES)} (a mode "
            "for every dataset, or a dict of dataset name to mode)."
        )
    return kwargs


def parse_copy_mode(text: str) -> str | dict[str, str]:
    """A copy mode given as text (``kedro mlflow modelify --copy-mode``).

    Examples:
        >>> parse_copy_mode("deepcopy"), parse_copy_mode('{"model": "copy"}')
        ('deepcopy', {'model': 'copy'})
    """
    import json

    value: Any = text.strip()
    if value.startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PipelineMLError(
                f"copy mode {text!r} is not valid JSON ({exc.msg})."
            ) from None
    return _check_kpm_kwargs({"copy_mode": value})["copy_mode"]  # type: ignore[no-any-return]


def _check_log_model_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    if "artifact_path" in kwargs:
        if "name" in kwargs:
            raise PipelineMLError(
                "log_model_kwargs has both 'artifact_path' and 'name': keep 'name' "
                "(artifact_path is its deprecated MLflow 2 spelling)."
            )
        logger.warning(
            "log_model_kwargs 'artifact_path' is deprecated in MLflow 3: use 'name'."
        )
        kwargs["name"] = kwargs.pop("artifact_path")
    owned = sorted(set(kwargs) & _OWNED_BY_KEDROFLOW)
    if owned:
        raise PipelineMLError(
            f"log_model_kwargs {owned} are set by kedroflow from the inference "
            "pipeline and the catalog; remove them."
        )
    unknown = sorted(set(kwargs) - LOG_MODEL_KWARGS)
    if unknown:
        raise PipelineMLError(
            f"Unknown log_model_kwargs {unknown}; allowed: {sorted(LOG_MODEL_KWARGS)}."
        )
    if kwargs.get("registered_model_alias") and not kwargs.get("registered_model_name"):
        raise PipelineMLError(
            "log_model_kwargs registered_model_alias needs registered_model_name "
            "(the alias points at the version registered under that name)."
        )
    if "promote_if" in kwargs:
        kwargs["promote_if"] = check_promote_if(
            kwargs["promote_if"], kwargs.get("registered_model_alias")
        )
    return {**LOG_MODEL_DEFAULTS, **kwargs}


def find_pipeline_ml(
    registry: Mapping[str, Pipeline], names: Iterable[str], executed: Pipeline
) -> list[tuple[str, PipelineML]]:
    """The ``PipelineML`` bindings concerned by a run of ``names``.

    A binding is concerned when it is registered under one of ``names``, or when
    every one of its training nodes belongs to one of those pipelines (e.g. the
    template's ``__default__ = sum(pipelines.values())``), and the run executed at
    least one of its training nodes. Each binding is returned once, with the first
    registry name it was found under.
    """
    requested = [n for n in names if n in registry]
    executed_nodes = {n.name for n in executed.nodes}
    found: dict[int, tuple[str, PipelineML]] = {}
    for name in requested:
        candidate = registry[name]
        if isinstance(candidate, PipelineML):
            found.setdefault(id(candidate), (name, candidate))
    if not found:
        requested_nodes = {n.name for name in requested for n in registry[name].nodes}
        for name, candidate in registry.items():
            if (
                isinstance(candidate, PipelineML)
                and {n.name for n in candidate.nodes} <= requested_nodes
            ):
                found.setdefault(id(candidate), (name, candidate))
    return [
        (name, ml)
        for name, ml in found.values()
        if {n.name for n in ml.nodes} & executed_nodes
    ]
