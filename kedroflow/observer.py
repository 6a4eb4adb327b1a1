"""What a tracked ``kedro run`` sees inside: MLflow's API, spans, child runs, autolog.

The hook opens one :class:`RunObserver` per tracked run, after the run is open, and
hands it each node and dataset event; it closes it before the run closes. It binds the
run to MLflow's fluent API in node threads (:mod:`kedroflow.fluent`), traces the run
(:mod:`kedroflow.tracing`), opens its child runs (:mod:`kedroflow.child_runs`) and
turns autologging and system metrics on for its duration (:mod:`kedroflow.autolog`).
In a ParallelRunner worker the hook gets the worker's counterpart from
:meth:`RunObserver.for_this_process` (forked worker) or :func:`from_env` (spawned).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kedroflow import autolog, fluent, provenance, tracing, tracking
from kedroflow.child_runs import ChildRuns

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from kedro.pipeline import Node, Pipeline
    from mlflow.entities import Run

    from kedroflow.config import KedroflowConfig
    from kedroflow.tracking import CurrentRun

logger = logging.getLogger(__name__)


class Spans(Protocol):
    """A run's trace in the process that opened it, or a worker's span recorder."""

    def enter(self, node: Node, inputs: Mapping[str, Any] | None = None) -> None: ...

    def leave(self, node: Node, error: BaseException | None = None) -> None: ...

    def dataset(self, action: str, name: str, node: Node, *, done: bool) -> None: ...


@dataclass
class RunObserver:
    """The kedro run as MLflow's active run in nodes, and its trace."""

    node_runs: fluent.NodeRuns
    spans: Spans | None = None
    children: ChildRuns | None = None
    instruments: autolog.RunInstruments | None = None
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def start(
        cls,
        config: KedroflowConfig,
        run: CurrentRun,
        scope: RunScope,
    ) -> RunObserver:
        """Bind the run to MLflow's fluent API, open its children, trace, autolog."""
        observer = cls(fluent.NodeRuns.bind(run))
        try:
            observer._open_parts(config, run, scope)
        except BaseException as error:
            observer.finish(error)
            raise
        return observer

    def _open_parts(
        self, config: KedroflowConfig, run: CurrentRun, scope: RunScope
    ) -> None:
        experiment_id = str(self.node_runs.run.info.experiment_id)
        if config.tracking.run.child_runs != "none":
            self.children = ChildRuns.open(
                config,
                run,
                experiment_id=experiment_id,
                pipeline=scope.pipeline,
                pipeline_names=scope.pipeline_names,
                consumed_params=scope.consumed_params,
            )
        self.instruments = autolog.RunInstruments.start(config.tracking, run.run_id)
        settings = config.tracking.tracing
        if settings.enabled:
            try:
                self.spans = tracing.RunTrace.start(
                    scope.trace_name,
                    experiment_id,
                    scope.attributes,
                    datasets=settings.datasets,
                    scrub=run.secrets.scrub,
                )
            except Exception:  # tracing is an aid: the run goes on without it
                logger.warning("kedroflow: no trace for this run", exc_info=True)

    def for_this_process(self) -> RunObserver:
        """This observer, or in a forked ParallelRunner worker its worker counterpart."""
        if self.pid == os.getpid():
            return self
        worker = RunObserver(self.node_runs, children=self.children)
        if isinstance(self.spans, tracing.RunTrace):
            worker.spans = tracing.WorkerSpans(self.spans.span_dir, self.spans.datasets)
        return worker

    def before_node(self, node: Node, inputs: Mapping[str, Any] | None = None) -> None:
        child = self._use_child(node)
        self.node_runs.enter(child)
        if self.spans is not None:
            self.spans.enter(node, inputs)

    def after_node(self, node: Node, error: BaseException | None = None) -> None:
        if self.spans is not None:
            self.spans.leave(node, error)
        if error is not None and self.children is not None:
            self.children.node_failed(node)
        self.node_runs.leave(node.name)

    def dataset(self, action: str, name: str, node: Node, *, done: bool) -> None:
        self._use_child(node)
        if self.spans is not None:
            self.spans.dataset(action, name, node, done=done)

    def _use_child(self, node: Node) -> Run | None:
        """With child runs: the node's child is this thread's run (datasets log to it)."""
        if self.children is None:
            return None
        found = self.children.of(node)
        tracking.use_in_thread(found[1] if found else None)
        return found[0] if found else None

    def finish(self, error: BaseException | None = None) -> None:
        """Stop autolog, end the trace (exported before the stores are restored) and
        the child runs, unbind the run; every part is closed even if one fails."""
        parts: list[Callable[[], None]] = []
        if self.instruments is not None:
            parts.append(self.instruments.stop)
        if isinstance(self.spans, tracing.RunTrace):
            parts.append(lambda: self.spans.finish(error))  # type: ignore[union-attr]
        if self.children is not None:
            parts.append(self.children.close)
        parts += [lambda: tracking.use_in_thread(None), self.node_runs.unbind]
        _close_all(parts)


def _close_all(parts: list[Callable[[], None]]) -> None:
    """Run every closing step; re-raise the first failure after all have run."""
    first: BaseException | None = None
    for part in parts:
        try:
            part()
        except BaseException as exc:
            first = first or exc
    if first is not None:
        raise first


@dataclass(frozen=True)
class RunScope:
    """What the run covers: the trace's name and attributes, its pipeline and params."""

    trace_name: str
    attributes: dict[str, Any]
    pipeline: Pipeline
    pipeline_names: list[str]
    consumed_params: Callable[[Pipeline], dict[str, Any]]

    @classmethod
    def of_run(
        cls, names: list[str], tags: Mapping[str, Any], pipeline: Pipeline, catalog: Any
    ) -> RunScope:
        """A ``kedro run``'s scope: the trace named after its pipelines, Kedro's tags as
        root attributes, the parameters each part consumes (child runs)."""
        keys = ("kedro.pipeline", "kedro.env", "kedro.runner", "kedro.session_id")
        return cls(
            f"kedro run {'+'.join(names)}",
            {key: tags[key] for key in keys if key in tags},
            pipeline,
            names,
            lambda part: provenance.consumed_params(part, catalog, {}),
        )


def from_env() -> RunObserver | None:
    """A spawned ParallelRunner worker's observer, from what its parent exported."""
    node_runs = fluent.for_worker()
    if node_runs is None:
        return None
    return RunObserver(node_runs, tracing.WorkerSpans.from_env())
