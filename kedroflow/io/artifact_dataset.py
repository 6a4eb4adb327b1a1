"""``MlflowArtifactDataset``: any file-based Kedro dataset, also logged as a run artifact.

It wraps the dataset by composition (no class is built at run time), so it pickles and
works under ParallelRunner. Only what this save wrote is uploaded: the version just
written for a versioned dataset, the partitions of this save for a PartitionedDataset.
The file is streamed to the artifact store as it is, never read into memory. Inside
``kedro run`` the upload runs in the background (the run's outbox) while the pipeline
goes on; the run's end waits for it, and a failed upload fails the run.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, AbstractVersionedDataset, Version
from mlflow.exceptions import MlflowException

from kedroflow.errors import MlflowDatasetError
from kedroflow.io._base import MlflowBaseDataset
from kedroflow.outbox import upload_files

logger = logging.getLogger(__name__)

#: Where artifacts of other runs are downloaded to (``run_id:`` loads).
CACHE_ENV_VAR = "KEDROFLOW_ARTIFACT_CACHE"
_PATH_KEYS = ("filepath", "path")


def artifact_cache_dir() -> Path:
    """The folder holding downloaded artifacts: ``$KEDROFLOW_ARTIFACT_CACHE`` or tmp."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"kedroflow-artifacts-{os.getuid()}"


def _wrapped_config(
    dataset: str | dict[str, Any],
    credentials: dict[str, Any] | None,
    version: Version | None,
) -> dict[str, Any]:
    """The wrapped dataset's catalog config (a copy): its type, the entry's
    credentials unless it has its own, ``versioned`` when Kedro versions the entry."""
    config: dict[str, Any] = (
        {"type": dataset} if isinstance(dataset, str | type) else dataset
    )
    if not isinstance(config, dict) or "type" not in config:
        raise MlflowDatasetError(
            "MlflowArtifactDataset `dataset:` must be a dataset type or a dict with "
            f"a `type` key, e.g. {{type: pandas.CSVDataset, filepath: ...}}; got "
            f"{dataset!r}."
        )
    config = copy.deepcopy(config)
    if credentials is not None and "credentials" not in config:
        config["credentials"] = credentials
    if version is not None:
        config["versioned"] = True
    return config


def _local_path(path: str, entry: str) -> str:
    if "://" in path:
        protocol, _, rest = path.partition("://")
        if protocol != "file":
            raise MlflowDatasetError(
                f"MlflowArtifactDataset {entry}: the wrapped dataset writes to "
                f"'{path}', which is not a local path. MlflowArtifactDataset uploads "
                "local files; write locally (e.g. data/08_reporting/...) or log remote "
                "data with the artifact store itself."
            )
        return rest
    return path


class MlflowArtifactDataset(MlflowBaseDataset[Any, Any]):
    """``MlflowArtifactDataset`` saves through any local file dataset, then logs the file.

    Saving writes the file with the wrapped dataset and uploads what was written to
    the run (under ``artifact_path``, optional). Loading reads the local file, or with
    ``run_id`` that run's artifact, downloaded to a cache folder (the local file is
    never overwritten). With tracking off it behaves exactly like the wrapped dataset.

    Examples:
        ```yaml
        feature_importance:
          type: kedroflow.MlflowArtifactDataset
          artifact_path: reports          # optional folder in the run's artifacts
          dataset:
            type: matplotlib.MatplotlibDataset
            filepath: data/08_reporting/feature_importance.png

        scored:                           # only this run's partitions are logged
          type: kedroflow.MlflowArtifactDataset
          dataset:
            type: partitions.PartitionedDataset
            path: data/07_model_output/scored
            dataset: pandas.CSVDataset
            filename_suffix: .csv
        ```

        >>> import mlflow
        >>> from kedroflow.io import MlflowArtifactDataset
        >>> mlflow.set_tracking_uri(tracking_uri)
        >>> run = mlflow.start_run()
        >>> dataset = MlflowArtifactDataset(
        ...     dataset={"type": "json.JSONDataset", "filepath": str(tmp_path / "c.json")},
        ...     artifact_path="config",
        ... )
        >>> dataset.save({"C": 1.0})
        >>> [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "config")]
        ['config/c.json']
        >>> MlflowArtifactDataset(
        ...     dataset={"type": "json.JSONDataset", "filepath": str(tmp_path / "c.json")},
        ...     artifact_path="config",
        ...     run_id=run.info.run_id,
        ... ).load()
        {'C': 1.0}
        >>> mlflow.end_run()
    """

    _takes_run_id = True

    def __init__(
        self,
        *,
        dataset: str | dict[str, Any],
        run_id: str | None = None,
        artifact_path: str | None = None,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        version: Version | None = None,
    ) -> None:
        """Wrap ``dataset``.

        Args:
            dataset: The wrapped dataset: a type name (``pandas.CSVDataset``) or a
                catalog-style dict with ``type`` and ``filepath`` (or ``path``).
            run_id: Load the artifact of this run (and log saves to it) instead of the
                current run.
            artifact_path: Folder inside the run's artifacts; the root by default.
            credentials: Passed to the wrapped dataset when its config has none.
            metadata: Free-form metadata, ignored by kedroflow.
            version: Set by Kedro for ``versioned: true`` on this entry; it versions
                the wrapped dataset (as ``versioned: true`` inside ``dataset`` does).
        """
        self._config = config = _wrapped_config(dataset, credentials, version)
        load_version = version.load if version is not None else None
        save_version = version.save if version is not None else None
        self._path_key = next((k for k in _PATH_KEYS if k in config), None)
        if self._path_key is None:
            raise MlflowDatasetError(
                f"MlflowArtifactDataset wraps '{config['type']}' without `filepath` or "
                "`path`: it logs local files, so wrap a file-based dataset and give it "
                "a `filepath:`."
            )
        self._local = _local_path(str(config[self._path_key]), repr(config["type"]))
        self._dataset = AbstractDataset.from_config(
            "dataset", config, load_version, save_version
        )
        self._run_id = run_id
        self._artifact_path = artifact_path.strip("/") if artifact_path else None
        self.metadata = metadata

    @property
    def dataset(self) -> AbstractDataset:
        """The wrapped dataset."""
        return self._dataset

    def load(self) -> Any:
        if self._run_id is None:
            return self._dataset.load()
        return self._downloaded_dataset().load()

    def save(self, data: Any) -> None:
        if self._logging_off():
            self._dataset.save(data)
            return
        run_id = self._run_for("log its artifact", self._run_id)  # fail before writing
        self._dataset.save(data)
        files = self._written_files(data)
        outbox = self._outbox(run_id)
        try:
            if outbox is not None:  # uploaded while the pipeline goes on
                outbox.upload(self._label(), files)
            else:
                upload_files(self._client(), run_id, files)
        except MlflowException as error:
            raise self._mlflow_error(error, "log its artifact", run_id) from error

    def _written_files(self, data: Any) -> list[tuple[str, str | None]]:
        """(local path, artifact folder) of what the last save wrote."""
        root = self._local.rstrip("/")
        if self._path_key == "path" and isinstance(data, dict):  # PartitionedDataset
            suffix = str(self._config.get("filename_suffix", ""))
            base = _join(self._artifact_path, PurePosixPath(root).name)
            out: list[tuple[str, str | None]] = []
            for partition in sorted(str(p) for p in data):
                sub = PurePosixPath(partition).parent
                folder = base if str(sub) == "." else _join(base, str(sub))
                out.append((f"{root}/{partition}{suffix}", folder))
            return out
        if isinstance(self._dataset, AbstractVersionedDataset):
            written = self._dataset.resolve_save_version()
            if written:
                name = PurePosixPath(root).name
                return [(f"{root}/{written}/{name}", self._artifact_path)]
        return [(root, self._artifact_path)]

    @property
    def run_id(self) -> str | None:
        """The run this dataset loads from (``run_id:``), None for the current run."""
        return self._run_id

    def artifact_name(self) -> str:
        """Path of the artifact in the run: ``<artifact_path>/<file or folder name>``."""
        return _join(self._artifact_path, PurePosixPath(self._local.rstrip("/")).name)

    def _downloaded_dataset(self) -> AbstractDataset:
        """The wrapped dataset, reading this run's artifact from the local cache."""
        run_id = str(self._run_id)
        target = artifact_cache_dir() / run_id / (self._artifact_path or "")
        local = target / PurePosixPath(self.artifact_name()).name  # MLflow's layout
        if not local.exists():
            target.mkdir(parents=True, exist_ok=True)
            error: Exception | None = None
            try:
                self._client().download_artifacts(
                    run_id, self.artifact_name(), str(target)
                )
            except (MlflowException, OSError) as exc:
                if isinstance(exc, MlflowException):
                    problem = self._mlflow_error(exc, "download its artifact", run_id)
                    if "does not exist in the tracking store" in str(problem):
                        raise problem from exc
                error = exc
            if error is not None or not local.exists():  # MLflow 3.0 may not raise
                raise MlflowDatasetError(
                    f"Dataset {self._label()}: run {run_id} has no artifact "
                    f"'{self.artifact_name()}' ({error or 'nothing downloaded'}). Check "
                    "`artifact_path:` and `run_id:` against the run's artifacts in the "
                    "MLflow UI."
                ) from error
        config = {k: v for k, v in self._config.items() if k != "versioned"}
        config[self._path_key or "filepath"] = str(local)
        return AbstractDataset.from_config("dataset", config)

    def _exists(self) -> bool:
        if self._run_id is None:
            return self._dataset.exists()
        try:
            return bool(
                self._client().list_artifacts(self._run_id, self._artifact_path)
            )
        except MlflowException:
            return False

    def _release(self) -> None:
        self._dataset.release()

    def _describe(self) -> dict[str, Any]:
        return {
            "dataset": {k: v for k, v in self._config.items() if k != "credentials"},
            "run_id": self._run_id,
            "artifact_path": self._artifact_path,
        }


def _join(folder: str | None, name: str) -> str:
    return f"{folder}/{name}" if folder else name
