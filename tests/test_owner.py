"""Whether the process that owns an offline run still runs: real processes, real kills."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from kedroflow.owner import HOST_TAG, PID_TAG, START_TAG, owner_state, owner_tags

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


class TestOwnerState:
    def test_this_process_is_alive(self) -> None:
        assert owner_state(owner_tags()) == "alive"

    def test_a_killed_process_is_gone_even_before_it_is_reaped(self) -> None:
        process = _sleeper()
        try:
            tags = owner_tags(process.pid)
            assert owner_state(tags) == "alive"
            process.send_signal(signal.SIGKILL)
            deadline = time.monotonic() + 30
            while owner_state(tags) != "gone" and time.monotonic() < deadline:
                time.sleep(0.05)  # a zombie until waited for: not running
            assert owner_state(tags) == "gone"
        finally:
            process.kill()
            process.wait(timeout=30)
        assert owner_state(tags) == "gone"

    def test_a_reused_pid_is_not_the_owner(self) -> None:
        tags = {**owner_tags(), START_TAG: "1"}  # this pid, but started at boot
        expected = "gone" if START_TAG in owner_tags() else "alive"
        assert owner_state(tags) == expected

    def test_what_cannot_be_checked_is_unknown(self) -> None:
        assert owner_state({}) == "unknown"  # recorded by an earlier kedroflow
        assert owner_state({PID_TAG: "12", HOST_TAG: "another-host"}) == "unknown"
        assert owner_state({HOST_TAG: owner_tags()[HOST_TAG]}) == "unknown"
