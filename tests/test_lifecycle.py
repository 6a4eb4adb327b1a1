"""The run lifecycle of kedroflow.tracking, called directly on a real SQLite store.

Next to the end-to-end tests (a whole ``kedro run``), these pin down what each step
leaves behind: the run in the store, the environment and MLflow's globals after it,
shared runs with several participants, interrupted runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mlflow
import pytest

from kedroflow import shared_runs, tracking
from kedroflow.config import ParamsConfig, validate_config
from kedroflow.errors import TrackingError

SECRET = "s3cr3t-pa55word"
CREDENTIALS = {
    "mlflow_creds": {
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": SECRET,
    }
}


def config(tracking_uri: str, **sections: Any) -> Any:
    raw = {
        "server": {"mlflow_tracking_uri": tracking_uri, **sections.pop("server", {})},
        "tracking": {
            "experiment": {"name": "lifecycle"},
            **sections.pop("tracking", {}),
        },
    }
    return validate_config(raw)


def start(cfg: Any, tmp_path: Path, **kwargs: Any) -> tracking.CurrentRun:
    kwargs.setdefault("tags", {"kedro.pipeline": "__default__"})
    return tracking.start_run(
        cfg, project_path=tmp_path, run_name="lifecycle", **kwargs
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestStartAndEnd:
    def test_a_run_is_opened_on_the_configured_store_and_closed(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        run = start(config(tracking_uri), tmp_path)
        assert run.stores.tracking_uri == tracking_uri
        assert tracking.current_run() == run
        assert mlflow.get_tracking_uri() == tracking_uri  # for nodes' fluent calls
        tracking.end_run("FINISHED")

        stored = run.stores.client.get_run(run.run_id)
        assert stored.info.status == "FINISHED"
        assert stored.info.run_name == "lifecycle"
        assert stored.data.tags["kedro.pipeline"] == "__default__"
        assert tracking.current_run() is None
        assert tracking.RUN_ID_ENV_VAR not in os.environ

    def test_the_environment_before_the_run_is_restored(
        self, tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        cfg = config(
            tracking_uri,
            server={"credentials": "mlflow_creds", "request_timeout": 3},
        )
        start(cfg, tmp_path, credentials=CREDENTIALS)
        assert os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"
        tracking.end_run("FINISHED")
        assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
        assert "MLFLOW_TRACKING_URI" not in os.environ

    def test_a_failed_start_restores_the_environment(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        before = dict(os.environ)
        cfg = config(
            tracking_uri,
            server={
                "credentials": "mlflow_creds",
                "request_header_provider": {"type": "no_such_module.Provider"},
            },
        )
        with pytest.raises(TrackingError, match="cannot import 'no_such_module"):
            start(cfg, tmp_path, credentials=CREDENTIALS)
        assert dict(os.environ) == before
        assert tracking.current_run() is None

    def test_wrong_header_provider_arguments_fail_at_start_with_the_fix(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        provider = (
            "mlflow.tracking.request_header.default_request_header_provider."
            "DefaultRequestHeaderProvider"
        )
        cfg = config(
            tracking_uri,
            server={
                "request_header_provider": {
                    "type": provider,
                    "init_kwargs": {"tokn": "x"},
                }
            },
        )
        with pytest.raises(TrackingError) as raised:
            start(cfg, tmp_path)
        assert "does not take init_kwargs ['tokn']" in str(raised.value)
        assert "Fix init_kwargs in mlflow.yml" in str(raised.value)
        assert tracking.current_run() is None

    def test_the_error_is_recorded_without_secrets(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        cfg = config(tracking_uri, server={"credentials": "mlflow_creds"})
        run = start(cfg, tmp_path, credentials=CREDENTIALS)
        tracking.end_run("FAILED", RuntimeError(f"login {SECRET} refused"))
        stored = run.stores.client.get_run(run.run_id)
        assert stored.info.status == "FAILED"
        assert stored.data.tags[tracking.ERROR_TAG] == "RuntimeError: login *** refused"

    def test_redacted_parameters_become_secrets_of_the_run(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        run = start(config(tracking_uri), tmp_path)
        run = tracking.log_params(
            run, {"api_key": "k3y-value", "note": "uses k3y-value"}, ParamsConfig()
        )
        tracking.log_text(run, "diff with k3y-value", "git/uncommitted.diff")
        assert tracking.current_run() == run
        tracking.end_run("FINISHED")
        stored = run.stores.client.get_run(run.run_id)
        assert stored.data.params == {"api_key": "***", "note": "uses ***"}
        mlflow.set_tracking_uri(tracking_uri)  # MLflow 3.0 resolves runs globally
        local = run.stores.client.download_artifacts(
            run.run_id, "git/uncommitted.diff", str(tmp_path)
        )
        text = Path(local).read_text()
        assert text == "diff with ***"


class TestOffline:
    def test_an_unreachable_server_is_replaced_by_the_offline_store(
        self, tmp_path: Path
    ) -> None:
        server = f"http://bob:{SECRET}@127.0.0.1:{closed_port()}"
        cfg = config(server, server={"on_tracking_error": "continue"})
        run = start(cfg, tmp_path)
        assert run.stores.offline
        assert run.stores.tracking_uri.endswith("mlflow-offline/mlflow.db")
        assert SECRET not in str(run.stores.offline_for)
        tracking.end_run("FINISHED")
        stored = run.stores.client.get_run(run.run_id)
        assert stored.data.tags["kedroflow.offline_for"] == run.stores.offline_for
        assert stored.info.status == "FINISHED"

    def test_a_given_run_id_while_the_server_is_down_says_so(
        self, tmp_path: Path
    ) -> None:
        server = f"http://bob:{SECRET}@127.0.0.1:{closed_port()}"
        cfg = config(
            server,
            server={"on_tracking_error": "continue"},
            tracking={"run": {"id": "a" * 32}},
        )
        with pytest.raises(TrackingError) as raised:
            start(cfg, tmp_path)
        message = str(raised.value)
        assert "http://***@127.0.0.1" in message
        assert "cannot be reached" in message
        assert f"joins its run '{'a' * 32}'" in message
        assert "unset the run id" in message
        assert SECRET not in message

    def test_fail_fast_masks_the_password_and_restores(self, tmp_path: Path) -> None:
        server = f"http://bob:{SECRET}@127.0.0.1:{closed_port()}"
        with pytest.raises(TrackingError) as raised:
            start(config(server), tmp_path)
        assert "http://***@127.0.0.1" in str(raised.value)
        assert SECRET not in str(raised.value)
        assert "MLFLOW_TRACKING_URI" not in os.environ or (
            os.environ["MLFLOW_TRACKING_URI"] != server
        )


class TestSharedRuns:
    def test_the_last_participant_closes_the_run_failed_if_a_part_failed(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        experiment = client.create_experiment("lifecycle")
        run_id = client.create_run(experiment).info.run_id
        # another process of the split run joined first
        _, other = shared_runs.join(
            client, run_id, {"kedro.pipeline": "first"}, part="first"
        )

        cfg = config(tracking_uri, tracking={"run": {"id": run_id}})
        run = start(cfg, tmp_path, part="second")
        assert run.run_id == run_id
        tracking.end_run("FAILED", RuntimeError("part failed"))
        stored = client.get_run(run_id)
        assert stored.info.status == "RUNNING"  # the other process still runs
        assert stored.data.tags[shared_runs.PART_PREFIX + "second"] == "FAILED"

        shared_runs.leave(other, "FINISHED")
        stored = client.get_run(run_id)
        assert stored.info.status == "FAILED"
        assert not [
            t for t in stored.data.tags if t.startswith("kedroflow.participant")
        ]

    def test_an_unknown_run_id_fails_with_the_fix(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        cfg = config(tracking_uri, tracking={"run": {"id": "0" * 32}})
        with pytest.raises(TrackingError, match="unset it for a new run"):
            start(cfg, tmp_path)


class TestInterruptedRuns:
    def test_a_run_left_open_is_killed_by_the_next_start(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        first = start(config(tracking_uri), tmp_path)
        second = start(config(tracking_uri), tmp_path)
        tracking.end_run("FINISHED")
        client = first.stores.client
        assert client.get_run(first.run_id).info.status == "KILLED"
        assert client.get_run(second.run_id).info.status == "FINISHED"

    def test_a_process_that_exits_with_its_run_open_marks_it_killed(
        self, tracking_uri: str, tmp_path: Path
    ) -> None:
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            from kedroflow import tracking
            from kedroflow.config import validate_config

            config = validate_config({{
                "server": {{"mlflow_tracking_uri": {tracking_uri!r}}},
                "tracking": {{"experiment": {{"name": "lifecycle"}}}},
            }})
            run = tracking.start_run(
                config, project_path=Path({str(tmp_path)!r}), run_name="cut", tags={{}}
            )
            print(run.run_id)
            raise SystemExit(3)  # as after Ctrl-C: no end_run
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 3, result.stderr[-3000:]
        run_id = result.stdout.strip().splitlines()[-1]
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        assert client.get_run(run_id).info.status == "KILLED"
