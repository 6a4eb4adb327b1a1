"""The only module that configures MLflow and holds run state.

One MLflow run per ``kedro run``: :func:`start_run` configures the stores, finds or
creates the experiment, opens the run with its tags in one request and logs the
parameters in batches of at most 100; :func:`end_run` closes it and restores the
process environment. Everything logs through an explicit run id, because MLflow's
active run is thread-local and ThreadRunner/ParallelRunner workers do not see it.
Datasets ask :func:`current_run_id` and :func:`client`, never the hook.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils import validation as mlflow_limits

from kedroflow.config import TRACKING_OFF_ENV, normalize_run_params
from kedroflow.errors import TrackingError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from kedroflow.config import KedroflowConfig, ParamsConfig

logger = logging.getLogger(__name__)

#: Exported while a run is open so that spawned ParallelRunner workers find it.
RUN_ID_ENV_VAR = "_KEDROFLOW_ACTIVE_RUN_ID"
REDACTED = "***"
_KEY_FORBIDDEN = re.compile(r"[^\w\-. /:]")


@dataclass
class _OpenRun:
    run_id: str
    experiment_id: str
    owned: bool  # started by kedroflow: kedroflow ends it
    pushed: bool  # pushed on MLflow's fluent stack in this thread
    participant: str | None = None  # shared run: this process's participant tag
    saved_env: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _State:
    run: _OpenRun | None = None
    secrets: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATE = _State()


def current_run_id() -> str | None:
    """The MLflow run of the ``kedro run`` in progress, in any thread or worker process.

    Falls back to MLflow's own active run, so datasets also work in a notebook where
    the user called ``mlflow.start_run()``.
    """
    if _STATE.run is not None:
        return _STATE.run.run_id
    if os.environ.get(RUN_ID_ENV_VAR):
        return os.environ[RUN_ID_ENV_VAR]
    active = mlflow.active_run()
    return active.info.run_id if active else None


def tracking_disabled() -> bool:
    """True while a ``kedro run`` runs with tracking switched off: datasets do not log.

    Read from the environment too, so that ParallelRunner workers (forked or spawned)
    and runs switched off before kedroflow.tracking was imported see it.
    """
    return bool(os.environ.get(TRACKING_OFF_ENV))


@functools.lru_cache(maxsize=8)
def _client(tracking_uri: str, registry_uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


def client() -> MlflowClient:
    """An ``MlflowClient`` on the configured stores, shared by datasets and hooks."""
    return _client(mlflow.get_tracking_uri(), mlflow.get_registry_uri())


def start_run(
    config: KedroflowConfig,
    *,
    project_path: Path,
    run_name: str,
    tags: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
    context: Any = None,
) -> str:
    """Configure MLflow and open the run of this ``kedro run``; return its id.

    ``credentials`` is the project's ``credentials.yml``: the ``server.credentials``
    entry is given to the MLflow client for the run, and no value of it ever reaches
    MLflow as a parameter or tag.
    """
    with _STATE.lock:
        if _STATE.run is not None:
            logger.warning(
                "MLflow run %s of a previous kedro run was still open: it is marked "
                "KILLED (the previous run was interrupted).",
                _STATE.run.run_id,
            )
            _close(RunStatus.to_string(RunStatus.KILLED))
        os.environ.pop(TRACKING_OFF_ENV, None)
        _STATE.secrets = set(_secret_values(credentials or {}))
        saved_env = _apply_environment(config, project_path, credentials, context)
        try:
            run = _open_run_or_go_offline(config, project_path, run_name, dict(tags))
        except BaseException:
            _restore_env(saved_env)
            raise
        run.saved_env = saved_env
        _STATE.run = run
        os.environ[RUN_ID_ENV_VAR] = run.run_id
        _register_atexit()
        return run.run_id


def end_run(status: str = "FINISHED", error: BaseException | None = None) -> None:
    """Close the run with ``status``; record ``error`` on it when there is one."""
    with _STATE.lock:
        run = _STATE.run
        if run is None:
            return
        if error is not None:
            message = f"{type(error).__name__}: {error}"
            try:
                client().set_tag(
                    run.run_id, "kedroflow.error", _clip(message, _tag_limit())
                )
            except MlflowException:
                logger.exception(
                    "Could not record the error on MLflow run %s", run.run_id
                )
        _close(status)


def log_params(
    params: Mapping[str, Any], settings: ParamsConfig, run_id: str | None = None
) -> dict[str, str]:
    """Log ``params`` in batches of at most 100 per request; return what was logged."""
    run_id = run_id or current_run_id()
    if run_id is None:
        raise TrackingError("No MLflow run is open to log parameters to.")
    values, tags = prepare_params(params, settings)
    if values or tags:
        client().log_batch(
            run_id,
            params=[Param(key, value) for key, value in values.items()],
            tags=[RunTag(key, value) for key, value in tags.items()],
        )
    return values


def log_tags(tags: Mapping[str, Any], run_id: str | None = None) -> None:
    """Set several tags in as few requests as MLflow allows."""
    run_id = run_id or current_run_id()
    if run_id and tags:
        limit = _tag_limit()
        client().log_batch(
            run_id,
            tags=[RunTag(k, _clip(scrub(str(v)), limit)) for k, v in tags.items()],
        )


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    """Store ``text`` as an artifact of the run."""
    run_id = run_id or current_run_id()
    if run_id:
        client().log_text(run_id, scrub(text), artifact_file)


def reset() -> None:
    """Forget all run state without calling MLflow (tests and interactive sessions)."""
    with _STATE.lock:
        if _STATE.run is not None:
            _restore_env(_STATE.run.saved_env)
        _STATE.run = None
        os.environ.pop(TRACKING_OFF_ENV, None)
        _STATE.secrets = set()
        os.environ.pop(RUN_ID_ENV_VAR, None)


# --------------------------------------------------------------------------- params


def prepare_params(
    params: Mapping[str, Any], settings: ParamsConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """Flatten, redact, stringify and size-check parameters.

    Returns the parameters to log and, with ``long_params_strategy: tag``, the
    over-long ones to log as tags instead. Nothing here calls MLflow.
    """
    redact = [re.compile(pattern, re.IGNORECASE) for pattern in settings.redact]
    dict_params = settings.dict_params
    flat: dict[str, Any] = {}
    for name, value in params.items():
        if dict_params.flatten and isinstance(value, dict):
            flat.update(flatten(value, name, dict_params.sep, dict_params.recursive))
        else:
            flat[name] = value
    limit = settings.max_length or mlflow_limits.MAX_PARAM_VAL_LENGTH
    values: dict[str, str] = {}
    tags: dict[str, str] = {}
    for name, value in flat.items():
        key = sanitize_key(name)
        text = (
            REDACTED if _matches(name, redact) else str(_redact_nested(value, redact))
        )
        text = scrub(text)
        if len(text) <= limit:
            values[key] = text
        elif settings.long_params_strategy == "truncate":
            values[key] = text[:limit]
        elif settings.long_params_strategy == "tag":
            tags[key] = _clip(text, _tag_limit())
        else:
            raise TrackingError(
                f"Parameter '{name}' is {len(text)} characters long; MLflow accepts at "
                f"most {limit}. Set tracking.params.long_params_strategy to 'truncate' "
                "or 'tag' in mlflow.yml, or tracking.params.dict_params.flatten: true "
                "for dict parameters."
            )
    return values, tags


def sanitize_key(name: str) -> str:
    """A valid MLflow key: Kedro's ``params:`` prefix dropped, odd characters as ``_``."""
    if name.startswith("params:"):
        name = name[len("params:") :]
    key = _KEY_FORBIDDEN.sub("_", name).strip("/")
    key = key.replace("..", "_.")
    return key[: mlflow_limits.MAX_ENTITY_KEY_LENGTH] or "_"


def flatten(
    value: dict, prefix: str, sep: str = ".", recursive: bool = True
) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` with prefix ``p`` -> ``{"p.a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{sep}{key}"
        if recursive and isinstance(item, dict) and item:
            out.update(flatten(item, name, sep, recursive))
        else:
            out[name] = item
    return out


def _matches(name: str, patterns: Iterable[re.Pattern[str]]) -> bool:
    return any(pattern.search(name) for pattern in patterns)


def _redact_nested(value: Any, patterns: list[re.Pattern[str]]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if _matches(str(key), patterns):
                _STATE.secrets.update(_secret_values(item))
                out[key] = REDACTED
            else:
                out[key] = _redact_nested(item, patterns)
        return out
    if isinstance(value, list | tuple):
        return type(value)(_redact_nested(item, patterns) for item in value)
    return value


def scrub(text: str) -> str:
    """Replace every known secret value (from credentials.yml) in ``text`` by ``***``."""
    for secret in sorted(_STATE.secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _secret_values(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [value for item in tree.values() for value in _secret_values(item)]
    if isinstance(tree, list | tuple):
        return [value for item in tree for value in _secret_values(item)]
    text = str(tree) if tree is not None and not isinstance(tree, bool) else ""
    return [text] if len(text) >= 4 else []  # noqa: PLR2004 - shorter values are not secrets


def _tag_limit() -> int:
    return int(mlflow_limits.MAX_TAG_VAL_LENGTH)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------- git tags


def git_info(project_path: Path) -> tuple[dict[str, str], str | None]:
    """Tags describing the project's git state, and the uncommitted diff if dirty."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", str(project_path), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}, None
    tags = {"git.commit": commit.strip(), "mlflow.source.git.commit": commit.strip()}
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    if branch:
        tags["git.branch"] = branch.strip()
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = bool(status and status.strip())
    tags["git.dirty"] = str(dirty).lower()
    diff = git("diff", "HEAD") if dirty else None
    return tags, diff


# ------------------------------------------------------------------- run lifecycle


def project_credentials(context: Any) -> dict[str, Any]:
    """The project's ``credentials.yml`` (empty when there is none)."""
    try:
        return dict(context.config_loader["credentials"])
    except Exception:
        return {}


@contextlib.contextmanager
def stores(
    config: KedroflowConfig,
    *,
    project_path: Path,
    context: Any = None,
    run_id: str | None = None,
) -> Iterator[str]:
    """MLflow on the configured stores for a command outside a ``kedro run``.

    What a run gets, without a run: the tracking and registry URIs, the server
    credentials, timeouts and header provider of ``mlflow.yml``, and the experiment of
    ``run_id`` (or of ``mlflow.yml``, created where a run would create it) made the
    current one. Yields the experiment id. On exit the URIs and environment variables
    are restored; the experiment stays MLflow's current one, as after
    ``mlflow.set_experiment``.
    """
    credentials = project_credentials(context) if context is not None else None
    with _STATE.lock:
        saved = _apply_environment(config, project_path, credentials, context)
    saved.setdefault("MLFLOW_EXPERIMENT_ID", os.environ.get("MLFLOW_EXPERIMENT_ID"))
    try:
        experiment_id = (
            client().get_run(run_id).info.experiment_id
            if run_id
            else _experiment_id(config, project_path)
        )
        mlflow.set_experiment(experiment_id=experiment_id)
        yield str(experiment_id)
    finally:
        _restore_env(saved)


def _apply_environment(
    config: KedroflowConfig,
    project_path: Path,
    credentials: Mapping[str, Any] | None,
    context: Any,
) -> dict[str, str | None]:
    """Point MLflow at the configured stores; return the env values to restore."""
    saved: dict[str, str | None] = {}

    def export(name: str, value: str) -> None:
        saved.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    server = config.server
    if server.credentials:
        creds = (credentials or {}).get(server.credentials)
        if not isinstance(creds, dict):
            raise TrackingError(
                f"server.credentials is '{server.credentials}' but credentials.yml has "
                f"no mapping under that key. Add `{server.credentials}: "
                "{MLFLOW_TRACKING_USERNAME: ..., MLFLOW_TRACKING_PASSWORD: ...}` to "
                "conf/local/credentials.yml, or set server.credentials: null."
            )
        for name, value in creds.items():
            export(str(name), str(value))
    http = {
        "request_timeout": "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "request_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    }
    for key, env_name in http.items():
        # an explicit mlflow.yml value wins; else the user's env var; else our default
        if key in server.model_fields_set or env_name not in os.environ:
            value = getattr(server, key)
            export(env_name, str(int(value) if key == "request_timeout" else value))
    saved.setdefault("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI"))
    saved.setdefault("MLFLOW_REGISTRY_URI", os.environ.get("MLFLOW_REGISTRY_URI"))
    if mlflow.active_run() is None:
        mlflow.set_tracking_uri(config.tracking_uri(project_path))
        registry = config.registry_uri(project_path)
        if registry:
            mlflow.set_registry_uri(registry)
    else:
        logger.info(
            "An MLflow run is already active: kedroflow keeps its tracking URI %s",
            mlflow.get_tracking_uri(),
        )
    _register_header_provider(config, context)
    if config.tracking.disable_tracking.disable_autologging:
        mlflow.autolog(disable=True)
    return saved


def _restore_env(saved: Mapping[str, str | None]) -> None:
    uri = saved.get("MLFLOW_TRACKING_URI")
    registry = saved.get("MLFLOW_REGISTRY_URI")
    mlflow.set_tracking_uri(uri)  # type: ignore[arg-type]
    mlflow.set_registry_uri(registry)  # type: ignore[arg-type]
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


_REGISTERED_PROVIDERS: set[tuple[str, str]] = set()


def _register_header_provider(config: KedroflowConfig, context: Any) -> None:
    provider = config.server.request_header_provider
    if not provider.type:
        return
    from kedro.utils import load_obj
    from mlflow.tracking.request_header.abstract_request_header_provider import (
        RequestHeaderProvider,
    )
    from mlflow.tracking.request_header.registry import (
        _request_header_provider_registry as registry,
    )

    key = (provider.type, repr(sorted(provider.init_kwargs.items())))
    if key in _REGISTERED_PROVIDERS:
        return
    try:
        cls = load_obj(provider.type)
    except (ImportError, AttributeError, ValueError) as exc:
        raise TrackingError(
            f"server.request_header_provider.type: cannot import '{provider.type}' "
            f"({exc}). Give the dotted path of a RequestHeaderProvider subclass."
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, RequestHeaderProvider)):
        raise TrackingError(
            f"server.request_header_provider.type: '{provider.type}' is not a subclass "
            "of mlflow.tracking.request_header.abstract_request_header_provider."
            "RequestHeaderProvider."
        )
    kwargs = dict(provider.init_kwargs)
    if provider.pass_context:
        kwargs["kedro_context"] = context
    registry.register(functools.partial(cls, **kwargs))  # type: ignore[no-untyped-call]
    _REGISTERED_PROVIDERS.add(key)


def _experiment_id(config: KedroflowConfig, project_path: Path) -> str:
    experiment = config.tracking.experiment
    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(experiment.name)
    if found is None:
        kwargs = experiment.create_experiment_kwargs
        location = kwargs.artifact_location
        if location and "://" not in location and not Path(location).is_absolute():
            location = (project_path / location).resolve().as_uri()
        uri = mlflow.get_tracking_uri()
        if location is None and uri.startswith("sqlite:"):
            # next to the SQLite file, not in whatever the current directory is
            database = Path(uri[len("sqlite:///") :])
            name = sanitize_key(experiment.name).replace("/", "_")
            location = (database.parent / "mlartifacts" / name).as_uri()
        try:
            return str(
                mlflow_client.create_experiment(
                    experiment.name, artifact_location=location, tags=kwargs.tags
                )
            )
        except MlflowException as exc:
            # another process (a parallel `kedro run`) created it first
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = mlflow_client.get_experiment_by_name(experiment.name)
            if found is None:
                raise

    if found.lifecycle_stage == "deleted":
        if not experiment.restore_if_deleted:
            raise TrackingError(
                f"MLflow experiment '{experiment.name}' is deleted. Restore it in the "
                "MLflow UI, choose another tracking.experiment.name, or set "
                "tracking.experiment.restore_if_deleted: true in mlflow.yml."
            )
        mlflow_client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


def _open_run_or_go_offline(
    config: KedroflowConfig, project_path: Path, run_name: str, tags: dict[str, Any]
) -> _OpenRun:
    """Open the run; when the server is unreachable, fail fast or go offline."""
    uri = mlflow.get_tracking_uri()
    server = config.server
    try:
        _probe(uri, server.connect_timeout)
        return _open_run(config, project_path, run_name, tags)
    except TrackingError as exc:
        error: Exception = exc
    except (MlflowException, OSError) as exc:
        if not uri.startswith(("http://", "https://")):
            raise
        error = exc
    if server.on_tracking_error == "fail":
        raise TrackingError(
            f"Cannot track this run on the MLflow server {_safe_uri(uri)}: {error}\n"
            "Start the server or fix server.mlflow_tracking_uri in mlflow.yml; if it is "
            "only slow, raise server.connect_timeout / server.request_timeout; to run "
            "anyway and upload the tracking later with `kedro mlflow sync`, set "
            "server.on_tracking_error: continue."
        ) from None
    offline = offline_uri(project_path)
    logger.warning(
        "kedroflow: the MLflow server %s cannot be reached (%s). Tracking this run in "
        "the local offline store %s instead; upload it later with `kedro mlflow sync`.",
        _safe_uri(uri),
        error,
        offline,
    )
    mlflow.set_tracking_uri(offline)
    mlflow.set_registry_uri(offline)
    tags["kedroflow.offline_for"] = _safe_uri(uri)
    return _open_run(config, project_path, run_name, tags)


def offline_uri(project_path: Path) -> str:
    """The local store of runs made while the server was unreachable."""
    from kedroflow.config import OFFLINE_STORE

    folder = (project_path / OFFLINE_STORE).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'mlflow.db').as_posix()}"


_USERINFO = re.compile(r"//[^/@]*@")


def _safe_uri(uri: str) -> str:
    """The URI with any user:password part masked, for messages and tags."""
    return _USERINFO.sub("//***@", uri)


def _probe(uri: str, timeout: float) -> None:
    """Fail within ``timeout`` seconds when an http(s) tracking server does not answer.

    Any HTTP answer (even 401) counts as reachable; no answer in time does not.
    """
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        base = _USERINFO.sub("//", uri).rstrip("/")  # credentials go in headers
        with urllib.request.urlopen(base + "/health", timeout=timeout):  # noqa: S310
            pass
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"no answer within {timeout:g} s ({reason})") from exc


def _open_run(
    config: KedroflowConfig, project_path: Path, run_name: str, tags: dict[str, Any]
) -> _OpenRun:
    active = mlflow.active_run()
    resume_id = config.tracking.run.id or os.environ.get("MLFLOW_RUN_ID") or None
    if resume_id:
        return _join_shared_run(resume_id, tags)
    if active is not None and not config.tracking.run.nested:
        log_tags(tags, active.info.run_id)  # scrubs and clips
        return _OpenRun(active.info.run_id, active.info.experiment_id, False, False)
    limit = _tag_limit()
    str_tags = {k: _clip(scrub(str(v)), limit) for k, v in tags.items()}
    if active is not None:
        run = mlflow.start_run(
            experiment_id=active.info.experiment_id,
            run_name=run_name,
            tags=str_tags,
            nested=True,
        )
    else:
        experiment_id = _experiment_id(config, project_path)
        run = mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, tags=str_tags
        )
    return _OpenRun(run.info.run_id, run.info.experiment_id, True, True)


_PARTICIPANT = "kedroflow.participant."


def _join_shared_run(run_id: str, tags: dict[str, Any]) -> _OpenRun:
    """Resume a run that several ``kedro run`` processes may share (split execution).

    Each process marks itself with a participant tag while it runs; the one that ends
    last, finding no other participant, closes the run.
    """
    import uuid

    mlflow_client = client()
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(
            f"Cannot resume MLflow run '{run_id}' (from tracking.run.id or "
            f"MLFLOW_RUN_ID): {exc.message}. Check the id, or unset it for a new run."
        ) from None
    if run.info.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow run '{run_id}' is deleted: restore it or unset tracking.run.id / "
            "MLFLOW_RUN_ID."
        )
    participant = f"{_PARTICIPANT}{uuid.uuid4().hex[:12]}"
    mlflow_client.update_run(run_id, status="RUNNING")
    log_tags({**tags, participant: "running"}, run_id)
    return _OpenRun(run_id, run.info.experiment_id, True, False, participant)


def _close(status: str) -> None:
    """Close the open run (lock held by the caller)."""
    run = _STATE.run
    if run is None:
        return
    _STATE.run = None
    os.environ.pop(RUN_ID_ENV_VAR, None)
    try:
        if run.participant:
            _leave_shared_run(run, status)
        elif run.owned:
            active = mlflow.active_run()
            if run.pushed and active is not None and active.info.run_id == run.run_id:
                mlflow.end_run(status)
            else:
                client().set_terminated(run.run_id, status)
    finally:
        _restore_env(run.saved_env)


def _leave_shared_run(run: _OpenRun, status: str) -> None:
    mlflow_client = client()
    if status != "FINISHED":
        mlflow_client.set_tag(run.run_id, "kedroflow.failed", status)
    mlflow_client.delete_tag(run.run_id, str(run.participant))
    tags = mlflow_client.get_run(run.run_id).data.tags
    if any(key.startswith(_PARTICIPANT) for key in tags):
        logger.info(
            "kedroflow: MLflow run %s stays open for its other processes", run.run_id
        )
        return
    final = tags.get("kedroflow.failed", status) if status == "FINISHED" else status
    mlflow_client.set_terminated(run.run_id, final)


_ATEXIT_PID: list[int] = []


def _register_atexit() -> None:
    if not _ATEXIT_PID:
        atexit.register(_end_interrupted_run)
        _ATEXIT_PID.append(os.getpid())


def _end_interrupted_run() -> None:
    """At interpreter exit, a run still open was interrupted (Ctrl-C): mark it KILLED.

    Only in the process that opened it: forked workers inherit the state but not the run.
    """
    if _STATE.run is not None and _ATEXIT_PID == [os.getpid()]:
        try:
            with _STATE.lock:
                _close(RunStatus.to_string(RunStatus.KILLED))
        except Exception:  # noqa: S110 - never fail at interpreter exit
            pass


# ------------------------------------------------------------------------ run tags

_RUNNER_NAME = re.compile(r"(\w*Runner)\b")


def runner_name(runner: Any) -> str:
    """``SequentialRunner`` from Kedro's ``run_params['runner']`` string."""
    match = _RUNNER_NAME.search(str(runner))
    return match.group(1) if match else "SequentialRunner"


def kedro_command(run_params: Mapping[str, Any], redact: Iterable[str] = ()) -> str:
    """A ``kedro run`` command line that reproduces the run (secrets redacted)."""
    import shlex

    run_params = normalize_run_params(run_params)
    patterns = [re.compile(p, re.IGNORECASE) for p in redact]
    parts = ["kedro", "run"]

    def add(option: str, values: Any) -> None:
        if values:
            items = [values] if isinstance(values, str) else list(values)
            parts.extend([option, shlex.quote(",".join(str(v) for v in items))])

    add(run_params.get("_pipeline_option", "--pipelines"), run_params["pipeline_names"])
    if run_params.get("env"):
        parts.extend(["--env", shlex.quote(str(run_params["env"]))])
    runner = runner_name(run_params.get("runner"))
    if runner != "SequentialRunner":
        parts.extend(["--runner", runner])
    add("--tags", run_params.get("tags"))
    add("--nodes", run_params.get("node_names"))
    add("--from-nodes", run_params.get("from_nodes"))
    add("--to-nodes", run_params.get("to_nodes"))
    add("--from-inputs", run_params.get("from_inputs"))
    add("--to-outputs", run_params.get("to_outputs"))
    add("--namespaces", run_params.get("namespaces"))
    load_versions = run_params.get("load_versions") or {}
    add("--load-versions", [f"{k}:{v}" for k, v in load_versions.items()])
    runtime = flatten(dict(run_params.get("runtime_params") or {}), "", ".", True)
    add(
        "--params",
        [
            f"{k.lstrip('.')}={REDACTED if _matches(k, patterns) else v}"
            for k, v in runtime.items()
        ],
    )
    if run_params.get("only_missing_outputs"):
        parts.append("--only-missing-outputs")
    return scrub(" ".join(parts))
