"""The ``kedro mlflow`` commands and ``kedro run``, through the real ``kedro`` CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from kedroflow.config import validate_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def group_processes(pgid: int) -> list[str]:
    """Command lines of the live processes of process group ``pgid`` (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if entry.name.isdigit() and int(stat[2]) == pgid and stat[0] != "Z":
                found.append((entry / "cmdline").read_text().replace("\0", " "))
        except (OSError, IndexError):
            continue
    return found


class TestInit:
    def test_writes_a_valid_commented_template(self, kedro_project: Any) -> None:
        result = kedro_project.kedro("mlflow", "init")
        target = kedro_project.path / "conf/local/mlflow.yml"
        assert "conf/local/mlflow.yml' written" in result.stdout
        text = target.read_text()
        assert text.count("#") > 20
        config = validate_config(yaml.safe_load(text))
        assert config.tracking.experiment.name == "fake_project"

    def test_refuses_to_overwrite_without_force(self, kedro_project: Any) -> None:
        target = kedro_project.write("conf/local/mlflow.yml", "ui:\n  port: 5001\n")
        result = kedro_project.kedro("mlflow", "init", check=False)
        assert result.returncode != 0
        assert "already exists. Pass --force" in result.stdout + result.stderr
        assert target.read_text() == "ui:\n  port: 5001\n"
        kedro_project.kedro("mlflow", "init", "--force", "--env", "local")
        assert "experiment:" in target.read_text()

    def test_adds_the_mlflow_stores_to_gitignore_once(self, kedro_project: Any) -> None:
        gitignore = kedro_project.path / ".gitignore"
        before = gitignore.read_text()  # Kedro's template writes one
        result = kedro_project.kedro("mlflow", "init")
        assert "Added mlflow.db, mlartifacts/, mlflow-offline/ to .gitignore" in (
            result.stdout
        )
        text = gitignore.read_text()
        assert text.startswith(before)
        assert {"mlflow.db", "mlartifacts/", "mlflow-offline/"} <= set(
            text.splitlines()
        )
        kedro_project.kedro("mlflow", "init", "--force")
        assert gitignore.read_text() == text

    def test_unknown_env_fails_with_the_choices(self, kedro_project: Any) -> None:
        result = kedro_project.kedro("mlflow", "init", "--env", "prod", check=False)
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "No Kedro environment 'prod'" in output
        assert "base, local" in output


class TestRun:
    def test_kedro_run_through_the_cli(
        self, kedro_project: Any, pipelines_option: str
    ) -> None:
        kedro_project.write(
            "src/fake_project/nodes.py", "def double(x):\n    return 2 * x\n"
        )
        kedro_project.write_pipelines(
            """
            from kedro.pipeline import Node, Pipeline
            from fake_project.nodes import double
            def register_pipelines():
                p = Pipeline([Node(double, "params:x", "y", name="double")])
                return {"__default__": p, "training": p}
            """
        )
        kedro_project.write("conf/base/parameters.yml", "x: 2\n")
        kedro_project.kedro("mlflow", "init")
        kedro_project.kedro(
            "run",
            pipelines_option,
            "training",
            "--params",
            "x=5",
            "--runner",
            "ThreadRunner",
        )
        run = kedro_project.only_run()
        assert run.info.status == "FINISHED"
        assert run.data.params == {"x": "5"}
        assert run.data.tags["kedro.command"] == (
            f"kedro run {pipelines_option} training --runner ThreadRunner --params x=5"
        )


class TestUi:
    def test_ui_serves_the_project_store(self, kedro_project: Any) -> None:
        port = free_port()
        process = subprocess.Popen(
            [str(os.path.join(os.path.dirname(sys.executable), "kedro")),
             "mlflow", "ui", "--port", str(port), "--host", "127.0.0.1"],
            cwd=kedro_project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            body = ""
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10",
                        timeout=2,
                    ) as response:
                        body = response.read().decode()
                    break
                except OSError:
                    time.sleep(0.5)
            assert '"name":"Default"' in body.replace(" ", ""), body
            time.sleep(3)  # MLflow starts its job runner after the server answers
            # `mlflow ui` and its one server worker (gunicorn's master too on MLflow
            # 3.0); MLflow's defaults: four workers and the job runner's, 6 to 15
            assert len(group_processes(process.pid)) <= 3
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.communicate(timeout=30)

    def test_ui_with_bad_config_exits_non_zero(self, kedro_project: Any) -> None:
        kedro_project.write("conf/local/mlflow.yml", "ui:\n  prot: 1\n")
        result = kedro_project.kedro("mlflow", "ui", check=False)
        assert result.returncode != 0
        assert (
            "ui.prot: unknown key. Did you mean 'port'?"
            in result.stdout + result.stderr
        )


class TestImportCost:
    @pytest.mark.parametrize(
        "module", ["kedroflow", "kedroflow.cli", "kedroflow.hooks"]
    )
    def test_no_mlflow_import(self, module: str) -> None:
        code = f"import sys, {module}; assert 'mlflow' not in sys.modules, '{module}'"
        subprocess.run([sys.executable, "-c", code], check=True)

    def test_lazy_top_level_exports(self) -> None:
        code = (
            "import sys, kedroflow; kedroflow.MlflowHook; "
            "assert 'kedroflow.hooks' in sys.modules; assert 'mlflow' not in sys.modules"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


class TestMigrate:
    def test_rewrites_a_kedro_mlflow_project_that_then_runs(
        self, kedro_project: Any
    ) -> None:
        kedro_project.write(
            "conf/base/catalog.yml",
            """
            score:
              type: kedro_mlflow.io.metrics.MlflowMetricDataset
            """,
        )
        kedro_project.write(
            "src/fake_project/nodes.py",
            "from kedro_mlflow.pipeline import pipeline_ml_factory  # noqa: F401\n\n\n"
            "def score(x):\n    return float(x)\n",
        )
        kedro_project.write_pipelines(
            """
            from kedro.pipeline import Node, Pipeline
            from fake_project.nodes import score
            def register_pipelines():
                return {"__default__": Pipeline([Node(score, "params:x", "score")])}
            """
        )
        kedro_project.write("conf/base/parameters.yml", "x: 3\n")
        preview = kedro_project.kedro("mlflow", "migrate")
        assert "kedroflow.MlflowMetricDataset" in preview.stdout
        catalog = kedro_project.path / "conf/base/catalog.yml"
        assert "kedro_mlflow" in catalog.read_text()  # a preview writes nothing
        kedro_project.kedro("mlflow", "migrate", "--write")
        assert "type: kedroflow.MlflowMetricDataset" in catalog.read_text()
        nodes = (kedro_project.path / "src/fake_project/nodes.py").read_text()
        assert "from kedroflow import pipeline_ml_factory  # noqa: F401\n" in nodes
        kedro_project.kedro("run")
        assert kedro_project.only_run().data.metrics == {"score": 3.0}
