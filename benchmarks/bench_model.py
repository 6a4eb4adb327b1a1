"""KedroPipelineModel costs against the physical bound (the node functions called directly).

    python benchmarks/bench_model.py            # all sections, ~3-5 min on 2 cores
    python benchmarks/bench_model.py --quick    # fewer repetitions

Sections (issue 4 targets in brackets):
1. predict p50 of a 5-node inference pipeline around a 50-tree RandomForest, through
   ``mlflow.pyfunc.load_model(...).predict`` on 1 and 1,000 rows, vs the 5 functions
   called in sequence [<= 1.15x, <= 1.05x];
2. per-call time with a 10 MB vs a 100 MB artifact [within 10 %];
3. a training ``KedroSession.run`` that logs the model vs the same run without the
   plugin (DISABLE_HOOKS_FOR_PLUGINS), warm, in-process [<= 2x];
4. ``mlflow models serve`` vs a minimal FastAPI app calling the same functions, 1-row
   requests, 4 concurrent clients, bounded count: req/s, p50, p99, cold start [>= 0.8x].
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
FEATURES = [f"f{i}" for i in range(10)]
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


# ---- the 5 inference nodes (importable as bench_model:<name>) ---------------------
def select(instances: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    return instances[features]


def impute(x: pd.DataFrame, medians: pd.Series) -> pd.DataFrame:
    return x.fillna(medians)


def scale(x: pd.DataFrame, scaler: Any) -> np.ndarray:
    return scaler.transform(x.to_numpy())


def forest(x: np.ndarray, model: Any) -> np.ndarray:
    return model.predict_proba(x)[:, 1]


def decide(proba: np.ndarray, threshold: float) -> pd.DataFrame:
    return pd.DataFrame({"proba": proba, "pred": (proba > threshold).astype(int)})


def touch(x: pd.DataFrame, table: np.ndarray) -> pd.DataFrame:
    return x.assign(t=float(table[0]))


# ---- helpers ------------------------------------------------------------------------
def _data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    y = pd.Series((x["f0"] + x["f1"] > 0).astype(int), name="y")
    return x, y


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _timeit(func: Any, repeat: int) -> list[float]:
    func()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        out.append(time.perf_counter() - start)
    return out


def _interleaved(funcs: list[Any], repeat: int) -> list[list[float]]:
    """Times of each function, calls interleaved so that load drift hits all alike."""
    out: list[list[float]] = [[] for _ in funcs]
    for func in funcs:
        func()
    for _ in range(repeat):
        for times, func in zip(out, funcs, strict=True):
            start = time.perf_counter()
            func()
            times.append(time.perf_counter() - start)
    return out


def _fit() -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    x, y = _data(2000)
    medians = x.median()
    scaler = StandardScaler().fit(x.to_numpy())
    model = RandomForestClassifier(n_estimators=50, random_state=0, max_depth=8)
    model.fit(scaler.transform(x.to_numpy()), y)
    return {"medians": medians, "scaler": scaler, "model": model}


def _inference() -> Any:
    import bench_model as m  # the importable copy of this file
    from kedro.pipeline import Node, Pipeline

    return Pipeline(
        [
            Node(m.select, ["instances", "params:features"], "x1", name="select"),
            Node(m.impute, ["x1", "medians"], "x2", name="impute"),
            Node(m.scale, ["x2", "scaler"], "x3", name="scale"),
            Node(m.forest, ["x3", "model"], "proba", name="forest"),
            Node(m.decide, ["proba", "params:threshold"], "predictions", name="decide"),
        ]
    )


def _catalog(folder: Path, artifacts: dict[str, Any], instances: pd.DataFrame) -> Any:
    from kedro.io import DataCatalog, MemoryDataset
    from kedro_datasets.pickle import PickleDataset

    catalog = DataCatalog()
    for name, value in artifacts.items():
        dataset = PickleDataset(filepath=str(folder / f"{name}.pkl"))
        dataset.save(value)
        catalog[name] = dataset
    catalog["instances"] = MemoryDataset(instances)
    catalog["params:features"] = MemoryDataset(FEATURES)
    catalog["params:threshold"] = MemoryDataset(0.5)
    return catalog


def _log(pipeline: Any, catalog: Any) -> str:
    from kedroflow.packaging import log_pipeline_model

    info = log_pipeline_model(
        pipeline, catalog, input_name="instances",
        log_model_kwargs={"name": "bench", "code_paths": [str(HERE / "bench_model.py")]},
    )  # fmt: skip
    return str(info.model_uri)


# ---- sections -----------------------------------------------------------------------
def bench_predict(work: Path, repeat: int) -> tuple[str, dict[str, Any]]:
    import bench_model as m
    import mlflow
    from mlflow.models.utils import _enforce_schema  # to attribute MLflow's share

    artifacts = _fit()
    pipeline = _inference()
    uri = _log(pipeline, _catalog(work, artifacts, _data(50)[0]))
    model = mlflow.pyfunc.load_model(uri)
    raw = model.unwrap_python_model()
    print("\n1. predict p50 (ms): pyfunc / PythonModel.predict / direct calls")
    # the direct calls use the very objects the model loaded (an unpickled forest
    # predicts faster than the freshly fitted one: same objects, same bound)
    loaded = {k: raw.loaded_inputs[k] for k in ("medians", "scaler", "model")}
    schema = model.metadata.get_input_schema()
    for rows in (1, 1000):
        x = _data(rows, seed=1)[0]

        def direct(x: pd.DataFrame = x) -> Any:
            a = m.select(x, FEATURES)
            a = m.impute(a, loaded["medians"])
            a = m.scale(a, loaded["scaler"])
            return m.decide(m.forest(a, loaded["model"]), 0.5)

        pd.testing.assert_frame_equal(model.predict(x), direct())
        n = repeat if rows == 1 else max(repeat // 4, 20)
        t_direct, t_pyfunc, t_raw, t_enforce = _interleaved(
            [direct, lambda x=x: model.predict(x), lambda x=x: raw.predict(None, x),
             lambda x=x: _enforce_schema(x, schema)],
            n,
        )  # fmt: skip
        d, p, r, e = (
            statistics.median(t) * 1e3 for t in (t_direct, t_pyfunc, t_raw, t_enforce)
        )
        print(
            f"   {rows:>5} row(s): {p:7.2f} / {r:7.2f} / {d:7.2f}   "
            f"ratio pyfunc {p / d:.3f}x, PythonModel {r / d:.3f}x "
            f"(MLflow's schema enforcement alone: {e:.2f} ms)"
        )
    return uri, artifacts


def bench_artifact_size(work: Path, repeat: int) -> None:
    import bench_model as m
    import mlflow
    from kedro.pipeline import Node, Pipeline

    print("\n2. per-call time vs artifact size (1-row predict p50, ms)")
    calls = []
    for mb in (10, 100):
        table = np.ones(mb * 1024 * 1024 // 8)
        folder = work / f"size{mb}"
        folder.mkdir()
        catalog = _catalog(folder, {"table": table}, _data(5)[0])
        pipeline = Pipeline([Node(m.touch, ["instances", "table"], "out", name="t")])
        model = mlflow.pyfunc.load_model(_log(pipeline, catalog))
        x = _data(1)[0]
        calls.append(lambda x=x, model=model: model.predict(x))
    small, big = (statistics.median(t) for t in _interleaved(calls, repeat))
    print(f"    10 MB: {small * 1e3:.3f} ms\n   100 MB: {big * 1e3:.3f} ms")
    print(f"   100 MB / 10 MB: {big / small:.3f}x")


PROJECT_NODES = """
import pandas as pd
from bench_model import decide, forest, impute, scale, select, _data
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import StandardScaler


def make_data():
    x, y = _data(2000)
    return x, y.to_frame()


def fit_medians(x):
    return x.median()


def fit_scaler(x):
    return StandardScaler().fit(x.to_numpy())


def fit_model(x, y, scaler):
    model = RandomForestClassifier(n_estimators=50, random_state=0, max_depth=8)
    return model.fit(scaler.transform(x.to_numpy()), y["y"])
"""
PROJECT_REGISTRY = """
from kedro.pipeline import Node, Pipeline
from kedroflow import pipeline_ml_factory
from bench_model import decide, forest, impute, scale, select
from bench_project.nodes import fit_medians, fit_model, fit_scaler, make_data


def register_pipelines():
    training = Pipeline([
        Node(make_data, None, ["instances", "labels"], name="make_data"),
        Node(fit_medians, "instances", "medians", name="fit_medians"),
        Node(fit_scaler, "instances", "scaler", name="fit_scaler"),
        Node(fit_model, ["instances", "labels", "scaler"], "model", name="fit_model"),
    ])
    inference = Pipeline([
        Node(select, ["instances", "params:features"], "x1", name="select"),
        Node(impute, ["x1", "medians"], "x2", name="impute"),
        Node(scale, ["x2", "scaler"], "x3", name="scale"),
        Node(forest, ["x3", "model"], "proba", name="forest"),
        Node(decide, ["proba", "params:threshold"], "predictions", name="decide"),
    ])
    ml = pipeline_ml_factory(training, inference, input_name="instances",
                             log_model_kwargs={"code_paths": [BENCH]})
    return {"training": ml, "__default__": ml}
"""
PROJECT_CATALOG = """
instances: {type: pandas.ParquetDataset, filepath: data/instances.parquet}
labels: {type: pandas.ParquetDataset, filepath: data/labels.parquet}
medians: {type: pickle.PickleDataset, filepath: data/medians.pkl}
scaler: {type: pickle.PickleDataset, filepath: data/scaler.pkl}
model: {type: pickle.PickleDataset, filepath: data/model.pkl}
"""


def _project(work: Path) -> Path:
    from _common import kedro_new  # not at import: the logged model imports this file

    path = kedro_new(work, "bench-project")
    package = path / "src" / "bench_project"
    (package / "nodes.py").write_text(PROJECT_NODES)
    (package / "pipeline_registry.py").write_text(
        f"BENCH = {str(HERE / 'bench_model.py')!r}\n"
        + textwrap.dedent(PROJECT_REGISTRY)
    )
    settings = package / "settings.py"
    settings.write_text(
        settings.read_text() + "\nimport os\nDISABLE_HOOKS_FOR_PLUGINS = tuple("
        "filter(None, os.environ.get('BENCH_DISABLE', '').split(',')))\n"
    )
    (path / "conf" / "base" / "catalog.yml").write_text(PROJECT_CATALOG)
    (path / "conf" / "base" / "parameters.yml").write_text(
        f"features: {FEATURES}\nthreshold: 0.5\n"
    )
    (path / "data").mkdir()
    return path


def _train_runs(project: str, repeat: int) -> None:
    """(subprocess) Wall times of warm training KedroSession.run calls, after a warm-up."""
    import logging

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    logging.disable(logging.WARNING)
    bootstrap_project(Path(project))
    times = []
    for i in range(repeat + 1):
        start = time.perf_counter()
        with KedroSession.create(project_path=project) as session:
            session.run(pipeline_names=["training"])
        if i:
            times.append(time.perf_counter() - start)
    print(json.dumps(times))


def bench_training(work: Path, repeat: int, rounds: int = 3) -> None:
    """Both variants in alternating subprocess rounds, so load drift hits them alike."""
    path = _project(work)
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    variants = {"without plugin": "kedroflow", "with model logging": ""}
    times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(rounds):
        for label, disable in variants.items():
            out = subprocess.run(
                [sys.executable, str(HERE / "bench_model.py"), "_train", str(path),
                 str(repeat)],
                cwd=path, env={**env, "BENCH_DISABLE": disable}, check=True,
                capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            times[label] += json.loads(out.stdout.strip().splitlines()[-1])
    results = {label: statistics.median(t) for label, t in times.items()}
    print(
        f"\n3. training KedroSession.run, warm, median of {rounds} alternating rounds "
        f"x {repeat} runs (s)"
    )
    for label, seconds in results.items():
        print(f"   {label:>20}: {seconds:.2f}")
    ratio = results["with model logging"] / results["without plugin"]
    print(f"   ratio: {ratio:.2f}x")


FASTAPI_APP = """
import pickle
import pandas as pd
from fastapi import FastAPI, Request
from bench_model import FEATURES, decide, forest, impute, scale, select

ART = {ART!r}
medians, scaler, model = (pickle.load(open(ART[k], "rb")) for k in ("medians", "scaler", "model"))
app = FastAPI()


@app.get("/ping")
def ping():
    return "ok"


@app.post("/invocations")
async def invocations(request: Request):
    body = await request.json()
    x = pd.DataFrame(body["dataframe_records"])
    a = scale(impute(select(x, FEATURES), medians), scaler)
    return {{"predictions": decide(forest(a, model), 0.5).to_dict(orient="records")}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(command: list[str], cwd: Path, env: dict[str, str], port: int) -> tuple:
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = start + 120
    while time.perf_counter() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
    _stop(process)
    raise RuntimeError(f"{command[0]} did not start")


def _stop(process: subprocess.Popen) -> None:
    from _common import stop_group  # not at import: the logged model imports this file

    stop_group(process, 15)


def _load(port: int, clients: int, per_client: int) -> tuple[float, list[float]]:
    body = json.dumps({"dataframe_records": _data(1, 3)[0].to_dict(orient="records")})
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for _ in range(per_client):
            t = time.perf_counter()
            conn.request(
                "POST", "/invocations", body, {"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            mine.append(time.perf_counter() - t)
        conn.close()
        with lock:
            latencies.extend(mine)

    for _ in range(2):  # warm-up
        client_thread = threading.Thread(target=client)
        client_thread.start()
        client_thread.join()
    latencies.clear()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return clients * per_client / (time.perf_counter() - start), latencies


def bench_serving(work: Path, uri: str, per_client: int) -> None:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(work / "m")))
    arts = {p.stem: str(p) for p in (local / "artifacts").iterdir()}
    app_dir = work / "app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(
        FASTAPI_APP.replace("{ART!r}", repr(arts)).replace("{{", "{").replace("}}", "}")
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": f"{app_dir}{os.pathsep}{HERE}"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    results = {}
    for label in ("FastAPI", "mlflow serve"):
        port = _free_port()
        command = (
            [str(BIN / "uvicorn"), "app:app", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--log-level", "warning"]
            if label == "FastAPI"
            else [str(BIN / "mlflow"), "models", "serve", "-m", str(local),
                  "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        )  # fmt: skip
        process, cold = _start(command, app_dir, env, port)
        try:
            rps, lat = _load(port, 4, per_client)
        finally:
            _stop(process)
        results[label] = rps
        print(
            f"   {label:>12}: {rps:7.1f} req/s, p50 {_p(lat, 50) * 1e3:6.2f} ms, "
            f"p99 {_p(lat, 99) * 1e3:6.2f} ms, cold start {cold:.1f} s"
        )
    print(
        f"   ratio mlflow/FastAPI: {results['mlflow serve'] / results['FastAPI']:.2f}x"
    )
    _serving_breakdown(local, arts)


def _serving_breakdown(local: Path, arts: dict[str, str]) -> None:
    """Where a request's time goes, in this process: MLflow's handler vs the FastAPI one."""
    import pickle

    import bench_model as m
    import mlflow
    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(str(local))
    schema = model.metadata.get_input_schema()
    body = json.dumps({"dataframe_records": _data(1, 3)[0].to_dict(orient="records")})
    medians, scaler, forest_model = (
        pickle.load(open(arts[k], "rb"))  # noqa: S301 (our own files)
        for k in ("medians", "scaler", "model")
    )
    records = json.loads(body)["dataframe_records"]
    parsed = scoring_server.infer_and_parse_data({"dataframe_records": records}, schema)

    def fastapi_work() -> str:
        x = pd.DataFrame(json.loads(body)["dataframe_records"])
        a = m.scale(m.impute(m.select(x, FEATURES), medians), scaler)
        out = m.decide(m.forest(a, forest_model), 0.5).to_dict(orient="records")
        return json.dumps({"predictions": out})

    funcs = {
        "FastAPI handler's work": fastapi_work,
        "MLflow invocations()": lambda: scoring_server.invocations(
            body, "application/json", model, schema
        ),
        "  of which parse with schema": lambda: scoring_server.infer_and_parse_data(
            {"dataframe_records": records}, schema
        ),
        "  of which schema enforcement": lambda: _enforce_schema(parsed, schema),
    }
    times = _interleaved(list(funcs.values()), 200)
    print("   in-process, 1-row request, p50 (ms):")
    for label, t in zip(funcs, times, strict=True):
        print(f"   {label:>30}: {statistics.median(t) * 1e3:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeat = 50 if args.quick else 300
    import mlflow
    from _common import scratch

    with scratch("kedroflow-bench-model-") as work:
        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
        print(f"kedroflow model benchmark (python {sys.version.split()[0]}, "
              f"mlflow {mlflow.__version__}, {os.cpu_count()} CPUs)")  # fmt: skip
        uri, _ = bench_predict(work, repeat)
        bench_artifact_size(work, repeat)
        bench_training(work, 3 if args.quick else 5)
        print("\n4. serving, 4 concurrent clients, 1-row requests")
        bench_serving(work, uri, 50 if args.quick else 150)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    if sys.argv[1:2] == ["_train"]:
        _train_runs(sys.argv[2], int(sys.argv[3]))
    else:
        import bench_model

        bench_model.main()
