"""A real ``mlflow server`` backed by PostgreSQL, shared by the integration tests.

PostgreSQL comes from ``KEDROFLOW_TEST_POSTGRES_URI`` (a role allowed to create
databases): set by the user, or by the root ``conftest.py``, which starts a throwaway
cluster with ``.ci/postgres.sh`` once for the whole (possibly xdist) session and says
why when it cannot. Without PostgreSQL or ``psycopg2`` the integration tests are
skipped with the reason; ``KEDROFLOW_REQUIRE_INTEGRATION=1`` (CI) turns that skip into
a failure.

Each session gets a fresh database and one ``mlflow server --serve-artifacts`` on a free
port, in its own process group, stopped with ``killpg`` at the end.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]
URI_ENV = "KEDROFLOW_TEST_POSTGRES_URI"
UNAVAILABLE_ENV = "_KEDROFLOW_TEST_POSTGRES_UNAVAILABLE"  # why, from conftest.py
REQUIRE_ENV = "KEDROFLOW_REQUIRE_INTEGRATION"


def _load_server_helper() -> Any:
    """``benchmarks/_server.py`` (start/stop ``mlflow server``), loaded by path."""
    spec = importlib.util.spec_from_file_location(
        "_kedroflow_server", REPO / "benchmarks" / "_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_server = _load_server_helper()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV, "").strip() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this is an error)")
    pytest.skip(reason)


def _with_database(uri: str, database: str, scheme: str = "postgresql") -> str:
    """``uri`` pointing at another database, with ``scheme`` (e.g. naming a driver)."""
    parts = urlsplit(uri)
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def _admin(uri: str, *statements: str) -> None:
    """Run statements outside a transaction, connected to the cluster's ``postgres`` db."""
    import psycopg2

    conn = psycopg2.connect(_with_database(uri, "postgres"))
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def postgres_uri() -> str:
    """The URI of a PostgreSQL role that may create databases."""
    if importlib.util.find_spec("psycopg2") is None:
        _unavailable("psycopg2 is not installed: pip install psycopg2-binary")
    if os.environ.get(URI_ENV):
        uri = os.environ[URI_ENV]
        try:
            _admin(uri, "SELECT 1")
        except Exception as exc:  # any driver error means the same to the user
            safe = urlsplit(uri)._replace(
                netloc=urlsplit(uri).netloc.rpartition("@")[2]
            )
            pytest.fail(
                f"{URI_ENV} ({urlunsplit(safe)}) does not connect: {str(exc).strip()}. Fix the URI "
                f"(user, password, host, port) or unset {URI_ENV} to use .ci/postgres.sh."
            )
        return uri
    _unavailable(
        os.environ.get(UNAVAILABLE_ENV)
        or f"no PostgreSQL for this session: set {URI_ENV}"
    )


@pytest.fixture(scope="session")
def mlflow_server_url(
    postgres_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of an ``mlflow server`` on a fresh PostgreSQL database, serving artifacts."""
    name = f"kedroflow_it_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin(postgres_uri, f'CREATE DATABASE "{name}"')
    # The driver is named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3.
    backend = _with_database(postgres_uri, name, "postgresql+psycopg2")
    root = tmp_path_factory.mktemp("mlflow-server")
    try:
        server = _server.start_server(backend, root / "artifacts", serve_artifacts=True)
        try:
            yield server.url
        finally:
            server.stop()
    finally:
        _admin(postgres_uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class TrackingServer:
    """The session's server, seen from one test: its own experiment name, a client."""

    def __init__(self, url: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.url = url
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=url)

    def mlflow_yml(self, extra: str = "") -> str:
        """An ``mlflow.yml`` that tracks into this test's experiment on the server."""
        return (
            f"server:\n  mlflow_tracking_uri: {self.url}\n"
            f"tracking:\n  experiment:\n    name: {self.experiment}\n{extra}"
        )

    def request_counter(self) -> Any:
        """Counts this process's HTTP requests to the server, by endpoint, in a block."""
        return _server.RequestCounter(self.url)

    def runs(self) -> list[Any]:
        """Runs of this test's experiment, oldest first."""
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            return []
        runs = self.client.search_runs(
            [found.experiment_id], order_by=["attributes.start_time ASC"]
        )
        return list(runs)

    def only_run(self) -> Any:
        runs = self.runs()
        assert len(runs) == 1, f"expected exactly one run, got {len(runs)}"
        return runs[0]


@pytest.fixture
def tracking_server(
    mlflow_server_url: str, request: pytest.FixtureRequest
) -> TrackingServer:
    """The shared server with an experiment name of this test alone."""
    experiment = f"it-{request.node.name[:60]}-{uuid.uuid4().hex[:6]}"
    return TrackingServer(mlflow_server_url, experiment)
