"""Package a Kedro inference pipeline as an MLflow pyfunc model, and log it.

:func:`log_pipeline_model` is what ``kedro mlflow modelify`` and, at the end of a
training run, :mod:`kedroflow.training` call. The pipeline becomes data
(:func:`build_model_config`): node functions by import path, parameters, and each
artifact written by its own dataset class, so the served
:class:`~kedroflow.model.KedroPipelineModel` needs neither this module nor a Kedro run.
The steps: stage the artifacts, check the model loads and predicts, infer signature
and example, pin requirements (:mod:`kedroflow.requirements`), log, register.
"""

from __future__ import annotations

import importlib
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from kedro.io.core import is_parameter

from kedroflow.errors import ModelError
from kedroflow.model import (
    CONFIG_VERSION,
    PICKLED,
    KedroPipelineModel,
    base_name,
    import_function,
)
from kedroflow.pipeline import LOG_MODEL_DEFAULTS
from kedroflow.requirements import pip_requirements

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------------------
# Logging: build the model's data from the inference pipeline and the run's catalog.

_MODEL_CODE = '''"""Entry point of a kedroflow model (MLflow models-from-code); written by kedroflow."""

import mlflow

from kedroflow.model import KedroPipelineModel

mlflow.models.set_model(KedroPipelineModel())
'''
_DROPPED_KEYS = {"credentials", "fs_args", "versioned", "version", "metadata"}
_SAMPLE_ROWS = 5
_PARAMS_PREFIX = "params:"  # Kedro's; the model's config keeps Kedro's names


def _dataset_config(catalog: Any, name: str) -> dict[str, Any] | None:
    try:
        config = catalog.to_config()[0].get(name)
    except Exception:  # a catalog that cannot describe itself: store the data
        return None
    return dict(config) if isinstance(config, Mapping) else None


def _stage_artifact(catalog: Any, name: str, folder: Path) -> tuple[dict, Path]:
    """Write the artifact ``name`` under ``folder``; return its spec and path."""
    from kedro.io import MemoryDataset
    from kedro.io.core import AbstractDataset

    key = re.sub(r"[^\w.-]", "_", name)
    config = _dataset_config(catalog, name)
    path_key = next((k for k in ("filepath", "path") if config and k in config), None)
    if config is None or path_key is None or isinstance(catalog[name], MemoryDataset):
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
    paths: dict[str, str] = {}
    for name in artifacts:
        try:
            spec, path = _stage_artifact(catalog, name, folder)
        except Exception as exc:
            raise ModelError(
                f"Cannot store the inference input '{name}' with the model: {exc}. "
                "It must be loadable now (persist it in catalog.yml if it is a "
                "MemoryDataset released during the run)."
            ) from exc
        key = re.sub(r"[^\w.-]", "_", name)
        config["artifacts"][key] = spec
        paths[key] = str(path)
    return config, paths


def _sample(data: Any, rows: int = _SAMPLE_ROWS) -> Any:
    if hasattr(data, "iloc"):
        return data.iloc[:rows]
    if isinstance(data, list | tuple) or hasattr(data, "shape"):
        return data[:rows]
    return data


def _signature_params(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters that can be overridden at predict time (scalars and lists)."""
    scalars = (str, int, float, bool)
    found = {}
    for name, value in parameters.items():
        if not name.startswith(_PARAMS_PREFIX):
            continue  # `parameters` (the whole dict) cannot be overridden
        if isinstance(value, scalars) or (
            isinstance(value, list)
            and value
            and all(isinstance(v, scalars) for v in value)
        ):
            found[name.removeprefix(_PARAMS_PREFIX)] = value
    return found


def _project_code_path() -> list[str]:
    from kedro.framework.project import PACKAGE_NAME

    if not PACKAGE_NAME:
        return []
    module = importlib.import_module(PACKAGE_NAME)
    return [str(Path(module.__file__).parent)] if module.__file__ else []


def log_pipeline_model(
    inference: Pipeline,
    catalog: Any,
    *,
    input_name: str,
    output_name: str | None = None,
    run_id: str | None = None,
    kpm_kwargs: Mapping[str, Any] | None = None,
    log_model_kwargs: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    client: MlflowClient | None = None,
) -> Any:
    """Log ``inference`` with its artifacts as a pyfunc model; return MLflow's ``ModelInfo``.

    ``log_model_kwargs`` are those of :func:`kedroflow.pipeline_ml_factory`. The model
    is linked to ``run_id`` (when given) and its input sample, read from the catalog's
    ``input_name``, gives the signature and input example. MLflow must be configured
    (tracking URI) by the caller; ``client``, on the same stores, sets the alias.
    """
    kwargs = {**LOG_MODEL_DEFAULTS, **dict(log_model_kwargs or {})}
    kpm = dict(kpm_kwargs or {})
    output_name = _output_name(inference, output_name or kpm.get("output_name"))
    alias = kwargs.pop("registered_model_alias", None)
    with tempfile.TemporaryDirectory(prefix="kedroflow-model-") as tmp:
        folder = Path(tmp)
        (folder / "artifacts").mkdir()
        config, paths = build_model_config(
            inference, catalog, input_name=input_name, output_name=output_name,
            folder=folder / "artifacts", copy_mode=kpm.get("copy_mode", "assign"),
        )  # fmt: skip
        model = KedroPipelineModel()
        model.setup(config, paths)  # the exact load path of serving, checked now
        signature, example, sample = _signature_and_example(
            model, catalog, input_name, config["parameters"],
            signature=kwargs.pop("signature"),
            example=kwargs.pop("input_example", "auto"),
        )  # fmt: skip
        requirements = kwargs.pop("pip_requirements", None) or pip_requirements(
            [*model.loaded_inputs.values(), sample]
            + [catalog[s["name"]] for s in config["artifacts"].values()],
            [import_function(spec["func"]) for spec in config["nodes"]],
        )
        info = _log(
            folder, config, paths, run_id=run_id, signature=signature,
            input_example=example, pip_requirements=requirements,
            tags={**(tags or {}), "kedroflow.input_name": input_name}, **kwargs,
        )  # fmt: skip
    if alias:
        _set_alias(client, kwargs["registered_model_name"], alias, info)
    logger.info(
        "kedroflow: logged model %s (%s)%s", info.model_uri, input_name,
        f", registered as {kwargs.get('registered_model_name')} "
        f"v{info.registered_model_version}" if info.registered_model_version else "",
    )  # fmt: skip
    return info


def _output_name(inference: Pipeline, output_name: str | None) -> str:
    """The output predict() returns: the one given, or the pipeline's only output."""
    outputs = sorted(inference.outputs())
    found = output_name or (outputs[0] if len(outputs) == 1 else None)
    if found is None:
        raise ModelError(
            f"The inference pipeline has {len(outputs)} free outputs {outputs}: name "
            "the one predict() returns (output_name)."
        )
    return found


def _signature_and_example(
    model: KedroPipelineModel,
    catalog: Any,
    input_name: str,
    parameters: Mapping[str, Any],
    *,
    signature: Any,
    example: Any,
) -> tuple[Any, Any, Any]:
    """Signature, input example and input sample; ``"auto"`` ones from the sample.

    The signature's output comes from predicting on the sample with the model just
    set up, and its params are the parameters overridable at predict time.
    """
    from mlflow.models import infer_signature

    sample = None
    if signature == "auto" or example == "auto":
        try:
            sample = _sample(catalog.load(input_name))
        except Exception as exc:
            logger.warning(
                "kedroflow: no signature nor input example for the model: the "
                "input '%s' cannot be loaded after the run (%s). Persist it, or "
                "pass log_model_kwargs signature/input_example.", input_name, exc,
            )  # fmt: skip
    if signature == "auto":
        signature = None
        if sample is not None:
            params = _signature_params(parameters)
            output = model.predict(None, sample)
            signature = infer_signature(sample, output, params=params or None)
    if example == "auto":
        example = sample
    return signature, example, sample


def _log(
    folder: Path,
    config: dict[str, Any],
    paths: dict[str, str],
    *,
    run_id: str | None,
    code_paths: list[str] | None = None,
    validate_serving_input: bool = False,
    **kwargs: Any,
) -> Any:
    """``Model.log`` of the model as MLflow "models from code" (``_MODEL_CODE``)."""
    from mlflow.models import Model

    code_file = folder / "kedroflow_model.py"
    code_file.write_text(_MODEL_CODE)
    code_paths = [*_project_code_path(), *(code_paths or [])]
    return Model.log(
        artifact_path=None,
        flavor=PyfuncFlavor(),
        run_id=run_id,
        python_model=str(code_file),
        model_config=config,
        artifacts=paths,
        code_paths=code_paths or None,
        validate_serving_input=bool(validate_serving_input),
        **kwargs,
    )


def _set_alias(client: MlflowClient | None, name: str, alias: str, info: Any) -> None:
    """Point ``alias`` of registered model ``name`` at the version just registered."""
    if client is None:  # a caller outside kedroflow: MLflow's configured registry
        from mlflow import MlflowClient

        client = MlflowClient()
    client.set_registered_model_alias(name, alias, str(info.registered_model_version))


class PyfuncFlavor:
    """``mlflow.pyfunc`` as ``Model.log``'s flavor, taking ``validate_serving_input``.

    After saving, ``Model.log`` loads the saved model a second time to predict its
    input example unless its ``validate_serving_input`` keyword is false, and hands
    every keyword on to the flavor's ``save_model``, which for pyfunc rejects that
    one. kedroflow has already loaded the model through the same ``setup`` and
    predicted on that very sample before logging, so it passes False by default (the
    second load only costs time); ``log_model_kwargs={"validate_serving_input":
    True}`` restores it. ``Model.log`` reads the flavor's name from ``__name__``.
    """

    def __init__(self) -> None:
        self.__name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(validate_serving_input: bool = True, **kwargs: Any) -> Any:
        """``mlflow.pyfunc.save_model`` without ``validate_serving_input``."""
        pyfunc = importlib.import_module("mlflow.pyfunc")
        return pyfunc.save_model(**kwargs)
