"""Fixtures of the fault-injection suite; what they give is in ``fault_harness``'s doc.

One ``mlflow server`` per test module (starting one costs 5-10 s): the tests of a
module share it, each with an experiment of its own, and a test that kills it gets it
back running before the next test (``server``).
"""

from __future__ import annotations

import shutil
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from fault_harness import NODES, PARAMETERS, REGISTRY, FaultServer, Gate, Processes

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="module")
def fault_server(
    tmp_path_factory: pytest.TempPathFactory, migrated_db: Path
) -> Iterator[FaultServer]:
    """The module's ``mlflow server``: SQLite store, proxied artifacts, stopped at end."""
    root = tmp_path_factory.mktemp("fault-server")
    shutil.copy(migrated_db, root / "mlflow.db")
    server = FaultServer(root, f"sqlite:///{root / 'mlflow.db'}")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(fault_server: FaultServer) -> FaultServer:
    """The module's server, running (restarted if an earlier test left it killed)."""
    fault_server.ensure_running()
    return fault_server


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Background ``kedro`` commands of the test, all killed at its end."""
    started = Processes(tmp_path / "process-logs")
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(tmp_path / "gate")


@pytest.fixture
def harness_project(kedro_project: Any, pipelines_option: str) -> Any:
    """A project with the harness's nodes and pipelines, and no ``mlflow.yml`` yet.

    ``.experiment`` is the test's own experiment name; ``.pipelines_option`` is how
    ``kedro run`` selects pipelines with this Kedro (``--pipelines`` or ``--pipeline``).
    """
    kedro_project.pipelines_option = pipelines_option
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/parameters.yml", PARAMETERS)
    kedro_project.experiment = f"faults-{uuid.uuid4().hex[:10]}"
    return kedro_project


@pytest.fixture
def fault_project(harness_project: Any, server: FaultServer) -> Any:
    """``harness_project`` tracking into ``server``, or offline while it is down."""
    harness_project.write(
        "conf/local/mlflow.yml",
        f"server:\n  mlflow_tracking_uri: {server.url}\n"
        "  on_tracking_error: continue\n  connect_timeout: 2\n"
        f"tracking:\n  experiment:\n    name: {harness_project.experiment}\n",
    )
    return harness_project
