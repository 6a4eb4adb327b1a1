"""The ``tracking`` section of ``mlflow.yml``: its sub-sections, validated with pydantic.

Split from :mod:`kedroflow.config` (which assembles the whole file, loads it and
reports its problems) because it is most of the schema; every name here is also
importable from :mod:`kedroflow.config`. Pure: no mlflow, no side effects.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

#: Parameter names (regular expressions, case-insensitive) whose values are logged as ``***``.
DEFAULT_REDACT_PATTERNS = (
    r"passw(or)?d|passwd|(^|[^a-z])pwd($|[^a-z])",
    r"secret",
    r"token($|[^a-z])",
    r"api[_\-. ]?key",
    r"credential",
    r"private[_\-. ]?key",
    r"access[_\-. ]?key",
)


class Section(BaseModel):
    """A section of ``mlflow.yml``: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DisableTrackingConfig(Section):
    pipelines: list[str] = Field(default_factory=list)
    disable_autologging: StrictBool = True


class CreateExperimentKwargs(Section):
    artifact_location: str | None = None
    tags: dict[str, Any] | None = None


class ExperimentConfig(Section):
    name: str = "Default"
    create_experiment_kwargs: CreateExperimentKwargs = Field(
        default_factory=CreateExperimentKwargs
    )
    restore_if_deleted: StrictBool = True

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the experiment name must not be empty")
        return value


class RunConfig(Section):
    id: str | None = None
    name: str | None = None
    nested: StrictBool = True
    tags: dict[str, Any] = Field(default_factory=dict)
    #: none | namespace (a child run per top-level namespace) | pipeline (per --pipelines)
    child_runs: Literal["none", "namespace", "pipeline"] = "none"
    #: Seconds a process of a shared run stays counted after its last sign of life
    #: (renewed every third of it): how long a SIGKILLed part keeps the run open.
    participant_lease: float = Field(default=60.0, ge=3, le=86400)

    @field_validator("id")
    @classmethod
    def _run_id_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-zA-Z0-9][\w\-]{0,255}", value):
            raise ValueError(f"{value!r} is not an MLflow run id (e.g. 32 hex digits)")
        return value


class DictParamsConfig(Section):
    flatten: StrictBool = False
    recursive: StrictBool = True
    sep: str = "."


class ParamsConfig(Section):
    dict_params: DictParamsConfig = Field(default_factory=DictParamsConfig)
    long_params_strategy: Literal["fail", "truncate", "tag"] = "fail"
    redact: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACT_PATTERNS))
    #: Longest parameter value; null means MLflow's own limit, read from MLflow.
    max_length: int | None = Field(default=None, gt=0)

    @field_validator("redact")
    @classmethod
    def _valid_regexes(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{pattern!r} is not a valid regular expression: {exc}"
                ) from exc
        return patterns


class TracingConfig(Section):
    #: One MLflow trace per run, a span per node; datasets: a span per load and save.
    enabled: StrictBool = True
    datasets: StrictBool = False


class SystemMetricsConfig(Section):
    #: One MLflow system-metrics monitor per run (needs psutil), sampling every N s.
    enabled: StrictBool = False
    sampling_interval: float = Field(default=10.0, gt=0, le=3600)


_Names = Annotated[
    list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)
]


class ArtifactRule(Section):
    """A rule of ``tracking.artifacts.auto_log``; every selector given must match."""

    datasets: _Names | None = None  # globs on dataset names, namespaces included
    layers: _Names | None = None  # the catalog entry's metadata.kedro-viz.layer
    tags: _Names | None = None  # outputs of nodes with any of these tags
    exclude: _Names = Field(default_factory=list)  # globs: on to the next rule
    max_size_mb: float = Field(default=100.0, gt=0)  # larger: recorded, not copied

    @model_validator(mode="after")
    def _selects_something(self) -> ArtifactRule:
        if self.datasets is None and self.layers is None and self.tags is None:
            raise ValueError("select outputs with `datasets`, `layers` or `tags`")
        return self


class ArtifactsConfig(Section):
    auto_log: list[ArtifactRule] = Field(default_factory=list)  # first match wins


class PipelineModelConfig(Section):
    #: A run that trained none of the model's artifacts logs it, never registered.
    log_untrained: StrictBool = False


class TrackingConfig(Section):
    disable_tracking: DisableTrackingConfig = Field(
        default_factory=DisableTrackingConfig
    )
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    params: ParamsConfig = Field(default_factory=ParamsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    #: {flavor: {autolog kwargs}}: mlflow.<flavor>.autolog for the time of the run.
    autolog: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    system_metrics: SystemMetricsConfig = Field(default_factory=SystemMetricsConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    pipeline_model: PipelineModelConfig = Field(default_factory=PipelineModelConfig)
