"""No secret leaves the process: a corpus of secret shapes scanned in the whole store.

Real ``kedro run`` processes on a real project: credentials, redacted parameters at
any depth, ``--params`` overrides, URL user-info and token query parameters, secrets
in exception messages, log lines, lineage sources, the uncommitted diff and a
PipelineML model. Afterwards every byte of the SQLite store and of the artifact
folder, and the console output of every command, is scanned for every secret.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kedroflow.secrets import (
    LogScrubber,
    Secrets,
    mask_credentials,
    redacted_values,
    secret_parameters,
)

# Each secret is unique text; the key says where it is put (its "shape").
CORPUS: dict[str, str] = {
    "cred_server_password": "srvPW-8d1c2b7e0f",
    "cred_server_token": "srvTOK-1a9e3c5d7b",
    "cred_db_password_in_url_only": "urlPW-44af0e91bc",
    "cred_db_password": "dbPW-c0ffee1234",
    "cred_aws_key_id": "AKIAQ7Z3R5T9XW2Y",
    "cred_aws_secret": "awsSECRET/x9Q+7zLm3Nk",
    "cred_list_first": "listKEY-1-5e6f7a",
    "cred_list_second": "listKEY-2-8b9c0d",
    "cred_short": "Qx7z",
    "cred_deep_private_key": "-----PRIVATE-KEY-9f8e7d6c-----",
    "cred_json_escaped": 'quo"te\\back-slash-77Zq',
    "cred_in_exception": "excCRED-3e4f5a6b",
    "param_top_level": "topTOK-6c7d8e9f0a",
    "param_nested": "nestPW-1b2c3d4e5f",
    "param_deep_nested": "deepKEY-a1b2c3d4e5",
    "param_list_first": "tokA-0f1e2d3c4b",
    "param_list_second": "tokB-5a6b7c8d9e",
    "param_unconsumed": "unusedSECRET-2a3b4c",
    "param_url_userinfo": "uiPW-7e8f9a0b1c",
    "param_amz_signature": "amzSIG0123456789abcdef",
    "param_amz_credential": "AKIAAMZCRED77%2F20240101",
    "param_query_token": "qTOK-3c4d5e6f7a",
    "param_query_sig": "qSIG-8b9c0d1e2f",
    "param_query_key": "qKEY-4a5b6c7d8e",
    "param_access_token": "qAT-9f0e1d2c3b",
    "param_goog_signature": "googSIG-5d6e7f8a9b",
    "param_azure_account_key": "azKEY-0a1b2c3d4e==",
    "param_in_list_of_dicts": "listPW-6f7a8b9c0d",
    "runtime_new_key": "rtTOK-1c2d3e4f5a",
    "runtime_nested_new": "rtPW-6b7c8d9e0f",
    "runtime_url_userinfo": "rtUI-2e3f4a5b6c",
    "tag_url_userinfo": "tagPW-7d8e9f0a1b",
    "exc_url_userinfo": "excPW-3a4b5c6d7e",
    "exc_query_sig": "excSIG-8f9a0b1c2d",
    "exc_named_password": "excNAMED-4d5e6f7a8b",
    "exc_bearer": "eyJhbGciOiJIUzI1NiJ9.excBEARER.5f6a",
    "lineage_userinfo": "linPW-9b0c1d2e3f",
    "lineage_token": "linTOK-4f5a6b7c8d",
    "log_url_userinfo": "logPW-0e1f2a3b4c",
    "model_secret_param": "modelKEY-5c6d7e8f9a",
}

CREDENTIALS = f"""
mlflow_creds:
  MLFLOW_TRACKING_PASSWORD: {CORPUS["cred_server_password"]}
  MLFLOW_TRACKING_TOKEN: {CORPUS["cred_server_token"]}
db:
  con: postgresql://dbuser:{CORPUS["cred_db_password_in_url_only"]}@db.example.com:5432/x
  password: {CORPUS["cred_db_password"]}
aws:
  key_id: {CORPUS["cred_aws_key_id"]}
  secret: {CORPUS["cred_aws_secret"]}
api_keys:
  - {CORPUS["cred_list_first"]}
  - {CORPUS["cred_list_second"]}
pin:
  code: {CORPUS["cred_short"]}
gcp:
  service_account:
    private_key: "{CORPUS["cred_deep_private_key"]}"
weird:
  value: 'quo"te\\back-slash-77Zq'
warehouse:
  password: {CORPUS["cred_in_exception"]}
"""

PARAMETERS = f"""
a: 1
aaa_banner: "the key is {CORPUS["param_nested"]} (copied)"
api_token: {CORPUS["param_top_level"]}
db:
  host: localhost
  password: {CORPUS["param_nested"]}
  options:
    api_key: {CORPUS["param_deep_nested"]}
auth_token:
  - {CORPUS["param_list_first"]}
  - {CORPUS["param_list_second"]}
copy_of_aws_secret: "{CORPUS["cred_aws_secret"]}"
remote_store: https://alice:{CORPUS["param_url_userinfo"]}@store.example.com/data
signed: "https://h.example.com/f.csv?X-Amz-Signature={CORPUS["param_amz_signature"]}&X-Amz-Credential={CORPUS["param_amz_credential"]}"
query: "https://h.example.com/x?token={CORPUS["param_query_token"]}&sig={CORPUS["param_query_sig"]}&key={CORPUS["param_query_key"]}&x=1"
oauth: "https://h.example.com/cb?access_token={CORPUS["param_access_token"]}"
goog: "https://storage.googleapis.com/b/o?X-Goog-Signature={CORPUS["param_goog_signature"]}"
azure: "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey={CORPUS["param_azure_account_key"]};"
servers:
  - name: primary
    password: {CORPUS["param_in_list_of_dicts"]}
model_opts:
  api_key: {CORPUS["model_secret_param"]}
pin_note: "the pin Qx7z is short; Qx7zA1 is another word"
threshold: 0.5
"""

#: Changed after the commit: the uncommitted diff holds a secret nobody consumes.
UNCOMMITTED = f"\nunused:\n  secret: {CORPUS['param_unconsumed']}\n"

#: The nodes read what they leak from the environment: the project's code is stored
#: with the model, so no secret may be written in it.
NODES = """
import logging
import os

import pandas as pd
from kedro.io import AbstractDataset

logger = logging.getLogger(__name__)
LEAK = {k[len("LEAK_"):].lower(): v for k, v in os.environ.items() if k.startswith("LEAK_")}


class RemoteDataset(AbstractDataset):
    \"\"\"An input read from a signed URL (its description carries the credentials).\"\"\"

    def __init__(self, url):
        self._url = url

    def load(self):
        return 1

    def save(self, data):
        raise NotImplementedError

    def _describe(self):
        return {"filepath": self._url}


def describe(*values):
    logging.getLogger("mlflow.fake").warning("connecting with %s", LEAK["server_token"])
    logger.warning("mirror at https://gina:%s@mirror.example.com/x", LEAK["log_pw"])
    try:
        raise ValueError(f"bad password {LEAK['nested']}")
    except ValueError:
        logger.exception("retrying")
    return len(values)


def fail(x):
    raise RuntimeError(
        f"cannot connect with {LEAK['exc_cred']} to "
        f"postgresql://eve:{LEAK['exc_pw']}@db/x (https://h/x?sig={LEAK['exc_sig']}) "
        f"password={LEAK['exc_named']} token {LEAK['top']} "
        f"Authorization: Bearer {LEAK['exc_bearer']}"
    )


def fit(rows: pd.DataFrame, a):
    return {"mean": float(rows["x"].mean())}


def score(rows: pd.DataFrame, model, threshold):
    return pd.DataFrame({"above": (rows["x"] > model["mean"] + threshold).astype(int)})


def score_with_key(rows: pd.DataFrame, model, options):
    return pd.DataFrame({"above": (rows["x"] > model["mean"]).astype(int)})
"""

#: What the nodes leak (``LEAK_<NAME>`` environment variables of ``kedro run``).
LEAKED = {
    "server_token": CORPUS["cred_server_token"],
    "log_pw": CORPUS["log_url_userinfo"],
    "nested": CORPUS["param_nested"],
    "exc_cred": CORPUS["cred_in_exception"],
    "exc_pw": CORPUS["exc_url_userinfo"],
    "exc_sig": CORPUS["exc_query_sig"],
    "exc_named": CORPUS["exc_named_password"],
    "top": CORPUS["param_top_level"],
    "exc_bearer": CORPUS["exc_bearer"],
}

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from kedroflow import pipeline_ml_factory
from fake_project.nodes import describe, fail, fit, score, score_with_key

CONSUMED = ["params:a", "params:aaa_banner", "params:api_token", "params:db",
            "params:auth_token", "params:copy_of_aws_secret", "params:remote_store",
            "params:signed", "params:query", "params:oauth", "params:goog",
            "params:azure", "params:servers", "params:pin_note", "remote"]


def register_pipelines():
    def training(name):
        return Pipeline([Node(fit, ["rows", "params:a"], "model", name=name)])

    inference = Pipeline(
        [Node(score, ["rows", "model", "params:threshold"], "scores", name="score")]
    )
    leaky = Pipeline(
        [Node(score_with_key, ["rows", "model", "params:model_opts"], "scores",
              name="score")]
    )
    train = pipeline_ml_factory(training("fit"), inference, input_name="rows")
    everything = Pipeline([Node(describe, CONSUMED, "described", name="describe")])
    return {
        "__default__": train + everything,
        "train": train,
        "leaky": pipeline_ml_factory(training("fit_leaky"), leaky, input_name="rows"),
        "broken": Pipeline([Node(fail, "params:a", "never", name="broken")]),
    }
"""

CATALOG = f"""
rows:
  type: pandas.CSVDataset
  filepath: data/rows.csv
model:
  type: pickle.PickleDataset
  filepath: data/model.pkl
remote:
  type: fake_project.nodes.RemoteDataset
  url: https://frank:{CORPUS["lineage_userinfo"]}@data.example.com/x.csv?token={CORPUS["lineage_token"]}
"""

MLFLOW_YML = f"""
server:
  credentials: mlflow_creds
tracking:
  run:
    name: nightly-{CORPUS["cred_aws_key_id"]}
    tags:
      source: https://dave:{CORPUS["tag_url_userinfo"]}@git.example.com/repo.git
  params:
    dict_params:
      flatten: {{flatten}}
"""


def found_secrets(text: str) -> set[str]:
    """The corpus entries present in ``text`` (short values as whole tokens)."""
    return {
        name for name, value in CORPUS.items() if Secrets.of([value]).found_in(text)
    }


def _store_texts(project: Any) -> dict[str, str]:
    """Every file of the store (database and artifacts), decoded byte for byte."""
    files = [project.path / "mlflow.db", *(project.path / "mlartifacts").rglob("*")]
    return {
        str(path): path.read_bytes().decode("latin-1")
        for path in files
        if path.is_file()
    }


def _git_commit(path: Path) -> None:
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=path, check=True)


@pytest.fixture
def secret_project(kedro_project: Any) -> Any:
    project = kedro_project
    project.write("conf/local/credentials.yml", CREDENTIALS)
    project.write("conf/flat/credentials.yml", CREDENTIALS)
    project.write("conf/base/parameters.yml", PARAMETERS)
    project.write("conf/base/catalog.yml", CATALOG)
    project.write("src/fake_project/nodes.py", NODES)
    project.write_pipelines(REGISTRY)
    project.write("conf/local/mlflow.yml", MLFLOW_YML.format(flatten="false"))
    project.write("conf/flat/mlflow.yml", MLFLOW_YML.format(flatten="true"))
    (project.path / "data").mkdir(exist_ok=True)
    (project.path / "data" / "rows.csv").write_text("x\n1.0\n2.0\n3.0\n")
    _git_commit(project.path)
    with (project.path / "conf/base/parameters.yml").open("a") as handle:
        handle.write(UNCOMMITTED)
    return project


@pytest.mark.slow
def test_no_secret_of_the_corpus_leaves_the_process(
    secret_project: Any, pipelines_option: str
) -> None:
    """The corpus is scanned in the store and the console: none is found."""
    project = secret_project
    assert len(CORPUS) >= 40
    overrides = (
        f"service_token={CORPUS['runtime_new_key']},"
        f"warehouse.password={CORPUS['runtime_nested_new']},"
        f"remote_store=https://carol:{CORPUS['runtime_url_userinfo']}@h.example.com/x"
    )
    leak = {f"LEAK_{k.upper()}": v for k, v in LEAKED.items()}
    env = {**os.environ, "COLUMNS": "400", **leak}
    console = []
    for conf in ("local", "flat"):
        done = project.kedro("run", "--env", conf, "--params", overrides, env=env)
        console.append(done.stdout + done.stderr)
    failed = project.kedro("run", pipelines_option, "broken", check=False, env=env)
    leaky = project.kedro("run", pipelines_option, "leaky", check=False, env=env)
    console += [failed.stdout + failed.stderr, leaky.stdout + leaky.stderr]
    assert failed.returncode != 0 and leaky.returncode != 0

    # what each run shows, without the secrets
    assert len(project.runs()) == 4
    done_run = project.runs()[0]
    assert done_run.data.params["api_token"] == "***"
    assert "'host': 'localhost'" in done_run.data.params["db"]
    assert "the pin *** is short; Qx7zA1 is another word" in str(done_run.data.params)
    assert (
        "RuntimeError: cannot connect with ***"
        in (project.runs()[2].data.tags["kedroflow.error"])
    )
    leak_error = project.runs()[3].data.tags["kedroflow.error"]
    assert "secret parameter(s) ['model_opts.api_key']" in leak_error
    assert "'model_opts.api_key'" in leaky.stdout + leaky.stderr

    texts = _store_texts(project)
    assert any("uncommitted.diff" in name for name in texts), "the diff was logged"
    assert any("MLmodel" in name for name in texts), "the model was logged"
    leaks = {
        where: sorted(found)
        for where, text in [*texts.items(), *enumerate(console)]
        if (found := found_secrets(text))
    }
    found = set().union(*leaks.values()) if leaks else set()
    print(f"secret corpus: {len(CORPUS)} shapes, {len(found)} found: {leaks}")
    for index, text in enumerate(console):
        for line in text.splitlines():
            if found_secrets(line):
                print(f"console {index}: {line}")
    assert leaks == {}


class TestScrubber:
    """The scrubber itself (pure): what it masks and what it leaves."""

    def test_short_and_common_values_are_masked_as_whole_tokens(self) -> None:
        secrets = Secrets.of(["5432", "admin"])
        assert secrets.scrub("port 5432, 154321, admin, administrator, db_admin") == (
            "port ***, 154321, ***, administrator, db_admin"
        )

    def test_long_values_are_masked_inside_words_too(self) -> None:
        secrets = Secrets.of(["x9Q-7zLm3Nk-88"])
        assert secrets.scrub("abcx9Q-7zLm3Nk-88def") == "abc***def"

    def test_url_userinfo_and_token_parameters(self) -> None:
        text = (
            "http://u:p%40ss@h:5000/x?a=1&token=T1&X-Amz-Signature=S2#frag "
            "Bearer abc.DEF-123_456 connection AccountKey=K3==;"
        )
        assert mask_credentials(text) == (
            "http://***@h:5000/x?a=1&token=***&X-Amz-Signature=***#frag "
            "Bearer *** connection AccountKey=***;"
        )

    def test_quoted_and_escaped_forms(self) -> None:
        secrets = Secrets.of(['p@ss"word/7'])
        assert secrets.scrub("https://h/?p=p%40ss%22word%2F7") == "https://h/?p=***"
        assert secrets.scrub('{"pw": "p@ss\\"word/7"}') == '{"pw": "***"}'

    def test_configuration_words_are_not_secrets(self) -> None:
        assert Secrets.of(["false", "True", "null"]).values == ()

    @pytest.mark.parametrize("flatten_first", [True, False])
    def test_redacted_values_at_any_depth_whatever_their_order(
        self, flatten_first: bool
    ) -> None:
        params = {
            "aaa": "uses nested-PW-1",
            "api_token": "top-TOK-2",
            "db": {"password": "nested-PW-1", "opts": {"api_key": ["k-3a", "k-4b"]}},
            "servers": [{"secret": "list-SEC-5"}],
        }
        if flatten_first:
            params = {"db.password": "nested-PW-1", **{k: v for k, v in params.items()}}
        redact = [r"passw(or)?d", r"secret", r"token($|[^a-z])", r"api[_\-. ]?key"]
        assert set(redacted_values(params, redact).values) == {
            "nested-PW-1", "top-TOK-2", "k-3a", "k-4b", "list-SEC-5",
        }  # fmt: skip

    def test_secret_parameters_by_name_and_by_value(self) -> None:
        names = secret_parameters(
            {"params:db": {"password": "x", "host": "h"}, "params:copy": "cred-VALUE",
             "params:threshold": 0.5},
            ["password"],
            Secrets.of(["cred-VALUE"]),
        )  # fmt: skip
        assert names == ["copy", "db.password"]

    def test_log_records_are_scrubbed_while_installed(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        scrubber = LogScrubber(lambda: Secrets.of(["s3cret-VALUE"]))
        log = logging.getLogger("mlflow.anything")
        scrubber.install()
        try:
            log.warning("uri %s", "https://u:pw@h/ with s3cret-VALUE")
            try:
                raise ValueError("s3cret-VALUE")
            except ValueError:
                log.exception("failed")
        finally:
            scrubber.uninstall()
        log.warning("after s3cret-VALUE")
        messages = [r.getMessage() for r in caplog.records]
        assert messages[0] == "uri https://***@h/ with ***"
        assert "ValueError: ***" in messages[1]
        assert caplog.records[1].exc_info is None
        assert messages[2] == "after s3cret-VALUE"  # only while a run is open
        assert os.environ.get("MLFLOW_TRACKING_PASSWORD") is None


class TestCredentialsRestored:
    """The server credentials are in the environment only while the run is open."""

    def test_after_a_failed_start(self, kedro_project: Any) -> None:
        project = kedro_project
        project.write("src/fake_project/nodes.py", "def one(x):\n    return x\n")
        project.write_pipelines(
            "from kedro.pipeline import Node, Pipeline\nfrom fake_project.nodes import one\n"
            "def register_pipelines():\n"
            "    return {'__default__': Pipeline([Node(one, 'params:a', 'b')])}\n"
        )
        project.write("conf/base/parameters.yml", "a: 1\n")
        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            free_port = sock.getsockname()[1]
        project.write(
            "conf/local/credentials.yml",
            "creds:\n  MLFLOW_TRACKING_USERNAME: someone\n"
            "  MLFLOW_TRACKING_PASSWORD: pw-of-a-failed-start\n"
            "  SOME_OTHER_KEY: other-value\n",
        )
        project.write(
            "conf/local/mlflow.yml",
            f"server:\n  mlflow_tracking_uri: http://127.0.0.1:{free_port}\n"
            "  credentials: creds\n  connect_timeout: 1\n",
        )
        os.environ["SOME_OTHER_KEY"] = "the user's own value"
        factory = logging.getLogRecordFactory()
        try:
            with pytest.raises(Exception, match="Cannot track this run"):
                project.run()
            assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
            assert "MLFLOW_TRACKING_USERNAME" not in os.environ
            assert os.environ["SOME_OTHER_KEY"] == "the user's own value"
            assert logging.getLogRecordFactory() is factory
        finally:
            os.environ.pop("SOME_OTHER_KEY", None)
