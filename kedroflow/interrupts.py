"""Ending a run when its process is interrupted: Ctrl-C, SIGTERM, interpreter exit.

A ``kedro run`` stopped by Ctrl-C unwinds with ``KeyboardInterrupt`` and Kedro calls
no hook, so the run is ended at interpreter exit (``atexit``). SIGTERM (a scheduler's
timeout, ``kill``, Kubernetes) would not even get there: Python's default kills the
process on the spot, without ``finally`` blocks or ``atexit``, losing what the run's
outbox holds and leaving the run RUNNING. While a run is open, :class:`ExitGuard`
makes SIGTERM unwind the main thread as Ctrl-C does.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType


class ExitGuard:
    """Calls ``on_exit`` at interpreter exit, in the process that armed it only.

    Forked ParallelRunner workers inherit the guard and the run state, but not the
    run: they neither end it nor catch SIGTERM.
    """

    def __init__(self, on_exit: Callable[[], None]) -> None:
        self._on_exit = on_exit
        self._pid: int | None = None  # the process that registered the atexit call
        self._sigterm: Any = None  # SIGTERM's handler before ours, while ours is set

    @property
    def owner(self) -> bool:
        """True in the process that armed the guard."""
        return self._pid == os.getpid()

    def arm(self) -> None:
        """Register the exit call (once) and, over the default, handle SIGTERM.

        Only the main thread may set a signal handler; a handler the project set
        itself is left alone.
        """
        if self._pid is None:
            atexit.register(self._at_exit)
            self._pid = os.getpid()
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def disarm(self) -> None:
        """Give SIGTERM back its handler from before :meth:`arm`."""
        main = threading.current_thread() is threading.main_thread()
        if main and self._sigterm is not None:
            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None

    def _at_exit(self) -> None:
        if self.owner:
            self._on_exit()

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if not self.owner:  # a forked worker: die as it would have without us
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        # unwinds the main thread (nodes, hooks, `with` blocks), then atexit runs
        raise SystemExit(128 + signum)
