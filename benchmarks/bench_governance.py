"""What lineage and the evaluation + promotion gate cost the example's training run.

    python benchmarks/bench_governance.py            # 5 rounds, ~6-10 min on 2 cores
    python benchmarks/bench_governance.py --rounds 2 # quicker
    python benchmarks/bench_governance.py --variants full,nolinks  # the dataset links

The example project (examples/reviews) is copied to a tmp dir; its ETL runs once
(train and test splits). Then ``kedro run --pipelines training`` runs in-process
(``KedroSession.run``, timed from ``session.run`` to its return, imports excluded) in
four variants, one fresh subprocess per run, the variants alternating in every round
so that load from other processes hits them alike:

=========  ===============================================================
``base``   tracking and model logging, without lineage and governance
``lineage`` + lineage of what the run read and wrote (digests, produced_by)
``gate``   + evaluation on held-out data (per slice), gate, model card
``full``   both: what a user runs
``nolinks`` ``full`` without the model's links to its dataset inputs
=========  ===============================================================

A variant switches a part off by replacing its function with a no-op in the child
process (``kedroflow.io.lineage.record_lineage``, ``kedroflow.governance.govern_model``,
``kedroflow.governance.dataset_links``), so everything else is the same code. The time
of ``kedroflow.governance.link_to_run`` (the model's links to the run's data and
metrics) is measured too. Figures are medians; ratios are to the first variant run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import quiet_env, scratch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "reviews"
VARIANTS = ("base", "lineage", "gate", "full", "nolinks")
CHILD = """
import json, logging, sys, time
from pathlib import Path
variant, project = sys.argv[1], Path(sys.argv[2])
import kedroflow.governance, kedroflow.io.lineage
if variant in ("base", "gate"):
    kedroflow.io.lineage.record_lineage = lambda *a, **k: []
if variant in ("base", "lineage"):
    kedroflow.governance.govern_model = lambda *a, **k: None
if variant == "nolinks":
    kedroflow.governance.dataset_links = lambda *a, **k: []
linking = []
link_to_run = kedroflow.governance.link_to_run
def timed_link(*args, **kwargs):
    start = time.perf_counter()
    link_to_run(*args, **kwargs)
    linking.append(time.perf_counter() - start)
kedroflow.governance.link_to_run = timed_link
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
bootstrap_project(project)
logging.getLogger("kedro").setLevel(logging.WARNING)
with KedroSession.create(project_path=project) as session:
    start = time.perf_counter()
    session.run(pipeline_names=["training"])
    print(json.dumps({"seconds": time.perf_counter() - start, "link": sum(linking)}))
"""


def _env() -> dict[str, str]:
    return quiet_env("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID")


def _kedro(project: Path, *args: str) -> None:
    kedro = Path(sys.executable).parent / "kedro"
    subprocess.run(
        [str(kedro), "run", *args], cwd=project, env=_env(), check=True,
        capture_output=True, timeout=900,
    )  # fmt: skip


def _timed(project: Path, variant: str) -> tuple[float, float]:
    """Seconds of the run and of its ``link_to_run`` calls."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(project)], cwd=project, env=_env(),
        check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return float(found["seconds"]), float(found["link"])


def _rounds(
    project: Path, variants: list[str], rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """Each variant once per round, the order rotating so that load hits them alike."""
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for round_ in range(rounds):
        shift = round_ % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            times[variant].append(_timed(project, variant))
        print(
            f"round {round_ + 1}: "
            + ", ".join(f"{v} {times[v][-1][0]:.2f}s" for v in variants)
        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--keep", action="store_true", help="keep the tmp project")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}: choose among {VARIANTS}")
    with scratch("bench-governance-", keep=args.keep) as root:
        project = root / "reviews"
        shutil.copytree(
            EXAMPLE, project, ignore=shutil.ignore_patterns("mlflow.db", "mlruns")
        )
        _kedro(project, "--pipelines", "etl_instances,etl_labels")
        _kedro(
            project, "--pipelines", "etl_instances,etl_labels", "--params", "split=test"
        )
        _timed(project, "full")  # warm-up: store migration, experiment, first version
        times = _rounds(project, variants, args.rounds)
        first = statistics.median(t for t, _ in times[variants[0]])
        print(f"\nvariant   median s   ratio to {variants[0]}   link_to_run median s")
        for variant in variants:
            median = statistics.median(t for t, _ in times[variant])
            link = statistics.median(t for _, t in times[variant])
            print(f"{variant:8s}  {median:8.2f}   {median / first:6.2f}x   {link:8.3f}")


if __name__ == "__main__":
    main()
