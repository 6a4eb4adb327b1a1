"""The ``model_config`` of a Kedro inference pipeline: the pipeline as data.

What :class:`~kedroflow.model.KedroPipelineModel` serves, built from a pipeline and a
catalog: each node's function by import path (``module:qualname``) with its inputs
and outputs, in topological order; the parameters' values; and each artifact (a
persisted inference input) staged as a file written by its own dataset class, with
that dataset's config to reload it. Pure Kedro: no MLflow, no run, no ``mlflow.yml``.
"""

from __future__ import annotations

import importlib
import re
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kedro.io.core import is_parameter

from kedroflow.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable

    from kedro.pipeline import Pipeline

#: Version of the ``model_config`` layout.
CONFIG_VERSION = 1
PICKLED = "__pickle__"  # artifact kept in memory by the run: stored with pickle
STORED_MODEL = "__mlflow_model__"  # artifact already in MLflow: referenced by its URI


@runtime_checkable
class StoredModelSource(Protocol):
    """A dataset whose data is a model stored in MLflow (kedroflow's model datasets)."""

    def stored_model(self) -> dict[str, Any] | None:
        """``{"model_uri", "flavor", "load_args"}`` of the model it loads, or None."""


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


def node_specs(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The nodes of ``pipeline`` as data, in topological order."""
    specs = []
    for node in pipeline.nodes:
        func = node.func
        module = getattr(func, "__module__", None)
        qualname = getattr(func, "__qualname__", "")
        problem = None
        if module in (None, "__main__") or "<" in qualname:
            problem = "it is not importable (a lambda, a local or a __main__ function)"
        else:
            try:
                found = import_function(f"{module}:{qualname}")
            except (ImportError, AttributeError) as exc:
                problem = f"importing {module}:{qualname} fails ({exc})"
            else:
                if (
                    found is not func
                    and getattr(found, "__wrapped__", None) is not func
                ):
                    problem = f"{module}:{qualname} is another object"
        if problem:
            raise ModelError(
                f"Node '{node.name}' of the inference pipeline cannot be stored in "
                f"the model: {problem}. Define its function at the top level of a "
                "module of the project package."
            )
        specs.append(
            {
                "name": node.name,
                "func": f"{module}:{qualname}",
                "inputs": _names(node._inputs),
                "outputs": _names(node._outputs),
            }
        )
    return specs


def _names(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return None if value is None else base_name(value)
    if isinstance(value, dict):
        return {str(k): base_name(v) for k, v in value.items()}
    return [base_name(v) for v in value]


_DROPPED_KEYS = {"credentials", "fs_args", "versioned", "version", "metadata"}


def _dataset_config(catalog: Any, name: str) -> dict[str, Any] | None:
    try:
        config = catalog.to_config()[0].get(name)
    except Exception:  # a catalog that cannot describe itself: store the data
        return None
    return dict(config) if isinstance(config, Mapping) else None


def _stage_artifact(catalog: Any, name: str, folder: Path) -> tuple[dict, Path | None]:
    """Write the artifact ``name`` under ``folder``; return its spec and path.

    A model already stored in MLflow (a kedroflow model dataset) is referenced by its
    ``models:/`` URI: no copy, no path.
    """
    from kedro.io import MemoryDataset
    from kedro.io.core import AbstractDataset

    dataset = catalog[name]
    if isinstance(dataset, StoredModelSource):
        stored = dataset.stored_model()
        if stored is not None:
            return {"name": name, "dataset": STORED_MODEL, **stored}, None
    key = re.sub(r"[^\w.-]", "_", name)
    config = _dataset_config(catalog, name)
    path_key = next((k for k in ("filepath", "path") if config and k in config), None)
    if config is None or path_key is None or isinstance(dataset, MemoryDataset):
        import pickle

        target = folder / f"{key}.pkl"
        with target.open("wb") as handle:
            pickle.dump(catalog.load(name), handle)
        return {"name": name, "dataset": PICKLED}, target
    clean = {k: v for k, v in config.items() if k not in _DROPPED_KEYS | {path_key}}
    source = str(config[path_key])
    target = folder / f"{key}{PurePosixPath(source).suffix}"
    local = (
        Path(source.removeprefix("file://"))
        if "://" not in source.replace("file://", "")
        else None
    )
    if local is not None and local.exists() and not config.get("versioned"):
        if local.is_dir():
            shutil.copytree(local, target)
        else:
            shutil.copyfile(local, target)
    else:  # remote or versioned: re-save the loaded data with the same dataset class
        data = catalog.load(name)
        AbstractDataset.from_config(name, {**clean, path_key: str(target)}).save(data)
    return {"name": name, "dataset": clean, "path_key": path_key}, target


def build_model_config(
    inference: Pipeline,
    catalog: Any,
    *,
    input_name: str,
    output_name: str,
    folder: Path,
    copy_mode: str | Mapping[str, str] = "assign",
) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``model_config`` of ``inference`` and its artifact files (staged in ``folder``).

    Raises:
        ModelError: An inference input is missing from the catalog or cannot be
            loaded; the message names it.
    """
    if output_name not in inference.outputs():
        inference = inference.to_outputs(output_name)
    names = sorted(inference.inputs() - {input_name})
    params = [n for n in names if is_parameter(n)]
    artifacts = [n for n in names if n not in params]
    absent = [n for n in names if n not in catalog]
    if absent:
        raise ModelError(
            f"The inference pipeline needs {absent}, which the catalog does not have. "
            "Declare them in catalog.yml (artifacts must be persisted datasets)."
        )
    config: dict[str, Any] = {
        "kedroflow_config_version": CONFIG_VERSION,
        "input_name": input_name,
        "output_name": output_name,
        "nodes": node_specs(inference),
        "parameters": {n: catalog.load(n) for n in params},
        "artifacts": {},
        "copy_mode": (
            dict(copy_mode)
            if isinstance(copy_mode, Mapping)
            else {n: copy_mode for n in artifacts if copy_mode != "assign"}
        ),
    }
    config["artifacts"], paths = _stage_artifacts(catalog, artifacts, folder)
    return config, paths


def _stage_artifacts(
    catalog: Any, names: list[str], folder: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each artifact's spec and staged file, under a key safe as a file name."""
    specs: dict[str, Any] = {}
    paths: dict[str, str] = {}
    for name in names:
        try:
            spec, path = _stage_artifact(catalog, name, folder)
        except Exception as exc:
            raise ModelError(
                f"Cannot store the inference input '{name}' with the model: {exc}. "
                "It must be loadable now (persist it in catalog.yml if it is a "
                "MemoryDataset released during the run)."
            ) from exc
        key = re.sub(r"[^\w.-]", "_", name)
        specs[key] = spec
        if path is not None:
            paths[key] = str(path)
    return specs, paths
