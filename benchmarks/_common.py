"""What the benchmark scripts share: a scratch folder, a ``kedro new`` project, quiet
child processes and a timed command.

Imported by the scripts as ``from _common import ...`` (they run as
``python benchmarks/bench_x.py``, so this folder is on ``sys.path``); the server
helpers are in ``_server.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

BIN = Path(sys.executable).parent
#: No telemetry, no MLflow URL printed: what every timed process runs with.
QUIET = {
    "KEDRO_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


@contextmanager
def scratch(prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """A new tmp folder for the block, removed after it unless ``keep`` (``--keep``)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def kedro_new(root: Path, name: str, env: dict[str, str] | None = None) -> Path:
    """``kedro new --name <name>`` in ``root`` (no tools, no example); its folder."""
    before = set(root.iterdir())
    subprocess.run(
        [str(BIN / "kedro"), "new", "--name", name, "--tools", "none",
         "--example", "n", "--telemetry", "no"],
        cwd=root, check=True, capture_output=True, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    (project,) = set(root.iterdir()) - before
    return project


def quiet_env(*unset: str) -> dict[str, str]:
    """This process's environment, quiet (:data:`QUIET`), without the ``unset`` names."""
    env = {**os.environ, **QUIET}
    for name in unset:
        env.pop(name, None)
    return env


def stop_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group of ``process`` (started with ``start_new_session``);
    SIGKILL it if it is still there after ``timeout`` s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)


def timed_run(
    command: list[str], cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``command`` (output captured, no stdin); its result and wall seconds."""
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    return result, time.perf_counter() - start
