"""``kedro mlflow sync`` uploads each offline run exactly once, whatever happens to it.

Runs go offline because the module's real ``mlflow server`` is killed while they start;
syncs are killed halfway and run twice at once; a run still paused in a node, and runs
whose process was killed, meet a sync. See ``fault_harness`` for the machinery.
"""

from __future__ import annotations

import fcntl
import re
import signal
import socket
import sqlite3
import uuid
from typing import Any

import mlflow
from fault_harness import FaultServer, Gate, Processes, wait_for
from mlflow.tracking import MlflowClient

OFFLINE = "mlflow-offline/mlflow.db"


def offline_client(project: Any) -> MlflowClient:
    uri = f"sqlite:///{project.path / OFFLINE}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def offline_runs(project: Any) -> list[Any]:
    if not (project.path / OFFLINE).exists():
        return []
    client = offline_client(project)
    experiment = client.get_experiment_by_name(project.experiment)
    return list(client.search_runs([experiment.experiment_id])) if experiment else []


def uploads_of(client: MlflowClient, experiment: str, offline_id: str) -> list[Any]:
    """Every run of ``experiment`` uploaded from offline run ``offline_id``."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(
        client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`kedroflow.synced_from` = '{offline_id}'",
        )
    )


def track_offline(project: Any, server: FaultServer, *args: str, count: int = 1) -> Any:
    """``count`` x ``kedro run *args`` while the server is dead; their offline runs."""
    before = {run.info.run_id for run in offline_runs(project)}
    with server.down():
        for _ in range(count):
            result = project.kedro("run", *args)
            assert "in the local offline store" in result.stdout + result.stderr
    runs = [r for r in offline_runs(project) if r.info.run_id not in before]
    assert len(runs) == count
    return runs if count > 1 else runs[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def artifact_count(client: MlflowClient, run_id: str, folder: str) -> int:
    # MLflow 3.0 lists a run's sub-folder through the global tracking URI (runs:/...)
    mlflow.set_tracking_uri(client.tracking_uri)
    return len(client.list_artifacts(run_id, folder))


class TestInterrupted:
    def test_a_sync_killed_halfway_is_completed_by_the_next_one(
        self, fault_project: Any, server: FaultServer, processes: Processes
    ) -> None:
        n_files, n_points = 1000, 3000
        offline = track_offline(
            fault_project, server, fault_project.pipelines_option, "big", "--params",
            f"n_files={n_files},n_points={n_points}",
        )  # fmt: skip
        offline_id, client = offline.info.run_id, server.client()
        sync = processes.kedro(fault_project, "mlflow", "sync")

        def uploading() -> Any:
            runs = uploads_of(client, fault_project.experiment, offline_id)
            done = runs and len(client.get_metric_history(runs[0].info.run_id, "loss"))
            return runs[0] if done == n_points else None

        partial = wait_for(uploading, timeout=240, what="the sync to upload metrics")
        sync.kill()  # SIGKILL, while it uploads the artifacts
        partial = client.get_run(partial.info.run_id)
        uploaded = artifact_count(client, partial.info.run_id, "many")
        assert partial.info.status == "RUNNING", "the sync ended before it was killed"
        assert uploaded < n_files, "the sync ended before it was killed"

        result = fault_project.kedro("mlflow", "sync")
        (run,) = uploads_of(client, fault_project.experiment, offline_id)
        assert run.info.run_id == partial.info.run_id
        assert "1 run(s) uploaded" in result.stdout
        assert "interrupted upload completed" in result.stdout
        assert run.info.status == "FINISHED"
        assert run.data.params == offline.data.params
        assert len(client.get_metric_history(run.info.run_id, "loss")) == n_points
        assert artifact_count(client, run.info.run_id, "many") == n_files
        again = fault_project.kedro("mlflow", "sync")
        assert "0 run(s) uploaded" in again.stdout

    def test_two_syncs_at_once_upload_each_run_once(
        self, fault_project: Any, server: FaultServer, processes: Processes
    ) -> None:
        args = (
            fault_project.pipelines_option,
            "big",
            "--params",
            "n_files=300,n_points=2000",
        )
        offline = track_offline(fault_project, server, *args, count=2)
        syncs = [processes.kedro(fault_project, "mlflow", "sync") for _ in range(2)]
        assert [sync.wait(300) for sync in syncs] == [0, 0], [
            s.output()[-3000:] for s in syncs
        ]
        client = server.client()
        for run in offline:
            (uploaded,) = uploads_of(client, fault_project.experiment, run.info.run_id)
            assert uploaded.info.status == "FINISHED"
            assert len(client.get_metric_history(uploaded.info.run_id, "loss")) == 2000
        counts = [
            int(re.search(r"(\d+) run\(s\) uploaded", sync.output()).group(1))
            for sync in syncs
        ]
        assert sorted(counts) == [0, 2], [sync.output()[-2000:] for sync in syncs]

    def test_a_sync_held_off_by_the_lock_says_so(self, kedro_project: Any) -> None:
        store = kedro_project.path / OFFLINE
        store.parent.mkdir()
        MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()
        with (store.parent / "sync.lock").open("a+") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            result = kedro_project.kedro(
                "mlflow", "sync", "--lock-timeout", "1", check=False
            )
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "Another `kedro mlflow sync`" in output
        assert "--lock-timeout" in output


def _clone_runs(store: Any, run_id: str, count: int) -> None:
    """``count`` copies of run ``run_id`` (row for row, tags included) in SQLite.

    Creating 1,000 runs through MlflowClient takes ~15 s; copying rows takes <1 s.
    """
    with sqlite3.connect(store) as db:
        for table, key in (("runs", "run_uuid"), ("tags", "run_uuid")):
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            select = ", ".join("?" if c == key else c for c in columns)
            db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
                f"SELECT {select} FROM {table} WHERE {key} = ?",
                [(uuid.uuid4().hex, run_id) for _ in range(count)],
            )
    # every copy in `runs` needs its own start time to page in a stable order
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET start_time = rowid WHERE start_time = 1")


class TestSelection:
    def test_runs_beyond_the_first_page_are_uploaded(
        self, harness_project: Any, tracking_uri: str
    ) -> None:
        """1,000 runs already uploaded fill the first page; the new one is on page 2."""
        project = harness_project
        project.write(
            "conf/local/mlflow.yml",
            f"server:\n  mlflow_tracking_uri: http://127.0.0.1:{free_port()}\n"
            "  on_tracking_error: continue\n"
            f"tracking:\n  experiment:\n    name: {project.experiment}\n",
        )
        project.write(
            "conf/target/mlflow.yml",
            f"server:\n  mlflow_tracking_uri: {tracking_uri}\n",
        )
        project.kedro("run", project.pipelines_option, "big")
        (offline,) = offline_runs(project)
        client = offline_client(project)
        older = client.create_run(
            offline.info.experiment_id,
            start_time=1,
            tags={"kedroflow.offline_for": "http://old", "kedroflow.synced_to": "x"},
        )
        client.set_terminated(older.info.run_id, "FINISHED")
        _clone_runs(project.path / OFFLINE, older.info.run_id, 1000)
        with sqlite3.connect(project.path / OFFLINE) as db:
            assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (1002,)

        result = project.kedro("mlflow", "sync", "--env", "target")
        assert "1 run(s) uploaded" in result.stdout
        target = MlflowClient(tracking_uri=tracking_uri)
        (uploaded,) = uploads_of(target, project.experiment, offline.info.run_id)
        assert uploaded.data.params == {"n_files": "10", "n_points": "10"}

    def test_a_run_still_running_waits_until_it_has_ended(
        self,
        fault_project: Any,
        server: FaultServer,
        processes: Processes,
        gate: Gate,
    ) -> None:
        with server.down():
            run = processes.paused(fault_project, gate)
        (offline,) = offline_runs(fault_project)
        offline_id, client = offline.info.run_id, server.client()

        early = fault_project.kedro("mlflow", "sync")
        assert "0 run(s) uploaded" in early.stdout
        assert f"offline run {offline_id} is still running (pid {run.pid}" in (
            early.stdout
        )
        assert uploads_of(client, fault_project.experiment, offline_id) == []

        gate.release()
        assert run.wait(120) == 0, run.output()[-3000:]
        result = fault_project.kedro("mlflow", "sync")
        assert "1 run(s) uploaded" in result.stdout
        (uploaded,) = uploads_of(client, fault_project.experiment, offline_id)
        assert uploaded.info.status == "FINISHED"
        assert uploaded.data.metrics["after_pause"] == 1.0  # logged after the pause

    def test_runs_whose_process_was_killed_are_uploaded_killed(
        self,
        fault_project: Any,
        server: FaultServer,
        processes: Processes,
        tmp_path: Any,
    ) -> None:
        signals = (signal.SIGKILL, signal.SIGTERM)
        gates = {sig: Gate(tmp_path / sig.name) for sig in signals}
        with server.down():
            runs = {sig: processes.paused(fault_project, gates[sig]) for sig in signals}
            for sig in signals:
                runs[sig].send(sig)
                assert runs[sig].wait(60) != 0
        pids = {str(runs[sig].pid): sig for sig in signals}
        offline = {
            pids[r.data.tags["kedroflow.owner.pid"]]: r.info.run_id
            for r in offline_runs(fault_project)
        }
        result = fault_project.kedro("mlflow", "sync")
        assert "2 run(s) uploaded" in result.stdout
        client = server.client()
        for sig in signals:
            (uploaded,) = uploads_of(client, fault_project.experiment, offline[sig])
            assert uploaded.info.status == "KILLED", sig.name
            assert uploaded.data.params == {"a": "1"}
            assert uploaded.info.end_time is not None
        (killed,) = uploads_of(
            client, fault_project.experiment, offline[signal.SIGKILL]
        )
        assert "ended without closing it" in killed.data.tags["kedroflow.abandoned"]


class TestTarget:
    def test_a_run_goes_to_the_server_it_was_tracked_for(
        self, fault_project: Any, server: FaultServer, tracking_uri: str
    ) -> None:
        """Tracked with --env a (server A, user-info in the URI); local points at B."""
        password = f"pw-{uuid.uuid4().hex[:12]}"
        with_userinfo = server.url.replace("http://", f"http://alice:{password}@")
        mlflow_yml = (fault_project.path / "conf/local/mlflow.yml").read_text()
        fault_project.write(
            "conf/a/mlflow.yml", mlflow_yml.replace(server.url, with_userinfo)
        )
        fault_project.write(
            "conf/local/mlflow.yml", mlflow_yml.replace(server.url, tracking_uri)
        )
        offline = track_offline(fault_project, server, "--env", "a")
        assert offline.data.tags["kedroflow.offline_for"] == server.url
        assert password not in str(offline.data.tags)

        result = fault_project.kedro("mlflow", "sync")  # the default env is local
        assert "1 run(s) uploaded" in result.stdout
        assert password not in result.stdout + result.stderr
        (uploaded,) = uploads_of(
            server.client(), fault_project.experiment, offline.info.run_id
        )
        assert uploaded.data.tags["kedro.env"] == "a"
        b = MlflowClient(tracking_uri=tracking_uri)
        assert uploads_of(b, fault_project.experiment, offline.info.run_id) == []
