"""``MlflowModelTrackingDataset``: log a model to the run, load it back from any run.

``<flavor>.log_model`` only links a model to the thread's *active* run, which
ThreadRunner threads and ParallelRunner workers do not have. The datasets therefore
create the MLflow 3 ``LoggedModel`` themselves with ``source_run_id`` set to the run
of the ``kedro run``, have the flavor fill it (``model_id=``), and record it as an
output of that run: the model is linked to the one run whatever the runner.

Model datasets say which stored model they load (:meth:`stored_model`), so that a
pipeline model built by ``pipeline_ml_factory`` references it by URI, without a copy.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

import mlflow
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException
from typing_extensions import Unpack  # typing.Unpack needs Python 3.11

from kedroflow.errors import MlflowDatasetError
from kedroflow.io._base import (
    MlflowBaseDataset,
    check_workflow,
    load_flavor,
    mapping_arg,
    model_args,
)

logger = logging.getLogger(__name__)


class ModelDatasetArgs(TypedDict, total=False):
    """The ``catalog.yml`` keys both model datasets take besides their own.

    Keys:
        pyfunc_workflow: For ``mlflow.pyfunc``: ``python_model`` or ``loader_module``.
        load_args: Passed to ``<flavor>.load_model`` (``MlflowModelTrackingDataset``
            also takes ``model_uri``: load that model instead).
        save_args: Passed to ``<flavor>.log_model`` (``name``,
            ``registered_model_name``, ``signature``, ``pip_requirements``...).
        metadata: Free-form metadata, ignored by kedroflow.
    """

    pyfunc_workflow: str | None
    load_args: dict[str, Any] | None
    save_args: dict[str, Any] | None
    metadata: dict[str, Any] | None


class _LoggingModelDataset(MlflowBaseDataset[Any, Any]):
    """Logging a model linked to the current run, shared by tracking and registry."""

    _flavor_name: str
    _workflow: str | None
    _load_args: dict[str, Any]
    _save_args: dict[str, Any]
    _model_uri: str | None = None  # the model this instance logged last

    def _take_model_args(
        self, owner: str, flavor: str, args: ModelDatasetArgs, *own: str
    ) -> None:
        """The arguments both model datasets take, checked (errors name ``owner``).

        ``own``: the dataset's own keys, listed in the error for an unknown key.
        """
        unknown = sorted(set(args) - ModelDatasetArgs.__optional_keys__)
        if unknown:
            known = sorted({"flavor", *own, *ModelDatasetArgs.__optional_keys__})
            raise MlflowDatasetError(
                f"{owner}: unknown argument(s) {', '.join(unknown)}. Fix the "
                f"catalog entry: it takes {', '.join(known)}."
            )
        load_flavor(flavor, ("log_model", "load_model"), owner)
        self._flavor_name = flavor
        self._workflow = check_workflow(flavor, args.get("pyfunc_workflow"), owner)
        kind = type(self).__name__
        self._load_args = mapping_arg(args.get("load_args"), "load_args", kind)
        self._save_args = mapping_arg(args.get("save_args"), "save_args", kind)
        self.metadata = args.get("metadata")

    def _init_config(self) -> dict[str, Any]:
        """The catalog entry of this dataset, as ``catalog.to_config()`` gives it.

        Kedro records the constructor's arguments by name, so ``**args`` arrives as
        one ``args`` key: the entry has those keys at its top level.
        """
        config: dict[str, Any] = super()._init_config()
        config.update(config.pop("args", None) or {})
        return config

    def _logged_name(self, save_args: dict[str, Any]) -> str:
        """The LoggedModel name: ``name`` (or MLflow 2's ``artifact_path``), else the entry."""
        name = save_args.get("name") or save_args.get("artifact_path")
        return str(name or self._catalog_name or "model")

    def stored_model(self) -> dict[str, Any] | None:
        """The stored model this dataset loads, for a model that references it.

        ``{"model_uri", "flavor", "load_args"}``, with a URI that keeps pointing at
        the same model (``models:/m-...`` or ``models:/<name>/<version>``), or None
        when there is no such model yet.
        """
        uri = self._pinned_uri()
        if uri is None:
            return None
        load_args = {k: v for k, v in self._load_args.items() if k != "model_uri"}
        return {"model_uri": uri, "flavor": self._flavor_name, "load_args": load_args}

    def _pinned_uri(self) -> str | None:
        raise NotImplementedError

    def _exists(self) -> bool:
        try:
            return self._pinned_uri() is not None
        except (MlflowException, MlflowDatasetError):
            return False

    def _log_model(
        self, model: Any, save_args: dict[str, Any], run_id: str | None = None
    ) -> Any:
        """Log ``model`` as a LoggedModel of the current run; return its ModelInfo.

        None when tracking is off (``KEDROFLOW_DISABLE_TRACKING``): nothing is logged.
        """
        if self._logging_off():
            logger.debug("Tracking is off: %s does not log its model", self._label())
            return None
        run_id = self._run_for("log its model", run_id)
        flavor = load_flavor(self._flavor_name, ("log_model",), self._label())
        name = self._logged_name(save_args)
        save_args = {
            k: v for k, v in save_args.items() if k not in ("name", "artifact_path")
        }
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
        self._model_uri = f"models:/{logged.model_id}"
        return info


class MlflowModelTrackingDataset(_LoggingModelDataset):
    """``MlflowModelTrackingDataset`` logs a model with any MLflow flavor to the run.

    The model becomes an MLflow 3 LoggedModel linked to the run of the ``kedro run``
    (its id is in :attr:`model_id`), whatever the runner. ``save_args`` go to
    ``<flavor>.log_model`` (``name`` defaults to the catalog entry name). Loading
    returns ``load_args.model_uri`` if set, else the model this entry logged in the
    run ``run_id`` (null: the current run), found by its name.

    Examples:
        ```yaml
        regressor:
          type: kedroflow.MlflowModelTrackingDataset
          flavor: mlflow.sklearn
          run_id: ${runtime_params:mlflow_run_id,null}   # load from another run
          save_args:
            registered_model_name: spaceflights-regressor   # optional

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
        >>> run = mlflow.start_run()
        >>> dataset = MlflowModelTrackingDataset(
        ...     flavor="mlflow.sklearn", save_args={"pip_requirements": ["scikit-learn"]}
        ... )
        >>> dataset.save(DummyClassifier().fit([[0], [1]], [0, 1]))
        >>> mlflow.get_logged_model(dataset.model_id).source_run_id == run.info.run_id
        True
        >>> mlflow.end_run()
        >>> MlflowModelTrackingDataset(
        ...     flavor="mlflow.sklearn", run_id=run.info.run_id
        ... ).load().predict([[3]]).shape
        (1,)
    """

    _takes_run_id = True

    def __init__(
        self,
        *,
        flavor: str,
        run_id: str | None = None,
        **args: Unpack[ModelDatasetArgs],
    ) -> None:
        """Create a model dataset logging to the current run.

        Args:
            flavor: MLflow flavor module, e.g. ``mlflow.sklearn``.
            run_id: Load the model this entry logged in that run; None (null) for
                the current run. A run cannot save into another run.
            **args: ``pyfunc_workflow``, ``load_args`` (``model_uri`` to load a
                given model), ``save_args``, ``metadata``: see
                :class:`ModelDatasetArgs`.
        """
        self._take_model_args("MlflowModelTrackingDataset", flavor, args, "run_id")
        self._run_id = run_id
        self._model_id: str | None = None

    @property
    def model_id(self) -> str | None:
        """Id of the LoggedModel saved last by this dataset (``m-...``)."""
        return self._model_id

    def load(self) -> Any:
        uri = self._pinned_uri()
        if uri is None:
            run_id = self._run_id or self._current_run_id()
            where = (
                f"run {run_id} has no model '{self._logged_name(self._save_args)}' "
                "logged by it"
                if run_id
                else "no MLflow run is open"
            )
            raise MlflowDatasetError(
                f"Dataset {self._label()} has no model to load: {where}. Set `run_id:` "
                "to the run that trained it (e.g. run_id: "
                "${runtime_params:mlflow_run_id,null} and --params mlflow_run_id=...), "
                "set `load_args.model_uri` (models:/<name>@<alias>, models:/m-<id>), "
                "or run the node that saves it first."
            )
        load_args = {k: v for k, v in self._load_args.items() if k != "model_uri"}
        flavor = load_flavor(self._flavor_name, ("load_model",), self._label())
        return flavor.load_model(uri, **load_args)

    def save(self, data: Any) -> None:
        if "model_uri" in self._load_args:
            raise MlflowDatasetError(
                f"Dataset {self._label()} loads the fixed model "
                f"'{self._load_args['model_uri']}' and cannot save: remove "
                "`load_args.model_uri` to log models with it."
            )
        # tracking off: nothing is logged, so no run is written to either
        current = None if self._logging_off() else self._current_run_id()
        if self._run_id and current and self._run_id != current:
            raise MlflowDatasetError(
                f"Dataset {self._label()} loads its model from MLflow run "
                f"'{self._run_id}' (`run_id:`) and cannot log a new one there from run "
                f"'{current}': an earlier run's models are its record. Run only the "
                "nodes that load it (e.g. --from-nodes=...), or leave run_id null "
                "(drop --params mlflow_run_id) to train and log a new model."
            )
        info = self._log_model(data, self._save_args, self._run_id)
        if info is not None:
            self._model_id = info.model_id

    def _pinned_uri(self) -> str | None:
        if "model_uri" in self._load_args:
            return str(self._load_args["model_uri"])
        if self._model_uri is not None:
            return self._model_uri
        run_id = self._run_id or self._current_run_id()
        if run_id is None:
            return None
        model_id = self._logged_in(run_id)
        return f"models:/{model_id}" if model_id else None

    def _logged_in(self, run_id: str) -> str | None:
        """The id of the newest ready model of this entry's name that ``run_id`` logged.

        Searched by source run (MLflow 3.0 lists no outputs for a model logged in the
        thread's active run).
        """
        mlflow_client = self._client()
        try:
            experiment_id = mlflow_client.get_run(run_id).info.experiment_id
            found = mlflow_client.search_logged_models(
                [experiment_id], filter_string=f"source_run_id = '{run_id}'"
            )
        except MlflowException as error:
            raise self._mlflow_error(error, "load its model", run_id) from error
        name = self._logged_name(self._save_args)
        ready = [
            m for m in found if m.name == name and m.status == LoggedModelStatus.READY
        ]
        newest = max(ready, key=lambda m: m.creation_timestamp, default=None)
        return newest.model_id if newest is not None else None

    def _describe(self) -> dict[str, Any]:
        return {
            "flavor": self._flavor_name,
            "run_id": self._run_id,
            "pyfunc_workflow": self._workflow,
            "load_args": self._load_args,
            "save_args": self._save_args,
            "model_id": self._model_id,
        }
