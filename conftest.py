"""Fixtures for every test and doctest: MLflow isolation and a migrated SQLite store."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

PACKAGE = "fake_project"
_MLFLOW_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "KEDROFLOW_DISABLE_TRACKING",
    "_KEDROFLOW_ACTIVE_RUN_ID",
    "_KEDROFLOW_TRACKING_URI",
    "_KEDROFLOW_REGISTRY_URI",
    "_KEDROFLOW_TRACKING_OFF",
)


ROOT = Path(__file__).resolve().parent
POSTGRES_URI_ENV = "KEDROFLOW_TEST_POSTGRES_URI"
POSTGRES_UNAVAILABLE_ENV = "_KEDROFLOW_TEST_POSTGRES_UNAVAILABLE"
_STARTED_POSTGRES = pytest.StashKey[bool]()


def _runs_integration(config: pytest.Config) -> bool:
    target = ROOT / "tests" / "integration"
    paths = [Path(arg.split("::", 1)[0]).resolve() for arg in config.args]
    return not config.args or any(
        p == target or p in target.parents or target in p.parents for p in paths
    )


def pytest_configure(config: pytest.Config) -> None:
    """Start the integration suite's PostgreSQL once, in the controlling process.

    Under pytest-xdist each worker has its own session: a cluster started by one
    worker's session fixture would be stopped at its end while another worker still
    used it. Started here, its URI is exported to the workers, which inherit the
    environment, and it is stopped in ``pytest_unconfigure``. When it cannot start,
    the reason is exported instead, for the integration fixtures to report.
    """
    if hasattr(config, "workerinput") or os.environ.get(POSTGRES_URI_ENV):
        return
    if not _runs_integration(config):
        return
    if not (
        shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    ):
        os.environ[POSTGRES_UNAVAILABLE_ENV] = (
            f"no PostgreSQL: set {POSTGRES_URI_ENV} or install PostgreSQL "
            "(apt-get install postgresql; .ci/postgres.sh does it as root)"
        )
        return
    import subprocess

    script = str(ROOT / ".ci" / "postgres.sh")
    result = subprocess.run(
        ["bash", script, "status"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        result = subprocess.run(
            ["bash", script, "start"], capture_output=True, text=True, check=False,
            timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            os.environ[POSTGRES_UNAVAILABLE_ENV] = (
                f".ci/postgres.sh failed:\n{result.stderr[-2000:]}"
            )
            return
        config.stash[_STARTED_POSTGRES] = True
    os.environ[POSTGRES_URI_ENV] = result.stdout.strip().splitlines()[-1]


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_STARTED_POSTGRES, False):
        import subprocess

        subprocess.run(
            ["bash", str(ROOT / ".ci" / "postgres.sh"), "stop"],
            capture_output=True, check=False, timeout=120,
        )  # fmt: skip
        os.environ.pop(POSTGRES_URI_ENV, None)


#: The MLflow/kedroflow environment the test session started with.
_BASELINE_ENV = {name: os.environ.get(name) for name in _MLFLOW_ENV}


def _reset_mlflow_state() -> None:
    import mlflow

    from kedroflow import logs, tracking

    while mlflow.active_run() is not None:
        mlflow.end_run()
    # mlflow.set_experiment() in a test must not leak into the next one
    mlflow.tracking.fluent._active_experiment_id = None
    tracking.reset()
    for name, value in _BASELINE_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    mlflow.set_tracking_uri(_BASELINE_ENV["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]
    mlflow.set_registry_uri(_BASELINE_ENV["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
    # a kedro session gives kedroflow's logger Kedro's level (kedroflow.logs): a
    # doctest after it would print the INFO lines
    logger = logging.getLogger(logs.LOGGER)
    logger.setLevel(logging.NOTSET)
    for handler in [h for h in logger.handlers if isinstance(h, logs.KedroHandlers)]:
        logger.removeHandler(handler)


@contextmanager
def isolated() -> Iterator[None]:
    """Run a block from the session's MLflow state, and undo its global side effects.

    MLflow's active run, tracking/registry URIs and experiment, kedroflow's run state,
    the environment, cwd, sys.path and the imported project package. Also at the
    start: a module- or session-scoped fixture that set a tracking URI (it runs
    before this) must not leak into the tests after it.
    """
    old_cwd, old_path, old_env = os.getcwd(), sys.path.copy(), dict(os.environ)
    _reset_mlflow_state()
    try:
        yield
    finally:
        _reset_mlflow_state()
        os.environ.clear()
        os.environ.update(old_env)
        os.chdir(old_cwd)
        sys.path[:] = old_path
        for module in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[module]


@pytest.fixture(autouse=True)
def isolate() -> Iterator[None]:
    """Each test starts from, and leaves, the session's MLflow and interpreter state."""
    with isolated():
        yield


@pytest.fixture(scope="session")
def isolation() -> Callable[[], AbstractContextManager[None]]:
    """:func:`isolated`, for session fixtures that run a project once for many tests."""
    return isolated


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store migrated once, copied by every test that needs one."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def _doctest_namespace(
    request: pytest.FixtureRequest, doctest_namespace: dict[str, Any]
) -> None:
    """Doctests get ``tmp_path`` and a ``tracking_uri`` on a fresh SQLite store.

    The store's experiment for the doctest's runs keeps its artifacts in ``tmp_path``
    (``MLFLOW_EXPERIMENT_ID``), so an example that logs a file leaves nothing behind.
    """
    if not isinstance(request.node, pytest.DoctestItem):
        return
    from mlflow.tracking import MlflowClient

    tmp_path = request.getfixturevalue("tmp_path")
    migrated_db = request.getfixturevalue("migrated_db")
    target = tmp_path / "doctest-mlflow.db"
    shutil.copy(migrated_db, target)
    tracking_uri = f"sqlite:///{target}"
    experiment = MlflowClient(tracking_uri).create_experiment(
        "doc", (tmp_path / "art").as_uri()
    )
    request.getfixturevalue("monkeypatch").setenv("MLFLOW_EXPERIMENT_ID", experiment)
    doctest_namespace["tmp_path"] = tmp_path
    doctest_namespace["tracking_uri"] = tracking_uri
