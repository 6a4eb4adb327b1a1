"""What a trace per ``kedro run`` costs: run time with tracing off, on, and with
dataset spans, against plain Kedro, and the cost of one node's span.

Run ``python benchmarks/bench_tracing.py [--reps 5] [--nodes 50 200]`` (about 3
minutes). The script creates a Kedro project with ``kedro new`` in a tmp dir whose
pipelines ``n<N>`` chain N cheap nodes (each reads the previous node's output and one
parameter), then runs each pipeline in this process with ``KedroSession``, in
rotating order, in these modes (one warm-up round, then ``--reps`` rounds):

* ``none``: no plugin (``DISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",)``);
* ``notrace``: kedroflow on SQLite with ``tracking.tracing.enabled: false``;
* ``trace``: kedroflow on SQLite, tracing on (the default);
* ``datasets``: tracing on with ``tracking.tracing.datasets: true``.

It prints medians, ratios to ``none`` and the per-node cost of a span:
``(trace - notrace) / N`` (and with dataset spans). Target (issue 12): tracing on keeps
the tracking target of <= 3x plain Kedro on SQLite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import kedro_new, scratch

PACKAGE = "bench_trace"
MODES = ("none", "notrace", "trace", "datasets")

SETTINGS = """
import os

DISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",) if os.environ.get("BENCH_NO_PLUGIN") else ()
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

NODE_COUNTS = {counts!r}


def first(k):
    return k


def step(previous, k):
    return previous + k


def chain(n):
    nodes = [Node(first, "params:k", "d0", name="node_0")]
    nodes += [
        Node(step, [f"d{{i - 1}}", "params:k"], f"d{{i}}", name=f"node_{{i}}")
        for i in range(1, n)
    ]
    return Pipeline(nodes)


def register_pipelines():
    return {{"__default__": chain(2), **{{f"n{{n}}": chain(n) for n in NODE_COUNTS}}}}
"""

MLFLOW_YML = {
    "notrace": "tracking:\n  tracing: {enabled: false}\n",
    "trace": "tracking:\n  tracing: {enabled: true}\n",
    "datasets": "tracking:\n  tracing: {enabled: true, datasets: true}\n",
}


def make_project(root: Path, node_counts: list[int]) -> Path:
    project = kedro_new(root, "bench-trace")
    package = project / "src" / PACKAGE
    (package / "settings.py").write_text(SETTINGS)
    registry = REGISTRY.format(counts=node_counts)
    (package / "pipeline_registry.py").write_text(registry)
    (project / "conf" / "base" / "parameters.yml").write_text("k: 1\n")
    return project


def run_once(project: Path, pipeline: str, mode: str) -> float:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    if mode == "none":
        os.environ["BENCH_NO_PLUGIN"] = "1"
    else:
        os.environ.pop("BENCH_NO_PLUGIN", None)
        (project / "conf" / "local" / "mlflow.yml").write_text(MLFLOW_YML[mode])
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        del sys.modules[name]  # settings.py is read again (the plugin switch)
    bootstrap_project(project)
    start = time.perf_counter()
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_names=[pipeline])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--nodes", type=int, nargs="+", default=[50, 200])
    args = parser.parse_args()
    import logging

    logging.getLogger("kedro").setLevel(logging.WARNING)
    with scratch("bench-trace-") as root:
        project = make_project(root, args.nodes)
        os.chdir(project)
        times: dict[tuple[int, str], list[float]] = {}
        for rep in range(args.reps + 1):
            for n in args.nodes:
                order = MODES[rep % len(MODES) :] + MODES[: rep % len(MODES)]
                for mode in order:
                    elapsed = run_once(project, f"n{n}", mode)
                    if rep:  # the first round warms up imports and the store
                        times.setdefault((n, mode), []).append(elapsed)
        report(times, args.nodes)
        span_costs(project)
    return 0


def span_costs(project: Path, nodes: int = 300) -> None:
    """The cost of one node's span alone: ``nodes`` span cycles in one open trace."""
    import mlflow
    from kedro.pipeline import Node

    from kedroflow.tracing import RunTrace

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    experiment = mlflow.set_experiment("span-cost")
    print(f"\nper-node span cost alone ({nodes} nodes in one trace, median of 3):")
    for datasets in (False, True):
        samples = []
        for _ in range(3):
            with mlflow.start_run():
                trace = RunTrace.start(
                    "cost", experiment.experiment_id, {}, datasets=datasets, scrub=str
                )
                start = time.perf_counter()
                for i in range(nodes):
                    node = Node(len, "x", f"y{i}", name=f"n{i}")
                    trace.dataset("load", "x", node, done=False)
                    trace.dataset("load", "x", node, done=True)
                    trace.enter(node)
                    trace.leave(node)
                    trace.dataset("save", f"y{i}", node, done=False)
                    trace.dataset("save", f"y{i}", node, done=True)
                samples.append((time.perf_counter() - start) / nodes)
                trace.finish()
        label = "node + load + save spans" if datasets else "node span"
        print(f"  {label:>24}: {statistics.median(samples) * 1e6:7.0f} us per node")
    mlflow.flush_trace_async_logging()


def report(times: dict[tuple[int, str], list[float]], node_counts: list[int]) -> None:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nmedian run time (s), ratio to plain Kedro; load average {load}")
    print(f"{'nodes':>6} " + " ".join(f"{m:>16}" for m in MODES))
    for n in node_counts:
        base = statistics.median(times[(n, "none")])
        cells = []
        for mode in MODES:
            value = statistics.median(times[(n, mode)])
            cells.append(f"{value:8.3f} ({value / base:4.2f}x)")
        print(f"{n:>6} " + " ".join(f"{c:>16}" for c in cells))
    print("\nper-node cost of tracing (median difference / node count):")
    for n in node_counts:
        off = statistics.median(times[(n, "notrace")])
        for mode in ("trace", "datasets"):
            on = statistics.median(times[(n, mode)])
            print(f"  n{n} {mode:>8}: {(on - off) / n * 1000:6.2f} ms per node")


if __name__ == "__main__":
    sys.exit(main())
