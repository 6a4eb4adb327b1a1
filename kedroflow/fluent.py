"""MLflow's own fluent API (``mlflow.active_run``, ``mlflow.log_*``, autolog) in nodes.

MLflow keeps its active run per thread (and resets it in a forked process), so a node
run by ThreadRunner or ParallelRunner sees no active run: its ``mlflow.log_metric``
would start a stray run in the default experiment. :class:`NodeRuns` makes the kedro
run the active run of the thread that runs a node, for the node only, and repairs what
a node may do to it (a child run left open, ``mlflow.end_run()`` on the kedro run).

MLflow has no public API to make an existing run active in a thread without two
requests (``start_run(run_id=...)`` fetches and updates the run), and a node-level cost
would grow with the node count. So this module touches MLflow's fluent internals
(``_active_run_stack``, ``_active_experiment_id``, present in every MLflow 3.x): pushing
the run costs no request. The only other one is :mod:`kedroflow.failover`, which takes
a run whose server is lost off the stack (ending it would need that server).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mlflow.entities import Run

    from kedroflow.config import KedroflowConfig
    from kedroflow.tracking import CurrentRun

logger = logging.getLogger(__name__)

_EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_ID"
#: Bound on the child runs a node may leave open above the kedro run (a bounded loop).
_MAX_LEFT_OPEN = 1000


def _fluent() -> Any:
    """MLflow's fluent module, typed loosely: its internals carry no annotations."""
    from mlflow.tracking import fluent

    return fluent


def _stack() -> list[Any]:
    stack: list[Any] = _fluent()._active_run_stack.get()
    return stack


def _run_entity(current: CurrentRun) -> Run:
    """The run as MLflow's fluent API holds it: the active one, else fetched once."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == current.run_id:
        return active
    run: Run = current.stores.client.get_run(current.run_id)
    return run


def for_worker() -> NodeRuns | None:
    """The kedro run for the nodes of a spawned ParallelRunner worker (one request)."""
    from kedroflow import tracking

    current = tracking.current_run()
    return NodeRuns(_run_entity(current), current) if current is not None else None


def _position(stack: list[Any], run_id: str) -> int | None:
    for index in range(len(stack) - 1, -1, -1):
        if stack[index].info.run_id == run_id:
            return index
    return None


@dataclass
class NodeRuns:
    """The kedro run made MLflow's active run and experiment while nodes run.

    Built in the thread that opened the run (:meth:`bind`); :meth:`enter` and
    :meth:`leave` run in the thread of each node; :meth:`unbind` before the run closes.
    """

    run: Run
    current: CurrentRun
    previous_experiment: tuple[str | None, str | None] = (None, None)
    pushed_in_main: bool = False
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)

    @classmethod
    def bind(cls, current: CurrentRun) -> NodeRuns:
        """Make the run active in this thread and its experiment MLflow's current one.

        A child run a node starts with ``mlflow.start_run(nested=True)`` then lands in
        the kedro run's experiment, not in MLflow's default one.
        """
        fluent = _fluent()
        run = _run_entity(current)

        previous = (fluent._active_experiment_id, os.environ.get(_EXPERIMENT_ENV))
        experiment_id = str(run.info.experiment_id)
        fluent._active_experiment_id = experiment_id
        os.environ[_EXPERIMENT_ENV] = experiment_id  # spawned workers inherit it
        bound = cls(run, current, previous)
        bound.pushed_in_main = bound._push()
        return bound

    def unbind(self) -> None:
        """Undo :meth:`bind`: runs a node left open end, the previous experiment is back."""
        fluent = _fluent()
        if not self._unwind("the pipeline") and self.pushed_in_main:
            _stack().pop()
        fluent._active_experiment_id, env = self.previous_experiment
        if env is None:
            os.environ.pop(_EXPERIMENT_ENV, None)
        else:
            os.environ[_EXPERIMENT_ENV] = env

    def enter(self, run: Run | None = None) -> None:
        """Before a node, in its thread: the kedro run (or ``run``) is the active run."""
        self._local.run = run or self.run
        self._local.pushed = self._push(self._local.run)

    def leave(self, node_name: str) -> None:
        """After a node, in its thread: the stack as it was before the node."""
        pushed = getattr(self._local, "pushed", False)
        run = getattr(self._local, "run", self.run)
        self._local.pushed = False
        where = f"node '{node_name}'"
        if self._unwind(where, str(run.info.run_id)):
            self._reopen(where, str(run.info.run_id))
            if not pushed:  # the thread that opened the run keeps it active
                self._push(run)
        elif pushed:
            _stack().pop()

    def _push(self, run: Run | None = None) -> bool:
        run = run or self.run
        stack = _stack()
        if stack and stack[-1].info.run_id == run.info.run_id:
            return False
        stack.append(_fluent().ActiveRun(run))
        return True

    def _unwind(self, where: str, run_id: str | None = None) -> bool:
        """End the child runs left open above the kedro run; True if it is gone."""
        import mlflow

        stack = _stack()
        position = _position(stack, run_id or self.run_id)
        if position is None:
            return True
        for _ in range(_MAX_LEFT_OPEN):
            if len(stack) <= position + 1:
                break
            logger.warning(
                "kedroflow: %s left MLflow run %s open: it is ended as FINISHED.",
                where,
                stack[-1].info.run_id,
            )
            mlflow.end_run()
        return False

    def _reopen(self, where: str, run_id: str) -> None:
        """A node called ``mlflow.end_run()`` on the kedro run: it stays open."""
        logger.warning(
            "kedroflow: %s ended the kedro run's MLflow run %s with mlflow.end_run(); "
            "kedroflow keeps it open and closes it when the pipeline ends.",
            where,
            run_id,
        )
        self.current.stores.client.update_run(run_id, status="RUNNING")


@dataclass
class SessionEnv:
    """What a session exported for MLflow's fluent API, to take back at the next one."""

    exported: dict[str, str] = field(default_factory=dict)
    saved: dict[str, str | None] = field(default_factory=dict)
    credentials: tuple[str, ...] = ()  # the names of the server credentials exported

    def restore(self, names: tuple[str, ...] | None = None) -> None:
        """Put back the values this session replaced (those still as it set them)."""
        for name in list(self.exported if names is None else names):
            value = self.exported.pop(name, None)
            original = self.saved.pop(name, None)
            if value is None or os.environ.get(name) != value:
                continue  # changed since: not ours any more
            if original is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = original

    def forget_credentials(self) -> None:
        """After a ``kedro run``: the server credentials leave the environment."""
        self.restore(self.credentials)
        self.credentials = ()


def configure_session(
    config: KedroflowConfig,
    project_path: Path,
    credentials: Mapping[str, Any],
    previous: SessionEnv,
) -> SessionEnv:
    """Point MLflow's fluent API at the project's stores, as kedro-mlflow does.

    In a notebook (``session.load_context()``, ``kedro ipython``) ``mlflow.start_run()``
    and the catalog's datasets then write to the project's store and experiment with
    its credentials. Only environment variables are set (MLflow reads them when it
    needs them), so an untracked command still never imports MLflow nor calls it. A run
    active before the session (an orchestrator's) keeps its own configuration. The
    credentials leave the environment when a ``kedro run`` of the session ends
    (:meth:`SessionEnv.forget_credentials`).
    """
    import sys

    previous.restore()
    if "mlflow" in sys.modules and sys.modules["mlflow"].active_run() is not None:
        return SessionEnv()
    values = {"MLFLOW_TRACKING_URI": config.tracking_uri(project_path)}
    registry = config.registry_uri(project_path)
    if registry:
        values["MLFLOW_REGISTRY_URI"] = registry
    if not ({"MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"} & os.environ.keys()):
        values["MLFLOW_EXPERIMENT_NAME"] = config.tracking.experiment.name
    server_credentials = credentials.get(config.server.credentials or "")
    secret_names: tuple[str, ...] = ()
    if isinstance(server_credentials, dict):
        secret_names = tuple(str(k) for k in server_credentials)
        values.update({str(k): str(v) for k, v in server_credentials.items()})
    saved = {name: os.environ.get(name) for name in values}
    session = SessionEnv(values, saved, secret_names)
    os.environ.update(values)
    if "mlflow" in sys.modules:  # its URIs set earlier in this process win over env
        mlflow: Any = sys.modules["mlflow"]
        mlflow.set_tracking_uri(values["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(registry)
    return session
