"""The example project end to end: the README's main command and the Kedro starter.

* ``TestDemo`` runs ``scripts/demo.sh`` twice on a copy of ``examples/reviews`` (with
  this interpreter's environment, no pip): every pipeline, the MLflow run, the
  registered model and the ``mlflow models serve`` round trip.
* ``TestStarter`` checks that the starter archive is the example, and creates and
  trains a project with ``kedro new --starter=kedroflow-reviews``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import build_starters as starters  # noqa: E402 (the starter's build tool)

EXAMPLE = REPO / "examples" / "reviews"
DEMO = REPO / "scripts" / "demo.sh"
BIN = Path(sys.executable).parent
MODEL = "reviews_classifier"


def _kedro_version() -> tuple[int, ...]:
    import kedro

    return tuple(int(part) for part in kedro.__version__.split(".")[:2])


# The example project (not kedroflow) requires Kedro 1.2+: its demo runs
# `kedro run --pipelines a,b`, and its requirements say so.
pytestmark = pytest.mark.skipif(
    _kedro_version() < (1, 2), reason="the example project requires kedro>=1.2"
)


def _copy_example(target: Path) -> Path:
    """The example's committed files (no outputs of a previous run) in ``target``."""
    for rel in starters.example_files(EXAMPLE):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(EXAMPLE / rel, target / rel)
    return target


def _client(project: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


@dataclass
class DemoRuns:
    project: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRuns:
    """``bash scripts/demo.sh``, run twice on a fresh copy of the example."""
    project = _copy_example(tmp_path_factory.mktemp("demo") / "reviews")
    env = {
        **os.environ,
        "KEDROFLOW_DEMO_VENV": sys.prefix,
        "KEDROFLOW_DEMO_SKIP_INSTALL": "1",
        "KEDROFLOW_DEMO_PROJECT": str(project),
    }
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID"):
        env.pop(name, None)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(DEMO)], env=env, capture_output=True, text=True,
            timeout=600, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    return DemoRuns(project, run(), run())


def _explain(result: subprocess.CompletedProcess[str], project: Path) -> str:
    log = project / "demo.log"
    tail = log.read_text()[-6000:] if log.exists() else ""
    return f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}\nlog:\n{tail}"


@pytest.mark.slow
class TestDemo:
    def test_prints_the_served_model_predictions(self, demo: DemoRuns) -> None:
        result = demo.first
        assert result.returncode == 0, _explain(result, demo.project)
        answers = {
            review: sentiment
            for sentiment, review in re.findall(
                r"^\s+(positive|negative)\s+\(\d\.\d\d\)\s+(.+)$", result.stdout, re.M
            )
        }
        assert answers["What a wonderful film, the cast was brilliant!"] == "positive"
        assert answers["Boring plot and awful acting. A painful evening."] == "negative"
        assert "kedro mlflow ui" in result.stdout

    def test_is_safe_to_run_twice(self, demo: DemoRuns) -> None:
        assert demo.second.returncode == 0, _explain(demo.second, demo.project)
        client = _client(demo.project)
        # each training registers a version; the same data gives the same model,
        # which does not beat the champion: the gate keeps version 1
        second = client.get_model_version(MODEL, "2")
        assert "f1_score" in second.tags["kedroflow.promotion"]
        assert "does not beat" in second.tags["kedroflow.promotion"]
        champion = client.get_model_version_by_alias(MODEL, "champion")
        assert int(champion.version) == 1

    def test_shows_the_gate_the_drift_and_the_lineage(self, demo: DemoRuns) -> None:
        first, second = demo.first.stdout, demo.second.stdout
        assert "promotion gate version 1: promoted to @champion" in first
        assert re.search(
            r"promotion gate version 2: rejected: f1_score .* does not beat", second
        )
        assert re.search(
            r"per slice +long \d\.\d+, medium \d\.\d+, short \d\.\d+", first
        )
        assert re.search(r"drift +drift\.text\.ks_pvalue = \d", first)
        assert re.search(r"^  run \w+ 'training' FINISHED", first, re.M)
        assert "<- instances (training)" in first

    def test_stops_the_model_server(self, demo: DemoRuns) -> None:
        pids = re.findall(r"server \(PID (\d+)\) stopped", demo.first.stdout)
        pids += re.findall(r"server \(PID (\d+)\) stopped", demo.second.stdout)
        assert len(pids) == 2, demo.first.stdout[-2000:]
        for pid in pids:
            assert _live_group_members(int(pid)) == []

    def test_training_run_records_everything(self, demo: DemoRuns) -> None:
        client = _client(demo.project)
        champion = client.get_model_version_by_alias(MODEL, "champion")
        run = client.get_run(champion.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["training.epochs"] == "20"
        assert run.data.params["vectorizer.max_features"] == "2000"
        history = client.get_metric_history(run.info.run_id, "valid.log_loss")
        assert [m.step for m in history] == list(range(20))
        assert history[-1].value < history[0].value
        assert {"accuracy", "f1", "roc_auc"} <= {
            key.rsplit(".", 1)[-1] for key in run.data.metrics
        }
        assert (
            run.data.metrics[
                next(k for k in run.data.metrics if k.endswith("accuracy"))
            ]
            > 0.75
        )
        evaluation = run.data.metrics
        assert evaluation["f1_score"] > 0.75  # MLflow's evaluation, held-out reviews
        for length in ("short", "medium", "long"):
            assert f"slice.length.{length}.f1_score" in evaluation
        assert evaluation["worst_slice.f1_score"] == min(
            evaluation[f"slice.length.{n}.f1_score"]
            for n in ("short", "medium", "long")
        )
        assert "## Model card" in champion.description
        artifacts = _all_artifacts(client, run.info.run_id)
        # logged by the example's one auto_log rule (the reporting layer)
        assert "learning_curve/learning_curve.png" in artifacts, artifacts
        inputs = {d.dataset.name for d in run.inputs.dataset_inputs}
        assert {"instances", "labels", "stopwords"} <= inputs

    def test_etl_runs_are_not_tracked(self, demo: DemoRuns) -> None:
        client = _client(demo.project)
        experiment = client.get_experiment_by_name("reviews")
        runs = client.search_runs([experiment.experiment_id])
        names = sorted(run.info.run_name for run in runs)
        assert names == ["training", "training", "user_app", "user_app"]

    def test_user_app_logs_drift_metrics(self, demo: DemoRuns) -> None:
        client = _client(demo.project)
        experiment = client.get_experiment_by_name("reviews")
        runs = client.search_runs(
            [experiment.experiment_id], "tags.`kedro.pipeline` = 'user_app'"
        )
        for run in runs:
            metrics = run.data.metrics
            assert metrics["drift.text.psi"] >= 0
            assert 0 <= metrics["drift.text.ks_pvalue"] <= 1

    def test_user_app_flags_negative_reviews(self, demo: DemoRuns) -> None:
        scored = pd.read_csv(
            demo.project / "data/07_model_output/scored_reviews_new.csv"
        )
        flagged = pd.read_csv(demo.project / "data/08_reporting/follow_ups_new.csv")
        assert len(scored) == 12
        assert set(scored.columns) == {"text", "sentiment", "confidence"}
        negative = scored[scored["sentiment"] == "negative"]
        assert set(negative["text"]) <= set(flagged["text"])
        assert set(flagged["reason"]) <= {"negative", "unsure"}
        client = _client(demo.project)
        experiment = client.get_experiment_by_name("reviews")
        (latest, *_) = client.search_runs(
            [experiment.experiment_id],
            "attributes.run_name = 'user_app'",
            order_by=["attributes.start_time DESC"],
        )
        artifacts = _all_artifacts(client, latest.info.run_id)
        assert "follow_ups/follow_ups_new.csv" in artifacts, artifacts


def _all_artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found += _all_artifacts(client, run_id, item.path)
        else:
            found.append(item.path)
    return found


class TestStarter:
    def test_archive_is_generated_from_the_example(self) -> None:
        expected = starters.build_template(EXAMPLE)
        shipped = starters.read_archive()
        stale = sorted(
            name
            for name in expected.keys() | shipped.keys()
            if expected.get(name) != shipped.get(name)
        )
        assert not stale, (
            f"kedroflow/templates/starters.zip differs from examples/ in {stale}: "
            "run `python scripts/build_starters.py` and commit the archive."
        )

    def test_rendering_with_defaults_gives_back_the_example(
        self, tmp_path: Path
    ) -> None:
        from cookiecutter.main import cookiecutter

        cookiecutter(
            str(starters.ARCHIVE), directory="reviews", no_input=True,
            output_dir=str(tmp_path), extra_context={"kedro_version": "1.7.0"},
        )  # fmt: skip
        rendered = tmp_path / "reviews"
        files = starters.example_files(EXAMPLE)
        assert starters.example_files(rendered) == files
        for rel in files:
            assert (rendered / rel).read_bytes() == (EXAMPLE / rel).read_bytes(), rel

    @pytest.mark.slow
    def test_kedro_new_creates_a_project_that_trains(
        self, tmp_path: Path, migrated_db: Path
    ) -> None:
        # kedro new leaves the unzipped template in TMPDIR: keep it in tmp_path
        (tmp_path / "tmp").mkdir()
        env = {
            **os.environ,
            "KEDRO_DISABLE_TELEMETRY": "1",
            "TMPDIR": str(tmp_path / "tmp"),
        }
        subprocess.run(
            [str(BIN / "kedro"), "new", "--starter=kedroflow-reviews",
             "--name", "Shop Reviews", "--telemetry", "no"],
            cwd=tmp_path, env=env, check=True, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
        project = tmp_path / "shop-reviews"
        assert (project / "src" / "shop_reviews" / "pipeline_registry.py").is_file()
        shutil.copy(migrated_db, project / "mlflow.db")
        for args in (
            ["etl_instances,etl_labels"],
            ["etl_instances,etl_labels", "--params", "split=test"],
            ["training"],
        ):
            result = subprocess.run(
                [str(BIN / "kedro"), "run", "--pipelines", *args],
                cwd=project, env=env, capture_output=True, text=True,
                stdin=subprocess.DEVNULL, timeout=300, check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-6000:]
        client = _client(project)
        assert client.get_experiment_by_name("shop_reviews") is not None
        champion = client.get_model_version_by_alias(MODEL, "champion")
        assert client.get_run(champion.run_id).info.run_name == "training"


def _live_group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are still running (zombies excluded:
    an orphan killed with its group may wait a moment for init to reap it)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members
