"""Upload runs kept in the local offline store to their tracking server, exactly once.

With ``server.on_tracking_error: continue``, a ``kedro run`` that cannot reach its
tracking server tracks into ``<project>/mlflow-offline/`` instead, and records the server
it was meant for (without user-info), its Kedro environment and its own process
(:mod:`kedroflow.owner`). ``kedro mlflow sync`` calls :func:`sync_offline_runs`, which:

* holds a lock file in the offline store, so two syncs of one project never upload at
  the same time (the second waits, bounded, then stops with a message);
* reads every experiment and run of the offline store, page by page;
* uploads only runs that have ended, or were abandoned: still RUNNING although their
  process is gone from this host (SIGKILL, out of memory); those are ended KILLED
  first. A run whose process still runs, or cannot be checked, is left for later;
* sends each run to the server it was tracked for, with the credentials, timeouts and
  header provider of the environment it was tracked with (``--env`` overrides both);
* records the mapping offline run -> server run before uploading anything, so a sync
  that is interrupted (killed, server down) resumes the same server run next time, and
  uploads only what that run lacks: one server run per offline run.

The per-run upload is in :mod:`kedroflow.replay`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kedroflow import owner, replay
from kedroflow.errors import KedroflowError
from kedroflow.locks import LockTimeout, file_lock
from kedroflow.offline_tags import OFFLINE_FOR_TAG
from kedroflow.secrets import mask_uri, strip_userinfo
from kedroflow.stores import Stores, configured, offline_store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from mlflow.entities import Run

    from kedroflow.config import KedroflowConfig

logger = logging.getLogger(__name__)

LOCK_FILE = "sync.lock"
RETRY_HINT = (
    "Check that the server is up and run `kedro mlflow sync` again: a run partly "
    "uploaded is completed, never uploaded twice."
)
_ENDED = {"FINISHED", "FAILED", "KILLED"}


@dataclass(frozen=True)
class EnvSettings:
    """One Kedro environment's MLflow settings, as a sync needs them."""

    name: str
    config: KedroflowConfig
    context: Any = None  # its KedroContext: credentials.yml, header provider context


@dataclass
class SyncReport:
    """What a sync did: runs uploaded, runs left for later, targets that failed."""

    #: each run uploaded, with the (masked) URI of its server
    uploaded: list[tuple[replay.SyncedRun, str]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # one line per run left
    errors: list[str] = field(default_factory=list)  # one line per failed target

    def lines(self) -> list[str]:
        """What ``kedro mlflow sync`` prints: a line per run and failure, a total."""
        done = [
            f"offline run {run.offline_run_id} -> run {run.run_id} ({run.status}) in "
            f"experiment '{run.experiment}' at {where} ({run.models} model(s))"
            + _how(run)
            for run, where in self.uploaded
        ]
        total = f"{len(self.uploaded)} run(s) uploaded."
        return [*done, *self.waiting, *self.errors, total]


def _how(run: replay.SyncedRun) -> str:
    if run.continued:
        return ", the rest of the run, kept offline when its server was lost"
    return ", interrupted upload completed" if run.resumed else ""


def sync_offline_runs(
    project_path: Path,
    resolve: Callable[[str | None], EnvSettings],
    *,
    env: str | None = None,
    lock_timeout: float = 60,
) -> SyncReport:
    """Upload every ended or abandoned, not yet uploaded run of the offline store.

    ``resolve`` gives a Kedro environment's settings by name (None: the default
    environment); ``env`` sends every run to that environment's server instead of
    the one each run was tracked for.
    """
    report = SyncReport()
    store = offline_store(project_path)
    with sync_lock(store.parent / LOCK_FILE, lock_timeout):
        uri = f"sqlite:///{store.as_posix()}"
        source = MlflowClient(tracking_uri=uri, registry_uri=uri)
        groups: dict[tuple[str | None, str], list[tuple[str, Run]]] = {}
        for experiment, run in _runs_to_upload(source, report):
            key = (env, "") if env else (run.data.tags.get("kedro.env"), _target(run))
            groups.setdefault(key, []).append((experiment, run))
        settings: dict[str | None, EnvSettings | None] = {}
        # one environment after the other: loading a Kedro context exports that
        # environment's credentials for the session (kedroflow.fluent)
        for (env_name, recorded), runs in sorted(
            groups.items(), key=lambda item: (str(item[0][0]), item[0][1])
        ):
            if env_name not in settings:
                settings[env_name] = _settings_or_error(resolve, env_name, report)
            found = settings[env_name]
            where = mask_uri(recorded) if recorded else f"env {env_name}"
            try:
                if found is not None:
                    _upload_group(
                        source=source, settings=found, recorded=recorded, runs=runs,
                        project_path=project_path, report=report,
                    )  # fmt: skip
            except (KedroflowError, MlflowException, OSError) as exc:
                report.errors.append(f"Upload to {where} failed: {mask_uri(str(exc))}")
    return report


def kedro_environments(
    project_path: Path,
    load_config: Callable[[str], KedroflowConfig],
    sessions: contextlib.ExitStack,
    default_env: str,
) -> Callable[[str | None], EnvSettings]:
    """A resolver of environments: ``mlflow.yml`` by ``load_config``, and a
    ``KedroContext`` (credentials.yml, header provider) from a session kept open in
    ``sessions``."""
    from kedro.framework.session import KedroSession

    def resolve(env: str | None) -> EnvSettings:
        name = env or default_env
        config = load_config(name)
        session = KedroSession.create(project_path=project_path, env=name)
        context = sessions.enter_context(session).load_context()  # type: ignore[attr-defined]
        return EnvSettings(name, config, context)

    return resolve


def _settings_or_error(
    resolve: Callable[[str | None], EnvSettings], env: str | None, report: SyncReport
) -> EnvSettings | None:
    """The settings of ``env``; None, and the reason reported, if they cannot be read."""
    try:
        return resolve(env)
    except Exception as exc:  # a missing conf/<env>, a bad mlflow.yml: its runs wait
        report.errors.append(
            f"Cannot read the settings of environment '{env}': {mask_uri(str(exc))}"
        )
        return None


def _upload_group(
    *,
    source: MlflowClient,
    settings: EnvSettings,
    recorded: str,
    runs: list[tuple[str, Run]],
    project_path: Path,
    report: SyncReport,
) -> None:
    """Upload runs meant for one server, with the settings of their environment."""
    config = settings.config
    uri = target_uri(recorded, settings.name, config, project_path)
    own = Stores.from_config(config, project_path)
    target = Stores(uri, own.registry_uri if uri == own.tracking_uri else None)
    with configured(config, project_path=project_path, context=settings.context):
        for experiment, run in runs:
            synced = replay.upload_run(source, target.client, run, experiment)
            report.uploaded.append((synced, target.display_uri))
            logger.info(
                "kedroflow: offline run %s uploaded as %s to %s",
                synced.offline_run_id,
                synced.run_id,
                target.display_uri,
            )


def target_uri(
    recorded: str, env: str | None, config: KedroflowConfig, project_path: Path
) -> str:
    """The URI to upload to: the one recorded, with the env's user-info if it matches.

    ``recorded`` is empty when ``--env`` overrides: the env's own URI is used then.
    """
    own = config.tracking_uri(project_path)
    if not recorded or recorded in {
        strip_userinfo(own),
        mask_uri(own),  # what earlier kedroflow versions recorded
    }:
        return own
    if "//***@" in recorded:
        raise KedroflowError(
            f"these runs were tracked for {recorded}, whose user name and password "
            f"an earlier kedroflow masked, and conf/{env}/mlflow.yml now points "
            "elsewhere. Pass --env with the environment of that server."
        )
    return recorded


def _target(run: Run) -> str:
    return str(run.data.tags.get(OFFLINE_FOR_TAG, ""))


def _runs_to_upload(
    source: MlflowClient, report: SyncReport
) -> Iterator[tuple[str, Run]]:
    """Each offline run to upload now, with its experiment's name, oldest first."""
    experiments = list(
        replay.paged(lambda token: source.search_experiments(page_token=token))
    )
    for experiment in experiments:
        for run in _all_runs(source, experiment.experiment_id):
            tags = run.data.tags
            if OFFLINE_FOR_TAG not in tags or replay.is_uploaded(tags):
                continue
            ready = _ended_or_reaped(source, run, report)
            if ready is not None:
                yield experiment.name, ready


def _all_runs(source: MlflowClient, experiment_id: str) -> Iterator[Run]:
    return replay.paged(
        lambda token: source.search_runs(
            [experiment_id], order_by=["attributes.start_time ASC"], page_token=token
        )
    )


def _ended_or_reaped(source: MlflowClient, run: Run, report: SyncReport) -> Run | None:
    """``run`` if it has ended; ended KILLED if its process is gone; else None."""
    if run.info.status in _ENDED:
        return run
    tags, run_id = run.data.tags, run.info.run_id
    state = owner.owner_state(tags)
    who = f"pid {tags.get(owner.PID_TAG)} on {tags.get(owner.HOST_TAG)}"
    if state == "alive":
        report.waiting.append(
            f"offline run {run_id} is still running ({who}): not uploaded; sync "
            "again once it has ended."
        )
        return None
    if state == "unknown":
        why = (
            f"it runs on another host ({who})"
            if tags.get(owner.HOST_TAG) and tags.get(owner.HOST_TAG) != _host()
            else "its process was not recorded or cannot be checked here"
        )
        report.waiting.append(
            f"offline run {run_id} is {run.info.status} and {why}: not uploaded. "
            "If it is dead, end it in the offline store (MlflowClient(...)."
            "set_terminated) and sync again."
        )
        return None
    source.set_tag(
        run_id, "kedroflow.abandoned", f"its process ({who}) ended without closing it"
    )
    source.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
    return source.get_run(run_id)


def _host() -> str:
    return socket.gethostname()


@contextlib.contextmanager
def sync_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold the project's sync lock; wait at most ``timeout`` seconds for it."""
    try:
        with file_lock(path, timeout):
            yield
    except LockTimeout as exc:
        raise KedroflowError(
            f"Another `kedro mlflow sync` ({exc.holder}) is uploading this project's "
            f"offline runs and still holds {path} after {timeout:g} s. Run `kedro "
            "mlflow sync` again once it has ended (or pass a longer --lock-timeout)."
        ) from None
