"""The MLflow stores of a run, resolved once from ``mlflow.yml`` into a :class:`Stores`.

Also everything that points MLflow at them and back: the server credentials and
HTTP settings exported as environment variables (saved first, restored after:
:class:`SavedEnvironment`), the request header provider, the reachability probe, the
experiment lookup and the offline store used when the server is down.

MLflow's own globals (``mlflow.set_tracking_uri``) are set while a run is open,
because nodes and MLflow's fluent API read them, but kedroflow never reads them back:
the :class:`Stores` value is passed down instead. They are read in two places only:
to save what to restore, and in :meth:`Stores.from_mlflow` for a run kedroflow did
not open (a notebook's ``mlflow.start_run()``), whose stores are MLflow's own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kedroflow.config import OFFLINE_STORE
from kedroflow.errors import TrackingError
from kedroflow.locks import file_lock
from kedroflow.params import Limits, sanitize_key
from kedroflow.secrets import mask_uri, project_credentials, strip_userinfo

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from kedroflow.config import KedroflowConfig

logger = logging.getLogger(__name__)

_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
#: mlflow.yml server key -> MLflow's environment variable.
_HTTP_ENV = {
    "request_timeout": "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "request_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
}


@functools.lru_cache(maxsize=8)
def _client(tracking_uri: str, registry_uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


@functools.cache
def limits() -> Limits:
    """MLflow's length limits, as the pure :mod:`kedroflow.params` takes them."""
    from mlflow.utils import validation

    return Limits(
        param_value=int(validation.MAX_PARAM_VAL_LENGTH),
        tag_value=int(validation.MAX_TAG_VAL_LENGTH),
        key=int(validation.MAX_ENTITY_KEY_LENGTH),
    )


@dataclass(frozen=True)
class Stores:
    """The tracking and registry stores a run uses, and a client on them.

    ``offline_for`` is the URI of the server an offline store stands in for, without
    user-info (so no password is stored): ``kedro mlflow sync`` uploads there.
    """

    tracking_uri: str
    registry_uri: str | None = None
    offline_for: str | None = None
    client: MlflowClient = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # one client per pair of URIs in the process: datasets ask for it per save
        client = _client(self.tracking_uri, self.registry_uri)
        object.__setattr__(self, "client", client)

    @classmethod
    def from_config(cls, config: KedroflowConfig, project_path: Path) -> Stores:
        """The stores ``mlflow.yml`` names (or the SQLite default)."""
        return cls(config.tracking_uri(project_path), config.registry_uri(project_path))

    @classmethod
    def from_mlflow(cls) -> Stores:
        """MLflow's current stores, for a run kedroflow did not open."""
        return cls(mlflow.get_tracking_uri(), mlflow.get_registry_uri())

    @property
    def offline(self) -> bool:
        """True for the local store of a run made while its server was unreachable."""
        return self.offline_for is not None

    @property
    def display_uri(self) -> str:
        """The tracking URI for messages: any ``user:password`` masked."""
        return mask_uri(self.tracking_uri)

    @property
    def remote(self) -> bool:
        """True for an http(s) tracking server."""
        return self.tracking_uri.startswith(("http://", "https://"))

    def activate(self) -> None:
        """Make these MLflow's current stores (for nodes and MLflow's fluent API)."""
        mlflow.set_tracking_uri(self.tracking_uri)
        if self.registry_uri:
            mlflow.set_registry_uri(self.registry_uri)


def offline_store(project_path: Path) -> Path:
    """The SQLite file of the runs made while the server was unreachable."""
    return (project_path / OFFLINE_STORE).resolve() / "mlflow.db"


def offline_stores(project_path: Path, server: Stores) -> Stores:
    """The local offline stores standing in for ``server`` (created if need be)."""
    database = offline_store(project_path)
    uri = f"sqlite:///{database.as_posix()}"
    # runs going offline at once would all create MLflow's tables: one at a time
    with file_lock(database.parent / "init.lock", timeout=120):
        _client(uri, uri).search_experiments(max_results=1)
    return Stores(uri, uri, offline_for=strip_userinfo(server.tracking_uri))


# ------------------------------------------------------------------ environment


@dataclass(frozen=True)
class SavedEnvironment:
    """The environment variables (and so MLflow's URIs) before kedroflow set them."""

    values: Mapping[str, str | None]

    @classmethod
    def save(cls, names: Iterable[str]) -> SavedEnvironment:
        """Snapshot ``names`` and MLflow's URI variables."""
        wanted = [*_URI_ENV, *names]
        return cls({name: os.environ.get(name) for name in wanted})

    def restore(self) -> None:
        """Put back every saved variable, and MLflow's URIs as they were."""
        # set_tracking_uri mirrors its value in MLFLOW_TRACKING_URI (None unsets it),
        # so the saved variables are exactly MLflow's URIs before the run
        mlflow.set_tracking_uri(self.values.get("MLFLOW_TRACKING_URI"))  # type: ignore[arg-type]
        mlflow.set_registry_uri(self.values.get("MLFLOW_REGISTRY_URI"))  # type: ignore[arg-type]
        for name, value in self.values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def save_environment(
    config: KedroflowConfig, credentials: Mapping[str, Any] | None, *extra: str
) -> SavedEnvironment:
    """Snapshot every variable :func:`configure` may set, before it sets any."""
    creds = (credentials or {}).get(config.server.credentials or "")
    names = [str(k) for k in creds] if isinstance(creds, dict) else []
    return SavedEnvironment.save([*names, *_HTTP_ENV.values(), *extra])


def configure(
    config: KedroflowConfig,
    project_path: Path,
    credentials: Mapping[str, Any] | None,
    context: Any,
) -> Stores:
    """Point MLflow at the configured stores and return them.

    Exports the server credentials and HTTP settings, registers the header provider.
    With an MLflow run already active (a notebook), its stores are kept and returned.
    The caller saved the environment first (:func:`save_environment`).
    """
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
        os.environ.update({str(k): str(v) for k, v in creds.items()})
    for key, env_name in _HTTP_ENV.items():
        # an explicit mlflow.yml value wins; else the user's env var; else our default
        if key in server.model_fields_set or env_name not in os.environ:
            value = getattr(server, key)
            os.environ[env_name] = str(
                int(value) if key == "request_timeout" else value
            )
    if mlflow.active_run() is None:
        stores = Stores.from_config(config, project_path)
        stores.activate()
    else:
        stores = Stores.from_mlflow()
        logger.info(
            "An MLflow run is already active: kedroflow keeps its tracking URI %s",
            stores.display_uri,
        )
    register_header_provider(config, context)
    if config.tracking.disable_tracking.disable_autologging:
        mlflow.autolog(disable=True)
    return stores


#: Header providers registered in this process: MLflow's registry is process-wide
#: and has no removal, so each configured provider is registered once.
_REGISTERED_PROVIDERS: set[tuple[str, str]] = set()


def register_header_provider(config: KedroflowConfig, context: Any) -> None:
    """Register ``server.request_header_provider`` with MLflow (once per process)."""
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
    try:  # MLflow builds it at each request: a wrong argument must fail here, once
        cls(**kwargs)
    except TypeError as exc:
        raise TrackingError(
            f"server.request_header_provider: {provider.type} does not take "
            f"init_kwargs {sorted(provider.init_kwargs)}"
            f"{' (+ kedro_context, pass_context: true)' if provider.pass_context else ''}"
            f": {exc}. Fix init_kwargs in mlflow.yml to match its __init__."
        ) from None
    registry.register(functools.partial(cls, **kwargs))  # type: ignore[no-untyped-call]
    _REGISTERED_PROVIDERS.add(key)


def probe(stores: Stores, timeout: float) -> None:
    """Fail within ``timeout`` seconds when an http(s) tracking server does not answer.

    Any HTTP answer (even 401) counts as reachable; no answer in time does not.
    """
    import urllib.error
    import urllib.request

    if not stores.remote:
        return
    try:
        base = strip_userinfo(stores.tracking_uri).rstrip("/")
        with urllib.request.urlopen(base + "/health", timeout=timeout):  # noqa: S310
            pass
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"no answer within {timeout:g} s ({reason})") from exc


# ------------------------------------------------------------------- experiment


def experiment_id(config: KedroflowConfig, project_path: Path, stores: Stores) -> str:
    """The id of ``tracking.experiment``, created (or restored) when needed."""
    experiment = config.tracking.experiment
    client = stores.client
    found = client.get_experiment_by_name(experiment.name)
    if found is None:
        try:
            return _create_experiment(config, project_path, stores)
        except MlflowException as exc:
            # another process (a parallel `kedro run`) created it first
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = client.get_experiment_by_name(experiment.name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        if not experiment.restore_if_deleted:
            raise TrackingError(
                f"MLflow experiment '{experiment.name}' is deleted. Restore it in the "
                "MLflow UI, choose another tracking.experiment.name, or set "
                "tracking.experiment.restore_if_deleted: true in mlflow.yml."
            )
        client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


def _create_experiment(
    config: KedroflowConfig, project_path: Path, stores: Stores
) -> str:
    experiment = config.tracking.experiment
    kwargs = experiment.create_experiment_kwargs
    location = kwargs.artifact_location
    if location and "://" not in location and not Path(location).is_absolute():
        location = (project_path / location).resolve().as_uri()
    if location is None:
        location = sqlite_artifact_location(stores.tracking_uri, experiment.name)
    return str(
        stores.client.create_experiment(
            experiment.name, artifact_location=location, tags=kwargs.tags
        )
    )


def sqlite_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a SQLite store keeps ``experiment``'s artifacts: next to its file, not in
    whatever the current directory is. None for other stores (their own default)."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    database = Path(tracking_uri[len("sqlite:///") :])
    name = sanitize_key(experiment, limits().key).replace("/", "_")
    return (database.parent / "mlartifacts" / name).as_uri()


@dataclass(frozen=True)
class CommandStores:
    """What :func:`command_stores` set up: the stores and the current experiment."""

    stores: Stores
    experiment_id: str


@contextlib.contextmanager
def command_stores(
    config: KedroflowConfig,
    *,
    project_path: Path,
    context: Any = None,
    run_id: str | None = None,
) -> Iterator[CommandStores]:
    """MLflow on the configured stores for a command outside a ``kedro run``.

    What a run gets, without a run: the tracking and registry URIs, the server
    credentials, timeouts and header provider of ``mlflow.yml``, and the experiment of
    ``run_id`` (or of ``mlflow.yml``, created where a run would create it) made the
    current one. On exit the URIs and environment variables are restored; the
    experiment stays MLflow's current one, as after ``mlflow.set_experiment``.
    """
    with configured(
        config, project_path=project_path, context=context,
        extra_env=("MLFLOW_EXPERIMENT_ID",),
    ) as stores:  # fmt: skip
        found = (
            stores.client.get_run(run_id).info.experiment_id
            if run_id
            else experiment_id(config, project_path, stores)
        )
        mlflow.set_experiment(experiment_id=found)
        yield CommandStores(stores, str(found))


@contextlib.contextmanager
def configured(
    config: KedroflowConfig,
    *,
    project_path: Path,
    context: Any = None,
    extra_env: tuple[str, ...] = (),
) -> Iterator[Stores]:
    """MLflow's client set up as ``mlflow.yml`` says (:func:`configure`), for the block.

    The environment (and ``extra_env``, variables the block changes) is restored on
    exit, whatever happens in the block.
    """
    credentials = project_credentials(context) if context is not None else None
    saved = save_environment(config, credentials, *extra_env)
    try:
        yield configure(config, project_path, credentials, context)
    finally:
        saved.restore()
