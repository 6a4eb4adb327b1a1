"""A pipeline model logged under one Kedro/MLflow loads and predicts the same under another.

    <oldest venv>/bin/python .ci/cross_version.py save DIR   # log it, write expected output
    <newest venv>/bin/python .ci/cross_version.py load DIR   # load it, compare

The model is stored as data (node functions by import path, artifacts as files, code in
``code/``), never as pickled Kedro objects, so upgrading Kedro or MLflow does not strand
the models a project has already registered. Exits non-zero on any difference.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

NODES = """
import pandas as pd
from sklearn.linear_model import LogisticRegression


def fit(x: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(x[["a", "b"]], (x["a"] > x["b"]).astype(int))


def featurize(x: pd.DataFrame, scale: float) -> pd.DataFrame:
    return x[["a", "b"]] * scale


def predict(features: pd.DataFrame, model: LogisticRegression) -> pd.DataFrame:
    proba = model.predict_proba(features / 2.0)[:, 1]
    return pd.DataFrame({"proba": proba, "pred": (proba > 0.5).astype(int)})
"""

INSTANCES = {"a": [1.0, 5.0, 2.0, 8.0, 3.0, 0.5], "b": [4.0, 1.0, 2.5, 3.0, 7.0, 0.1]}


def save(folder: Path) -> None:
    import kedro
    import mlflow
    import pandas as pd
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Node, Pipeline
    from kedro_datasets.pickle import PickleDataset

    from kedroflow.packaging import log_pipeline_model

    (folder / "xv_nodes.py").write_text(textwrap.dedent(NODES))
    sys.path.insert(0, str(folder))
    import xv_nodes

    x = pd.DataFrame(INSTANCES)
    catalog = DataCatalog()
    catalog["model"] = PickleDataset(filepath=str(folder / "model.pkl"))
    catalog["model"].save(xv_nodes.fit(x))
    catalog["instances"] = MemoryDataset(x)
    catalog["params:scale"] = MemoryDataset(2.0)
    inference = Pipeline(
        [
            Node(xv_nodes.featurize, ["instances", "params:scale"], "features"),
            Node(xv_nodes.predict, ["features", "model"], "predictions"),
        ]
    )
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    info = log_pipeline_model(
        inference, catalog, input_name="instances",
        log_model_kwargs={"code_paths": [str(folder / "xv_nodes.py")]},
    )  # fmt: skip
    local = mlflow.artifacts.download_artifacts(
        info.model_uri, dst_path=str(folder / "downloaded")
    )
    expected = mlflow.pyfunc.load_model(local).predict(x)
    (folder / "expected.json").write_text(
        json.dumps({
            "model": local,
            "logged_with": f"kedro {kedro.__version__}, mlflow {mlflow.__version__}",
            "predictions": expected.to_dict(orient="list"),
        })
    )  # fmt: skip
    print(
        f"saved a model logged with kedro {kedro.__version__}, mlflow {mlflow.__version__}"
    )


def load(folder: Path) -> None:
    import kedro
    import mlflow
    import pandas as pd

    expected = json.loads((folder / "expected.json").read_text())
    model = mlflow.pyfunc.load_model(expected["model"])
    got = model.predict(pd.DataFrame(INSTANCES))
    pd.testing.assert_frame_equal(
        got, pd.DataFrame(expected["predictions"]), check_dtype=False
    )
    print(
        f"model logged with {expected['logged_with']} loads and predicts the same "
        f"under kedro {kedro.__version__}, mlflow {mlflow.__version__}"
    )


if __name__ == "__main__":
    action, target = sys.argv[1], Path(sys.argv[2]).resolve()
    target.mkdir(parents=True, exist_ok=True)
    {"save": save, "load": load}[action](target)
