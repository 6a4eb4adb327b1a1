"""MlflowHook through real ``KedroSession.run`` calls on a real SQLite store."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import mlflow
import pytest
from kedro.runner import ThreadRunner

import kedroflow

NODES = """
import time
from pathlib import Path


def identity(x):
    return x


def combine(a, model, parameters):
    return {"a": a, "model": model, "n": len(parameters)}


def fail(a):
    raise ValueError(f"boom with a={a}")


def slow(a):
    Path("slow_started").touch()
    time.sleep(60)
    return a
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import combine, fail, identity, slow


def register_pipelines():
    training = Pipeline(
        [
            Node(combine, ["params:a", "params:model", "parameters"], "combined", name="combine"),
            Node(identity, "combined", "out", name="copy"),
        ]
    )
    return {
        "__default__": training,
        "training": training,
        "etl": Pipeline([Node(identity, "params:a", "etl_out", name="etl")]),
        "failing": Pipeline([Node(fail, "params:a", "never", name="fail")]),
        "slow": Pipeline([Node(slow, "params:a", "never", name="slow")]),
    }
"""

PARAMETERS = """
a: 1
model:
  lr: 0.1
  db_password: hunter2
unused: 5
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/parameters.yml", PARAMETERS)
    return kedro_project


def mlflow_yml(project: Any, text: str, env: str = "local") -> None:
    project.write(f"conf/{env}/mlflow.yml", text)


class TestOneRunPerKedroRun:
    def test_params_tags_and_status(self, project: Any, pipelines_option: str) -> None:
        project.run(pipeline_names=["etl"])
        run = project.only_run()
        assert run.info.status == "FINISHED"
        assert run.info.run_name == "etl"
        assert run.data.params == {"a": "1"}
        tags = run.data.tags
        assert tags["kedro.pipeline"] == "etl"
        assert tags["kedro.env"] == "local"
        assert tags["kedro.command"] == f"kedro run {pipelines_option} etl"
        assert tags["kedroflow.version"] == kedroflow.__version__
        assert tags["kedro.version"]
        assert tags["kedroflow.mlflow_version"] == mlflow.__version__
        assert mlflow.active_run() is None
        assert "_KEDROFLOW_ACTIVE_RUN_ID" not in os.environ

    def test_parameters_input_logs_every_parameter_once(self, project: Any) -> None:
        project.run()
        run = project.only_run()
        assert run.info.run_name == "__default__"
        assert run.data.params == {
            "a": "1",
            "model": "{'lr': 0.1, 'db_password': '***'}",
            "unused": "5",
        }
        assert "hunter2" not in str(run.data.tags)

    def test_runtime_params_are_logged_and_in_command(
        self, project: Any, pipelines_option: str
    ) -> None:
        project.run(pipeline_names=["etl"], runtime_params={"a": 3, "extra": {"k": 2}})
        run = project.only_run()
        assert run.data.params == {"a": "3", "extra.k": "2"}
        assert run.data.tags["kedro.command"] == (
            f"kedro run {pipelines_option} etl --params a=3,extra.k=2"
        )

    def test_two_sessions_in_a_row_use_their_own_config(
        self, project: Any, pipelines_option: str
    ) -> None:
        mlflow_yml(project, "tracking:\n  experiment:\n    name: first\n", env="local")
        project.write(
            "conf/other/mlflow.yml", "tracking:\n  experiment:\n    name: second\n"
        )
        project.run(pipeline_names=["etl"])
        project.run(env="other", pipeline_names=["etl"], runtime_params={"a": 9})
        (first,) = project.runs("first")
        (second,) = project.runs("second")
        assert first.data.params == {"a": "1"}
        assert second.data.params == {"a": "9"}
        assert second.data.tags["kedro.env"] == "other"
        assert second.data.tags["kedro.command"].startswith(
            f"kedro run {pipelines_option} etl --env other"
        )
        assert {first.info.status, second.info.status} == {"FINISHED"}
        assert mlflow.active_run() is None

    def test_thread_runner_logs_into_the_one_run(self, project: Any) -> None:
        project.run(runner=ThreadRunner(max_workers=2))
        run = project.only_run()
        assert run.data.tags["kedro.runner"] == "ThreadRunner"
        assert run.data.params["a"] == "1"

    def test_run_name_and_user_tags_from_config(self, project: Any) -> None:
        mlflow_yml(
            project,
            """
            tracking:
              run:
                name: nightly-${runtime_params:suffix, x}
                tags:
                  team: search
                  owner: ${runtime_params:owner, nobody}
            """,
        )
        project.run(
            pipeline_names=["etl"], runtime_params={"suffix": "7", "owner": "ana"}
        )
        run = project.only_run()
        assert run.info.run_name == "nightly-7"
        assert run.data.tags["team"] == "search"
        assert run.data.tags["owner"] == "ana"

    def test_random_run_name_resolver(self, project: Any) -> None:
        mlflow_yml(project, "tracking:\n  run:\n    name: ${km.random_name:}\n")
        project.run(pipeline_names=["etl"])
        assert project.only_run().info.run_name.count("-") == 2


class TestStatus:
    def test_failure_is_recorded(self, project: Any) -> None:
        with pytest.raises(ValueError, match="boom with a=1"):
            project.run(pipeline_names=["failing"])
        run = project.only_run()
        assert run.info.status == "FAILED"
        assert run.data.tags["kedroflow.error"] == "ValueError: boom with a=1"
        assert mlflow.active_run() is None
        project.run(pipeline_names=["etl"])  # the next run is clean
        assert [r.info.status for r in project.runs()] == ["FAILED", "FINISHED"]

    def test_ctrl_c_marks_the_run_killed(
        self, project: Any, pipelines_option: str
    ) -> None:
        import signal

        # Ctrl-C while a node runs; earlier, Python may swallow it in a garbage
        # collector's callback ("Exception ignored in ..."), whatever the plugin
        project.interrupt(
            [pipelines_option, "slow"], project.path / "slow_started", signal.SIGINT
        )
        assert project.only_run().info.status == "KILLED"


class TestDisabled:
    UNREACHABLE = """
    server:
      mlflow_tracking_uri: http://127.0.0.1:9
    tracking:
      disable_tracking:
        pipelines: [etl]
    """

    @pytest.fixture(autouse=True)
    def _fail_fast(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # any request to the unreachable server would fail at once instead of retrying
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")

    def test_disabled_pipeline_makes_no_call(self, project: Any) -> None:
        mlflow_yml(project, self.UNREACHABLE)
        outputs = project.run(pipeline_names=["etl"])
        assert outputs["etl_out"].load() == 1
        assert mlflow.active_run() is None

    def test_tracked_pipeline_does_call_the_server(self, project: Any) -> None:
        # the counterpart of the test above: the same config fails for a tracked pipeline
        mlflow_yml(project, self.UNREACHABLE)
        with pytest.raises(Exception, match=r"127\.0\.0\.1:9"):
            project.run(pipeline_names=["training"])

    def test_env_switch(self, project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        mlflow_yml(project, "server:\n  mlflow_tracking_uri: http://127.0.0.1:9\n")
        monkeypatch.setenv("KEDROFLOW_DISABLE_TRACKING", "1")
        outputs = project.run(pipeline_names=["training"])
        assert outputs["out"].load()["a"] == 1

    def test_disable_hooks_for_plugins(self, project: Any) -> None:
        settings = project.path / "src/fake_project/settings.py"
        settings.write_text(
            settings.read_text() + '\nDISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",)\n'
        )
        project.run(pipeline_names=["etl"])
        assert project.runs() == []


class TestRunSelection:
    def test_resume_run_id_from_config(self, project: Any) -> None:
        client = project.client()
        experiment = client.create_experiment("fake_project")
        existing = client.create_run(experiment).info.run_id
        client.set_terminated(existing, "FINISHED")
        mlflow_yml(project, f"tracking:\n  run:\n    id: {existing}\n")
        project.run(pipeline_names=["etl"])
        run = project.only_run()
        assert run.info.run_id == existing
        assert run.data.params == {"a": "1"}
        assert run.info.status == "FINISHED"

    def test_resume_run_id_from_mlflow_env(
        self, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        client = project.client()
        experiment = client.create_experiment("fake_project")
        existing = client.create_run(experiment).info.run_id
        monkeypatch.setenv("MLFLOW_RUN_ID", existing)
        project.run(pipeline_names=["etl"])
        assert project.only_run().info.run_id == existing

    def test_active_run_is_reused_when_not_nested(self, project: Any) -> None:
        mlflow_yml(project, "tracking:\n  run:\n    nested: false\n")
        mlflow.set_tracking_uri(project.tracking_uri)
        mlflow.set_experiment("notebook")
        with mlflow.start_run() as parent:
            project.run(pipeline_names=["etl"])
            still = mlflow.active_run()
            assert still is not None and still.info.run_id == parent.info.run_id
        (run,) = project.runs("notebook")
        assert run.data.params == {"a": "1"}

    def test_deleted_experiment_is_restored(self, project: Any) -> None:
        client = project.client()
        client.delete_experiment(client.create_experiment("fake_project"))
        project.run(pipeline_names=["etl"])
        assert project.only_run().data.params == {"a": "1"}

    def test_deleted_experiment_not_restored_fails_clearly(self, project: Any) -> None:
        client = project.client()
        client.delete_experiment(client.create_experiment("fake_project"))
        mlflow_yml(project, "tracking:\n  experiment:\n    restore_if_deleted: false\n")
        with pytest.raises(Exception, match="restore_if_deleted: true"):
            project.run(pipeline_names=["etl"])


class TestConfigErrors:
    def test_bad_mlflow_yml_stops_the_run_with_every_problem(
        self, project: Any
    ) -> None:
        mlflow_yml(
            project, "tracking:\n  runn: {}\n  params:\n    long_params_strategy: x\n"
        )
        with pytest.raises(Exception, match=r"2 problems") as info:
            project.run(pipeline_names=["etl"])
        assert "tracking.runn: unknown key. Did you mean 'run'?" in str(info.value)
        assert project.runs() == []

    def test_long_param_fails_before_any_node(self, project: Any) -> None:
        project.write("conf/base/parameters.yml", f"a: {'x' * 7000}\n")
        with pytest.raises(Exception, match="long_params_strategy"):
            project.run(pipeline_names=["etl"])
        assert project.only_run().info.status == "FAILED"

    def test_missing_credentials_key(self, project: Any) -> None:
        mlflow_yml(project, "server:\n  credentials: my_mlflow_creds\n")
        with pytest.raises(Exception, match=r"credentials\.yml has no mapping"):
            project.run(pipeline_names=["etl"])


class TestGit:
    def test_commit_dirty_flag_and_diff(self, project: Any) -> None:
        (project.path / "downloaded").mkdir()
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        subprocess.run([*git, "init", "-q"], cwd=project.path, check=True)
        subprocess.run([*git, "add", "-A"], cwd=project.path, check=True)
        subprocess.run([*git, "commit", "-qm", "init"], cwd=project.path, check=True)
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project.path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        project.write("conf/base/parameters.yml", PARAMETERS.replace("a: 1", "a: 2"))
        project.run(pipeline_names=["etl"])
        run = project.only_run()
        assert run.data.tags["git.commit"] == commit
        assert run.data.tags["git.dirty"] == "true"
        mlflow.set_tracking_uri(
            project.tracking_uri
        )  # MLflow 3.0 resolves runs:/ globally
        path = project.client().download_artifacts(
            run.info.run_id, "git/uncommitted.diff", str(project.path / "downloaded")
        )
        with open(path) as diff:
            assert "+a: 2" in diff.read()
