"""Metric datasets through ``KedroSession.run`` (3 runners) and directly."""

from __future__ import annotations

from typing import Any

import mlflow
import pytest
from kedro.io import DataCatalog, DatasetError

from kedroflow.config import TRACKING_OFF_ENV
from kedroflow.errors import MlflowDatasetError
from kedroflow.io import (
    MlflowMetricDataset,
    MlflowMetricHistoryDataset,
    MlflowMetricsHistoryDataset,
    bind_catalog_names,
)


def history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


class TestMetricsThroughKedroRun:
    def test_every_metric_lands_in_the_one_run(self, tracked_run: Any) -> None:
        metrics = tracked_run.run.data.metrics
        assert set(metrics) == {
            "accuracy",
            "loss_history",
            "scores.auc",
            "scores.f1",
            "f1_metric",  # made by the "{name}_metric" factory pattern
        }
        assert 0 <= metrics["accuracy"] <= 1

    def test_histories_keep_their_steps(self, tracked_run: Any) -> None:
        client, run_id = tracked_run.client, tracked_run.run.info.run_id
        assert history(client, run_id, "loss_history") == [
            (0, 1.0),
            (1, 0.5),
            (2, 0.25),
        ]
        assert history(client, run_id, "scores.f1") == [(0, 0.5), (1, 0.6)]


class TestMlflowMetricDataset:
    def test_overwrite_logs_at_the_last_step_append_at_the_next(
        self, run_id: str
    ) -> None:
        MlflowMetricDataset(key="m", save_args={"mode": "append"}).save(1.0)
        MlflowMetricDataset(key="m", save_args={"mode": "append"}).save(2.0)
        MlflowMetricDataset(key="m").save(3.0)
        client = mlflow.MlflowClient()
        assert history(client, run_id, "m") == [(0, 1.0), (1, 2.0), (1, 3.0)]
        assert MlflowMetricDataset(key="m").load() == 3.0
        assert MlflowMetricDataset(key="m", load_args={"step": 0}).load() == 1.0

    def test_explicit_step_and_other_run(self, run_id: str) -> None:
        MlflowMetricDataset(key="m", save_args={"step": 7}).save(True)
        mlflow.end_run()
        loaded = MlflowMetricDataset(key="m", run_id=run_id, load_args={"step": 7})
        assert loaded.load() == 1.0
        assert loaded.exists()

    def test_key_defaults_to_the_bound_name(self, run_id: str) -> None:
        dataset = MlflowMetricDataset()
        dataset.bind_name("precision")
        dataset.save(0.5)
        assert mlflow.get_run(run_id).data.metrics == {"precision": 0.5}

    def test_factory_entries_get_their_name_from_the_catalog(self, run_id: str) -> None:
        catalog = DataCatalog.from_config(
            {"{name}_metric": {"type": "kedroflow.MlflowMetricDataset"}}
        )
        bind_catalog_names(catalog, ["recall_metric", "unrelated"])
        catalog.save("recall_metric", 0.25)
        assert mlflow.get_run(run_id).data.metrics == {"recall_metric": 0.25}

    def test_without_key_outside_kedro_run(self, run_id: str) -> None:
        with pytest.raises(MlflowDatasetError, match="has no metric key: set `key:`"):
            MlflowMetricDataset().save(1.0)

    def test_without_any_run(self, tracking_uri: str) -> None:
        mlflow.set_tracking_uri(tracking_uri)
        with pytest.raises(
            MlflowDatasetError, match=r"no MLflow run is open.*kedro run"
        ):
            MlflowMetricDataset(key="m").save(1.0)

    def test_unknown_run_id(self, tracking_uri: str) -> None:
        mlflow.set_tracking_uri(tracking_uri)
        dataset = MlflowMetricDataset(key="m", run_id="0" * 32)
        with pytest.raises(
            MlflowDatasetError, match=f"run '{'0' * 32}' does not exist"
        ):
            dataset.load()

    def test_missing_metric(self, run_id: str) -> None:
        with pytest.raises(MlflowDatasetError, match="has no metric 'nope'"):
            MlflowMetricDataset(key="nope").load()

    def test_not_a_number(self, run_id: str) -> None:
        with pytest.raises(MlflowDatasetError, match="metrics are numbers, got 'abc'"):
            MlflowMetricDataset(key="m").save("abc")

    def test_bad_mode(self) -> None:
        with pytest.raises(MlflowDatasetError, match="accept `mode` \\(overwrite"):
            MlflowMetricDataset(key="m", save_args={"mode": "replace"})

    def test_tracking_off_is_a_no_op(
        self, run_id: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(TRACKING_OFF_ENV, "1")
        MlflowMetricDataset(key="m").save(1.0)
        assert mlflow.get_run(run_id).data.metrics == {}


class TestMlflowMetricHistoryDataset:
    @pytest.mark.parametrize(
        ("mode", "data"),
        [
            ("list", [0.5, 0.4, 0.3]),
            ("dict", {0: 0.5, 10: 0.4, 20: 0.3}),
            ("history", [{"step": 1, "value": 0.5, "timestamp": 1000}]),
        ],
    )
    def test_round_trip(self, run_id: str, mode: str, data: Any) -> None:
        dataset = MlflowMetricHistoryDataset(
            key="loss", save_args={"mode": mode}, load_args={"mode": mode}
        )
        dataset.save(data)
        assert dataset.load() == data

    def test_a_long_history_is_one_batch_and_reads_back(self, run_id: str) -> None:
        data = [float(i) for i in range(1500)]
        MlflowMetricHistoryDataset(key="long").save(data)
        assert MlflowMetricHistoryDataset(key="long").load() == data

    def test_wrong_shape(self, run_id: str) -> None:
        dataset = MlflowMetricHistoryDataset(key="loss", save_args={"mode": "dict"})
        with pytest.raises(
            MlflowDatasetError, match="expects a \\{step: value\\} dict"
        ):
            dataset.save([1.0])

    def test_bad_args(self) -> None:
        with pytest.raises(MlflowDatasetError, match="accept only `mode`"):
            MlflowMetricHistoryDataset(key="k", load_args={"mode": "table"})


class TestMlflowMetricsHistoryDataset:
    def test_flat_dict_and_prefix_from_the_entry_name(self, run_id: str) -> None:
        dataset = MlflowMetricsHistoryDataset()
        dataset.bind_name("eval")
        dataset.save({"auc": 0.9, "f1": 0.8})
        assert mlflow.get_run(run_id).data.metrics == {"eval.auc": 0.9, "eval.f1": 0.8}
        assert dataset.load() == {
            "auc": {"value": 0.9, "step": 0},
            "f1": {"value": 0.8, "step": 0},
        }

    def test_histories_without_prefix(self, run_id: str) -> None:
        dataset = MlflowMetricsHistoryDataset(prefix="")
        dataset.save({"loss": [{"value": 1.0, "step": 0}, {"value": 0.5, "step": 1}]})
        assert dataset.load() == {
            "loss": [{"value": 1.0, "step": 0}, {"value": 0.5, "step": 1}]
        }
        assert dataset.exists()

    def test_point_without_value(self, run_id: str) -> None:
        with pytest.raises(MlflowDatasetError, match="needs a 'value'"):
            MlflowMetricsHistoryDataset(prefix="p").save({"auc": {"step": 1}})


class TestDictToOneMetric:
    def test_error_points_to_the_dataset_for_several_metrics(
        self, kedro_project: Any
    ) -> None:
        # spaceflights' evaluate_model returns {"r2_score": ..., "mae": ...}
        kedro_project.write(
            "src/fake_project/nodes.py",
            "def evaluate():\n    return {'r2_score': 0.9, 'mae': 3.0}\n",
        )
        kedro_project.write_pipelines(
            """
            from kedro.pipeline import Node, Pipeline
            from fake_project.nodes import evaluate
            def register_pipelines():
                return {"__default__": Pipeline([Node(evaluate, None, "metrics")])}
            """
        )
        kedro_project.write(
            "conf/base/catalog.yml", "metrics:\n  type: kedroflow.MlflowMetricDataset\n"
        )
        with pytest.raises(DatasetError, match="MLflow metrics are numbers") as error:
            kedro_project.run()
        assert "use kedroflow.MlflowMetricsHistoryDataset" in str(error.value)
        run = kedro_project.only_run()
        assert run.info.status == "FAILED"
