"""A corpus of broken catalog entries for kedroflow datasets: one clear error each."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kedro.io import DataCatalog, DatasetError

# (catalog entry, text the error must contain)
CORPUS: list[tuple[str, str]] = [
    ("type: kedroflow.MlflowArtifactDatset", "MlflowArtifactDatset"),
    ("type: kedroflow.MlflowArtifactDataset", "dataset"),
    ("{type: kedroflow.MlflowArtifactDataset, dataset: 3}", "dataset"),
    (
        "{type: kedroflow.MlflowArtifactDataset, dataset: {type: nope.NoDataset, filepath: x}}",
        "nope.NoDataset",
    ),
    ("{type: kedroflow.MlflowArtifactDataset, dataset: {filepath: x.csv}}", "type"),
    (
        "{type: kedroflow.MlflowArtifactDataset, dataset: {type: pandas.CSVDataset}}",
        "filepath",
    ),
    (
        "{type: kedroflow.MlflowArtifactDataset, dataset: {type: pandas.CSVDataset, filepath: x.csv}, artifact_pth: a}",
        "artifact_pth",
    ),
    (
        "{type: kedroflow.MlflowArtifactDataset, dataset: {type: pandas.CSVDataset, filepath: 's3://b/x.csv'}}",
        "local",
    ),
    ("{type: kedroflow.MlflowMetricDataset, save_args: {mode: replace}}", "replace"),
    ("{type: kedroflow.MlflowMetricDataset, save_args: [1]}", "save_args"),
    ("{type: kedroflow.MlflowMetricDataset, key: k, load_args: {stp: 1}}", "stp"),
    ("{type: kedroflow.MlflowMetricDataset, kye: x}", "kye"),
    ("{type: kedroflow.MlflowMetricHistoryDataset, save_args: {mode: lst}}", "lst"),
    (
        "{type: kedroflow.MlflowMetricHistoryDataset, load_args: {mode: histry}}",
        "histry",
    ),
    ("{type: kedroflow.MlflowMetricsHistoryDataset, prefx: m}", "prefx"),
    ("{type: kedroflow.MlflowModelTrackingDataset}", "flavor"),
    (
        "{type: kedroflow.MlflowModelTrackingDataset, flavor: mlflow.sklern}",
        "mlflow.sklern",
    ),
    (
        "{type: kedroflow.MlflowModelTrackingDataset, flavor: mlflow.pyfunc}",
        "pyfunc_workflow",
    ),
    (
        "{type: kedroflow.MlflowModelTrackingDataset, flavor: mlflow.pyfunc, pyfunc_workflow: python_modl}",
        "python_modl",
    ),
    (
        "{type: kedroflow.MlflowModelTrackingDataset, flavor: mlflow.sklearn, save_args: 3}",
        "save_args",
    ),
    (
        "{type: kedroflow.MlflowModelLocalFileSystemDataset, flavor: mlflow.sklearn}",
        "filepath",
    ),
    (
        "{type: kedroflow.MlflowModelLocalFileSystemDataset, filepath: m, flavor: sklearn}",
        "sklearn",
    ),
    (
        "{type: kedroflow.MlflowModelTrackingDataset, flavor: mlflow.sklearn, save_arg: {}}",
        "save_arg",
    ),
    ("{type: kedroflow.MlflowModelRegistryDataset}", "model_name"),
    (
        "{type: kedroflow.MlflowModelRegistryDataset, model_name: m, alais: champion}",
        "alais",
    ),
    (
        "{type: kedroflow.MlflowModelRegistryDataset, model_name: m, alias: champion, stage_or_version: 2}",
        "alias",
    ),
    (
        "{type: kedroflow.MlflowModelRegistryDataset, model_name: m, flavor: mlflow.nothing}",
        "mlflow.nothing",
    ),
    ("{type: kedroflow.MlflowMetricDataset, key: 3}", "`key` must be text"),
    ("{type: kedroflow.MlflowMetricDataset, run_id: 12}", "`run_id` must be text"),
    (
        "{type: kedroflow.MlflowMetricDataset, save_args: {step: first}}",
        "save_args.step must be a whole number",
    ),
    (
        "{type: kedroflow.MlflowMetricDataset, load_args: {step: 1.5}}",
        "load_args.step must be a whole number",
    ),
    ("{type: kedroflow.MlflowMetricHistoryDataset, key: [a]}", "`key` must be text"),
    ("{type: kedroflow.MlflowMetricsHistoryDataset, prefix: 3}", "`prefix` must be"),
]


def _build(entry: str) -> Any:
    return DataCatalog.from_config({"my_entry": yaml.safe_load(entry)})["my_entry"]


@pytest.mark.parametrize(("entry", "expected"), CORPUS, ids=range(len(CORPUS)))
def test_one_clear_error_naming_the_entry(entry: str, expected: str) -> None:
    with pytest.raises(DatasetError) as info:
        _build(entry)
    message = str(info.value)
    assert "my_entry" in message
    assert expected in message
    assert "pydantic" not in message


def test_corpus_size() -> None:
    assert len(CORPUS) >= 20
