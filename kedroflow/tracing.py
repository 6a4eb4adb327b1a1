"""One MLflow trace per ``kedro run``: a root span for the pipeline, a span per node.

A node's span covers its inputs' loads, its function and its outputs' saves (what the
node costs), with the namespace, tags and dataset names as attributes, and status ERROR
with the exception when it fails. With ``tracking.tracing.datasets: true`` each load and
save is a child span. Spans are created with explicit parents (MLflow's tracing context
is per thread, and ThreadRunner runs nodes in a pool), and the node's span is made the
current span of the thread that runs the node, so that spans made inside the node
(``@mlflow.trace``, an LLM client's autolog) nest under it.

ParallelRunner runs nodes in other processes, where a span of this process's trace
cannot be ended: there each finished span is recorded (name, parent, start and end
times, status, attributes) in a file of a folder the parent process gave, and the
parent adds them to the trace when the pipeline ends. Spans made inside a node of a
ParallelRunner worker form their own trace, linked to the same run, sent when the node
returns.

The trace costs the same few requests whatever the node count, sent when the run ends
(:mod:`kedroflow.trace_export`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedroflow import trace_export

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from kedro.pipeline import Node

logger = logging.getLogger(__name__)

#: Exported while a traced run is open: where ParallelRunner workers record spans.
SPAN_DIR_ENV = "_KEDROFLOW_SPAN_DIR"
NODE_SPAN = "KEDRO_NODE"
DATASET_SPAN = "KEDRO_DATASET"
#: MLflow's span attribute (and format) for the prompt versions a span used.
LINKED_PROMPTS = "mlflow.linkedPrompts"
_MAX_MESSAGE = 2000
_SETTINGS = "settings.json"


def node_attributes(node: Node, scrub: Callable[[str], str]) -> dict[str, Any]:
    """What a node's span says about the node (names only, never data)."""
    return {
        "kedro.node": scrub(node.name),
        "kedro.namespace": scrub(node.namespace or ""),
        "kedro.tags": [scrub(tag) for tag in sorted(node.tags)],
        "kedro.inputs": [scrub(name) for name in node.inputs],
        "kedro.outputs": [scrub(name) for name in node.outputs],
    }


def prompt_attributes(
    inputs: Mapping[str, Any] | None, scrub: Callable[[str], str]
) -> dict[str, str]:
    """The registry prompt versions a node is given (an ``llm_context_node``'s
    prompts), as ``mlflow.genai.load_prompt`` records them on the current span."""
    from mlflow.entities import model_registry

    # MLflow 3.0 calls a prompt version `Prompt`
    kind: Any = getattr(model_registry, "PromptVersion", None) or model_registry.Prompt
    linked = [
        {"name": scrub(value.name), "version": str(value.version)}
        for value in (inputs or {}).values()
        if isinstance(value, kind)
    ]
    return {LINKED_PROMPTS: json.dumps(linked)} if linked else {}


def error_event(error: BaseException, scrub: Callable[[str], str]) -> dict[str, str]:
    """The exception as a span event's attributes, secrets scrubbed."""
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {
        "exception.type": type(error).__name__,
        "exception.message": scrub(str(error))[:_MAX_MESSAGE],
        "exception.stacktrace": scrub(stack)[-4 * _MAX_MESSAGE :],
    }


class Interrupted(BaseException):
    """The error of a trace whose process exits before the run ends."""


@dataclass
class _Open:
    """A node's span while the node runs (its I/O included)."""

    span: Any
    pending_saves: set[str]
    tokens: dict[int, Any] = field(default_factory=dict)  # thread id -> context token


@dataclass
class RunTrace:
    """The trace of one ``kedro run``, built in the process that opened the run."""

    root: Any
    datasets: bool
    scrub: Callable[[str], str]
    span_dir: Path
    pid: int = field(default_factory=os.getpid)
    _nodes: dict[str, _Open] = field(default_factory=dict)
    _io: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ended: bool = False

    @classmethod
    def start(
        cls,
        name: str,
        experiment_id: str,
        attributes: dict[str, Any],
        *,
        datasets: bool,
        scrub: Callable[[str], str],
    ) -> RunTrace:
        """Open the trace; MLflow links it to the run active in this thread."""
        import mlflow

        with trace_export.one_batch_tracer():
            root = mlflow.start_span_no_context(
                name=scrub(name),
                span_type="CHAIN",
                attributes={k: scrub(str(v)) for k, v in attributes.items()},
                experiment_id=experiment_id,
            )
        span_dir = Path(tempfile.mkdtemp(prefix="kedroflow-spans-"))
        (span_dir / _SETTINGS).write_text(json.dumps({"datasets": datasets}))
        os.environ[SPAN_DIR_ENV] = str(span_dir)
        trace = cls(root, datasets, scrub, span_dir)
        # registered after MLflow's tracer (made by the root span), so it runs before
        # the tracer's own exit handler stops it: an interrupted run sends its trace
        atexit.register(trace._at_exit)
        return trace

    @property
    def trace_id(self) -> str:
        return str(getattr(self.root, "trace_id", None) or self.root.request_id)

    def node_started(self, node: Node) -> None:
        """Before a node's first load, or before it runs: its span starts."""
        with self._lock:
            if node.name in self._nodes:
                return
            import mlflow

            span = mlflow.start_span_no_context(
                name=node.name,
                span_type=NODE_SPAN,
                parent_span=self.root,
                attributes=node_attributes(node, self.scrub),
            )
            self._nodes[node.name] = _Open(span, set(node.outputs))

    def enter(self, node: Node, inputs: Mapping[str, Any] | None = None) -> None:
        """In the node's thread: spans made by the node nest under its span."""
        from mlflow.tracing import provider

        self.node_started(node)
        opened = self._nodes[node.name]
        for key, value in prompt_attributes(inputs, self.scrub).items():
            opened.span.set_attribute(key, value)
        opened.tokens[threading.get_ident()] = provider.set_span_in_context(opened.span)

    def leave(self, node: Node, error: BaseException | None = None) -> None:
        """After the node's function; the span ends now on error or without outputs."""
        from mlflow.tracing import provider

        opened = self._nodes.get(node.name)
        if opened is None:
            return
        token = opened.tokens.pop(threading.get_ident(), None)
        if token is not None:
            provider.detach_span_from_context(token)
        if error is not None:
            self._end_node(node.name, error)
        elif not opened.pending_saves:
            self._end_node(node.name)

    def dataset(self, action: str, name: str, node: Node, *, done: bool) -> None:
        """A load or save of ``node`` starts (``done=False``) or ends."""
        if not done:
            self.node_started(node)
            if self.datasets:
                self._start_io(action, name, node.name)
            return
        if self.datasets:
            self._end_io(action, name, node.name)
        if action == "save":
            opened = self._nodes.get(node.name)
            if opened is not None:
                opened.pending_saves.discard(name)
                if not opened.pending_saves:
                    self._end_node(node.name)

    def finish(self, error: BaseException | None = None) -> None:
        """End every open span, add the workers' spans, end the trace and send it."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        atexit.unregister(self._at_exit)
        for key in list(self._io):
            self._end_io(*key)
        for name in list(self._nodes):
            self._end_node(name, error)
        os.environ.pop(SPAN_DIR_ENV, None)
        try:
            replay(self.root, self.span_dir, self.scrub)
        finally:
            shutil.rmtree(self.span_dir, ignore_errors=True)
        if error is not None:
            _fail(self.root, error_event(error, self.scrub))
        # sent now, while the run's stores are MLflow's, and waited for: a failed or
        # interrupted run (SIGTERM, Ctrl-C) loses none of its spans
        self.root.end()
        trace_export.send()
        trace_export.end_tracer()

    def _at_exit(self) -> None:
        """At interpreter exit (Ctrl-C, SIGTERM) before the run's end: end the trace."""
        if self.pid == os.getpid():
            self.finish(Interrupted("the run was interrupted (Ctrl-C or SIGTERM)"))

    def _start_io(self, action: str, name: str, node_name: str) -> None:
        import mlflow

        with self._lock:
            parent = self._nodes[node_name].span
            self._io[(action, name, node_name)] = mlflow.start_span_no_context(
                name=f"{action} {self.scrub(name)}",
                span_type=DATASET_SPAN,
                parent_span=parent,
                attributes={"kedro.dataset": self.scrub(name)},
            )

    def _end_io(self, action: str, name: str, node_name: str) -> None:
        with self._lock:
            span = self._io.pop((action, name, node_name), None)
        if span is not None:
            span.end()

    def _end_node(self, name: str, error: BaseException | None = None) -> None:
        with self._lock:
            opened = self._nodes.pop(name, None)
        if opened is None:
            return
        if error is not None:
            _fail(opened.span, error_event(error, self.scrub))
        opened.span.end()


def _fail(span: Any, event: dict[str, Any]) -> None:
    from mlflow import entities

    event_class: Any = entities.SpanEvent  # abstract to mypy, concrete at run time
    span.set_status("ERROR")
    span.add_event(event_class(name="exception", attributes=event))


# ----------------------------------------------------------- ParallelRunner workers


def _same(text: str) -> str:
    return text


@dataclass
class WorkerSpans:
    """In a ParallelRunner worker: node and dataset spans recorded for the parent.

    Nothing is scrubbed here (a spawned worker does not know the run's secrets): the
    parent scrubs every string when it adds the spans to the trace.
    """

    span_dir: Path
    datasets: bool
    _open: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> WorkerSpans | None:
        """The recorder of a worker whose parent traces the run, else None."""
        folder = os.environ.get(SPAN_DIR_ENV)
        if not folder or not (Path(folder) / _SETTINGS).is_file():
            return None
        settings = json.loads((Path(folder) / _SETTINGS).read_text())
        return cls(Path(folder), bool(settings.get("datasets")))

    def node_started(self, node: Node) -> None:
        key = (node.name,)
        if key not in self._open:
            self._open[key] = {
                "name": node.name,
                "parent": None,
                "type": NODE_SPAN,
                "start_ns": time.time_ns(),
                "attributes": node_attributes(node, _same),
                "pending": list(node.outputs),
            }

    def enter(self, node: Node, inputs: Mapping[str, Any] | None = None) -> None:
        self.node_started(node)
        self._open[(node.name,)]["attributes"].update(prompt_attributes(inputs, _same))

    def leave(self, node: Node, error: BaseException | None = None) -> None:
        # what the node's own spans made (a trace of this process) is sent before the
        # worker, which runs no exit handler, may end
        trace_export.send()
        record = self._open.get((node.name,))
        if record is None:
            return
        if error is not None:
            record["error"] = error_event(error, _same)
            self._write((node.name,))
        elif not record["pending"]:
            self._write((node.name,))

    def dataset(self, action: str, name: str, node: Node, *, done: bool) -> None:
        key = (node.name, action, name)
        if not done:
            self.node_started(node)
            if self.datasets:
                self._open[key] = {
                    "name": f"{action} {name}",
                    "parent": node.name,
                    "type": DATASET_SPAN,
                    "start_ns": time.time_ns(),
                    "attributes": {"kedro.dataset": name},
                }
            return
        if key in self._open:
            self._write(key)
        record = self._open.get((node.name,))
        if action == "save" and record is not None:
            record["pending"] = [n for n in record["pending"] if n != name]
            if not record["pending"]:
                self._write((node.name,))

    def _write(self, key: tuple[str, ...]) -> None:
        record = self._open.pop(key)
        record["end_ns"] = time.time_ns()
        record.pop("pending", None)
        path = self.span_dir / f"{os.getpid()}.jsonl"
        with path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")


def replay(root: Any, span_dir: Path, scrub: Callable[[str], str]) -> int:
    """Add the spans ParallelRunner workers recorded under ``root``; return how many."""
    import mlflow

    records: list[dict[str, Any]] = []
    for path in sorted(span_dir.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        records.extend(json.loads(line) for line in lines if line.strip())
    nodes: dict[str, Any] = {}
    # nodes first, so that their dataset spans find their parent
    for record in sorted(
        records, key=lambda r: (r["parent"] is not None, r["start_ns"])
    ):
        parent = nodes.get(record["parent"], root) if record["parent"] else root
        span = mlflow.start_span_no_context(
            name=scrub(record["name"]),
            span_type=record["type"],
            parent_span=parent,
            attributes=_scrubbed(record["attributes"], scrub),
            start_time_ns=record["start_ns"],
        )
        if record.get("error"):
            _fail(span, _scrubbed(record["error"], scrub))
        span.end(end_time_ns=record["end_ns"])
        if record["parent"] is None:
            nodes[record["name"]] = span
    return len(records)


def _scrubbed(tree: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(tree, dict):
        return {key: _scrubbed(value, scrub) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_scrubbed(value, scrub) for value in tree]
    return scrub(tree) if isinstance(tree, str) else tree
