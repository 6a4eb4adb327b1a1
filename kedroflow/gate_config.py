"""The evaluation and promotion settings of a ``PipelineML``, validated (no MLflow).

``pipeline_ml_factory(..., evaluation={...}, log_model_kwargs={"promote_if": {...}})``
are checked here when the pipeline registry is built, so a typo fails ``kedro run``
before anything trains, with one message naming every problem.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from kedroflow.errors import PipelineMLError

BEAT_CURRENT = "beat_current"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Evaluation(_Strict):
    """``evaluation=`` of ``pipeline_ml_factory``."""

    data: str  # catalog dataset of held-out rows: the model's input columns + targets
    targets: str  # column of the true values
    model_type: Literal["classifier", "regressor"]
    slices: list[str] = []  # columns whose every value gets its own metrics
    predictions: str | None = None  # output column to score, for DataFrame outputs
    evaluator_config: dict[str, Any] = {}  # passed to mlflow.models.evaluate


class _Bounds(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> _Bounds:
        if self.min is None and self.max is None:
            raise ValueError("give 'min' and/or 'max'")
        return self


class _Beat(_Strict):
    metric: str
    greater_is_better: bool = True


def check_evaluation(value: Any) -> dict[str, Any] | None:
    """The validated ``evaluation`` as plain data (None when not given)."""
    if value is None:
        return None
    try:
        return Evaluation.model_validate(value).model_dump()
    except ValidationError as exc:
        raise PipelineMLError(
            f"pipeline_ml_factory evaluation is invalid: {_problems(exc)}. Expected "
            "{'data': <catalog dataset>, 'targets': <column>, 'model_type': "
            "'classifier' | 'regressor', 'slices': [<column>, ...]}."
        ) from None


def check_promote_if(value: Any, alias: str | None) -> dict[str, Any]:
    """The validated ``promote_if`` of ``log_model_kwargs`` as plain data."""
    if not isinstance(value, dict) or not value:
        raise PipelineMLError(
            "log_model_kwargs promote_if must be a non-empty dict such as "
            "{'valid.f1': {'min': 0.8}, 'beat_current': 'valid.f1'}."
        )
    if not alias:
        raise PipelineMLError(
            "log_model_kwargs promote_if needs registered_model_alias (and "
            "registered_model_name): the gate decides whether that alias moves."
        )
    checked: dict[str, Any] = {}
    problems = []
    for metric, rule in value.items():
        try:
            if metric == BEAT_CURRENT and isinstance(rule, str):
                checked[metric] = rule  # the gate infers the direction from the name
            elif metric == BEAT_CURRENT:
                checked[metric] = _Beat.model_validate(rule).model_dump()
            else:
                bounds = _Bounds.model_validate(rule).model_dump()
                checked[str(metric)] = {
                    k: v for k, v in bounds.items() if v is not None
                }
        except ValidationError as exc:
            problems.append(f"'{metric}': {_problems(exc)}")
    if problems:
        raise PipelineMLError(
            "log_model_kwargs promote_if is invalid: " + "; ".join(problems) + ". "
            "Each metric takes {'min': x} and/or {'max': y}; 'beat_current' takes a "
            "metric name or {'metric': ..., 'greater_is_better': False}."
        )
    return checked


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors()
    )
