"""Shared fixtures: real Kedro projects in tmp dirs, a real SQLite MLflow store.

* ``kedro_project`` is a fresh copy of a project rendered once per session with
  ``kedro new`` (Kedro's own template), with an already migrated ``mlflow.db`` at its
  root (the embedded default store; migrating a new SQLite store costs ~7 s).
* The autouse ``isolate`` fixture undoes every global side effect: MLflow's active
  run, tracking/registry URIs and env vars, kedroflow's run state, cwd, sys.path and
  the imported project package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PACKAGE = "fake_project"
BIN = Path(sys.executable).parent
#: A Kedro project that tests/test_spaceflights.py copies and runs, not test code.
collect_ignore = ["spaceflights"]


@pytest.fixture
def tracking_uri(tmp_path: Path, migrated_db: Path) -> str:
    """A fresh SQLite tracking store in the test's tmp dir."""
    target = tmp_path / "store" / "mlflow.db"
    target.parent.mkdir()
    shutil.copy(migrated_db, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def project_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kedro project rendered once by ``kedro new`` with Kedro's own template."""
    root = tmp_path_factory.mktemp("template")
    subprocess.run(
        [str(BIN / "kedro"), "new", "--name", "fake-project", "--tools", "none",
         "--example", "n", "--telemetry", "no"],
        cwd=root, check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    project = root / "fake-project"
    (project / "src" / PACKAGE / "pipelines").mkdir(exist_ok=True)
    return project


def _has_pipeline_names() -> bool:
    import inspect

    from kedro.framework.session import KedroSession

    return "pipeline_names" in inspect.signature(KedroSession.run).parameters


#: Kedro < 1.2 runs one pipeline: ``session.run(pipeline_name=...)``.
_HAS_PIPELINE_NAMES = _has_pipeline_names()


#: A node for :meth:`KedroProject.interrupt` (the project's ``nodes.py`` imports
#: ``time`` and ``Path``): it writes ``marker`` once it runs, then waits.
WAITING_NODE = """

def wait(x, marker):
    Path(marker).write_text("started")
    time.sleep(120)
    return x
"""


class KedroProject:
    """A Kedro project in a tmp dir, its MLflow store, and ways to run it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.package = path / "src" / PACKAGE
        self.tracking_uri = f"sqlite:///{path / 'mlflow.db'}"

    def write(self, relative: str, text: str) -> Path:
        """Write a file of the project (dedented)."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"))
        return target

    def write_pipelines(self, code: str) -> None:
        """Replace ``pipeline_registry.py``: ``code`` must define ``register_pipelines``."""
        self.write(f"src/{PACKAGE}/pipeline_registry.py", code)

    def run(
        self,
        env: str | None = None,
        runtime_params: dict | None = None,
        **run_kwargs: Any,
    ) -> Any:
        """``KedroSession.run`` in this process, as a notebook or script would."""
        from kedro.framework.session import KedroSession
        from kedro.framework.startup import bootstrap_project

        bootstrap_project(self.path)
        with KedroSession.create(
            project_path=self.path, env=env, runtime_params=runtime_params
        ) as session:
            if "pipeline_names" in run_kwargs and not _HAS_PIPELINE_NAMES:
                (run_kwargs["pipeline_name"],) = run_kwargs.pop("pipeline_names")
            return session.run(**run_kwargs)

    def kedro(
        self, *args: str, check: bool = True, timeout: float = 300, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``kedro`` CLI in the project (wide output: rich wraps lines)."""
        kwargs.setdefault("env", {**os.environ, "COLUMNS": "400"})
        result = subprocess.run(
            [str(BIN / "kedro"), *args], check=False, cwd=self.path, capture_output=True,
            text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"kedro {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-6000:]}"
            )
        return result

    def interrupt(self, args: list[str], marker: Path, signum: int) -> tuple[int, str]:
        """``kedro run *args`` in a subprocess, sent ``signum`` once a node wrote
        ``marker``: its exit code and output."""
        process = subprocess.Popen(
            [str(BIN / "kedro"), "run", *args], cwd=self.path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while not marker.exists() and time.monotonic() < deadline:
                if process.poll() is not None:
                    pytest.fail(f"kedro run ended early:\n{process.communicate()[0]}")
                time.sleep(0.2)
            assert marker.exists(), "the waiting node never started"
            process.send_signal(signum)
            output = process.communicate(timeout=90)[0]
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        return process.returncode, output

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def runs(self, experiment: str = PACKAGE) -> list[Any]:
        """Runs of an experiment, oldest first."""
        client = self.client()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = client.search_runs(
            [found.experiment_id], order_by=["attributes.start_time ASC"]
        )
        return list(runs)

    def only_run(self, experiment: str = PACKAGE) -> Any:
        runs = self.runs(experiment)
        assert len(runs) == 1, f"expected exactly one run, got {len(runs)}"
        return runs[0]


@pytest.fixture(scope="session")
def new_project(
    project_template: Path, migrated_db: Path
) -> Callable[[Path], KedroProject]:
    """Make a fresh project in a folder, with an empty migrated store at its root."""

    def make(folder: Path) -> KedroProject:
        path = folder / "fake-project"
        shutil.copytree(project_template, path)
        shutil.copy(migrated_db, path / "mlflow.db")
        return KedroProject(path)

    return make


@pytest.fixture
def kedro_project(
    tmp_path: Path, new_project: Callable[[Path], KedroProject]
) -> KedroProject:
    """A fresh project with an empty migrated store at ``<project>/mlflow.db``."""
    return new_project(tmp_path)


@pytest.fixture(scope="session")
def pipelines_option() -> str:
    """``kedro run`` selects pipelines with ``--pipelines`` (Kedro >= 1.2) or ``--pipeline``."""
    return "--pipelines" if _HAS_PIPELINE_NAMES else "--pipeline"
