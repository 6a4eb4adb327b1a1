"""A tracking server that is down or silent, split runs, and secrets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest

NODES = """
def identity(x):
    return x


def fail(x):
    raise RuntimeError("part failed")


def describe(x, creds_param, db):
    return {"x": x, "n": len(str(creds_param)) + len(str(db))}
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import describe, fail, identity


def register_pipelines():
    first = Pipeline([Node(identity, "params:a", "a_out", name="first")])
    second = Pipeline([Node(identity, "params:b", "b_out", name="second")])
    secrets = Pipeline(
        [Node(describe, ["params:a", "params:innocent", "params:db"], "d", name="describe")]
    )
    broken = Pipeline([Node(fail, "params:b", "never", name="broken")])
    return {"__default__": first + second, "first": first, "second": second,
            "secrets": secrets, "broken": broken}
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/parameters.yml", "a: 1\nb: 2\n")
    return kedro_project


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestServerDown:
    def test_unreachable_server_fails_fast_with_the_fix(
        self, project: Any, pipelines_option: str
    ) -> None:
        uri = f"http://127.0.0.1:{closed_port()}"
        project.write(
            "conf/local/mlflow.yml", f"server:\n  mlflow_tracking_uri: {uri}\n"
        )
        start = time.monotonic()
        result = project.kedro(
            "run", pipelines_option, "first", check=False, timeout=120
        )
        elapsed = time.monotonic() - start
        output = result.stdout + result.stderr
        assert result.returncode != 0
        # a bound with margin for a loaded machine (the command itself takes seconds):
        # it catches MLflow's default retry schedule, which takes minutes
        assert elapsed < 45, f"took {elapsed:.1f} s"
        assert f"Cannot track this run on the MLflow server {uri}" in output
        assert "server.on_tracking_error: continue" in output

    def test_silent_server_fails_within_the_connect_timeout(self, project: Any) -> None:
        with socket.socket() as silent:  # accepts connections, never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            port = silent.getsockname()[1]
            project.write(
                "conf/local/mlflow.yml",
                f"server:\n  mlflow_tracking_uri: http://127.0.0.1:{port}\n"
                "  connect_timeout: 1\n",
            )
            start = time.monotonic()
            with pytest.raises(Exception, match=r"no answer within 1 s"):
                project.run(pipeline_names=["first"])
            # connect_timeout is 1 s; the margin is for a loaded machine
            assert time.monotonic() - start < 20

    def test_continue_runs_offline_and_sync_uploads_once(
        self, project: Any, tracking_uri: str, pipelines_option: str
    ) -> None:
        uri = f"http://127.0.0.1:{closed_port()}"
        project.write(
            "conf/local/mlflow.yml",
            f"server:\n  mlflow_tracking_uri: {uri}\n  on_tracking_error: continue\n",
        )
        outputs = project.run(pipeline_names=["first"], runtime_params={"a": 5})
        assert outputs["a_out"].load() == 5
        offline = f"sqlite:///{project.path / 'mlflow-offline' / 'mlflow.db'}"
        client = mlflow.MlflowClient(tracking_uri=offline)
        experiment = client.get_experiment_by_name("fake_project")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.data.params == {"a": "5"}
        assert run.data.tags["kedroflow.offline_for"] == uri
        assert run.info.status == "FINISHED"
        assert mlflow.active_run() is None

        # the server has moved (here: to another store): --env sends the runs there
        project.write(
            "conf/local/mlflow.yml", f"server:\n  mlflow_tracking_uri: {tracking_uri}\n"
        )
        result = project.kedro("mlflow", "sync", "--env", "local")
        assert "1 run(s) uploaded" in result.stdout
        target = mlflow.MlflowClient(tracking_uri=tracking_uri)
        (uploaded,) = target.search_runs(
            [target.get_experiment_by_name("fake_project").experiment_id]
        )
        assert uploaded.data.params == {"a": "5"}
        assert uploaded.data.tags["kedroflow.synced_from"] == run.info.run_id
        assert (
            uploaded.data.tags["kedro.command"]
            == f"kedro run {pipelines_option} first --params a=5"
        )
        assert uploaded.info.status == "FINISHED"
        assert uploaded.info.start_time == run.info.start_time
        again = project.kedro("mlflow", "sync", "--env", "local")
        assert "0 run(s) uploaded" in again.stdout


def _open_shared_run(project: Any) -> str:
    """What an orchestrator does first: create the run all the parts will share."""
    client = project.client()
    return str(client.create_run(client.create_experiment("fake_project")).info.run_id)


def _assert_complete(run: Any, run_id: str) -> None:
    assert run.info.run_id == run_id
    assert run.data.params == {"a": "1", "b": "2"}
    assert run.info.status == "FINISHED"
    assert not [t for t in run.data.tags if t.startswith("kedroflow.participant")]


class TestSplitRuns:
    def test_sequential_processes_share_one_run(
        self, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        run_id = _open_shared_run(project)
        monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
        project.run(pipeline_names=["first"])
        project.run(pipeline_names=["second"])
        _assert_complete(project.only_run(), run_id)

    def test_concurrent_processes_share_one_run_closed_by_the_last(
        self, project: Any
    ) -> None:
        run_id = _open_shared_run(project)
        env = {**os.environ, "MLFLOW_RUN_ID": run_id}
        processes = [
            subprocess.Popen(
                [str(Path(sys.executable).parent / "kedro"), "run", "--nodes", node],
                cwd=project.path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for node in ("first", "second")
        ]
        outputs = [p.communicate(timeout=300)[0] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        _assert_complete(project.only_run(), run_id)

    def test_a_failed_part_marks_the_shared_run_failed(
        self, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        run_id = _open_shared_run(project)
        monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
        project.run(pipeline_names=["first"])
        with pytest.raises(RuntimeError, match=r"part failed"):
            project.run(pipeline_names=["broken"])
        assert project.only_run().info.status == "FAILED"
        project.run(pipeline_names=["second"])  # a later part keeps the failure visible
        run = project.only_run()
        assert run.info.status == "FAILED"
        assert "FAILED" in run.data.tags.values()  # the broken part's status
        assert run.data.params == {"a": "1", "b": "2"}


SECRETS = {
    "tracking_token": "tok-7f3a9c1e5b2d",
    "db_password": "pw-5c8e1a9f3d7b",
    "innocent_value": "cred-2b9d4f6a8c1e",
    "nested_key": "key-9a1c3e5b7d2f",
    "runtime_secret": "rt-4e6a8c2b9d1f",
}


class TestSecrets:
    def test_no_secret_reaches_mlflow(self, project: Any) -> None:
        project.write(
            "conf/local/credentials.yml",
            f"""
            mlflow_creds:
              MLFLOW_TRACKING_TOKEN: {SECRETS["tracking_token"]}
            warehouse:
              password: {SECRETS["innocent_value"]}
            """,
        )
        project.write(
            "conf/base/parameters.yml",
            f"""
            a: 1
            innocent: {SECRETS["innocent_value"]}
            db:
              host: localhost
              password: {SECRETS["db_password"]}
              options: {{api_key: {SECRETS["nested_key"]}}}
            """,
        )
        project.write(
            "conf/local/mlflow.yml",
            "server:\n  credentials: mlflow_creds\n"
            "tracking:\n  params:\n    dict_params:\n      flatten: false\n",
        )
        _git_commit(project.path)
        project.write(
            "conf/base/parameters.yml",
            (project.path / "conf/base/parameters.yml").read_text() + "extra: 1\n",
        )
        project.run(
            pipeline_names=["secrets"],
            runtime_params={"service_token": SECRETS["runtime_secret"]},
        )
        run = project.only_run()
        texts = [str(run.data.params), str(run.data.tags), str(run.info)]
        texts += _text_artifacts(project, run.info.run_id)
        found = [
            name for name, value in SECRETS.items() if any(value in t for t in texts)
        ]
        assert found == []
        assert run.data.params["db"].count("***") == 2
        assert "host': 'localhost" in run.data.params["db"]
        assert "MLFLOW_TRACKING_TOKEN" not in os.environ
        assert len(texts) > 3  # the uncommitted diff was scanned too


def _git_commit(path: Path) -> None:
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=path, check=True)


def _text_artifacts(project: Any, run_id: str) -> list[str]:
    target = project.path / "downloaded"
    target.mkdir()
    mlflow.set_tracking_uri(project.tracking_uri)  # MLflow 3.0 resolves runs:/ globally
    local = project.client().download_artifacts(run_id, "", str(target))
    texts = []
    for path in Path(local).rglob("*"):
        if path.is_file():
            try:
                texts.append(path.read_text())
            except UnicodeDecodeError:
                continue
    return texts
