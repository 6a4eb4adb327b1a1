"""`mlflow models serve` / `mlflow models predict` on a model logged by `kedro run`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_model import INSTANCES, setup_project

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 120.0


class _Project:
    """Just enough of ``KedroProject`` to write the test project (module scope)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, relative: str, text: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"))

    def write_pipelines(self, code: str) -> None:
        self.write("src/fake_project/pipeline_registry.py", code)


@dataclass
class Served:
    url: str
    model_uri: str
    env: dict[str, str]
    root: Path


def _env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        MLFLOW_TRACKING_URI=tracking_uri,
        KEDRO_DISABLE_TELEMETRY="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
    )
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: bytes | str) -> tuple[int, Any]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(  # noqa: S310 (127.0.0.1 only)
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    project_template: Path,
    migrated_db: Path,
    pipelines_option: str,
) -> Iterator[Served]:
    """A model logged by `kedro run --pipelines training`, served on 127.0.0.1."""
    root = tmp_path_factory.mktemp("serving")
    path = root / "fake-project"
    shutil.copytree(project_template, path)
    shutil.copy(migrated_db, path / "mlflow.db")
    setup_project(_Project(path))
    tracking_uri = f"sqlite:///{path / 'mlflow.db'}"
    env = _env(tracking_uri)
    subprocess.run(
        [str(BIN / "kedro"), "run", pipelines_option, "training"], cwd=path, env=env,
        check=True, capture_output=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    from mlflow.tracking import MlflowClient

    (model,) = MlflowClient(tracking_uri).search_logged_models(
        [
            MlflowClient(tracking_uri)
            .get_experiment_by_name("fake_project")
            .experiment_id
        ]
    )
    model_uri = f"models:/{model.model_id}"
    port = _free_port()
    log = (root / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", model_uri,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"mlflow models serve exited {process.returncode}:\n"
                    + (root / "serve.log").read_text()[-4000:]
                )
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("mlflow models serve did not answer /ping")
            time.sleep(0.25)
        yield Served(url, model_uri, env, root)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def expected(served: Served) -> pd.DataFrame:
    """What the logged model predicts in Python, through `mlflow.pyfunc`."""
    import mlflow

    mlflow.set_tracking_uri(served.env["MLFLOW_TRACKING_URI"])
    return mlflow.pyfunc.load_model(served.model_uri).predict(INSTANCES)


class TestServe:
    def test_dataframe_split(self, served: Served, expected: pd.DataFrame) -> None:
        payload = {"dataframe_split": INSTANCES.to_dict(orient="split", index=False)}
        status, body = _post(f"{served.url}/invocations", json.dumps(payload))
        assert status == 200
        preds = pd.DataFrame(body["predictions"])
        pd.testing.assert_frame_equal(preds, expected, check_dtype=False)

    def test_dataframe_records_and_params(
        self, served: Served, expected: pd.DataFrame
    ) -> None:
        records = INSTANCES.head(3).to_dict(orient="records")
        status, body = _post(
            f"{served.url}/invocations", json.dumps({"dataframe_records": records})
        )
        assert status == 200
        assert [p["pred"] for p in body["predictions"]] == expected["pred"][:3].tolist()
        status, body = _post(
            f"{served.url}/invocations",
            json.dumps({"dataframe_records": records, "params": {"threshold": 0.0}}),
        )
        assert status == 200
        assert [p["pred"] for p in body["predictions"]] == [1, 1, 1]

    def test_missing_column_is_a_400_naming_it(self, served: Served) -> None:
        records = INSTANCES[["x1", "color"]].head(2).to_dict(orient="records")
        status, body = _post(
            f"{served.url}/invocations", json.dumps({"dataframe_records": records})
        )
        assert status == 400
        assert "x2" in body["message"]

    def test_wrong_type_is_a_400(self, served: Served) -> None:
        records = [{"x1": "abc", "x2": 1.0, "color": "red"}]
        status, body = _post(
            f"{served.url}/invocations", json.dumps({"dataframe_records": records})
        )
        assert status == 400
        assert "x1" in body["message"]

    def test_invalid_json_is_a_400(self, served: Served) -> None:
        status, body = _post(f"{served.url}/invocations", "{not json")
        assert status == 400
        assert "JSON" in body["message"]


class TestBatchPredict:
    def test_mlflow_models_predict_on_a_csv(
        self, served: Served, expected: pd.DataFrame
    ) -> None:
        source = served.root / "batch.csv"
        target = served.root / "batch.json"
        INSTANCES.to_csv(source, index=False)
        subprocess.run(
            [str(BIN / "mlflow"), "models", "predict", "-m", served.model_uri,
             "-i", str(source), "-t", "csv", "-o", str(target),
             "--env-manager", "local"],
            cwd=served.root, env=served.env, check=True, capture_output=True,
            timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        preds = pd.DataFrame(json.loads(target.read_text())["predictions"])
        pd.testing.assert_frame_equal(preds, expected, check_dtype=False)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_RECORD = st.fixed_dictionaries(
    {}, optional={"x1": _JSON, "x2": _JSON, "color": _JSON, "extra": _JSON}
)
_COLUMNS = st.lists(st.sampled_from(["x1", "x2", "color", "zz", ""]), max_size=4)
_PAYLOADS = st.one_of(
    st.builds(lambda r: {"dataframe_records": r}, st.lists(_RECORD, max_size=4)),
    st.builds(
        lambda c, d: {"dataframe_split": {"columns": c, "data": d}},
        _COLUMNS,
        st.lists(st.lists(_JSON, max_size=4), max_size=4),
    ),
    st.builds(lambda v: {"dataframe_split": v}, _JSON),
    st.builds(lambda v: {"inputs": v}, _JSON),
    st.builds(lambda v: {"instances": v}, _JSON),
    st.builds(
        lambda r, p: {"dataframe_records": r, "params": p},
        st.lists(_RECORD, min_size=1, max_size=2),
        _JSON,
    ),
    st.dictionaries(st.text(max_size=10), _JSON, max_size=3),
    _JSON,
)


def _mlflow_decodes_bad_utf8() -> bool:
    """MLflow < 3.16's scoring server answers 500 to a body that is not UTF-8."""
    import mlflow

    major, minor = (int(x) for x in mlflow.__version__.split(".")[:2])
    return (major, minor) >= (3, 16)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_BINARY = st.binary(max_size=40)
_BODIES = st.one_of(
    _PAYLOADS.map(json.dumps),
    _BINARY if _mlflow_decodes_bad_utf8() else _BINARY.filter(_utf8),
    st.text(max_size=40),
)


class TestFuzz:
    """Generated bad payloads get a 4xx, never a 5xx, and the server keeps answering."""

    def test_no_5xx_on_500_generated_payloads(self, served: Served) -> None:
        statuses: list[int] = []

        @settings(
            max_examples=500,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(body=_BODIES)
        def send(body: str | bytes) -> None:
            status, _ = _post_raw(f"{served.url}/invocations", body)
            statuses.append(status)
            assert status < 500, f"{status} for {body!r}"

        send()
        assert len(statuses) >= 500
        client_errors = sum(400 <= s < 500 for s in statuses)
        assert client_errors >= 0.8 * len(statuses)
        good = {"dataframe_records": INSTANCES.head(2).to_dict(orient="records")}
        status, body = _post(f"{served.url}/invocations", json.dumps(good))
        assert status == 200
        assert len(body["predictions"]) == 2


def _post_raw(url: str, body: str | bytes) -> tuple[int, bytes]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(  # noqa: S310 (127.0.0.1 only)
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
