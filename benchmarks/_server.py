"""Start and stop a local ``mlflow server`` and count the HTTP requests sent to it.

Shared by the benchmark scripts and by ``tests/integration/conftest.py``::

    with mlflow_server(backend_uri, artifacts_dir) as server:
        with RequestCounter(server.url) as counter:
            ...  # anything that talks to server.url from this process
        print(counter.count, counter.by_endpoint())

The server listens on 127.0.0.1 only, runs in its own process group (stopped with
``killpg``, never by name), with one uvicorn worker and MLflow's background job runner
switched off, so it costs one process on a small machine. Requests are counted on the
client side by wrapping ``requests.Session.request``, which every MLflow REST call goes
through (``mlflow.utils.rest_utils``).
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env() -> dict[str, str]:
    """The environment for an ``mlflow server`` child: venv first on PATH, quiet."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "1")
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "_KEDROFLOW_ACTIVE_RUN_ID"):
        env.pop(name, None)
    return env


@dataclass
class MlflowServer:
    """A running ``mlflow server`` child process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 20) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            pass

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's combined stdout/stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def start_server(
    backend_uri: str,
    artifacts_dir: Path,
    *,
    port: int | None = None,
    serve_artifacts: bool = True,
    workers: int = 1,
    timeout: float = 180,
    log_path: Path | None = None,
) -> MlflowServer:
    """Start ``mlflow server`` on 127.0.0.1 and wait (bounded) until ``/health`` answers.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout`` seconds;
            the message holds the end of its log.
    """
    port = port or free_port()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or artifacts_dir.parent / f"mlflow-server-{port}.log"
    command = [
        str(BIN / "mlflow"), "server", "--backend-store-uri", backend_uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    if serve_artifacts:
        command += ["--serve-artifacts", "--artifacts-destination", str(artifacts_dir)]
    else:
        command += [
            "--no-serve-artifacts",
            "--default-artifact-root",
            str(artifacts_dir),
        ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=server_env(), start_new_session=True,
        )  # fmt: skip
    server = MlflowServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with code {process.returncode} before answering "
                f"on {server.url}:\n{server.log_tail()}"
            )
        if _healthy(server.url):
            return server
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(
        f"mlflow server did not answer {server.url}/health within {timeout:.0f} s:\n"
        f"{server.log_tail()}"
    )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def mlflow_server(
    backend_uri: str, artifacts_dir: Path, **kwargs: Any
) -> Iterator[MlflowServer]:
    """``start_server`` as a context manager that always stops the server."""
    server = start_server(backend_uri, artifacts_dir, **kwargs)
    try:
        yield server
    finally:
        server.stop()


#: Artifact uploads and downloads are counted together, whatever the file.
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"


@dataclass
class RequestCounter:
    """Count the HTTP requests this process sends to ``url`` while the block runs.

    Counts what goes through ``requests`` (every MLflow REST call and proxied artifact
    transfer) and through ``urllib.request`` (kedroflow's reachability probe).
    ``calls`` holds ``(method, path)`` per request, for profiling where they come from.
    """

    url: str
    calls: list[tuple[str, str]] = field(default_factory=list)
    _original: Any = None
    _original_urllib: Any = None

    def __enter__(self) -> RequestCounter:
        import urllib.request

        import requests

        netloc = urlsplit(self.url).netloc
        original = requests.Session.request
        original_urllib = urllib.request.OpenerDirector.open
        calls = self.calls

        def count(method: str, url: str) -> None:
            parts = urlsplit(url)
            if parts.netloc.rpartition("@")[2] == netloc:
                calls.append((method.upper(), parts.path))

        def request(
            session: Any, method: str, url: str, *args: Any, **kwargs: Any
        ) -> Any:
            count(method, url)
            return original(session, method, url, *args, **kwargs)

        def open_url(opener: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(url, str):
                count("GET" if not args or args[0] is None else "POST", url)
            else:
                count(url.get_method(), url.full_url)
            return original_urllib(opener, url, *args, **kwargs)

        self._original, self._original_urllib = original, original_urllib
        requests.Session.request = request  # type: ignore[method-assign]
        urllib.request.OpenerDirector.open = open_url  # type: ignore[method-assign]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import urllib.request

        import requests

        requests.Session.request = self._original  # type: ignore[method-assign]
        urllib.request.OpenerDirector.open = self._original_urllib  # type: ignore[method-assign]

    @property
    def count(self) -> int:
        """Requests counted so far."""
        return len(self.calls)

    def reset(self) -> None:
        """Forget the requests counted so far."""
        self.calls.clear()

    def by_endpoint(self) -> dict[str, int]:
        """``"METHOD /path" -> count``, most frequent first."""
        counts = collections.Counter(
            f"{m} {_ARTIFACTS}..." if p.startswith(_ARTIFACTS) else f"{m} {p}"
            for m, p in self.calls
        )
        return dict(counts.most_common())
