"""Dataset-input lineage: the inputs a run read, recorded on the MLflow run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.io import DataCatalog

from kedroflow import tracking
from kedroflow.io.lineage import CONTENT_HASH_LIMIT, file_digest, record_lineage


def inputs_of(client: Any, run_id: str) -> dict[str, Any]:
    run = client.get_run(run_id)
    return {i.dataset.name: i for i in run.inputs.dataset_inputs}


class TestInputsThroughKedroRun:
    def test_run_inputs_list_the_datasets_it_read(self, tracked_run: Any) -> None:
        run_id = tracked_run.run.info.run_id
        inputs = inputs_of(tracked_run.client, run_id)
        # free inputs and the persisted intermediates the run wrote then read back;
        # params:C is not a dataset
        assert sorted(inputs) == ["features", "model_folder", "raw", "reference"]
        produced = {t.key: t.value for t in inputs["features"].tags}
        assert produced["kedroflow.produced_by"] == run_id
        raw = inputs["raw"].dataset
        expected = (tracked_run.project.path / "data" / "raw.csv").as_posix()
        assert json.loads(raw.source) == {"uri": expected}
        assert raw.source_type == "local"
        columns = json.loads(raw.schema)["mlflow_colspec"]
        assert [c["name"] for c in columns] == ["x1", "x2", "y"]
        profile = json.loads(raw.profile)
        assert profile["digest"] == "content-sha256"
        assert profile["kedro_type"].endswith("CSVDataset")
        # no PipelineML in this run: what it read is inference input; no tracked
        # run wrote raw.csv, so no producing run either
        assert [(t.key, t.value) for t in inputs["raw"].tags] == [
            ("mlflow.data.context", "inference")
        ]


class TestRecordLineage:
    def test_versioned_parquet_and_skipped_entries(
        self, run_id: str, tmp_path: Path
    ) -> None:
        catalog = DataCatalog.from_config(
            {
                "table": {
                    "type": "pandas.ParquetDataset",
                    "filepath": str(tmp_path / "t.parquet"),
                    "versioned": True,
                },
                "remote": {"type": "pandas.CSVDataset", "filepath": "memory://b/r.csv"},
            },
            save_version="2026-01-01T00.00.00.000Z",
        )
        catalog.save("table", pd.DataFrame({"a": [1.5], "b": ["x"]}))
        catalog["in_memory"] = 3
        record_lineage(
            catalog,
            ["table", "remote", "in_memory", "params:x", "missing"],
            [],
            run=tracking.current_run(),
            context="inference",
        )
        inputs = inputs_of(mlflow.MlflowClient(), run_id)
        assert sorted(inputs) == ["remote", "table"]
        table = inputs["table"].dataset
        uri = json.loads(table.source)["uri"]
        assert uri.endswith("t.parquet/2026-01-01T00.00.00.000Z/t.parquet")
        schema = json.loads(table.schema)["mlflow_colspec"]
        assert [(c["name"], c["type"]) for c in schema] == [
            ("a", "double"),
            ("b", "string"),
        ]
        remote = inputs["remote"].dataset
        assert remote.source_type == "memory"  # remote: recorded, never read
        assert json.loads(remote.source)["uri"].startswith("memory://")

    def test_large_files_are_not_read(self, tmp_path: Path) -> None:
        big = tmp_path / "big.bin"
        with big.open("wb") as handle:
            handle.truncate(CONTENT_HASH_LIMIT + 1)  # sparse: costs no disk
        digest, stats = file_digest(big)
        assert stats == {"size_bytes": CONTENT_HASH_LIMIT + 1, "digest": "size-mtime"}
        os.utime(big, ns=(0, 10**9))
        assert file_digest(big)[0] != digest  # a new mtime is a new digest

    def test_folder_digest_changes_with_its_files(self, tmp_path: Path) -> None:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "a.txt").write_text("a")
        before, stats = file_digest(tmp_path / "d")
        assert stats["files"] == 1
        (tmp_path / "d" / "b.txt").write_text("b")
        assert file_digest(tmp_path / "d")[0] != before


TRANSCODED_NODES = """
def clean(source):
    return source.dropna()


def count_lines(clean):
    return {"lines": len(clean.splitlines())}
"""

TRANSCODED_REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import clean, count_lines


def register_pipelines():
    etl = Pipeline([Node(clean, "source", "clean@pandas", name="clean")])
    use = Pipeline([Node(count_lines, "clean@text", "summary", name="count")])
    return {"etl": etl, "use": use, "__default__": etl}
"""

TRANSCODED_CATALOG = """
source: {type: pandas.CSVDataset, filepath: data/source.csv}
clean@pandas: {type: pandas.CSVDataset, filepath: data/clean.csv}
clean@text: {type: text.TextDataset, filepath: data/clean.csv}
summary: {type: json.JSONDataset, filepath: data/summary.json}
"""


class TestProducingRun:
    def test_a_file_written_and_read_under_two_transcodings_is_linked(
        self, kedro_project: Any
    ) -> None:
        """``clean@pandas`` written by one run, ``clean@text`` read by the next."""
        kedro_project.write("src/fake_project/nodes.py", TRANSCODED_NODES)
        kedro_project.write_pipelines(TRANSCODED_REGISTRY)
        kedro_project.write("conf/base/catalog.yml", TRANSCODED_CATALOG)
        kedro_project.write("data/source.csv", "x\n1\n\n2\n")
        kedro_project.run(pipeline_names=["etl"])
        kedro_project.run(pipeline_names=["use"])
        etl, use = kedro_project.runs()
        client = kedro_project.client()
        source = {
            t.key: t.value for t in inputs_of(client, etl.info.run_id)["source"].tags
        }
        assert "kedroflow.produced_by" not in source  # no run writes it
        read = {
            t.key: t.value
            for t in inputs_of(client, use.info.run_id)["clean@text"].tags
        }
        assert read["kedroflow.produced_by"] == etl.info.run_id
