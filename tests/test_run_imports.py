"""What a tracked ``kedro run`` imports: MLflow's model code only when it logs a model.

With tracing off: MLflow's own trace processor imports ``mlflow.pyfunc`` when a trace
starts (it looks for a model's prediction context), whatever kedroflow does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

RUN_AND_REPORT = """
import sys
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

bootstrap_project({path!r})
with KedroSession.create(project_path={path!r}) as session:
    session.run()
print("pyfunc imported:", "mlflow.pyfunc" in sys.modules)
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write(
        "src/fake_project/nodes.py",
        """
        def score(x):
            return x * 0.5, {"x": x}
        """,
    )
    kedro_project.write_pipelines(
        """
        from kedro.pipeline import Node, Pipeline

        from fake_project.nodes import score


        def register_pipelines():
            return {"__default__": Pipeline([Node(score, "params:x", ["acc", "report"])])}
        """
    )
    kedro_project.write(
        "conf/base/catalog.yml",
        """
        acc:
          type: kedroflow.MlflowMetricDataset
        report:
          type: kedroflow.MlflowArtifactDataset
          dataset:
            type: json.JSONDataset
            filepath: data/08_reporting/report.json
        """,
    )
    kedro_project.write("conf/base/parameters.yml", "x: 2.0\n")
    kedro_project.write(
        "conf/local/mlflow.yml", "tracking:\n  tracing:\n    enabled: false\n"
    )
    return kedro_project


class TestRunImports:
    def test_a_run_without_a_model_does_not_import_mlflow_pyfunc(
        self, project: Any
    ) -> None:
        code = textwrap.dedent(RUN_AND_REPORT.format(path=str(project.path)))
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=project.path, capture_output=True,
            text=True, check=False, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert "pyfunc imported: False" in result.stdout
        run = project.only_run()
        assert run.data.metrics == {"acc": 1.0}
