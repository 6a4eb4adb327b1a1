"""What the kedroflow datasets cost: requests per metric history, reads and memory per artifact.

Run ``python benchmarks/bench_datasets.py`` (about 1-2 minutes, mostly the server
start). The script:

1. starts a local ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts written by
   the client to ``--default-artifact-root``) in its own process group, waits for
   ``/health`` and stops it with ``killpg`` at the end;
2. saves a 1,000-step and a 5,000-step history with ``MlflowMetricHistoryDataset``,
   a 100-metric dict with ``MlflowMetricsHistoryDataset`` and one
   ``MlflowMetricDataset`` value, counting the HTTP requests this process sends to the
   server (client side, by wrapping ``requests.Session.request``) and checking that
   the history reads back;
3. saves a 200 MB ``bytes`` object through ``MlflowArtifactDataset`` wrapping
   ``pickle.PickleDataset`` and measures, for the save (write + artifact upload):
   the bytes the process read (``rchar`` of ``/proc/self/io``, which counts
   ``read``/``sendfile``), as full reads of the file; and the peak of new Python
   allocations (``tracemalloc``), as peak memory over the object's size.

Targets (issue 3): <= 2 requests for a 1,000-step history (kedro-mlflow: 1,000+); at
most one extra full read beyond the upload; peak memory < 1.2x the object's size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import RequestCounter, mlflow_server

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def read_bytes() -> int:
    """Bytes this process has read so far (``read``, ``pread``, ``sendfile``...)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no rchar line")


def bench_metrics(url: str) -> list[tuple[str, int, str]]:
    """Requests sent per metric dataset save."""
    import mlflow

    from kedroflow.io import (
        MlflowMetricDataset,
        MlflowMetricHistoryDataset,
        MlflowMetricsHistoryDataset,
    )

    mlflow.set_tracking_uri(url)
    experiment = mlflow.create_experiment("bench-datasets")
    mlflow.start_run(experiment_id=experiment)
    rows = []
    cases = [
        ("MlflowMetricHistoryDataset, 1,000 steps", MlflowMetricHistoryDataset(key="h1k"), [i / 1000 for i in range(1000)]),
        ("MlflowMetricHistoryDataset, 5,000 steps", MlflowMetricHistoryDataset(key="h5k"), [i / 5000 for i in range(5000)]),
        ("MlflowMetricsHistoryDataset, 100 metrics", MlflowMetricsHistoryDataset(prefix="m"), {f"k{i}": float(i) for i in range(100)}),
        ("MlflowMetricDataset, 1 value (new key)", MlflowMetricDataset(key="single"), 0.5),
        ("MlflowMetricDataset, 1 value (existing key)", MlflowMetricDataset(key="single"), 0.6),
    ]  # fmt: skip
    try:
        for label, dataset, data in cases:
            with RequestCounter(url) as counter:
                start = time.perf_counter()
                dataset.save(data)
                elapsed = time.perf_counter() - start
            endpoints = ", ".join(f"{k} x{v}" for k, v in counter.by_endpoint().items())
            rows.append((f"{label} ({elapsed:.2f} s)", counter.count, endpoints))
        loaded = MlflowMetricHistoryDataset(key="h1k").load()
        assert loaded == [i / 1000 for i in range(1000)], "history did not read back"
    finally:
        mlflow.end_run()
    return rows


def bench_artifact(url: str, workdir: Path, size_mb: int) -> dict[str, float]:
    """Reads and peak memory of saving a ``size_mb`` MB object as an artifact."""
    import mlflow

    from kedroflow.io import MlflowArtifactDataset

    mlflow.set_tracking_uri(url)
    experiment = mlflow.create_experiment("bench-artifact")
    run = mlflow.start_run(experiment_id=experiment)
    try:
        data = os.urandom(size_mb * 1024 * 1024)
        dataset = MlflowArtifactDataset(
            dataset={
                "type": "pickle.PickleDataset",
                "filepath": str(workdir / "blob.pkl"),
            }
        )
        with RequestCounter(url) as counter:
            before = read_bytes()
            tracemalloc.start()
            start = time.perf_counter()
            dataset.save(data)
            elapsed = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            read = read_bytes() - before
        file_size = (workdir / "blob.pkl").stat().st_size
        logged = mlflow.MlflowClient().list_artifacts(run.info.run_id)
        assert [(a.path, a.file_size) for a in logged] == [("blob.pkl", file_size)]
    finally:
        mlflow.end_run()
    return {
        "object_mb": len(data) / 2**20,
        "file_mb": file_size / 2**20,
        "seconds": elapsed,
        "requests": counter.count,
        "full_reads": read / file_size,
        "peak_extra_mb": peak / 2**20,
        "peak_ratio": (len(data) + peak) / len(data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="artifact size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kedroflow-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        with mlflow_server(
            f"sqlite:///{root / 'db'}", root / "art", serve_artifacts=False
        ) as server:
            print(f"mlflow server {server.url} healthy after "
                  f"{time.perf_counter() - started:.0f} s")  # fmt: skip
            metric_rows = bench_metrics(server.url)
            artifact = bench_artifact(server.url, root, args.size_mb)
    print("\n== Metric saves: HTTP requests to the tracking server ==")
    for label, count, endpoints in metric_rows:
        print(f"{count:>3}  {label}: {endpoints}")
    history = metric_rows[0][1]
    print(
        f"target <= 2 requests for 1,000 steps: {'MET' if history <= 2 else 'MISSED'}"
    )
    a = artifact
    extra = max(0.0, a["full_reads"] - 1)
    print("\n== MlflowArtifactDataset(pickle.PickleDataset) save of a bytes object ==")
    print(f"object {a['object_mb']:.0f} MB, file {a['file_mb']:.0f} MB, "
          f"{a['seconds']:.2f} s, {a['requests']:.0f} requests")  # fmt: skip
    print(f"bytes read during save: {a['full_reads']:.2f} x the file "
          f"(upload = 1, so {extra:.2f} extra full reads; target <= 1)")  # fmt: skip
    print(f"peak new Python allocations: {a['peak_extra_mb']:.1f} MB -> peak "
          f"{a['peak_ratio']:.3f} x the object (target < 1.2)")  # fmt: skip


if __name__ == "__main__":
    main()
