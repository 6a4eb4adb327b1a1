"""A run shared by several ``kedro run`` processes always ends, whatever stops them.

Participants are real ``kedro run`` processes on the module's real ``mlflow server``,
stopped inside the ``pause`` node by SIGTERM, SIGINT or SIGKILL. The lease is 3 s
here (60 s by default) so that a dead participant expires within the test.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from fault_harness import FaultServer, Gate, Processes, wait_for

from kedroflow.shared_runs import PART_PREFIX, PARTICIPANT_PREFIX

LEASE = 3


@pytest.fixture
def shared(fault_project: Any, server: FaultServer) -> Any:
    """``fault_project`` with a short lease; ``shared.run_id``: the run to share."""
    fault_project.write(
        "conf/local/mlflow.yml",
        f"server:\n  mlflow_tracking_uri: {server.url}\n  connect_timeout: 2\n"
        f"tracking:\n  experiment:\n    name: {fault_project.experiment}\n"
        f"  run:\n    participant_lease: {LEASE}\n",
    )
    client = server.client()
    experiment = client.create_experiment(fault_project.experiment)
    # what an orchestrator does first: the run every part will join
    fault_project.run_id = client.create_run(experiment).info.run_id
    return fault_project


def joined(project: Any) -> dict[str, str]:
    return {"MLFLOW_RUN_ID": project.run_id}


def tags(server: FaultServer, run_id: str) -> dict[str, str]:
    return dict(server.client().get_run(run_id).data.tags)


def participants(server: FaultServer, run_id: str) -> list[str]:
    return [k for k in tags(server, run_id) if k.startswith(PARTICIPANT_PREFIX)]


def parts(server: FaultServer, run_id: str) -> list[str]:
    return sorted(
        v for k, v in tags(server, run_id).items() if k.startswith(PART_PREFIX)
    )


def status(server: FaultServer, run_id: str) -> str:
    return str(server.client().get_run(run_id).info.status)


def paused_participant(project: Any, processes: Processes, gate: Gate) -> Any:
    """A ``kedro run`` of the shared run, waiting in its ``pause`` node."""
    return processes.paused(project, gate, env=joined(project))


def lease_expired(server: FaultServer, run_id: str) -> bool:
    leases = [
        json.loads(v)
        for k, v in tags(server, run_id).items()
        if k.startswith(PARTICIPANT_PREFIX)
    ]
    return all(lease["until"] < time.time() for lease in leases)


class TestSignals:
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
    def test_a_stopped_participant_records_killed_and_leaves(
        self,
        shared: Any,
        server: FaultServer,
        processes: Processes,
        gate: Gate,
        sig: signal.Signals,
    ) -> None:
        process = paused_participant(shared, processes, gate)
        process.send(sig)
        code = process.wait(60)
        # SIGTERM unwinds like Ctrl-C and exits 128 + 15 (kedroflow.interrupts)
        assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else 1), (
            process.output()[-3000:]
        )
        assert status(server, shared.run_id) == "KILLED"
        assert participants(server, shared.run_id) == []
        assert parts(server, shared.run_id) == ["KILLED"]

        # the part run again: its success replaces its failure
        shared.kedro("run", shared.pipelines_option, "paused", env=_env(joined(shared)))
        assert status(server, shared.run_id) == "FINISHED"
        assert parts(server, shared.run_id) == ["FINISHED"]


class TestLease:
    def test_a_killed_participant_expires_and_the_last_live_one_closes(
        self, shared: Any, server: FaultServer, processes: Processes, gate: Gate
    ) -> None:
        paused_participant(shared, processes, gate).kill()  # SIGKILL: nothing runs
        assert status(server, shared.run_id) == "RUNNING"
        assert len(participants(server, shared.run_id)) == 1
        wait_for(
            lambda: lease_expired(server, shared.run_id),
            timeout=LEASE + 30,
            what="the killed participant's lease to expire",
        )
        # another part ends after the lease: it removes the dead one and closes
        shared.kedro("run", "--nodes", "first", env=_env(joined(shared)))
        assert status(server, shared.run_id) == "KILLED"
        assert participants(server, shared.run_id) == []
        assert parts(server, shared.run_id) == ["FINISHED", "KILLED"]

        # the killed part, retried, succeeds: the run ends FINISHED
        shared.kedro("run", shared.pipelines_option, "paused", env=_env(joined(shared)))
        assert status(server, shared.run_id) == "FINISHED"
        assert parts(server, shared.run_id) == ["FINISHED", "FINISHED"]

    def test_close_ends_a_run_whose_participants_all_died(
        self, shared: Any, server: FaultServer, processes: Processes, gate: Gate
    ) -> None:
        participant = paused_participant(shared, processes, gate)
        # alive (it renews its lease): close refuses
        early = shared.kedro("mlflow", "close", "--run-id", shared.run_id, check=False)
        assert early.returncode != 0
        assert "still has 1 live process(es)" in early.stdout + early.stderr
        assert "--force" in early.stdout + early.stderr
        assert status(server, shared.run_id) == "RUNNING"
        participant.kill()
        wait_for(
            lambda: lease_expired(server, shared.run_id),
            timeout=LEASE + 30,
            what="the killed participant's lease to expire",
        )
        done = shared.kedro("mlflow", "close", "--run-id", shared.run_id)
        assert f"MLflow run {shared.run_id}: KILLED" in done.stdout
        assert status(server, shared.run_id) == "KILLED"
        assert participants(server, shared.run_id) == []


class TestFluentCallsInNodes:
    def test_a_participant_logging_with_mlflow_does_not_end_the_shared_run(
        self, shared: Any, server: FaultServer, processes: Processes, gate: Gate
    ) -> None:
        first = paused_participant(shared, processes, gate)
        # a second participant whose node calls mlflow.log_metric, then exits
        shared.kedro("run", shared.pipelines_option, "paused", env=_env(joined(shared)))
        assert status(server, shared.run_id) == "RUNNING"  # the first still runs
        assert len(participants(server, shared.run_id)) == 1
        gate.release()
        assert first.wait(120) == 0, first.output()[-3000:]
        run = server.client().get_run(shared.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["after_pause"] == 1.0


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, "COLUMNS": "400", **extra}
