"""``MlflowModelLocalFileSystemDataset``: a model in MLflow format in a local folder."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractVersionedDataset, Version
from kedro.io.core import get_filepath_str, get_protocol_and_path

from kedroflow.errors import MlflowDatasetError
from kedroflow.io._base import check_workflow, load_flavor, mapping_arg, model_args


class MlflowModelLocalFileSystemDataset(AbstractVersionedDataset[Any, Any]):
    """``MlflowModelLocalFileSystemDataset`` saves a model in MLflow format to a folder.

    ``<flavor>.save_model`` writes the folder (replaced if it exists; with
    ``versioned: true``, one folder per Kedro version) and ``<flavor>.load_model``
    reads it. Nothing is sent to a tracking server.

    Examples:
        ```yaml
        model_folder:
          type: kedroflow.MlflowModelLocalFileSystemDataset
          filepath: data/06_models/classifier
          flavor: mlflow.sklearn
          versioned: true
        ```

        >>> from sklearn.dummy import DummyClassifier
        >>> from kedroflow.io import MlflowModelLocalFileSystemDataset
        >>> dataset = MlflowModelLocalFileSystemDataset(
        ...     filepath=str(tmp_path / "model"), flavor="mlflow.sklearn"
        ... )
        >>> dataset.save(DummyClassifier().fit([[0], [1]], [0, 1]))
        >>> (tmp_path / "model" / "MLmodel").exists()
        True
        >>> dataset.load().predict([[3]]).shape
        (1,)
    """

    def __init__(
        self,
        *,
        filepath: str,
        flavor: str,
        pyfunc_workflow: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create a dataset saving MLflow models to a local folder.

        Args:
            filepath: Local folder of the model.
            flavor: MLflow flavor module, e.g. ``mlflow.sklearn``.
            pyfunc_workflow: For ``mlflow.pyfunc``: ``python_model`` or
                ``loader_module``.
            load_args: Passed to ``<flavor>.load_model``.
            save_args: Passed to ``<flavor>.save_model``.
            version: Kedro versioning (``versioned: true`` in the catalog).
            metadata: Free-form metadata, ignored by kedroflow.
        """
        owner = f"MlflowModelLocalFileSystemDataset '{filepath}'"
        load_flavor(flavor, ("save_model", "load_model"), owner)
        protocol, path = get_protocol_and_path(str(filepath))
        if protocol not in ("file", ""):
            raise MlflowDatasetError(f"{owner}: the folder must be local.")
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
        )
        self._flavor_name = flavor
        self._workflow = check_workflow(flavor, pyfunc_workflow, owner)
        self._load_args = mapping_arg(load_args, "load_args", type(self).__name__)
        self._save_args = mapping_arg(save_args, "save_args", type(self).__name__)
        self.metadata = metadata

    def load(self) -> Any:
        flavor = load_flavor(self._flavor_name, ("load_model",), str(self))
        path = get_filepath_str(self._get_load_path(), "file")
        return flavor.load_model(Path(path).as_uri(), **self._load_args)

    def save(self, data: Any) -> None:
        """Write the model next to the folder, then swap it in.

        A save that fails (a model the flavor cannot write, a full disk) leaves the
        previous model in place, whole.
        """
        flavor = load_flavor(self._flavor_name, ("save_model",), str(self))
        path = Path(get_filepath_str(self._get_save_path(), "file"))
        path.parent.mkdir(parents=True, exist_ok=True)
        args, kwargs = model_args(data, self._workflow, self._save_args)
        with tempfile.TemporaryDirectory(
            prefix=f".{path.name}-", dir=path.parent
        ) as tmp:
            staged = Path(tmp) / "model"
            flavor.save_model(*args, path=str(staged), **kwargs)
            old = Path(tmp) / "previous"
            if path.exists():
                path.rename(old)  # same folder: renames, never copies
            staged.rename(path)

    def _exists(self) -> bool:
        try:
            return Path(get_filepath_str(self._get_load_path(), "file")).exists()
        except Exception:
            return False

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "flavor": self._flavor_name,
            "pyfunc_workflow": self._workflow,
            "load_args": self._load_args,
            "save_args": self._save_args,
            "version": self._version,
        }
