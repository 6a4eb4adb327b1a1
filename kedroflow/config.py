"""The ``mlflow.yml`` schema, validated once with pydantic (the ``tracking`` section's
sub-sections in :mod:`kedroflow.config_tracking`).

The keys and meanings are those of kedro-mlflow 2.x, so its users' files work
unchanged, plus ``tracking.run.tags``, ``tracking.params.redact`` and
``tracking.params.max_length``. This module has no side effects: it never imports
mlflow, never touches environment variables and never contacts a server; applying the
configuration is :mod:`kedroflow.tracking`'s job.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from pydantic import BaseModel, Field, StrictBool, ValidationError

from kedroflow.config_tracking import (
    DEFAULT_REDACT_PATTERNS,
    ArtifactRule,
    ArtifactsConfig,
    CreateExperimentKwargs,
    DictParamsConfig,
    DisableTrackingConfig,
    ExperimentConfig,
    ParamsConfig,
    PipelineModelConfig,
    RunConfig,
    Section,
    SystemMetricsConfig,
    TracingConfig,
    TrackingConfig,
)
from kedroflow.errors import ConfigError
from kedroflow.file_stores import file_store_problems

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kedro.config import AbstractConfigLoader

#: Set to 1/true/yes to switch tracking off for one command, whatever mlflow.yml says.
DISABLE_ENV_VAR = "KEDROFLOW_DISABLE_TRACKING"
#: Set by the hook while a ``kedro run`` runs untracked (inherited by worker processes).
TRACKING_OFF_ENV = "_KEDROFLOW_TRACKING_OFF"
#: The open run's id, exported for ParallelRunner workers (forked or spawned).
WORKER_RUN_ENV = "_KEDROFLOW_ACTIVE_RUN_ID"
#: The outputs the auto_log rules select, as JSON, for spawned ParallelRunner workers.
AUTO_LOG_ENV = "_KEDROFLOW_AUTO_LOG"
#: The embedded default store, relative to the project root.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: Where runs go when the server is unreachable and ``on_tracking_error: continue``.
OFFLINE_STORE = "mlflow-offline"
CONFIG_PATTERNS = ["mlflow*", "mlflow*/**", "**/mlflow*"]

# The tracking section's schema lives in kedroflow.config_tracking; its names are
# importable from here too, where the rest of kedroflow and its users find them.
__all__ = [
    "AUTO_LOG_ENV",
    "CONFIG_PATTERNS",
    "DEFAULT_REDACT_PATTERNS",
    "DEFAULT_TRACKING_URI",
    "DISABLE_ENV_VAR",
    "OFFLINE_STORE",
    "TRACKING_OFF_ENV",
    "WORKER_RUN_ENV",
    "ArtifactRule",
    "ArtifactsConfig",
    "CreateExperimentKwargs",
    "DictParamsConfig",
    "DisableTrackingConfig",
    "ExperimentConfig",
    "KedroflowConfig",
    "ParamsConfig",
    "PipelineModelConfig",
    "RequestHeaderProviderConfig",
    "RunConfig",
    "ServerConfig",
    "SystemMetricsConfig",
    "TracingConfig",
    "TrackingConfig",
    "UiConfig",
    "load_config",
    "normalize_run_params",
    "resolve_uri",
    "tracking_disabled_by_env",
    "validate_config",
]


class RequestHeaderProviderConfig(Section):
    type: str | None = None
    pass_context: StrictBool = False
    init_kwargs: dict[str, Any] = Field(default_factory=dict)


class ServerConfig(Section):
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None
    credentials: str | None = None
    request_header_provider: RequestHeaderProviderConfig = Field(
        default_factory=RequestHeaderProviderConfig
    )
    #: Seconds to wait for a TCP connection to a tracking server before giving up.
    connect_timeout: float = Field(default=5.0, gt=0, le=600)
    #: Seconds MLflow waits for each answer (MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT).
    request_timeout: float = Field(default=30.0, gt=0, le=3600)
    #: Retries of a failed request (MLflow's MLFLOW_HTTP_REQUEST_MAX_RETRIES; its default 7
    #: makes an unreachable server hang a run for minutes).
    request_retries: int = Field(default=2, ge=0, le=10)
    #: fail: stop the run with a message when the server cannot be reached.
    #: continue: run anyway, tracking into a local offline store; `kedro mlflow sync`
    #: uploads it later.
    on_tracking_error: Literal["fail", "continue"] = "fail"


class UiConfig(Section):
    port: int = Field(default=5000, ge=1, le=65535)
    host: str = "127.0.0.1"


class KedroflowConfig(Section):
    """The whole ``mlflow.yml``: every section is optional."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ui: UiConfig = Field(default_factory=UiConfig)

    def tracking_uri(self, project_path: Path | str) -> str:
        """The tracking URI: ``mlflow.yml``, else ``$MLFLOW_TRACKING_URI``, else SQLite."""
        uri = self.server.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        return resolve_uri(uri or DEFAULT_TRACKING_URI, project_path)

    def registry_uri(self, project_path: Path | str) -> str | None:
        """The registry URI, or None to let MLflow use the tracking URI."""
        uri = self.server.mlflow_registry_uri
        return resolve_uri(uri, project_path) if uri else None

    def is_pipeline_disabled(self, pipeline_names: list[str]) -> bool:
        """True when every selected pipeline is listed in ``disable_tracking.pipelines``."""
        names = pipeline_names or ["__default__"]
        return all(name in self.tracking.disable_tracking.pipelines for name in names)


def normalize_run_params(run_params: Mapping[str, Any]) -> dict[str, Any]:
    """Kedro's ``run_params`` with the keys of Kedro >= 1.2 on every Kedro 1.x.

    Kedro 1.0/1.1 passes ``pipeline_name`` (one name) and ``session_id``; later
    versions pass ``pipeline_names`` (a list, empty for ``__default__``) and ``run_id``.
    """
    params = dict(run_params)
    if "pipeline_names" not in params:
        name = params.get("pipeline_name")
        params["pipeline_names"] = [name] if name else []
        params["_pipeline_option"] = "--pipeline"
    params.setdefault("run_id", params.get("session_id"))
    return params


def tracking_disabled_by_env() -> bool:
    """True when ``KEDROFLOW_DISABLE_TRACKING`` switches tracking off for this command."""
    return os.environ.get(DISABLE_ENV_VAR, "").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }


def resolve_uri(uri: str, project_path: Path | str) -> str:
    """Make relative local URIs absolute against the project root.

    ``sqlite:///mlflow.db`` becomes ``sqlite:////<project>/mlflow.db``; a bare path
    (kedro-mlflow's ``mlruns``) becomes a ``file://`` URI; URIs with a network scheme
    (``http``, ``postgresql``, ``databricks``...) are returned unchanged.
    """
    project = Path(project_path).resolve()
    if uri.split(":", 1)[0] in ("databricks", "databricks-uc"):
        return uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        relative = uri[len("sqlite:///") :]
        if relative in ("", ":memory:"):
            return uri
        return f"sqlite:///{(project / relative).resolve().as_posix()}"
    if uri.startswith("file:"):
        rest = Path(uri[len("file:") :])
        if uri.startswith("file://"):
            return uri
        return (rest if rest.is_absolute() else project / rest).resolve().as_uri()
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", uri) and not re.match(
        r"^[a-zA-Z]:[\\/]", uri
    ):
        return uri
    return (project / uri).resolve().as_uri()


def validate_config(
    raw: dict[str, Any] | None, source: str = "mlflow.yml"
) -> KedroflowConfig:
    """Validate a raw ``mlflow.yml`` dict, raising ONE ``ConfigError`` listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source} must be a mapping of sections (server, tracking, ui), "
            f"got {type(raw).__name__}: {raw!r}. Run `kedro mlflow init --force` for a template."
        )
    try:
        return KedroflowConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe_problem(error) for error in exc.errors()]
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(
            f"{source} is invalid ({len(problems)} problem{'s' * (len(problems) > 1)}):\n"
            f"{lines}\n"
            "Fix these keys, or run `kedro mlflow init --force` to start again from "
            "the commented template.",
            problems,
        ) from None


def load_config(
    config_loader: AbstractConfigLoader, package_name: str | None = None
) -> KedroflowConfig:
    """Read ``mlflow.yml`` for the loader's environment; a missing file means defaults.

    The experiment name defaults to the project's package name, as in kedro-mlflow.
    """
    from kedro.config import MissingConfigException

    patterns = getattr(config_loader, "config_patterns", None)
    if isinstance(patterns, dict) and "mlflow" not in patterns:
        patterns["mlflow"] = list(CONFIG_PATTERNS)
    try:
        raw = config_loader["mlflow"]
    except (MissingConfigException, KeyError):
        raw = {}
    raw = dict(raw or {}) if isinstance(raw, dict) else raw
    env = getattr(config_loader, "env", None)
    source = f"mlflow.yml (conf/base and conf/{env})" if env else "mlflow.yml"
    if package_name and isinstance(raw, dict):
        tracking = dict(raw.get("tracking") or {})
        experiment = tracking.get("experiment")
        if experiment is None or (
            isinstance(experiment, dict) and "name" not in experiment
        ):
            tracking["experiment"] = {**(experiment or {}), "name": package_name}
            raw["tracking"] = tracking
    config = validate_config(raw, source)
    if problems := file_store_problems(config.server):
        raise ConfigError(f"{source}: " + "\n".join(problems), problems)
    return config


def _describe_problem(error: Any) -> str:
    loc = tuple(error["loc"])
    path = ".".join(str(part) for part in loc) or "(top level)"
    value = error.get("input")
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = ""
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        if close:
            hint = f" Did you mean '{close[0]}'?"
        return f"{path}: unknown key.{hint} Allowed keys here: {', '.join(allowed)}."
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        close = difflib.get_close_matches(
            str(value), re.findall(r"'([^']*)'", expected), n=1
        )
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{path}: {value!r} is not allowed. Allowed values: {expected}.{hint}"
    if kind == "list_type":
        return f"{path}: expected a list (items starting with '- '), got {value!r}."
    if kind in ("bool_type",):
        return f"{path}: {value!r} is not a boolean. Allowed values: true, false."
    if kind == "model_type":
        allowed = _allowed_keys(loc)
        return (
            f"{path}: expected a mapping with keys {', '.join(allowed)}, got {value!r}."
        )
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{path}: {message} (got {value!r})."


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = KedroflowConfig
    for part in loc:
        if isinstance(part, int):  # an item of a list of sections (auto_log rules)
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        model = _model_in(annotation)
    return list(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
