"""What ``tracking.artifacts.auto_log`` costs a ``kedro run`` (issue 16).

Run ``python benchmarks/bench_auto_log.py`` (about 2 minutes; ``--reps`` to change the
9 repetitions, ``--no-server`` to skip the request count). The script:

1. makes a project with ``kedro new`` in a tmp dir whose pipeline writes 10 outputs of
   1 MB each (``text.TextDataset``) and 10 small JSON files, tracked to SQLite;
2. runs it in this process (``KedroSession.create(...).run()``) in three Kedro envs,
   interleaved in rotating order after one warm-up each:
   * ``no_rules``: ``auto_log: []`` (the default);
   * ``nothing``: three rules (a dataset glob, a layer, a tag) that select nothing;
   * ``ten``: one rule selecting the 10 outputs of 1 MB;
   and after each ``ten`` run copies those 10 files into a new folder on the same
   disk, timed twice: with ``shutil.copyfile`` (the target's reference) and with
   MLflow's local artifact store (``log_artifact``, what kedroflow paid before it
   copied into local artifact stores itself);
3. against a local ``mlflow server`` (artifacts proxied), counts the HTTP requests of
   one ``no_rules`` and one ``ten`` run, by endpoint.

Figures are medians with the load average: compare ratios of one invocation.
Targets: ``nothing`` costs what ``no_rules`` costs (within noise: the spread of
``no_rules`` is printed); ``ten`` adds at most 1.2x the time of copying the files
(both references printed; the run time also paired by repetition, ``ten`` minus the
``no_rules`` run next to it; ``auto_log's own time`` is the time spent in its steps,
less the catalog look-ups that Kedro's warm-up does when auto_log has not);
the ``ten`` run sends exactly one request more per output (its upload) than
``no_rules``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import QUIET, kedro_new, scratch
from _server import RequestCounter, mlflow_server

PACKAGE = "bench_auto"
OUTPUTS, SIZE = 10, 1024 * 1024
MODES = ("no_rules", "nothing", "ten")
TRACES = "MLflow's trace export (not counted)"

REGISTRY = f"""
from kedro.pipeline import Node, Pipeline

N = {OUTPUTS}


def big():
    return tuple(str(i) * {SIZE} for i in range(N))


def small(*texts):
    return tuple({{"n": len(t)}} for t in texts)


def register_pipelines():
    outs = [f"out_{{i}}" for i in range(N)]
    summaries = [f"summary_{{i}}" for i in range(N)]
    return {{"__default__": Pipeline([
        Node(big, None, outs, name="big"),
        Node(small, outs, summaries, name="small"),
    ])}}
"""

LOGGING = """
version: 1
disable_existing_loggers: false
handlers:
  console: {class: logging.StreamHandler, level: WARNING}
root: {handlers: [console], level: WARNING}
"""

RULES = {
    "no_rules": "[]",
    "nothing": '[{datasets: "no_such_*"}, {layers: [no_such]}, {tags: [no_such]}]',
    "ten": '[{datasets: "out_*"}]',
}


def make_project(root: Path) -> Path:
    project = kedro_new(root, PACKAGE)
    package = next((project / "src").iterdir())
    (package / "pipeline_registry.py").write_text(REGISTRY)
    (project / "conf" / "logging.yml").write_text(LOGGING)
    catalog = "".join(
        f"out_{i}:\n  type: text.TextDataset\n  filepath: data/out_{i}.txt\n"
        f"summary_{i}:\n  type: json.JSONDataset\n  filepath: data/summary_{i}.json\n"
        for i in range(OUTPUTS)
    )
    (project / "conf" / "base" / "catalog.yml").write_text(catalog)
    return project


def write_envs(project: Path, tracking_uri: str, prefix: str = "") -> None:
    for mode, rules in RULES.items():
        folder = project / "conf" / f"{prefix}{mode}"
        folder.mkdir(exist_ok=True)
        (folder / "mlflow.yml").write_text(
            f"server:\n  mlflow_tracking_uri: {tracking_uri}\n"
            f"tracking:\n  artifacts:\n    auto_log: {rules}\n"
        )


class Spent:
    """Seconds spent in kedroflow's auto_log steps, by wrapping them in this process.

    ``plan`` (before the first node), ``saved`` (after each save: the copy into a local
    artifact store, or the hand-over to the upload pool) and the outbox's ``close``
    (the run's end waits for the uploads still running): the part of a run's time that
    is the rules' own, measured without the noise of the rest of the run. ``plan``
    gets each selected dataset from the catalog (to read its path and version): the
    runner gets every dataset of the pipeline before the first node anyway (its
    warm-up, which then finds them built), so that time only moves; it is kept apart
    as ``built`` and not counted.
    """

    def __init__(self) -> None:
        from kedro.io import DataCatalog

        from kedroflow import outbox
        from kedroflow.io import auto_log

        self.seconds: dict[str, float] = {}
        self.planning = False
        targets = [(auto_log, "plan"), (auto_log.AutoLog, "saved")]
        targets += [(outbox.Outbox, "close"), (DataCatalog, "get")]
        for owner, name in targets:
            setattr(owner, name, self._timed(name, getattr(owner, name)))

    def _timed(self, key: str, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if key == "get" and not self.planning:
                return function(*args, **kwargs)  # Kedro's own: not auto_log's
            self.planning = self.planning or key == "plan"
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                name = "built" if key == "get" else key
                for clock, began in (("", start), (".cpu", cpu)):
                    now = time.perf_counter() if not clock else time.thread_time()
                    spent = self.seconds.get(name + clock, 0.0) + now - began
                    self.seconds[name + clock] = spent
                if key == "plan":
                    self.planning = False

        return timed

    def take(self) -> dict[str, float]:
        """Own seconds (wall, and CPU of the calling thread), catalog look-ups apart."""
        seconds, self.seconds = self.seconds, {}
        built, built_cpu = seconds.pop("built", 0.0), seconds.pop("built.cpu", 0.0)
        cpu = sum(v for k, v in seconds.items() if k.endswith(".cpu"))
        wall = sum(v for k, v in seconds.items() if not k.endswith(".cpu"))
        return {"auto_log": wall - built, "built": built, "cpu": cpu - built_cpu}


def run(project: Path, env: str) -> float:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    start = time.perf_counter()
    with KedroSession.create(project_path=project, env=env) as session:
        session.run()
    return time.perf_counter() - start


def copy_outputs(project: Path, target: Path) -> dict[str, float]:
    """Seconds to copy the 10 outputs: the references of the target.

    ``copy``: ``shutil.copyfile`` into one folder; ``layout``: into one folder per
    output, as they are logged (``<name>/<file>``: a ``mkdir`` each); both also in CPU
    seconds of this thread (``.cpu``: the kernel's copy included). ``upload``: MLflow's
    local store (``LocalArtifactRepository`` streams through a 1 MB buffer into a temp
    file, then renames it), what kedroflow paid before ``local_artifacts``.
    """
    from mlflow.store.artifact.artifact_repository_registry import (
        get_artifact_repository,
    )

    files = [project / "data" / f"out_{i}.txt" for i in range(OUTPUTS)]
    found: dict[str, float] = {}
    for reference in ("copy", "layout"):
        folder = target / reference
        folder.mkdir(parents=True)
        start, cpu = time.perf_counter(), time.thread_time()
        for path in files:
            if reference == "layout":
                (folder / path.stem).mkdir()
            shutil.copyfile(
                path, folder / (path.stem if reference == "layout" else "") / path.name
            )
        found[reference] = time.perf_counter() - start
        found[f"{reference}.cpu"] = time.thread_time() - cpu
    repository = get_artifact_repository((target / "store").as_uri())
    start = time.perf_counter()
    for path in files:
        repository.log_artifact(str(path), path.stem)
    found["upload"] = time.perf_counter() - start
    return found


def check_last_run(project: Path, tracking_uri: str, expected: int) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    (last,) = client.search_runs(
        [client.get_experiment_by_name(PACKAGE).experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    logged = [a for a in client.list_artifacts(last.info.run_id) if a.is_dir]
    assert len(logged) == expected, (expected, [a.path for a in logged])


def bench_times(project: Path, reps: int, scratch: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = collections.defaultdict(list)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    spent = Spent()
    for mode in MODES:  # warm-up: imports, store migration, experiment
        run(project, mode)
    for rep in range(reps):
        order = MODES[rep % 3 :] + MODES[: rep % 3]
        for mode in order:
            spent.take()
            times[mode].append(run(project, mode))
            for key, seconds in spent.take().items():
                times[f"{mode}.{key}"].append(seconds)
            if mode == "ten":
                copied = copy_outputs(project, scratch / f"copy_{rep}")
                for key, seconds in copied.items():
                    times[key].append(seconds)
    check_last_run(project, uri, OUTPUTS if order[-1] == "ten" else 0)
    return times


def bench_requests(project: Path, root: Path) -> dict[str, dict[str, int]]:
    import mlflow

    found: dict[str, dict[str, int]] = {}
    with mlflow_server(f"sqlite:///{root / 'server.db'}", root / "served") as server:
        write_envs(project, server.url, prefix="server_")
        for mode in ("no_rules", "ten"):
            run(project, f"server_{mode}")  # warm-up (experiment, client)
            mlflow.flush_trace_async_logging()  # its trace is sent in the background
            with RequestCounter(server.url) as counter:
                run(project, f"server_{mode}")
                mlflow.flush_trace_async_logging()
            # MLflow exports the run's trace in the background, in 2 or 3 requests
            # (the spans' file is sometimes uploaded too): counted apart
            traces = [call for call in counter.calls if "/traces" in call[1]]
            counter.calls[:] = [c for c in counter.calls if c not in traces]
            found[mode] = {**counter.by_endpoint(), TRACES: len(traces)}
    return found


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report_times(times: dict[str, list[float]]) -> None:
    med = {mode: statistics.median(values) for mode, values in times.items()}
    base = med["no_rules"]
    spread = max(times["no_rules"]) - min(times["no_rules"])
    print(f"\nrun time, median of {len(times['no_rules'])} (load {load_average()})")
    for mode in MODES:
        own, built = med[f"{mode}.auto_log"] * 1000, med[f"{mode}.built"] * 1000
        print(
            f"  {mode:9s} {med[mode]:7.3f} s   x{med[mode] / base:.3f} of no_rules   "
            f"plan+saved+close: {own:6.1f} ms (+ {built:.1f} ms of catalog look-ups "
            "moved from Kedro's warm-up)"
        )
    print(f"  no_rules spread (max-min): {spread:.3f} s")
    nothing = med["nothing"] - base
    print(
        f"  nothing - no_rules: {nothing * 1000:+.1f} ms "
        f"{'ok' if abs(nothing) <= spread else 'MISSED'} (within the no_rules spread)"
    )
    paired = statistics.median(
        ten - base for ten, base in zip(times["ten"], times["no_rules"], strict=True)
    )
    added = {
        "run time": med["ten"] - base,
        "run time, paired by repetition": paired,
        "auto_log's own time": med["ten.auto_log"] - med["no_rules.auto_log"],
    }
    report_references(med, added, med["ten.cpu"] - med["no_rules.cpu"])


def report_references(
    med: dict[str, float], added: dict[str, float], cpu: float
) -> None:
    """What ``ten`` adds, against each way of copying the 10 files."""
    for reference, label in (
        ("copy", "shutil.copyfile into one folder"),
        ("layout", "shutil.copyfile into <name>/ folders"),
        ("upload", "MLflow's local store log_artifact"),
    ):
        copy = med[reference]
        print(f"  {label}, the {OUTPUTS} files: {copy * 1000:6.1f} ms")
        checks = [(what, seconds, copy) for what, seconds in added.items()]
        if f"{reference}.cpu" in med:
            own_cpu = med[f"{reference}.cpu"]
            print(f"    (CPU: {own_cpu * 1000:.1f} ms)")
            checks.append(("auto_log's own CPU time", cpu, own_cpu))
        for what, seconds, reference_seconds in checks:
            ratio = seconds / reference_seconds
            print(
                f"    ten adds {seconds * 1000:6.1f} ms of {what}: x{ratio:.2f} "
                f"{'ok' if ratio <= 1.2 else 'MISSED'} (target <= 1.2x)"
            )


def report_requests(requests: dict[str, dict[str, int]]) -> None:
    total = {
        mode: sum(n for key, n in endpoints.items() if key != TRACES)
        for mode, endpoints in requests.items()
    }
    extra = total["ten"] - total["no_rules"]
    print(f"\nrequests to a local server (proxied artifacts), load {load_average()}")
    for mode, endpoints in requests.items():
        print(f"  {mode:9s} {total[mode]:3d}  {endpoints}")
    print(
        f"  ten - no_rules: {extra} requests for {OUTPUTS} outputs "
        f"{'ok' if extra == OUTPUTS else 'MISSED'} (target: one upload each)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the tmp dir")
    args = parser.parse_args()
    os.environ.update(QUIET, MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true")
    with scratch("bench-auto-log-", keep=args.keep) as root:
        project = make_project(root)
        os.environ["KEDRO_LOGGING_CONFIG"] = str(project / "conf" / "logging.yml")
        write_envs(project, "sqlite:///mlflow.db")
        times = bench_times(project, args.reps, root / "copies")
        requests = {} if args.no_server else bench_requests(project, root)
        report_times(times)
        if requests:
            report_requests(requests)
        import mlflow

        mlflow.flush_trace_async_logging()  # each run's trace, before its store goes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
