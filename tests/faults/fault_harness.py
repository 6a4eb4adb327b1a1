"""Fault injection for kedroflow's tests: real servers killed, real processes signalled.

Everything here is a real process: an ``mlflow server`` (SQLite store, proxied
artifacts) that a test SIGKILLs and restarts on the same port and store, and ``kedro``
commands run as subprocesses that a test stops at a chosen point and sends SIGTERM,
SIGINT or SIGKILL. Every process runs in its own process group, on 127.0.0.1, and is
stopped by its pid in a ``finally``; every wait is a bounded loop.

The fixtures of ``tests/faults/conftest.py`` wrap this module:

``fault_server`` (one per test module) / ``server`` (the same, checked running)
    A :class:`FaultServer`: ``.url``, ``.client()``, ``.kill()`` (SIGKILL of the
    server's process group: no shutdown, requests in flight fail), ``.restart()``
    (same port, same SQLite store and artifacts: what the server had acknowledged
    is still there), ``with server.down(): ...`` (killed for the block only; a
    ``kedro run`` in it finds no server). ``server`` restarts it if a previous test
    of the module left it down.
``processes``
    A :class:`Processes`: ``processes.kedro(project, "run", ...)`` starts a ``kedro``
    command in the background and returns a :class:`KedroProcess` (``.send(sig)``,
    ``.kill()``, ``.wait(timeout)``, ``.output()``); all are killed at teardown.
    ``processes.paused(project, gate)`` is the ``kedro run`` of ``paused``, returned
    once it sits in the ``pause`` node.
``fault_project``
    A ``kedro_project`` (tests/conftest.py) with the nodes of :data:`NODES` and the
    pipelines of :data:`REGISTRY`, tracking into ``server`` with
    ``on_tracking_error: continue`` and an experiment of the test's own
    (``fault_project.experiment``; ``fault_project.pipelines_option`` is
    ``--pipelines``, or ``--pipeline`` on Kedro < 1.2): ``paused`` (``first`` ->
    ``pause`` -> ``after``), ``failing`` (``first`` -> ``pause`` -> ``own_failure``,
    which raises ``ValueError("the node's own error")``) and ``big`` (``log_many``:
    ``params:n_files`` artifacts, ``params:n_points`` metric points). ``harness_project`` is the same
    project without ``mlflow.yml`` and without the server.
``gate``
    A :class:`Gate` for the ``pause`` node: pass ``gate.env()`` to the ``kedro run``
    process; the node writes ``reached`` (its pid inside), then waits until the test
    calls ``gate.release()`` (at most ``FAULT_GATE_TIMEOUT`` s, default 120). Without
    ``FAULT_GATE`` in its environment the node passes through.

A typical fault::

    with server.down():  # the run starts while the server is dead: it goes offline
        run = processes.paused(fault_project, gate)  # sits inside the ``pause`` node
    run.kill()  # SIGKILL: nothing of kedroflow runs any more
    fault_project.kedro("mlflow", "sync")  # the real CLI, waited for

:func:`wait_for` polls a condition with a deadline and fails with what it waited for.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _server_helper() -> Any:
    """``benchmarks/_server.py`` (start ``mlflow server``, wait for /health), by path."""
    name = "_kedroflow_server"  # the name tests/integration/conftest.py loads it as
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, REPO / "benchmarks" / "_server.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def wait_for(
    condition: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.1
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class FaultServer:
    """A real ``mlflow server`` on one port and one SQLite store, for its whole life."""

    def __init__(self, root: Path, backend_uri: str) -> None:
        self.backend_uri = backend_uri
        self.artifacts = root / "artifacts"
        self.log_path = root / "server.log"
        self.port = _server_helper().free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self, timeout: float = 180) -> None:
        """Start the server (again) and wait until it answers ``/health``."""
        self._server = _server_helper().start_server(
            self.backend_uri, self.artifacts, port=self.port, timeout=timeout,
            log_path=self.log_path,
        )  # fmt: skip

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.process.poll() is None

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL the server's process group and wait until it is gone."""
        if not self.running:
            return
        process = self._server.process
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=timeout)

    def restart(self) -> None:
        """Kill the server if it runs, then start it on the same port and store."""
        self.kill()
        self.start()

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    @contextmanager
    def down(self) -> Iterator[None]:
        """The server killed for the block, then restarted (even if the block fails)."""
        self.kill()
        try:
            yield
        finally:
            self.start()

    def stop(self) -> None:
        """Stop for good (SIGTERM, then SIGKILL of the process group)."""
        if self._server is not None:
            self._server.stop()

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.url)


class KedroProcess:
    """A ``kedro`` command running in the background, in its own process group."""

    def __init__(
        self, cwd: Path, args: tuple[str, ...], env: dict[str, str], logs: Path
    ) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        stem = f"{'-'.join(args)[:40]}-{time.monotonic_ns()}".replace("/", "_")
        self.log_path = logs / f"{stem}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [str(BIN / "kedro"), *args], cwd=cwd, env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid = self.popen.pid

    def send(self, sig: signal.Signals, *, group: bool = False) -> None:
        """Send a real signal to the process (``group``: to its whole process group,
        as a terminal's Ctrl-C reaches a ParallelRunner's workers too)."""
        if self.popen.poll() is None:
            (os.killpg if group else os.kill)(self.pid, sig)

    def kill(self) -> int:
        """SIGKILL the process and reap it (no zombie left to look alive)."""
        self.send(signal.SIGKILL)
        return self.wait(30)

    def wait(self, timeout: float) -> int:
        """Its exit code; fails with its output if it runs longer than ``timeout`` s."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"`kedro` (pid {self.pid}) still runs after {timeout:g} s:\n"
                f"{self.output()[-4000:]}"
            ) from None

    def output(self) -> str:
        """Its stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGKILL its whole process group (workers too) if anything still runs."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait(timeout=30)


class Processes:
    """Starts ``kedro`` commands in the background; :meth:`stop_all` at teardown."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[KedroProcess] = []

    def kedro(
        self, project: Any, *args: str, env: dict[str, str] | None = None
    ) -> KedroProcess:
        environment = {**os.environ, "COLUMNS": "400", **(env or {})}
        process = KedroProcess(project.path, args, environment, self.logs)
        self.started.append(process)
        return process

    def paused(
        self, project: Any, gate: Gate, env: dict[str, str] | None = None
    ) -> KedroProcess:
        """``kedro run`` of the ``paused`` pipeline, returned once it sits in its
        ``pause`` node (``env``: more variables for it)."""
        process = self.kedro(
            project, "run", project.pipelines_option, "paused",
            env={**gate.env(), **(env or {})},
        )  # fmt: skip
        gate.wait_reached(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


class Gate:
    """Where the ``pause`` node stops: it writes ``reached``, waits for ``release``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.reached = folder / "reached"
        self.released = folder / "release"

    def env(self) -> dict[str, str]:
        """The environment variables that make the ``pause`` node stop here."""
        return {"FAULT_GATE": str(self.folder)}

    def wait_reached(self, process: KedroProcess, timeout: float = 180) -> None:
        """Wait until ``process`` sits in the ``pause`` node (fail if it exits first)."""

        def reached() -> bool:
            if process.popen.poll() is not None:
                raise AssertionError(
                    f"`kedro` exited with {process.popen.returncode} before the "
                    f"pause node:\n{process.output()[-4000:]}"
                )
            return self.reached.exists()

        wait_for(reached, timeout=timeout, what="the pause node")

    def release(self) -> None:
        self.released.write_text("go")


#: The nodes of ``fault_project``. ``pause`` is the controlled point of a fault.
NODES = """
import os
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric


def identity(x):
    return x


def pause(x):
    folder = os.environ.get("FAULT_GATE")
    if folder:
        gate = Path(folder)
        (gate / "reached").write_text(str(os.getpid()))
        deadline = time.monotonic() + float(os.environ.get("FAULT_GATE_TIMEOUT", "120"))
        while not (gate / "release").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the test never released {gate}")
            time.sleep(0.05)
    return x


def after(x):
    mlflow.log_metric("after_pause", float(x))
    return x


def own_failure(x):
    raise ValueError("the node's own error")


def log_many(n_files, n_points):
    run_id = mlflow.active_run().info.run_id
    with tempfile.TemporaryDirectory() as folder:
        for index in range(n_files):
            (Path(folder) / f"file-{index:05d}.txt").write_text(f"artifact {index}\\n")
        mlflow.log_artifacts(folder, "many")
    points = [Metric("loss", 1.0 / (1 + step), 1_000 + step, step)
              for step in range(n_points)]
    mlflow.MlflowClient().log_batch(run_id, metrics=points)
    return n_files
"""

#: The pipelines of ``fault_project``.
REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import after, identity, log_many, own_failure, pause


def register_pipelines():
    paused = Pipeline([
        Node(identity, "params:a", "a1", name="first"),
        Node(pause, "a1", "a2", name="pause"),
        Node(after, "a2", "a3", name="after"),
    ])
    failing = Pipeline([
        Node(identity, "params:a", "a1", name="first"),
        Node(pause, "a1", "a2", name="pause"),
        Node(own_failure, "a2", "a3", name="own_failure"),
    ])
    big = Pipeline([Node(log_many, ["params:n_files", "params:n_points"], "n",
                         name="log_many")])
    return {"__default__": paused, "paused": paused, "failing": failing, "big": big}
"""

PARAMETERS = "a: 1\nn_files: 10\nn_points: 10\n"
