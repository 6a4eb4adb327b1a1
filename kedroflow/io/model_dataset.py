"""Model datasets: log a model to the run, or use the model registry.

``<flavor>.log_model`` only links a model to the thread's *active* run, which
ThreadRunner threads and ParallelRunner workers do not have. The datasets therefore
create the MLflow 3 ``LoggedModel`` themselves with ``source_run_id`` set to the run
of the ``kedro run``, have the flavor fill it (``model_id=``), and record it as an
output of that run: the model is linked to the one run whatever the runner.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException

from kedroflow.errors import MlflowDatasetError
from kedroflow.io._base import (
    MlflowBaseDataset,
    check_workflow,
    load_flavor,
    mapping_arg,
    model_args,
)

logger = logging.getLogger(__name__)


class _LoggingModelDataset(MlflowBaseDataset[Any, Any]):
    """Logging a model linked to the current run, shared by tracking and registry."""

    _flavor_name: str
    _workflow: str | None

    def _log_model(self, model: Any, save_args: dict[str, Any]) -> Any:
        """Log ``model`` as a LoggedModel of the current run; return its ModelInfo."""
        run_id = self._run_for("log its model")
        flavor = load_flavor(self._flavor_name, ("log_model",), self._label())
        save_args = dict(save_args)
        if "artifact_path" in save_args:  # MLflow 2 name of `name`
            save_args.setdefault("name", save_args.pop("artifact_path"))
        name = save_args.pop("name", None) or self._catalog_name or "model"
        mlflow_client = self._client()
        try:
            run = mlflow_client.get_run(run_id)
        except MlflowException as error:
            raise self._mlflow_error(error, "log its model", run_id) from error
        logged = mlflow.initialize_logged_model(
            name=name,
            source_run_id=run_id,
            params=dict(run.data.params),
            experiment_id=run.info.experiment_id,
        )
        args, kwargs = model_args(model, self._workflow, save_args)
        try:
            info = flavor.log_model(
                *args, name=name, model_id=logged.model_id, **kwargs
            )
        except BaseException:
            mlflow_client.finalize_logged_model(
                logged.model_id, LoggedModelStatus.FAILED
            )
            raise
        step = int(save_args.get("step", 0))
        active = mlflow.active_run()
        if active is None or active.info.run_id != run_id:  # else log_model did it
            mlflow_client.log_outputs(
                run_id, models=[LoggedModelOutput(logged.model_id, step)]
            )
        logger.info(
            "kedroflow: %s logged model %s to run %s",
            self._label(),
            logged.model_id,
            run_id,
        )
        return info


class MlflowModelTrackingDataset(_LoggingModelDataset):
    """``MlflowModelTrackingDataset`` logs a model with any MLflow flavor to the run.

    The model becomes an MLflow 3 LoggedModel linked to the run of the ``kedro run``
    (its id is in :attr:`model_id`), whatever the runner. ``save_args`` go to
    ``<flavor>.log_model`` (``name`` defaults to the catalog entry name). Loading
    returns the model saved last by this dataset, or ``load_args.model_uri``.

    Examples:
        ```yaml
        classifier:
          type: kedroflow.MlflowModelTrackingDataset
          flavor: mlflow.sklearn
          save_args:
            registered_model_name: iris-classifier   # optional
            pip_requirements: [scikit-learn]

        served_model:                                # load a given model
          type: kedroflow.MlflowModelTrackingDataset
          flavor: mlflow.pyfunc
          pyfunc_workflow: python_model
          load_args:
            model_uri: models:/iris-classifier@champion
        ```

        >>> import mlflow
        >>> from sklearn.dummy import DummyClassifier
        >>> from kedroflow.io import MlflowModelTrackingDataset
        >>> mlflow.set_tracking_uri(tracking_uri)
        >>> experiment = mlflow.create_experiment("doc", (tmp_path / "art").as_uri())
        >>> run = mlflow.start_run(experiment_id=experiment)
        >>> dataset = MlflowModelTrackingDataset(
        ...     flavor="mlflow.sklearn", save_args={"pip_requirements": ["scikit-learn"]}
        ... )
        >>> dataset.save(DummyClassifier().fit([[0], [1]], [0, 1]))
        >>> mlflow.get_logged_model(dataset.model_id).source_run_id == run.info.run_id
        True
        >>> dataset.load().predict([[3]]).shape
        (1,)
        >>> mlflow.end_run()
    """

    def __init__(
        self,
        *,
        flavor: str,
        pyfunc_workflow: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create a model dataset logging to the current run.

        Args:
            flavor: MLflow flavor module, e.g. ``mlflow.sklearn``.
            pyfunc_workflow: For ``mlflow.pyfunc``: ``python_model`` or
                ``loader_module``.
            load_args: ``model_uri`` to load a given model; the rest goes to
                ``<flavor>.load_model``.
            save_args: Passed to ``<flavor>.log_model`` (``name``,
                ``registered_model_name``, ``signature``, ``pip_requirements``...).
            metadata: Free-form metadata, ignored by kedroflow.
        """
        owner = "MlflowModelTrackingDataset"
        load_flavor(flavor, ("log_model", "load_model"), owner)
        self._flavor_name = flavor
        self._workflow = check_workflow(flavor, pyfunc_workflow, owner)
        self._load_args = mapping_arg(load_args, "load_args", type(self).__name__)
        self._save_args = mapping_arg(save_args, "save_args", type(self).__name__)
        self._model_uri: str | None = None
        self._model_id: str | None = None
        self.metadata = metadata

    @property
    def model_id(self) -> str | None:
        """Id of the LoggedModel saved last by this dataset (``m-...``)."""
        return self._model_id

    def load(self) -> Any:
        load_args = dict(self._load_args)
        uri = load_args.pop("model_uri", None) or self._model_uri
        if uri is None:
            raise MlflowDatasetError(
                f"Dataset {self._label()} has no model to load: set "
                "`load_args.model_uri` (e.g. models:/<name>@<alias> or models:/m-<id>) "
                "or save a model with it first."
            )
        flavor = load_flavor(self._flavor_name, ("load_model",), self._label())
        return flavor.load_model(uri, **load_args)

    def save(self, data: Any) -> None:
        if "model_uri" in self._load_args:
            raise MlflowDatasetError(
                f"Dataset {self._label()} loads the fixed model "
                f"'{self._load_args['model_uri']}' and cannot save: remove "
                "`load_args.model_uri` to log models with it."
            )
        if self._logging_off():
            logger.debug("Tracking is off: %s does not log its model", self._label())
            return
        info = self._log_model(data, self._save_args)
        self._model_uri, self._model_id = info.model_uri, info.model_id

    def _describe(self) -> dict[str, Any]:
        return {
            "flavor": self._flavor_name,
            "pyfunc_workflow": self._workflow,
            "load_args": self._load_args,
            "save_args": self._save_args,
            "model_id": self._model_id,
        }


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
        >>> mlflow.set_tracking_uri(tracking_uri)
        >>> experiment = mlflow.create_experiment("doc", (tmp_path / "art").as_uri())
        >>> run = mlflow.start_run(experiment_id=experiment)
        >>> dataset = MlflowModelRegistryDataset(
        ...     model_name="clf",
        ...     alias="champion",
        ...     flavor="mlflow.sklearn",
        ...     save_args={"pip_requirements": ["scikit-learn"]},
        ... )
        >>> dataset.save(DummyClassifier().fit([[0], [1]], [0, 1]))
        >>> client = mlflow.MlflowClient()
        >>> int(client.get_model_version_by_alias("clf", "champion").version)
        1
        >>> dataset.load().predict([[3]]).shape
        (1,)
        >>> mlflow.end_run()
    """

    def __init__(
        self,
        *,
        model_name: str,
        stage_or_version: str | int | None = None,
        alias: str | None = None,
        flavor: str = "mlflow.pyfunc",
        pyfunc_workflow: str | None = "python_model",
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create a registry dataset.

        Args:
            model_name: Registered model name.
            stage_or_version: Version (or deprecated stage) to load; ``latest`` if
                neither this nor ``alias`` is set. Exclusive with ``alias``.
            alias: Alias to load, and to point at the version a save registers.
            flavor: MLflow flavor module used to load and log.
            pyfunc_workflow: For ``mlflow.pyfunc``: ``python_model`` or
                ``loader_module``.
            load_args: Passed to ``<flavor>.load_model``.
            save_args: Passed to ``<flavor>.log_model``.
            metadata: Free-form metadata, ignored by kedroflow.
        """
        owner = f"MlflowModelRegistryDataset '{model_name}'"
        if alias and stage_or_version is not None:
            raise MlflowDatasetError(
                f"{owner}: set either `alias` or `stage_or_version`, not both."
            )
        load_flavor(flavor, ("log_model", "load_model"), owner)
        self._model_name = model_name
        self._stage_or_version = stage_or_version
        self._alias = alias
        self._flavor_name = flavor
        self._workflow = check_workflow(flavor, pyfunc_workflow, owner)
        self._load_args = mapping_arg(load_args, "load_args", type(self).__name__)
        self._save_args = mapping_arg(save_args, "save_args", type(self).__name__)
        self.metadata = metadata

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
        if self._logging_off():
            logger.debug("Tracking is off: %s does not register", self._label())
            return
        save_args = {**self._save_args, "registered_model_name": self._model_name}
        save_args.setdefault("name", self._model_name)
        info = self._log_model(data, save_args)
        version = info.registered_model_version
        if self._alias and version is not None:
            self._client().set_registered_model_alias(
                self._model_name, self._alias, str(version)
            )

    def _describe(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "flavor": self._flavor_name,
            "pyfunc_workflow": self._workflow,
            "load_args": self._load_args,
            "save_args": self._save_args,
        }
