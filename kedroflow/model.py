"""``KedroPipelineModel``: the inference pipeline served as an MLflow pyfunc model.

The model is stored as data, never as pickled Kedro objects, so a model logged under
one Kedro 1.x version loads under another (MLflow "models from code"):

* ``model_config`` (in ``MLmodel``): each node's function by import path
  (``module:qualname``) with its inputs and outputs, in a precomputed topological
  order; the parameters; and each artifact's Kedro dataset config;
* ``artifacts/``: every persisted inference input (fitted encoders, models, word
  lists...) as a file written by its own dataset class, reloaded by that class;
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
import logging
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pandas as pd  # noqa: TC002 (MLflow reads the predict type hint)
from mlflow.pyfunc.model import PythonModel

from kedroflow.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

#: Version of the ``model_config`` layout (written by kedroflow.packaging).
CONFIG_VERSION = 1
PICKLED = "__pickle__"  # artifact kept in memory by the run: stored with pickle


def base_name(name: str) -> str:
    """A dataset name without its transcoding suffix (``a@pandas`` -> ``a``)."""
    return name.split("@", 1)[0]


def import_function(path: str) -> Callable[..., Any]:
    """Import ``module:qualname``."""
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


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


def load_artifact(spec: Mapping[str, Any], path: str) -> Any:
    """Load an artifact file with the Kedro dataset config it was saved with."""
    if spec["dataset"] == PICKLED:
        import pickle

        with open(path, "rb") as handle:
            return pickle.load(handle)  # noqa: S301 (the model's own artifact)
    from kedro.io.core import AbstractDataset

    config = {**spec["dataset"], spec["path_key"]: path}
    return AbstractDataset.from_config(spec["name"], config).load()


class KedroPipelineModel(PythonModel):
    """An MLflow pyfunc model that runs a Kedro inference pipeline on its input.

    Built by kedroflow when a training run of a ``PipelineML`` ends, or by
    ``kedro mlflow modelify``; users load it with ``mlflow.pyfunc.load_model``.
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

    def load_context(self, context: Any) -> None:
        """Import the node functions and load every artifact, once."""
        self.setup(context.model_config, context.artifacts)

    def setup(
        self, config: Mapping[str, Any], artifact_paths: Mapping[str, str]
    ) -> None:
        """Prepare the model from its ``model_config`` and artifact file paths."""
        self._input = base_name(config["input_name"])
        self._output = base_name(config["output_name"])
        self._steps = [_step(spec) for spec in config["nodes"]]
        static: dict[str, Any] = {
            base_name(k): v for k, v in (config.get("parameters") or {}).items()
        }
        for key, spec in (config.get("artifacts") or {}).items():
            static[base_name(spec["name"])] = load_artifact(spec, artifact_paths[key])
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
