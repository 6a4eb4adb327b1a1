"""Batch scoring on Spark: the logged pipeline model as a ``spark_udf``.

Needs pyspark and a Java runtime; without them the test is skipped, unless
``KEDROFLOW_REQUIRE_INTEGRATION=1`` (CI), which makes that an error.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from test_model import INSTANCES, logged_models, setup_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    reason = ""
    if shutil.which("java") is None:
        reason = "no Java runtime (apt-get install default-jre-headless)"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        reason = "pyspark is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("KEDROFLOW_REQUIRE_INTEGRATION", "").strip() in {"1", "true"}:
            pytest.fail(f"Spark test cannot run: {reason}")
        pytest.skip(reason)
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers use this environment
    session = (
        SparkSession.builder.master("local[1]")
        .appName("kedroflow-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_udf_scores_like_the_pandas_path(kedro_project: Any, spark: Any) -> None:
    import mlflow

    setup_project(kedro_project)
    kedro_project.run(pipeline_names=["training"])
    (model,) = logged_models(kedro_project)
    uri = f"models:/{model.model_id}"
    mlflow.set_tracking_uri(kedro_project.tracking_uri)
    expected = mlflow.pyfunc.load_model(uri).predict(INSTANCES)

    udf = mlflow.pyfunc.spark_udf(spark, uri, env_manager="local")
    frame = spark.createDataFrame(INSTANCES)
    scored = frame.withColumn("out", udf(*INSTANCES.columns)).toPandas()

    got = pd.json_normalize(
        scored["out"].map(lambda row: row if isinstance(row, dict) else row.asDict())
    )
    pd.testing.assert_frame_equal(
        got[expected.columns], expected.reset_index(drop=True), check_dtype=False
    )
