"""``MlflowModelRegistryDataset``: load a registered model, register new versions."""

from __future__ import annotations

from typing import Any

from mlflow.exceptions import MlflowException
from typing_extensions import Unpack  # typing.Unpack needs Python 3.11

from kedroflow.errors import MlflowDatasetError
from kedroflow.io._base import load_flavor
from kedroflow.io.model_dataset import ModelDatasetArgs, _LoggingModelDataset


class MlflowModelRegistryDataset(_LoggingModelDataset):
    """``MlflowModelRegistryDataset`` loads a registered model, and registers new ones.

    Loading uses ``models:/<model_name>@<alias>`` or
    ``models:/<model_name>/<stage_or_version>`` (``latest`` by default). Saving logs
    the model to the current run, registers it as a new version of ``model_name`` and,
    with ``alias``, points the alias at that version.

    Examples:
        ```yaml
        champion:
          type: kedroflow.MlflowModelRegistryDataset
          model_name: iris-classifier
          alias: champion
          flavor: mlflow.sklearn
        ```

        >>> import mlflow
        >>> from sklearn.dummy import DummyClassifier
        >>> from kedroflow.io import MlflowModelRegistryDataset
        >>> model = DummyClassifier().fit([[0], [1]], [0, 1])
        >>> mlflow.set_tracking_uri(tracking_uri)
        >>> with mlflow.start_run():  # in a project, the kedro run
        ...     MlflowModelRegistryDataset(
        ...         model_name="clf",
        ...         alias="champion",
        ...         flavor="mlflow.sklearn",
        ...         save_args={"pip_requirements": ["scikit-learn"]},
        ...     ).save(model)
        >>> client = mlflow.MlflowClient()
        >>> int(client.get_model_version_by_alias("clf", "champion").version)
        1
        >>> champion = MlflowModelRegistryDataset(model_name="clf", alias="champion")
        >>> champion.load().predict([[3]]).shape  # no run needed to load
        (1,)
    """

    def __init__(
        self,
        *,
        model_name: str,
        stage_or_version: str | int | None = None,
        alias: str | None = None,
        flavor: str | None = None,
        **args: Unpack[ModelDatasetArgs],
    ) -> None:
        """Create a registry dataset.

        Args:
            model_name: Registered model name.
            stage_or_version: Version (or deprecated stage) to load; ``latest`` if
                neither this nor ``alias`` is set. Exclusive with ``alias``.
            alias: Alias to load, and to point at the version a save registers.
            flavor: MLflow flavor module used to load and log (``mlflow.pyfunc``
                when not set).
            **args: ``pyfunc_workflow`` (``python_model`` when not set),
                ``load_args``, ``save_args``, ``metadata``: see
                :class:`~kedroflow.io.model_dataset.ModelDatasetArgs`.
        """
        owner = f"MlflowModelRegistryDataset '{model_name}'"
        if alias and stage_or_version is not None:
            raise MlflowDatasetError(
                f"{owner}: set either `alias` or `stage_or_version`, not both."
            )
        args["pyfunc_workflow"] = args.get("pyfunc_workflow") or "python_model"
        self._take_model_args(
            owner, flavor or "mlflow.pyfunc", args,
            "model_name", "stage_or_version", "alias",
        )  # fmt: skip
        self._model_name = model_name
        self._stage_or_version = stage_or_version
        self._alias = alias

    @property
    def model_uri(self) -> str:
        """The ``models:/`` URI this dataset loads."""
        if self._alias:
            return f"models:/{self._model_name}@{self._alias}"
        return f"models:/{self._model_name}/{self._stage_or_version or 'latest'}"

    def load(self) -> Any:
        flavor = load_flavor(self._flavor_name, ("load_model",), self._label())
        try:
            return flavor.load_model(self.model_uri, **self._load_args)
        except MlflowException as error:
            raise MlflowDatasetError(
                f"Dataset {self._label()} cannot load {self.model_uri}: "
                f"{error.message}. Check `model_name`, `alias` / `stage_or_version` "
                "against the registry (MLflow UI > Models)."
            ) from error

    def save(self, data: Any) -> None:
        if self._stage_or_version is not None:
            raise MlflowDatasetError(
                f"Dataset {self._label()} loads version/stage "
                f"'{self._stage_or_version}' and cannot save: the registry numbers new "
                "versions itself. Use `alias:` (e.g. champion) on entries that save."
            )
        save_args = {**self._save_args, "registered_model_name": self._model_name}
        save_args.setdefault("name", self._model_name)
        info = self._log_model(data, save_args)
        version = None if info is None else info.registered_model_version
        if self._alias and version is not None:
            self._client().set_registered_model_alias(
                self._model_name, self._alias, str(version)
            )

    def _pinned_uri(self) -> str | None:
        """The version this entry loads now, as ``models:/<name>/<version>``."""
        if self._model_uri is not None:
            return self._model_uri
        mlflow_client = self._client()
        if self._alias:
            found = mlflow_client.get_model_version_by_alias(
                self._model_name, self._alias
            )
            return f"models:/{self._model_name}/{found.version}"
        wanted = str(self._stage_or_version or "latest")
        if wanted.isdigit():
            mlflow_client.get_model_version(self._model_name, wanted)
            return f"models:/{self._model_name}/{wanted}"
        versions = list(
            mlflow_client.search_model_versions(f"name = '{self._model_name}'")
        )
        if wanted != "latest":  # a (deprecated) stage: the newest version in it
            versions = [v for v in versions if v.current_stage == wanted]
        newest = max((int(v.version) for v in versions), default=None)
        return None if newest is None else f"models:/{self._model_name}/{newest}"

    def _describe(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "flavor": self._flavor_name,
            "pyfunc_workflow": self._workflow,
            "load_args": self._load_args,
            "save_args": self._save_args,
        }
