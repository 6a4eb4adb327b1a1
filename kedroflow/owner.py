"""The process that owns an offline run: who it is, and whether it still runs.

``kedro mlflow sync`` must not upload a run that a live ``kedro run`` still writes to
(what it logs later would be lost), and must upload one whose process died without
closing it (SIGKILL, an out-of-memory kill, a lost machine). A run tracked offline
records its owner as tags when it is created: host name, process id and, on Linux,
the process's start time, which tells a reused pid from the original owner.
:func:`owner_state` reads them back. Pure standard library: no MLflow here.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

PID_TAG = "kedroflow.owner.pid"
HOST_TAG = "kedroflow.owner.host"
START_TAG = "kedroflow.owner.start"

#: ``alive``: the owner still runs; ``gone``: it does not (the run is abandoned);
#: ``unknown``: it cannot be told from here (another host, no owner recorded, Windows).
OwnerState = Literal["alive", "gone", "unknown"]


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """Tags naming this process (or process ``pid`` of this host) as a run's owner."""
    pid = os.getpid() if pid is None else pid
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    start = _start_time(pid)
    if start is not None:
        tags[START_TAG] = start
    return tags


def owner_state(tags: Mapping[str, str]) -> OwnerState:
    """Whether the process recorded in a run's ``tags`` still runs on this host."""
    pid_text, host = tags.get(PID_TAG, ""), tags.get(HOST_TAG)
    if not pid_text.isdigit() or host != socket.gethostname():
        return "unknown"
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return "unknown"
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # it exists, under another user
    recorded = tags.get(START_TAG)
    current = _start_time(pid)
    if recorded is not None and current is not None and recorded != current:
        return "gone"  # the pid was reused by a newer process
    return "gone" if _is_zombie(pid) else "alive"


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 (state) on, or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 2 is the command name in parentheses, which may itself hold spaces
    return text.rpartition(")")[2].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None  # noqa: PLR2004 - field 22


def _is_zombie(pid: int) -> bool:
    """Killed but not yet reaped by its parent: it runs no more."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] in {"Z", "X"}  # type: ignore[index]
