"""Local file stores, which MLflow 3.7 and later refuses: found with the fix to apply.

kedro-mlflow's default ``mlruns`` and the ``mlflow_runs`` of Kedro's MLflow page are
folders of runs. MLflow 3.7+ refuses them unless ``MLFLOW_ALLOW_FILE_STORE=true``, deep
in the first request and with a long traceback; :func:`file_store_problems` says so when
``mlflow.yml`` is read, naming the key and the fix. Pure: reads the installed MLflow's
version from its metadata, never imports it.
"""

from __future__ import annotations

import os
import re
from typing import Any

ALLOW_ENV_VAR = "MLFLOW_ALLOW_FILE_STORE"
#: The first MLflow that refuses file stores.
REFUSED_FROM = (3, 7)


def is_file_store(uri: str) -> bool:
    """True for a local folder store: a bare path or a ``file:`` URI."""
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):", uri)
    return scheme is None or scheme.group(1) == "file" or len(scheme.group(1)) == 1


def file_store_problems(server: Any) -> list[str]:
    """One message per store of ``server`` (``mlflow.yml``'s section, or
    ``$MLFLOW_TRACKING_URI``) that MLflow will refuse, naming where it is set."""
    if file_stores_allowed():
        return []
    uris = {
        "server.mlflow_tracking_uri": server.mlflow_tracking_uri,
        "server.mlflow_registry_uri": server.mlflow_registry_uri,
    }
    if not server.mlflow_tracking_uri:
        uris["$MLFLOW_TRACKING_URI (server.mlflow_tracking_uri is null)"] = (
            os.environ.get("MLFLOW_TRACKING_URI")
        )
    return [
        f"{where}: '{uri}' is a local file store (a folder of runs), which MLflow "
        "3.7 and later refuses. Use sqlite:///mlflow.db instead (kedroflow's "
        "default: one SQLite file at the project root; `mlflow migrate-filestore` "
        f"moves existing runs into it), or set {ALLOW_ENV_VAR}=true to keep the "
        "file store."
        for where, uri in uris.items()
        if uri and is_file_store(uri)
    ]


def file_stores_allowed() -> bool:
    """MLflow before 3.7, or ``MLFLOW_ALLOW_FILE_STORE`` set: file stores work."""
    from importlib.metadata import PackageNotFoundError, version

    if os.environ.get(ALLOW_ENV_VAR, "").strip().lower() in {"1", "true"}:
        return True
    try:
        found = re.match(r"(\d+)\.(\d+)", version("mlflow"))
    except PackageNotFoundError:
        return True
    return found is None or (int(found[1]), int(found[2])) < REFUSED_FROM
