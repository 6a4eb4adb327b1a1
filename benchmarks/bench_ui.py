"""How long ``kedro mlflow ui`` takes to answer, and what it costs while it runs.

Two commands on the same project and the same migrated SQLite store, alternating:

* ``mlflow ui`` with MLflow's defaults (what ``kedro mlflow ui`` started before issue 14:
  four uvicorn workers and MLflow's background job runner);
* ``kedro mlflow ui`` (one worker, no job runner unless asked).

For each start: seconds from launch to the first answer of the REST API, then, over the
next ``--settle`` seconds (the job runner starts after the server answers), the largest
number of processes in the command's process group and their summed memory: PSS (shared
pages divided among the processes sharing them, the honest total) and RSS (what ``top``
adds up). Every process is started in its own process group and stopped with
``killpg``; nothing else is touched.

    python benchmarks/bench_ui.py            # 3 starts of each, about 3 minutes
    python benchmarks/bench_ui.py --reps 1   # one of each
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BIN, kedro_new, scratch, stop_group
from _server import free_port, server_env


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _memory_mb(pids: list[int]) -> tuple[float, float]:
    pss = rss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name == "Pss":
                pss += int(value.split()[0])
            elif name == "Rss":
                rss += int(value.split()[0])
    return pss / 1024, rss / 1024


def _answers(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def measure(command: list[str], cwd: Path, port: int, settle: float) -> dict:
    env = server_env()
    env.pop("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")  # each command decides for itself
    start = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = start + 180
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not answer on port {port}")
            time.sleep(0.1)
        answered = time.monotonic() - start
        procs, pss, rss = 0, 0.0, 0.0
        end = time.monotonic() + settle
        while time.monotonic() < end:
            pids = _group(process.pid)
            mem = _memory_mb(pids)
            procs, pss, rss = max(procs, len(pids)), max(pss, mem[0]), max(rss, mem[1])
            time.sleep(0.5)
        return {"seconds": answered, "processes": procs, "pss": pss, "rss": rss}
    finally:
        stop_group(process, 30)


def _project(root: Path) -> Path:
    project = kedro_new(root, "ui-bench")
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}").search_experiments()
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with scratch("kedroflow-bench-ui-", keep=args.keep) as root:
        project = _project(root)
        store = f"sqlite:///{project / 'mlflow.db'}"
        mlflow_defaults = [str(BIN / "mlflow"), "ui", "--backend-store-uri", store]
        variants = {
            "mlflow ui (MLflow defaults)": [*mlflow_defaults, "--host", "127.0.0.1"],
            "kedro mlflow ui": [str(BIN / "kedro"), "mlflow", "ui"],
        }
        results: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(args.reps):
            for name, base in variants.items():
                port = free_port()
                command = [*base, "--port", str(port)]
                results[name].append(measure(command, project, port, args.settle))
        header = ("command", "answers after", "processes", "PSS MB", "RSS MB")
        print("{:32} {:>14} {:>10} {:>8} {:>8}".format(*header))
        for name, runs in results.items():
            print(
                f"{name:32} {statistics.median(r['seconds'] for r in runs):>12.1f} s"
                f" {max(r['processes'] for r in runs):>10}"
                f" {statistics.median(r['pss'] for r in runs):>8.0f}"
                f" {statistics.median(r['rss'] for r in runs):>8.0f}"
            )


if __name__ == "__main__":
    main()
