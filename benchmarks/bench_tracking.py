"""What tracking with kedroflow costs a ``kedro run``: time, HTTP requests, CLI start-up.

Run ``python benchmarks/bench_tracking.py [--quick]`` (about 5 minutes, 3 with
``--quick``). The script:

1. creates a Kedro project with ``kedro new`` in a tmp dir (a git repository, as real
   projects are) whose pipelines chain cheap nodes that consume 300 nested parameters
   (30 groups of 5 dicts of 2 values):

   * ``full50``, the full scenario (issue 15): 50 nodes that read two persisted inputs
     (a CSV and a JSON file: lineage) and write 20 ``MlflowMetricDataset`` and 5
     ``MlflowArtifactDataset`` (JSON reports); ``full50_m1`` is the same with one
     metric dataset, ``full200`` with 200 nodes (requests must not grow with either);
   * ``n10``, ``n50`` and ``n1000``: the dataset-free chains of issue 2;

2. runs it in this process with ``KedroSession.create(...).run()``, interleaved, in
   these modes, each once as a warm-up, then ``--reps`` times in rotating order:

   * ``none``: no plugin, ``DISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",)`` in settings.py,
     and the plain Kedro catalog (metrics stay in memory, reports are JSON files);
   * ``off``: kedroflow installed but ``KEDROFLOW_DISABLE_TRACKING=1``;
   * ``sqlite``: kedroflow tracking to ``sqlite:///mlflow.db`` at the project root;
   * ``server``: kedroflow tracking to a local ``mlflow server`` on 127.0.0.1, which the
     script starts and stops (backend: PostgreSQL from ``.ci/postgres.sh`` when it is
     available, else SQLite in the tmp dir; artifacts served by the server);
   * ``sqlite_untraced``, ``server_untraced``: the same with
     ``tracking.tracing.enabled: false`` (the difference is what the trace costs);

3. counts the HTTP requests each server run sends, by endpoint (client side, by
   wrapping ``requests`` and ``urllib.request`` in this process);
4. times ``kedro --help`` inside the project with and without the plugin (see
   :func:`time_kedro_help` for the method);
5. (full mode) times ``kedro run --pipelines etl_instances,etl_labels`` on a copy of
   ``examples/reviews`` in fresh processes, tracked vs ``KEDROFLOW_DISABLE_TRACKING=1``,
   lists the heavy modules the tracked run imported and what importing MLflow costs.

Times are medians, printed with the machine's load average. Ratios are to the
``none`` run of the same pipeline. Kedro's logging is set to WARNING so that the
baseline is not padded by console output. Targets: on the full scenario (issue 15)
<= 18 requests per run whatever the metric and node counts; without datasets (issue 2)
<= 10 + ceil(P/100); run time <= 3x ``none`` on SQLite and <= 5x against a local
server; ``kedro --help`` <= 1.15x without the plugin.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BIN, QUIET, kedro_new, scratch, timed_run
from _server import RequestCounter, mlflow_server

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "bench"
GROUPS, SUBGROUPS, LEAVES = 30, 5, 2
N_PARAMS = GROUPS * SUBGROUPS * LEAVES
NODE_COUNTS = (10, 50, 1000)
METRICS, ARTIFACTS = 20, 5
MODES = ("none", "off", "sqlite", "server", "sqlite_untraced", "server_untraced")
#: The Kedro env of each mode (``*_untraced``: ``tracking.tracing.enabled: false``).
ENVS = {"none": "plain", "off": "sqlite", "sqlite": "sqlite", "server": "server",
        "sqlite_untraced": "sqlite_untraced", "server_untraced": "server_untraced"}  # fmt: skip
#: Requests per run on the full scenario (issue 15), whatever the metric/node count.
FULL_TARGET = 18

SETTINGS = """
import os

# The benchmark switches the plugin off per run with BENCH_NO_PLUGIN=1 (and re-imports
# this module), exactly as a user opts out of kedroflow's hooks.
DISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",) if os.environ.get("BENCH_NO_PLUGIN") else ()
"""

REGISTRY = """
from kedro.pipeline import Pipeline, node

GROUPS = {groups}
METRICS, ARTIFACTS = {metrics}, {artifacts}


def _size(x):
    return x if isinstance(x, int | float) else len(x)


def step(*inputs):
    return sum(_size(x) for x in inputs)


def _outputs(names):
    # one function per output shape: the chain value, then metrics and reports
    def run(*inputs):
        value = step(*inputs)
        extra = [float(value) if n.startswith("metric") else {{"value": value}}
                 for n in names[1:]]
        return [value, *extra] if extra else value

    return run


def chain(n, metrics=0, artifacts=0, raw=()):
    metric_at = {{round(k * n / metrics): k for k in range(metrics)}} if metrics else {{}}
    report_at = {{round(k * n / artifacts) + 1: k for k in range(artifacts)}} if artifacts else {{}}
    nodes = []
    for i in range(n):
        groups = sorted({{g for g in range(GROUPS) if g % n == i}} | {{i % GROUPS}})
        params = [f"params:group_{{g:02d}}" for g in groups]
        inputs = ([f"d{{i - 1}}"] if i else list(raw)) + params
        outputs = [f"d{{i}}"]
        if i in metric_at:
            outputs.append(f"metric_{{metric_at[i]:02d}}")
        if i in report_at:
            outputs.append(f"report_{{report_at[i]}}")
        func = _outputs(outputs) if len(outputs) > 1 else step
        nodes.append(node(func, inputs, outputs if len(outputs) > 1 else outputs[0],
                          name=f"step_{{i:04d}}"))
    return Pipeline(nodes)


def register_pipelines():
    pipelines = {{f"n{{n}}": chain(n) for n in {counts}}}
    # the full scenario: persisted inputs (lineage), metric and artifact datasets
    raw = ("raw_table", "raw_config")
    pipelines["full50"] = chain(50, METRICS, ARTIFACTS, raw)
    pipelines["full50_m1"] = chain(50, 1, ARTIFACTS, raw)
    pipelines["full200"] = chain(200, METRICS, ARTIFACTS, raw)
    pipelines["__default__"] = pipelines["n50"]
    return pipelines
"""

# Plain Kedro datasets in base (what the ``none`` mode runs: metrics stay in memory);
# the tracked envs override them with kedroflow's datasets.
BASE_CATALOG = """
raw_table:
  type: pandas.CSVDataset
  filepath: data/01_raw/table.csv
raw_config:
  type: json.JSONDataset
  filepath: data/01_raw/config.json
"""

LOGGING = """
version: 1
disable_existing_loggers: false
handlers:
  console: {class: logging.StreamHandler, level: WARNING}
root: {level: WARNING, handlers: [console]}
"""

HELP_RUNNER = """
import importlib.metadata as md
import sys
from pathlib import Path

# Both variants go through the same replacement of importlib.metadata.entry_points and
# .distributions (how Kedro finds kedro.project_commands and pluggy finds hooks);
# "without" hides kedroflow's distribution from them, as if it were not installed.
HIDE = sys.argv.pop(1) == "without"
_distributions = md.distributions


def _name(dist):
    # Same work in both variants: the name from the .dist-info folder, no METADATA parse.
    path = Path(str(getattr(dist, "_path", "")))
    return path.name.split("-")[0].removesuffix(".egg").lower().replace("_", "-")


def distributions(**kwargs):
    for dist in _distributions(**kwargs):
        if not (_name(dist) == "kedroflow" and HIDE):
            yield dist


def entry_points(**params):
    seen, found = set(), []
    for dist in distributions():
        name = _name(dist)
        if name not in seen:
            seen.add(name)
            found.extend(dist.entry_points)
    eps = md.EntryPoints(found)
    return eps.select(**params) if params else eps


md.entry_points, md.distributions = entry_points, distributions

from kedro.framework.cli import main

sys.argv[0] = "kedro"
main()
"""


# ----------------------------------------------------------------------------- project


def make_project(root: Path) -> Path:
    """``kedro new`` + the benchmark pipelines, parameters, settings and git history."""
    project = kedro_new(root, PACKAGE, env=_env())
    package = project / "src" / PACKAGE
    (package / "settings.py").write_text(SETTINGS)
    (package / "pipeline_registry.py").write_text(
        REGISTRY.format(
            groups=GROUPS, counts=NODE_COUNTS, metrics=METRICS, artifacts=ARTIFACTS
        )
    )
    import yaml

    params = {
        f"group_{g:02d}": {
            f"s{s}": {"lr": round(0.001 * (g + s + 1), 6), "name": f"value-{g}-{s}"}
            for s in range(SUBGROUPS)
        }
        for g in range(GROUPS)
    }
    (project / "conf" / "base" / "parameters.yml").write_text(yaml.safe_dump(params))
    (project / "conf" / "logging.yml").write_text(LOGGING)
    (project / "conf" / "base" / "catalog.yml").write_text(
        BASE_CATALOG + plain_reports()
    )
    (project / "conf" / "plain").mkdir()
    (project / "conf" / "plain" / "catalog.yml").write_text("{}\n")
    raw = project / "data" / "01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"{i},{i * 0.5},name-{i}" for i in range(200))
    (raw / "table.csv").write_text(f"id,score,name\n{rows}\n")
    (raw / "config.json").write_text('{"threshold": 0.5, "labels": ["a", "b"]}')
    (project / "help_runner.py").write_text(HELP_RUNNER)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *args], cwd=project, check=True, capture_output=True)
    return project


def plain_reports() -> str:
    return "".join(
        f"report_{k}:\n  type: json.JSONDataset\n"
        f"  filepath: data/08_reporting/report_{k}.json\n"
        for k in range(ARTIFACTS)
    )


def tracked_catalog() -> str:
    """The full scenario's kedroflow datasets: 20 metrics and 5 artifacts."""
    metrics = "".join(
        f"metric_{k:02d}:\n  type: kedroflow.MlflowMetricDataset\n"
        for k in range(METRICS)
    )
    reports = "".join(
        f"report_{k}:\n  type: kedroflow.MlflowArtifactDataset\n"
        f"  artifact_path: reports\n  dataset:\n    type: json.JSONDataset\n"
        f"    filepath: data/08_reporting/report_{k}.json\n"
        for k in range(ARTIFACTS)
    )
    return metrics + reports


def write_env(
    project: Path, env: str, tracking_uri: str, *, tracing: bool = True
) -> None:
    """A Kedro env whose ``mlflow.yml`` points at ``tracking_uri``."""
    folder = project / "conf" / env
    folder.mkdir(exist_ok=True)
    (folder / "catalog.yml").write_text(tracked_catalog())
    (folder / "mlflow.yml").write_text(
        f"server:\n  mlflow_tracking_uri: {tracking_uri}\n"
        f"tracking:\n  experiment:\n    name: {PACKAGE}\n"
        # One MLflow parameter per leaf: the 300 parameters of the scenario.
        "  params:\n    dict_params:\n      flatten: true\n      recursive: true\n"
        # traced is the default: no key, so that the code before tracing reads it too
        + ("" if tracing else "  tracing:\n    enabled: false\n")
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# ---------------------------------------------------------------------------- runs


class Runner:
    """Runs the project in this process in one of the benchmark modes.

    Counts what each run costs the tracking store: HTTP requests to the server (by
    endpoint) and committed SQL transactions on SQLite (each is a disk sync).
    """

    def __init__(self, project: Path, server_url: str | None) -> None:
        self.project = project
        self.counter = RequestCounter(server_url) if server_url else None
        self.commits = 0
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "commit", self._on_commit)

    def _on_commit(self, *_: Any) -> None:
        self.commits += 1

    def run(self, mode: str, pipeline: str) -> tuple[float, int | None, dict[str, int]]:
        """One ``KedroSession.create(...).run()``: seconds, store calls, by endpoint.

        Store calls are HTTP requests in ``server`` mode, SQL commits otherwise.
        """
        from kedro.framework.session import KedroSession
        from kedro.framework.startup import bootstrap_project

        os.environ.pop("BENCH_NO_PLUGIN", None)
        os.environ.pop("KEDROFLOW_DISABLE_TRACKING", None)
        if mode == "none":
            os.environ["BENCH_NO_PLUGIN"] = "1"
        elif mode == "off":
            os.environ["KEDROFLOW_DISABLE_TRACKING"] = "1"
        # ``none`` runs the plain Kedro catalog: kedroflow's datasets need the plugin
        env = ENVS[mode]
        sys.modules.pop(f"{PACKAGE}.settings", None)  # settings.py is read anew
        bootstrap_project(self.project)
        counter = self.counter if mode.startswith("server") else None
        if counter is not None:
            counter.reset()
            counter.__enter__()
        self.commits = 0
        try:
            start = time.perf_counter()
            with KedroSession.create(project_path=self.project, env=env) as session:
                session.run(pipeline_names=[pipeline])
            elapsed = time.perf_counter() - start
        finally:
            if counter is not None:
                counter.__exit__(None, None, None)
        plugins = {type(p).__name__ for p in session._hook_manager.get_plugins()}
        assert ("MlflowHook" in plugins) == (mode != "none"), (mode, plugins)
        if counter is None:
            return elapsed, self.commits, {}
        return elapsed, counter.count, counter.by_endpoint()


def measure(
    runner: Runner, pipeline: str, modes: tuple[str, ...], reps: int
) -> dict[str, dict[str, Any]]:
    """Warm each mode up once, then run them ``reps`` times, interleaved in rotation."""
    results: dict[str, dict[str, Any]] = {
        m: {"times": [], "requests": [], "endpoints": {}} for m in modes
    }
    for mode in modes:
        runner.run(mode, pipeline)
    for rep in range(reps):
        order = modes[rep % len(modes) :] + modes[: rep % len(modes)]
        for mode in order:
            elapsed, requests, endpoints = runner.run(mode, pipeline)
            results[mode]["times"].append(elapsed)
            results[mode]["requests"].append(requests)
            results[mode]["endpoints"] = endpoints
    return results


def check_last_run(project: Path, tracking_uri: str) -> str:
    """Status and parameter count of the newest run in the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(PACKAGE)
    if experiment is None:
        return "no experiment"
    runs = client.search_runs(
        [experiment.experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return "no run"
    run = runs[0]
    reports = client.list_artifacts(run.info.run_id, "reports")
    inputs = run.inputs.dataset_inputs if run.inputs else []
    return (
        f"{run.info.status}, {len(run.data.params)} params, {len(run.data.tags)} tags, "
        f"{len(run.data.metrics)} metrics, {len(reports)} reports, "
        f"{len(inputs)} dataset inputs"
    )


# --------------------------------------------------------------------------- CLI time


def time_kedro_help(project: Path, reps: int) -> dict[str, list[float]]:
    """Wall time of ``kedro --help`` in the project, with and without kedroflow.

    Both variants run the same small runner (``help_runner.py``) that calls Kedro's
    ``kedro.framework.cli.main`` exactly as the ``kedro`` script does. "without" first
    hides kedroflow's distribution from ``importlib.metadata.entry_points`` and
    ``importlib.metadata.distributions``, which is how Kedro finds
    ``kedro.project_commands`` (``kedro.framework.cli.utils._get_entry_points``) and
    pluggy finds hooks: Kedro then behaves as if kedroflow were not installed, without
    uninstalling anything. Interleaved, one warm-up each.
    """
    times: dict[str, list[float]] = {"with": [], "without": []}
    for rep in range(reps + 1):
        for variant in ("with", "without") if rep % 2 else ("without", "with"):
            result, elapsed = timed_run(
                [sys.executable, "help_runner.py", variant, "--help"], project, _env()
            )
            if result.returncode != 0:
                raise RuntimeError(f"kedro --help failed:\n{result.stderr[-3000:]}")
            listed = "commands from kedroflow" in result.stdout
            if listed != (variant == "with"):
                raise RuntimeError(
                    f"'{variant}' variant: kedroflow commands listed={listed}"
                )
            if rep:
                times[variant].append(elapsed)
    return times


EXAMPLE = REPO / "examples" / "reviews"
ETL = "etl_instances,etl_labels"

#: Runs ``kedro`` as the script does, then prints which heavy modules the run imported.
IMPORTS_RUNNER = """
import atexit
import sys

HEAVY = ("mlflow", "mlflow.models", "mlflow.pyfunc", "mlflow.data", "mlflow.tracing",
         "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.artifact", "sqlalchemy",
         "alembic", "pandas", "sklearn", "matplotlib", "requests")


def report():
    found = [name for name in HEAVY if name in sys.modules]
    count = sum(1 for name in sys.modules if name.split(".")[0] == "mlflow")
    print(f"KEDROFLOW_IMPORTS {count} mlflow modules; {', '.join(found)}", file=sys.stderr)


atexit.register(report)
from kedro.framework.cli import main

sys.argv[0] = "kedro"
main()
"""


def make_example(root: Path) -> Path:
    """A copy of ``examples/reviews`` whose ETL pipelines are tracked.

    The example itself leaves its ETL pipelines untracked
    (``disable_tracking.pipelines``); the benchmark tracks them, to time what tracking
    adds to a short ``kedro run``.
    """
    target = root / "reviews"
    shutil.copytree(
        EXAMPLE,
        target,
        ignore=shutil.ignore_patterns(
            "mlflow.db", "mlruns", "mlartifacts", "mlflow-offline", "__pycache__",
            "*.egg-info", "0[2-9]_*",
        ),
    )  # fmt: skip
    config = target / "conf" / "base" / "mlflow.yml"
    text = config.read_text()
    tracked = text.replace("pipelines: [etl_instances, etl_labels]", "pipelines: []")
    if tracked == text:
        raise RuntimeError(f"{config}: the ETL pipelines' disable_tracking is gone")
    config.write_text(tracked)
    (target / "imports_runner.py").write_text(IMPORTS_RUNNER)
    return target


def time_example_cli(example: Path, reps: int) -> tuple[dict[str, list[float]], str]:
    """Wall time of ``kedro run --pipelines etl_instances,etl_labels`` on the example.

    ``tracked`` against ``untracked`` (``KEDROFLOW_DISABLE_TRACKING=1``), fresh
    processes, interleaved, one warm-up each (the first tracked run creates and
    migrates ``mlflow.db``). Returns the times and what the tracked run imported.
    """
    times: dict[str, list[float]] = {"tracked": [], "untracked": []}
    imported = ""
    for rep in range(reps + 1):
        for variant in (
            ("untracked", "tracked") if rep % 2 else ("tracked", "untracked")
        ):
            env = _env()
            env.pop("KEDROFLOW_DISABLE_TRACKING", None)
            if variant == "untracked":
                env["KEDROFLOW_DISABLE_TRACKING"] = "1"
            result, elapsed = timed_run(
                [sys.executable, "imports_runner.py", "run", "--pipelines", ETL],
                example, env,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"kedro run failed:\n{result.stderr[-3000:]}")
            if rep:
                times[variant].append(elapsed)
            if variant == "tracked":
                imported = result.stderr.rsplit("KEDROFLOW_IMPORTS ", 1)[-1].strip()
    return times, imported


def import_costs() -> list[tuple[str, float]]:
    """What importing MLflow adds after Kedro: ``-X importtime`` of a fresh process.

    Each figure is the cumulative import time of the named module, counting only what
    earlier imports had not already loaded.
    """
    names = ("mlflow", "mlflow.tracking", "mlflow.models", "mlflow.pyfunc")
    code = "import kedro.framework.session\n" + "".join(f"import {n}\n" for n in names)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True, text=True, check=True, env=_env(),
    )  # fmt: skip
    costs = []
    for line in result.stderr.splitlines():
        # "import time: self | cumulative | name": top-level imports are not indented
        parts = line.split("|")
        if len(parts) == 3 and parts[2].rstrip() in {f" {n}" for n in names}:
            costs.append((parts[2].strip(), int(parts[1]) / 1e6))
    return costs


# ------------------------------------------------------------------------- backends


def postgres_database(name: str) -> tuple[str | None, bool]:
    """A fresh database on the ``.ci/postgres.sh`` cluster, or None if unavailable.

    Returns the SQLAlchemy URI and whether this call started the cluster.
    """
    script = REPO / ".ci" / "postgres.sh"
    status = subprocess.run(
        ["bash", str(script), "status"], capture_output=True, text=True, check=False
    )
    started = status.returncode != 0
    if started:
        if not (
            shutil.which("pg_ctl")
            or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        ):
            return None, False
        result = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            print(f"PostgreSQL unavailable, using SQLite: {result.stderr[-500:]}")
            return None, False
        uri = result.stdout.strip().splitlines()[-1]
    else:
        uri = status.stdout.strip().splitlines()[-1]
    if importlib.util.find_spec("psycopg2") is None:
        print("psycopg2 is not installed: the server uses SQLite")
        return None, started
    _admin(uri, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    base = uri.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://", 1)
    return f"{base}/{name}", started


def drop_database(uri: str, name: str) -> None:
    _admin(uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(uri: str, *statements: str) -> None:
    """Run statements outside a transaction on the cluster's ``postgres`` database."""
    import psycopg2

    conn = psycopg2.connect(
        uri.rsplit("/", 1)[0].replace("+psycopg2", "") + "/postgres"
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        conn.close()


# ---------------------------------------------------------------------------- report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_average() -> str:
    """The machine's 1/5/15-minute load average: the figures are only read with it."""
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def report_runs(
    title: str, results: dict[str, dict[str, Any]], target: int, nodes: int = 0
) -> None:
    base = median(results["none"]["times"])
    print(
        f"\n{title}, {N_PARAMS} parameters (median of "
        f"{len(results['none']['times'])}; {load_average()}):"
    )
    print(f"  {'mode':<15} {'time s':>8} {'ratio':>7} {'calls':>6}  target")
    for mode, data in results.items():
        t = median(data["times"])
        calls = max(data["requests"])
        notes = []
        limit = {"sqlite": 3.0, "server": 5.0}.get(mode.split("_")[0])
        if limit is not None:
            ok = t / base <= limit
            notes.append(f"time <= {limit:.0f}x: {'ok' if ok else 'MISSED'}")
        if mode.startswith("server"):
            notes.append(
                f"HTTP requests <= {target}: {'ok' if calls <= target else 'MISSED'}"
            )
        else:
            notes.append("calls = SQL commits")
        print(f"  {mode:<15} {t:8.3f} {t / base:6.2f}x {calls:>6}  {'; '.join(notes)}")
    for store in ("sqlite", "server"):
        if nodes and f"{store}_untraced" in results:
            extra = median(results[store]["times"])
            extra -= median(results[f"{store}_untraced"]["times"])
            print(f"  tracing on {store}: {extra * 1000:+.0f} ms a run, "
                  f"{extra * 1000 / nodes:+.2f} ms per node span")  # fmt: skip
    for mode in ("server", "server_untraced"):
        if endpoints := results.get(mode, {}).get("endpoints"):
            print(
                f"  HTTP requests of one {mode} run: "
                + ", ".join(f"{k} x{v}" for k, v in endpoints.items())
            )


def profile_runs(runner: Runner, mode: str, runs: int = 3) -> None:
    """cProfile of ``runs`` tracked runs: the kedroflow and MLflow calls, by cumulative time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        runner.run(mode, "full50")
    profiler.disable()
    print(f"\nprofile of {runs} '{mode}' runs (kedroflow, MLflow store/client, git):")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(
        r"kedroflow/|mlflow/(store|tracking)|subprocess", 30
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--reps", type=int, help="repetitions per mode (default 7, quick 3)"
    )
    parser.add_argument("--backend", choices=["auto", "postgres", "sqlite"], default="auto",
                        help="the server's backend store (auto: PostgreSQL if available)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the tmp project")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated modes to run (none is always run)")  # fmt: skip
    parser.add_argument("--stores-only", action="store_true",
                        help="skip `kedro --help` and the example's `kedro run`")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of 3 tracked runs per store")  # fmt: skip
    return parser.parse_args()


def bench_stores(args: argparse.Namespace, root: Path, project: Path) -> int:
    """The in-process runs: SQLite and a local server, 50 then 10 and 1,000 nodes."""
    reps = args.reps or (3 if args.quick else 7)
    side_reps = 1 if args.quick else 3
    db_name = f"kedroflow_bench_{os.getpid()}"
    pg_uri, pg_started = (None, False)
    if args.backend != "sqlite":
        pg_uri, pg_started = postgres_database(db_name)
        if pg_uri is None and args.backend == "postgres":
            print("PostgreSQL is not available (see .ci/postgres.sh)")
            return 1
    backend = pg_uri or f"sqlite:///{root / 'server.db'}"
    target = 10 + math.ceil(N_PARAMS / 100)
    full = f"50 nodes, {METRICS} metric + {ARTIFACTS} artifact datasets, lineage"
    print(f"kedroflow benchmark: project {project}")
    print(f"server backend: {'PostgreSQL' if pg_uri else 'SQLite'}; reps: {reps}")
    try:
        with mlflow_server(backend, root / "server-artifacts") as server:
            write_env(project, "sqlite", "sqlite:///mlflow.db")
            write_env(project, "server", server.url)
            write_env(project, "sqlite_untraced", "sqlite:///mlflow.db", tracing=False)
            write_env(project, "server_untraced", server.url, tracing=False)
            runner = Runner(project, server.url)
            modes = ("none", *(m for m in args.modes.split(",") if m in MODES[1:]))
            results = measure(runner, "full50", modes, reps)
            report_runs(f"Full scenario: {full}", results, FULL_TARGET, 50)
            local = f"sqlite:///{project / 'mlflow.db'}"
            print("  last SQLite run:", check_last_run(project, local))
            print("  last server run:", check_last_run(project, server.url))
            results = measure(runner, "n50", modes, reps)
            report_runs("Without datasets: 50 nodes", results, target, 50)
            sides = {
                "full50_m1": f"Full scenario with 1 metric dataset (not {METRICS})",
                "full200": "Full scenario with 200 nodes",
                "n10": "Without datasets: 10 nodes",
                "n1000": "Without datasets: 1,000 nodes",
            }
            for pipeline, title in sides.items():
                side_modes = tuple(m for m in modes if m != "off")
                side = measure(runner, pipeline, side_modes, side_reps)
                limit = FULL_TARGET if pipeline.startswith("full") else target
                report_runs(title, side, limit)
            if args.profile:
                profile_runs(runner, "sqlite")
                profile_runs(runner, "server")
    finally:
        if pg_uri:
            drop_database(pg_uri, db_name)
        if pg_started:
            subprocess.run(
                ["bash", str(REPO / ".ci" / "postgres.sh"), "stop"], check=False
            )
    return 0


def bench_cli(args: argparse.Namespace, project: Path) -> None:
    """``kedro --help`` and (full mode) a fresh ``kedro run`` process."""
    help_times = time_kedro_help(project, 3 if args.quick else 7)
    with_t, without_t = median(help_times["with"]), median(help_times["without"])
    print(f"\nkedro --help in the project (median of {len(help_times['with'])}): "
          f"{with_t:.2f} s with kedroflow, {without_t:.2f} s without: "
          f"{with_t / without_t:.2f}x (target <= 1.15x: "
          f"{'ok' if with_t / without_t <= 1.15 else 'MISSED'})")  # fmt: skip
    example = make_example(project.parent)
    reps = 3 if args.quick else 5
    cli, imported = time_example_cli(example, reps)
    untracked, tracked = median(cli["untracked"]), median(cli["tracked"])
    print(f"\nexample `kedro run --pipelines {ETL}`, fresh process (median of {reps}; "
          f"{load_average()}): {tracked:.2f} s tracked, {untracked:.2f} s with "
          f"KEDROFLOW_DISABLE_TRACKING=1: {tracked / untracked:.2f}x, "
          f"+{tracked - untracked:.2f} s")  # fmt: skip
    print(f"  the tracked run imported {imported}")
    costs = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in import_costs())
    print(f"  import after kedro (cumulative, -X importtime): {costs}")


def main() -> int:
    args = parse_args()
    warnings.filterwarnings("ignore")  # Kedro's own deprecation warnings, every session
    quiet = {**QUIET, "GIT_PYTHON_REFRESH": "quiet",
             "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # fmt: skip
    for name, value in quiet.items():
        os.environ.setdefault(name, value)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "KEDROFLOW_DISABLE_TRACKING"):
        os.environ.pop(name, None)
    with scratch("kedroflow-bench-", keep=args.keep) as root:
        project = make_project(root)
        os.environ["KEDRO_LOGGING_CONFIG"] = str(project / "conf" / "logging.yml")
        os.chdir(project)
        code = bench_stores(args, root, project)
        if code == 0 and not args.stores_only:
            bench_cli(args, project)
    return code


if __name__ == "__main__":
    sys.exit(main())
