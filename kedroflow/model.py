"""``KedroPipelineModel``: the inference pipeline served as an MLflow pyfunc model.

The model is stored as data, never as pickled Kedro objects, so a model logged under
one Kedro 1.x version loads under another (MLflow "models from code"):

* ``model_config`` (in ``MLmodel``): each node's function by import path
  (``module:qualname``) with its inputs and outputs, in a precomputed topological
  order; the parameters; and each artifact's Kedro dataset config;
* ``artifacts/``: every persisted inference input (fitted encoders, models, word
  lists...) as a file written by its own dataset class, reloaded by that class; an
  input that is already a model in MLflow (kedroflow's model datasets) is referenced
  by its ``models:/`` URI instead, and loaded from the tracking store;
* ``code/``: the project's package, so serving does not need the project installed.

Loading needs ``kedro``, the artifacts' dataset libraries and ``kedroflow`` itself
(``kedroflow`` is not on the package index: serve with ``--env-manager local`` from an
environment where it is installed, e.g. ``mlflow models serve -m models:/name@champion
--env-manager local``). ``predict`` calls the node functions directly in order: no
runner, no catalog and no copy of the artifacts per call.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pandas as pd  # noqa: TC002 (MLflow reads the predict type hint)
from mlflow.pyfunc.model import PythonModel

from kedroflow.errors import ModelError
from kedroflow.model_config import (
    CONFIG_VERSION,
    PICKLED,
    STORED_MODEL,
    base_name,
    build_model_config,
    import_function,
)
from kedroflow.model_package import log_package

__all__ = ["CONFIG_VERSION", "PROFILE_ARTIFACT", "KedroPipelineModel", "load_artifact"]

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)

#: The model's artifact holding its training-input profile (kedroflow.monitoring).
PROFILE_ARTIFACT = "kedroflow_profile"


def _step(spec: Mapping[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A closure running one node on the dict of data of a ``predict`` call."""
    try:
        func = import_function(spec["func"])
    except (ImportError, AttributeError) as exc:
        raise ModelError(
            f"Cannot import the function {spec['func']} of node '{spec['name']}': "
            f"{exc}. Serve the model from an environment with the project's "
            "dependencies (its code is in the model's code/ folder)."
        ) from exc
    inputs, outputs = spec["inputs"], spec["outputs"]

    def call(data: dict[str, Any]) -> Any:
        if inputs is None:
            return func()
        if isinstance(inputs, str):
            return func(data[inputs])
        if isinstance(inputs, list):
            return func(*[data[n] for n in inputs])
        return func(**{arg: data[n] for arg, n in inputs.items()})

    def run(data: dict[str, Any]) -> None:
        result = call(data)
        if outputs is None:
            return
        if isinstance(outputs, str):
            data[outputs] = result
        elif isinstance(outputs, list):
            if len(outputs) != len(result):
                raise ModelError(
                    f"Node '{spec['name']}' returned {len(result)} values for its "
                    f"{len(outputs)} outputs {outputs}."
                )
            data.update(zip(outputs, result, strict=True))
        else:
            for key, name in outputs.items():
                data[name] = result[key]

    return run


def load_artifact(spec: Mapping[str, Any], path: str | None) -> Any:
    """Load an artifact file with the Kedro dataset config it was saved with."""
    if spec["dataset"] == STORED_MODEL:
        flavor = importlib.import_module(spec["flavor"])
        return flavor.load_model(spec["model_uri"], **spec.get("load_args", {}))
    if spec["dataset"] == PICKLED:
        import pickle

        with open(str(path), "rb") as handle:
            return pickle.load(handle)  # noqa: S301 (the model's own artifact)
    from kedro.io.core import AbstractDataset

    config = {**spec["dataset"], spec["path_key"]: path}
    return AbstractDataset.from_config(spec["name"], config).load()


class KedroPipelineModel(PythonModel):
    """An MLflow pyfunc model that runs a Kedro inference pipeline on its input.

    Built by kedroflow when a training run of a ``PipelineML`` ends, or by
    ``kedro mlflow modelify``; users load it with ``mlflow.pyfunc.load_model``.
    Hand-written logging builds it from a pipeline and a catalog and logs it with
    :meth:`log_model`, which takes ``mlflow.pyfunc.log_model``'s arguments and writes
    the same models-from-code package as the automatic logging::

        model = KedroPipelineModel(pipeline, catalog, "instances", copy_mode="assign")
        artifacts = model.extract_pipeline_artifacts()
        model.log_model(artifact_path="model", artifacts=artifacts, signature=sig)

    kedro-mlflow's ``mlflow.pyfunc.log_model(python_model=model, artifacts=...)``
    works too, but MLflow pickles any model object it is given (here only its
    ``model_config`` data, never Kedro objects): loading it unpickles.

    Artifacts are loaded once, in ``load_context``; ``predict`` runs the nodes in
    their precomputed order on a per-call dict that shares (never copies) them, so
    concurrent calls are safe as long as nodes do not mutate their inputs (name the
    datasets to copy with ``kpm_kwargs={"copy_mode": {...}}`` otherwise).

    Examples:
        >>> model = KedroPipelineModel()
        >>> model.setup(
        ...     {
        ...         "input_name": "x",
        ...         "output_name": "y",
        ...         "nodes": [
        ...             {
        ...                 "name": "scale",
        ...                 "func": "operator:mul",
        ...                 "inputs": ["x", "params:k"],
        ...                 "outputs": "y",
        ...             }
        ...         ],
        ...         "parameters": {"params:k": 2},
        ...         "artifacts": {},
        ...     },
        ...     {},
        ... )
        >>> model.predict(None, 21), model.predict(None, 21, params={"k": 3})
        (42, 63)
    """

    def __init__(
        self,
        pipeline: Pipeline | None = None,
        catalog: Any = None,
        input_name: str | None = None,
        runner: Any = None,
        copy_mode: str | Mapping[str, str] | None = None,
        *,
        output_name: str | None = None,
    ) -> None:
        """With no argument: the model MLflow loads. With a pipeline: a model to log.

        ``pipeline`` is the inference pipeline (or a ``PipelineML``, whose inference
        part and ``input_name`` are used), ``catalog`` the catalog holding its
        persisted inputs, ``input_name`` the input ``predict`` receives, ``copy_mode``
        how artifacts are passed to the nodes (``"assign"`` by default). kedro-mlflow's
        ``runner`` is refused: the model calls the node functions directly.
        """
        self._config: dict[str, Any] | None = None
        self.profile: dict[str, Any] | None = None
        self._source: tuple[Any, ...] | None = None
        if pipeline is None:
            return
        if runner is not None:
            raise ModelError(
                "KedroPipelineModel takes no runner in kedroflow: the served model "
                "calls the node functions directly. Remove the runner argument."
            )
        inference = getattr(pipeline, "inference", pipeline)
        input_name = input_name or getattr(pipeline, "input_name", None)
        output_name = output_name or getattr(pipeline, "output_name", None)
        outputs = sorted(inference.outputs())
        if input_name is None or input_name not in inference.inputs():
            raise ModelError(
                f"KedroPipelineModel input_name {input_name!r} is not an input of the "
                f"pipeline; its free inputs are {sorted(inference.inputs())}."
            )
        if output_name is None and len(outputs) != 1:
            raise ModelError(
                f"The pipeline has {len(outputs)} free outputs {outputs}: pass "
                "output_name=<the one predict() returns>."
            )
        self._source = (
            inference, catalog, input_name, output_name or outputs[0],
            "assign" if copy_mode is None else copy_mode,
        )  # fmt: skip

    def extract_pipeline_artifacts(
        self, parameters_saving_folder: str | Path | None = None
    ) -> dict[str, str]:
        """Stage the artifacts in a folder (a new temporary one by default).

        Returns the ``artifacts`` to give ``mlflow.pyfunc.log_model``; the model is
        ready to ``predict`` in this process too.
        """
        if self._source is None:
            raise ModelError(
                "This KedroPipelineModel was not built from a pipeline: create it "
                "with KedroPipelineModel(pipeline, catalog, input_name)."
            )
        inference, catalog, input_name, output_name, copy_mode = self._source
        folder = Path(parameters_saving_folder or tempfile.mkdtemp(prefix="kedroflow-"))
        folder.mkdir(parents=True, exist_ok=True)
        config, paths = build_model_config(
            inference, catalog, input_name=input_name, output_name=output_name,
            folder=folder, copy_mode=copy_mode,
        )  # fmt: skip
        self.setup(config, paths)
        return dict(paths)

    def log_model(
        self,
        artifact_path: str | None = None,
        artifacts: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Log the model as the automatic logging does (MLflow models from code).

        Takes ``mlflow.pyfunc.log_model``'s arguments (``name`` or ``artifact_path``,
        ``conda_env``, ``signature``, ``input_example``, ``registered_model_name``...)
        but ``python_model`` and ``model_config``: this model gives them. ``artifacts``
        are what :meth:`extract_pipeline_artifacts` returned (staged now if omitted).
        The model is linked to MLflow's active run, if any. Returns MLflow's
        ``ModelInfo``.
        """
        with tempfile.TemporaryDirectory(prefix="kedroflow-model-") as tmp:
            if artifacts is None:
                artifacts = self.extract_pipeline_artifacts(Path(tmp) / "artifacts")
            config = self._staged_config()
            return log_package(
                Path(tmp), config, artifacts, artifact_path=artifact_path, **kwargs
            )

    def _staged_config(self) -> dict[str, Any]:
        if self._config is None:
            raise ModelError(
                "Call extract_pipeline_artifacts() before logging the model, and pass "
                "what it returns as artifacts= to model.log_model() (or to "
                "mlflow.pyfunc.log_model)."
            )
        return self._config

    def __getstate__(self) -> dict[str, Any]:
        """What MLflow pickles when given the object: the ``model_config`` data only."""
        return {"_config": self._staged_config()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self._config = state["_config"]

    def load_context(self, context: Any) -> None:
        """Import the node functions and load every artifact, once."""
        config = context.model_config or self._config
        if not config:
            raise ModelError(
                "The model has no model_config: it was not saved by kedroflow."
            )
        self.setup(config, context.artifacts)
        profile = (context.artifacts or {}).get(PROFILE_ARTIFACT)
        if profile:
            with open(profile, encoding="utf-8") as handle:
                self.profile = json.load(handle)

    def setup(
        self, config: Mapping[str, Any], artifact_paths: Mapping[str, str]
    ) -> None:
        """Prepare the model from its ``model_config`` and artifact file paths."""
        self._config = dict(config)
        self._input = base_name(config["input_name"])
        self._output = base_name(config["output_name"])
        self._steps = [_step(spec) for spec in config["nodes"]]
        static: dict[str, Any] = {
            base_name(k): v for k, v in (config.get("parameters") or {}).items()
        }
        for key, spec in (config.get("artifacts") or {}).items():
            static[base_name(spec["name"])] = load_artifact(
                spec, artifact_paths.get(key)
            )
        self._static = static
        self._copy = {
            base_name(k): v for k, v in (config.get("copy_mode") or {}).items()
        }

    @property
    def loaded_inputs(self) -> Mapping[str, Any]:
        """The parameters and artifacts ``setup`` loaded, by dataset name (read-only)."""
        return MappingProxyType(self._static)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> Any:
        """Run the inference pipeline on ``model_input``.

        Args:
            context: Unused (MLflow's ``PythonModelContext``).
            model_input: The data of ``input_name``.
            params: Parameter overrides for this call only, by parameter name
                (``{"threshold": 0.8}`` replaces ``params:threshold``).

        Returns:
            The data of the inference pipeline's output.
        """
        data = dict(self._static)
        if params:
            self._override(data, params)
        for name, mode in self._copy.items():
            if name in data:
                value = data[name]
                data[name] = (
                    copy.deepcopy(value)
                    if mode == "deepcopy"
                    else (value.copy() if hasattr(value, "copy") else copy.copy(value))
                )
        data[self._input] = model_input
        for step in self._steps:
            step(data)
        return data[self._output]

    def _override(self, data: dict[str, Any], params: Mapping[str, Any]) -> None:
        unknown = []
        for key, value in params.items():
            if f"params:{key}" in data:
                data[f"params:{key}"] = value
            elif isinstance(data.get("parameters"), dict) and (
                key in data["parameters"]
            ):
                data["parameters"] = {**data["parameters"], key: value}
            else:
                unknown.append(key)
        if unknown:
            known = sorted(k[len("params:") :] for k in data if k.startswith("params:"))
            raise ModelError(
                f"Unknown predict params {sorted(unknown)}: the inference pipeline's "
                f"parameters are {known}."
            )
