"""MlflowArtifactDataset through ``KedroSession.run`` (3 runners) and directly."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from kedroflow.config import TRACKING_OFF_ENV
from kedroflow.errors import MlflowDatasetError
from kedroflow.io import MlflowArtifactDataset


class TestArtifactsThroughKedroRun:
    def test_file_under_artifact_path(self, tracked_run: Any) -> None:
        assert "data/features.csv" in tracked_run.artifacts()
        local = tracked_run.project.path / "data" / "features.csv"
        assert list(pd.read_csv(local).columns) == ["x1", "x2", "y", "x3"]

    def test_versioned_dataset_logs_the_version_just_written(
        self, tracked_run: Any
    ) -> None:
        versions = list((tracked_run.project.path / "data" / "report.json").iterdir())
        assert len(versions) == 1
        assert "report.json" in tracked_run.artifacts()
        path = tracked_run.client.download_artifacts(
            tracked_run.run.info.run_id, "report.json", str(tracked_run.project.path)
        )
        assert json.loads(Path(path).read_text())["rows"] == 30

    def test_partitioned_dataset_logs_only_this_saves_partitions(
        self, tracked_run: Any
    ) -> None:
        logged = [a for a in tracked_run.artifacts() if a.startswith("parts/")]
        assert logged == ["parts/a.txt", "parts/sub/b.txt"]  # not parts/stale.txt


@pytest.fixture
def csv_config(tmp_path: Path) -> dict[str, Any]:
    return {"type": "pandas.CSVDataset", "filepath": str(tmp_path / "local" / "df.csv")}


DF = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})


class TestMlflowArtifactDataset:
    def test_load_from_a_run_never_touches_the_local_file(
        self, run_id: str, csv_config: dict[str, Any], tmp_path: Path, monkeypatch: Any
    ) -> None:
        monkeypatch.setenv("KEDROFLOW_ARTIFACT_CACHE", str(tmp_path / "cache"))
        MlflowArtifactDataset(dataset=csv_config, artifact_path="tables").save(DF)
        local = Path(csv_config["filepath"])
        local.write_text("a,b\n9,z\n")  # the user's local file changes afterwards
        remote = MlflowArtifactDataset(
            dataset=csv_config, artifact_path="tables", run_id=run_id
        )
        assert remote.load().equals(DF)
        assert local.read_text() == "a,b\n9,z\n"
        assert (tmp_path / "cache" / run_id / "tables" / "df.csv").exists()
        assert remote.exists()

    def test_type_string_and_folder(self, run_id: str, tmp_path: Path) -> None:
        dataset = MlflowArtifactDataset(
            dataset={
                "type": "partitions.PartitionedDataset",
                "path": str(tmp_path / "folder"),
                "dataset": "text.TextDataset",
            }
        )
        dataset.save({"x": "1"})
        artifacts = mlflow.MlflowClient().list_artifacts(run_id, "folder")
        assert [a.path for a in artifacts] == ["folder/x"]

    def test_pickles_for_parallel_runner(self, csv_config: dict[str, Any]) -> None:
        dataset = MlflowArtifactDataset(dataset=csv_config, artifact_path="t")
        copy = pickle.loads(pickle.dumps(dataset))  # noqa: S301
        assert copy.artifact_name() == "t/df.csv"

    def test_tracking_off_saves_locally_only(
        self, run_id: str, csv_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(TRACKING_OFF_ENV, "1")
        MlflowArtifactDataset(dataset=csv_config).save(DF)
        assert Path(csv_config["filepath"]).exists()
        assert mlflow.MlflowClient().list_artifacts(run_id) == []

    def test_no_run_fails_before_writing(
        self, tracking_uri: str, csv_config: dict[str, Any]
    ) -> None:
        mlflow.set_tracking_uri(tracking_uri)
        with pytest.raises(MlflowDatasetError, match="no MLflow run is open"):
            MlflowArtifactDataset(dataset=csv_config).save(DF)
        assert not Path(csv_config["filepath"]).exists()

    def test_unknown_run_id(
        self, tracking_uri: str, csv_config: dict[str, Any]
    ) -> None:
        mlflow.set_tracking_uri(tracking_uri)
        dataset = MlflowArtifactDataset(dataset=csv_config, run_id="f" * 32)
        with pytest.raises(MlflowDatasetError, match="does not exist in the tracking"):
            dataset.load()

    def test_missing_artifact(self, run_id: str, csv_config: dict[str, Any]) -> None:
        mlflow.end_run()
        dataset = MlflowArtifactDataset(dataset=csv_config, run_id=run_id)
        with pytest.raises(MlflowDatasetError, match=r"has no artifact 'df\.csv'"):
            dataset.load()

    def test_remote_path_is_refused(self) -> None:
        with pytest.raises(MlflowDatasetError, match="not a local path"):
            MlflowArtifactDataset(
                dataset={"type": "pandas.CSVDataset", "filepath": "s3://bucket/df.csv"}
            )

    def test_dataset_without_filepath(self) -> None:
        with pytest.raises(MlflowDatasetError, match="without `filepath` or `path`"):
            MlflowArtifactDataset(dataset="kedro.io.MemoryDataset")

    def test_credentials_are_passed_on_but_not_described(
        self, csv_config: dict[str, Any]
    ) -> None:
        dataset = MlflowArtifactDataset(
            dataset={
                "type": "pickle.PickleDataset",
                "filepath": csv_config["filepath"],
            },
            credentials={"secret": "hunter22"},
        )
        assert "hunter22" not in repr(dataset)


class TestTrackingOffThroughKedroRun:
    def test_datasets_behave_like_plain_datasets(
        self, kedro_project: Any, project_writer: Any, monkeypatch: Any
    ) -> None:
        project_writer(kedro_project)
        monkeypatch.setenv("KEDROFLOW_DISABLE_TRACKING", "1")
        kedro_project.run()
        assert kedro_project.runs() == []
        data = kedro_project.path / "data"
        assert (data / "features.csv").exists()
        assert (data / "parts" / "sub" / "b.txt").exists()
        assert len(list((data / "report.json").iterdir())) == 1
        assert len(list((data / "model_folder").iterdir())) == 1
