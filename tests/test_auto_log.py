"""``tracking.artifacts.auto_log`` through ``kedro run`` on a real project and store.

One project whose outputs exercise every rule kind, the first-match order, the size
cap, versioned and partitioned outputs, an ``MlflowArtifactDataset`` entry and an
in-memory output; run once per runner (Sequential; Thread; Parallel with forked and
with spawned workers), every test asserting on what each run holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import pytest

NODES = """
import pandas as pd


def make():
    chart = pd.DataFrame({"a": range(400)})  # ~2 KB
    parts = {"p1": "one", "sub/p2": "two"}
    return chart, "x" * 4096, {"v": 1}, parts, chart.head(2), chart.head(3), "memory"


def summarise(chart):
    return {"rows": list(range(len(chart)))}  # ~2 KB


def publish(chart):
    return f"{len(chart)} rows"


def pages(chart):
    return {"index.html": f"<p>{len(chart)} rows</p>", "about.html": "<p>about</p>"}
"""

#: A dataset whose ``filepath`` is a folder (as a saved model or a site would be).
FOLDER_DATASET = """
from pathlib import Path

from kedro.io import AbstractDataset


class FolderDataset(AbstractDataset):
    def __init__(self, filepath):
        self._filepath = Path(filepath)

    def _save(self, pages):
        self._filepath.mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            (self._filepath / name).write_text(text)

    def _load(self):
        return {p.name: p.read_text() for p in self._filepath.iterdir()}

    def _describe(self):
        return {"filepath": str(self._filepath)}
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import make, pages, publish, summarise


def register_pipelines():
    outputs = ["chart", "big", "small_versioned", "parts", "thing_raw", "wrapped", "mem"]
    reporting = Pipeline(
        [Node(summarise, "chart", "summary", name="summarise")],
        namespace="reporting",
        inputs={"chart"},
    )
    pipeline = Pipeline(
        [
            Node(make, None, outputs, name="make"),
            Node(publish, "chart", "published", name="publish", tags=["publish"]),
            Node(pages, "chart", "site", name="pages"),
            reporting,
        ]
    )
    return {"__default__": pipeline}
"""

CATALOG = """
reporting.summary:
  type: json.JSONDataset
  filepath: data/08_reporting/summary.json
chart:
  type: pandas.CSVDataset
  filepath: data/chart.csv
  metadata:
    kedro-viz:
      layer: reporting
published:
  type: text.TextDataset
  filepath: data/published.txt
site:
  type: fake_project.folder.FolderDataset
  filepath: data/site
big:
  type: text.TextDataset
  filepath: data/big.txt
small_versioned:
  type: json.JSONDataset
  filepath: data/small.json
  versioned: true
parts:
  type: partitions.PartitionedDataset
  path: data/parts
  dataset: text.TextDataset
  filename_suffix: .txt
thing_raw:
  type: pandas.CSVDataset
  filepath: data/thing_raw.csv
wrapped:
  type: kedroflow.MlflowArtifactDataset
  dataset:
    type: pandas.CSVDataset
    filepath: data/wrapped.csv
"""

# rule 4 would cap summary.json and chart.csv (~2 KB > 1 KB): rules 1 and 2 win
RULES = """
  artifacts:
    auto_log:
      - {datasets: "reporting.*", max_size_mb: 50}
      - {layers: [reporting]}
      - {tags: [publish]}
      - {datasets: "*", exclude: "*_raw", max_size_mb: 0.001}
"""
MLFLOW_YML = f"tracking:{RULES}"

EXPECTED = [
    "chart/chart.csv",  # layers
    "parts/p1.txt",  # partitions of this save only (not parts/stale.txt)
    "parts/sub/p2.txt",
    "published/published.txt",  # tags
    "reporting.summary/summary.json",  # datasets glob, namespace included
    "site/site/about.html",  # a folder, under <name>/<folder>/ (rule 4)
    "site/site/index.html",
    "small_versioned/small.json",  # the version written
    "wrapped.csv",  # by its MlflowArtifactDataset only
]

RUNNERS = {
    "sequential": ([], {}),
    "thread": (["--runner", "ThreadRunner"], {}),  # nodes copy their outputs at once
    "parallel-fork": (["--runner", "ParallelRunner"], {"KEDRO_MP_CONTEXT": "fork"}),
    "parallel-spawn": (["--runner", "ParallelRunner"], {"KEDRO_MP_CONTEXT": "spawn"}),
}


class Ran:
    def __init__(self, project: Any) -> None:
        self.project = project
        self.client = project.client()
        self.run = project.only_run()

    def artifacts(self, path: str | None = None) -> list[str]:
        mlflow.set_tracking_uri(self.client.tracking_uri)  # MLflow 3.0 lists globally
        found: list[str] = []
        for item in self.client.list_artifacts(self.run.info.run_id, path):
            found += self.artifacts(item.path) if item.is_dir else [item.path]
        return sorted(found)


@pytest.fixture(scope="module", params=list(RUNNERS))
def ran(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    new_project: Callable[[Path], Any],
) -> Ran:
    project = auto_log_project(new_project(tmp_path_factory.mktemp("auto_log")))
    args, env = RUNNERS[request.param]
    project.kedro("run", *args, env={**os.environ, **env})
    return Ran(project)


def auto_log_project(project: Any, mlflow_yml: str = MLFLOW_YML) -> Any:
    project.write("src/fake_project/nodes.py", NODES)
    project.write("src/fake_project/folder.py", FOLDER_DATASET)
    project.write_pipelines(REGISTRY)
    project.write("conf/base/catalog.yml", CATALOG)
    project.write("conf/local/mlflow.yml", mlflow_yml)
    project.write("data/parts/stale.txt", "from an earlier run")
    return project


def test_selected_outputs_are_logged_under_their_name(ran: Ran) -> None:
    assert ran.artifacts() == EXPECTED
    assert ran.run.info.status == "FINISHED"


def test_files_are_logged_as_written(ran: Ran) -> None:
    run_id, data = ran.run.info.run_id, ran.project.path / "data"
    (version,) = [p.name for p in (data / "small.json").iterdir()]
    target = ran.project.path / "downloaded"
    mlflow.set_tracking_uri(ran.client.tracking_uri)  # MLflow 3.0 downloads globally
    for artifact, local in [
        ("small_versioned/small.json", data / "small.json" / version / "small.json"),
        ("chart/chart.csv", data / "chart.csv"),
        ("parts/sub/p2.txt", data / "parts" / "sub" / "p2.txt"),
    ]:
        path = ran.client.download_artifacts(run_id, artifact, str(target))
        assert Path(path).read_bytes() == local.read_bytes()


def test_output_over_the_cap_is_recorded_not_copied(ran: Ran) -> None:
    record = json.loads(ran.run.data.tags["kedroflow.auto_log.big"])
    assert record["logged"] is False
    assert record["size_bytes"] == 4096
    assert record["path"] == str(ran.project.path / "data" / "big.txt")
    assert len(record["digest"]) == 16
    assert "max_size_mb 0.001 (auto_log rule 4)" in record["reason"]
    assert not any(a.startswith("big/") for a in ran.artifacts())


def test_only_capped_outputs_get_a_tag(ran: Ran) -> None:
    tags = [t for t in ran.run.data.tags if t.startswith("kedroflow.auto_log.")]
    assert tags == ["kedroflow.auto_log.big"]


def test_the_local_store_holds_the_files_and_nothing_else(ran: Ran) -> None:
    # a local artifact root is written by kedroflow itself (copyfile, then rename):
    # no temp file is left beside what MLflow lists
    folder = Path(urlparse(ran.run.info.artifact_uri).path)
    on_disk = sorted(
        str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()
    )
    assert on_disk == EXPECTED
    assert (folder / "chart" / "chart.csv").stat().st_size == (
        ran.project.path / "data" / "chart.csv"
    ).stat().st_size


@pytest.mark.parametrize("runner", ["sequential", "parallel-fork"])
def test_a_failed_copy_fails_the_run_naming_the_dataset(
    runner: str, tmp_path: Path, new_project: Callable[[Path], Any]
) -> None:
    project = new_project(tmp_path)
    blocker = project.path / "not-a-folder"
    blocker.write_text("a file where the artifact store should be")
    experiment = (
        "tracking:\n  experiment:\n    name: blocked\n    create_experiment_kwargs:\n"
        f"      artifact_location: {blocker / 'artifacts'}"
    )
    auto_log_project(project, experiment + RULES)
    args, env = RUNNERS[runner]
    env = {**os.environ, "COLUMNS": "400", **env}  # rich wraps narrower consoles
    result = project.kedro("run", *args, env=env, check=False)

    assert result.returncode != 0
    run = project.only_run("blocked")
    assert run.info.status == "FAILED"
    error = run.data.tags["kedroflow.error"]
    assert "'chart' (auto_log rule 2)" in error, error
    assert "'chart' (auto_log rule 2)" in result.stdout + result.stderr
    assert (project.path / "data" / "chart.csv").exists()  # the output is still there
