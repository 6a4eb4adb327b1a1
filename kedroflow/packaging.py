"""Package a Kedro inference pipeline as an MLflow pyfunc model, and log it.

:func:`log_training_model` is what the hook calls at the end of a training run of a
``PipelineML``; :func:`log_pipeline_model` is what ``kedro mlflow modelify`` calls.
Both turn the pipeline into data (:func:`build_model_config`): node functions by
import path, parameters, and each artifact written by its own dataset class, so the
served :class:`~kedroflow.model.KedroPipelineModel` needs neither this module nor a
Kedro run. Requirements are pinned from the running environment, without MLflow's
slow inference subprocess.
"""

from __future__ import annotations

import importlib
import logging
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from kedroflow.errors import ModelError
from kedroflow.model import (
    CONFIG_VERSION,
    PICKLED,
    KedroPipelineModel,
    base_name,
    import_function,
)

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
    params = [n for n in names if n == "parameters" or n.startswith("params:")]
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
        if not name.startswith("params:"):
            continue
        if isinstance(value, scalars) or (
            isinstance(value, list)
            and value
            and all(isinstance(v, scalars) for v in value)
        ):
            found[name[len("params:") :]] = value
    return found


def pip_requirements(objects: list[Any], functions: list[Any]) -> list[str]:
    """Pins (``dist==version``) of kedro, kedroflow, mlflow and what the model uses.

    Read from the running environment, without MLflow's requirement-inference
    subprocess: the distributions of the node functions' modules and of what those
    modules import, and of the artifacts' and input's classes.
    """
    import types
    from importlib.metadata import version

    import kedro
    import mlflow

    __version__ = getattr(sys.modules.get("kedroflow"), "__version__", None) or version(
        "kedroflow"
    )
    tops: set[str] = set()
    for func in functions:
        module = sys.modules.get(getattr(func, "__module__", "") or "")
        if module is None:
            continue
        tops.add(module.__name__.split(".")[0])
        for value in vars(module).values():
            owner = (
                value.__name__
                if isinstance(value, types.ModuleType)
                else getattr(value, "__module__", None)
            )
            if isinstance(owner, str):
                tops.add(owner.split(".")[0])
    for obj in objects:
        tops.add(type(obj).__module__.split(".")[0])
    pins = {
        "mlflow": f"mlflow=={mlflow.__version__}",
        "kedro": f"kedro=={kedro.__version__}",
        "kedroflow": f"kedroflow=={__version__}",
    }
    tops -= set(sys.stdlib_module_names) | {"builtins", "__main__"}
    for dist, dist_version in sorted(set(_distributions(tops).values())):
        key = dist.lower().replace("_", "-")
        if key in pins or key.startswith("mlflow"):
            continue
        pins[key] = f"{dist}=={dist_version}"
    return list(pins.values())


#: Top-level module -> (distribution, version), per process: a module imported once
#: stays the same code however the environment changes afterwards.
_DIST_OF: dict[str, tuple[str, str]] = {}


def _distributions(tops: set[str]) -> dict[str, tuple[str, str]]:
    """Installed distribution and version of each top-level module (skips local code).

    Reads each distribution's small ``top_level.txt``, or its ``RECORD`` when it has
    none, as plain text, and parses ``METADATA`` only for the distributions found:
    ``packages_distributions()`` and ``Distribution.files`` parse every file path and
    every METADATA, which took a third of a training run's model logging.
    """
    from importlib.metadata import distributions

    wanted = set()
    for top in tops:
        path = getattr(sys.modules.get(top), "__file__", None) or ""
        if "site-packages" in path or "dist-packages" in path:
            wanted.add(top)
    missing = wanted - _DIST_OF.keys()
    for dist in distributions() if missing else ():
        text = dist.read_text("top_level.txt")
        if text is not None:
            provided = set(text.split())
        else:
            provided = {
                line.split(",", 1)[0].split("/", 1)[0].removesuffix(".py")
                for line in (dist.read_text("RECORD") or "").splitlines()
            }
        for top in provided & missing:
            _DIST_OF[top] = (dist.metadata["Name"], dist.version)
        missing -= provided
        if not missing:
            break
    return {top: _DIST_OF[top] for top in wanted if top in _DIST_OF}


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
    from mlflow.models import Model, infer_signature

    kwargs = {"name": "model", "signature": "auto", **dict(log_model_kwargs or {})}
    kpm = dict(kpm_kwargs or {})
    outputs = sorted(inference.outputs())
    output_name = (
        output_name
        or kpm.get("output_name")
        or (outputs[0] if len(outputs) == 1 else None)
    )
    if output_name is None:
        raise ModelError(
            f"The inference pipeline has {len(outputs)} free outputs {outputs}: name "
            "the one predict() returns (output_name)."
        )
    alias = kwargs.pop("registered_model_alias", None)
    signature = kwargs.pop("signature")
    example = kwargs.pop("input_example", "auto")
    validate = bool(kwargs.pop("validate_serving_input", False))
    with tempfile.TemporaryDirectory(prefix="kedroflow-model-") as tmp:
        folder = Path(tmp)
        (folder / "artifacts").mkdir()
        config, paths = build_model_config(
            inference, catalog, input_name=input_name, output_name=output_name,
            folder=folder / "artifacts", copy_mode=kpm.get("copy_mode", "assign"),
        )  # fmt: skip
        model = KedroPipelineModel()
        model.setup(config, paths)  # the exact load path of serving, checked now
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
        params = _signature_params(config["parameters"])
        if signature == "auto":
            signature = None
            if sample is not None:
                output = model.predict(None, sample)
                signature = infer_signature(sample, output, params=params or None)
        if example == "auto":
            example = sample
        requirements = kwargs.pop("pip_requirements", None) or pip_requirements(
            [*model._static.values(), sample]
            + [catalog[s["name"]] for s in config["artifacts"].values()],
            [import_function(spec["func"]) for spec in config["nodes"]],
        )
        code_paths = [*_project_code_path(), *(kwargs.pop("code_paths", None) or [])]
        code_file = folder / "kedroflow_model.py"
        code_file.write_text(_MODEL_CODE)
        info = Model.log(
            artifact_path=None,
            flavor=_pyfunc_flavor(),
            run_id=run_id,
            python_model=str(code_file),
            model_config=config,
            artifacts=paths,
            code_paths=code_paths or None,
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            tags={**(tags or {}), "kedroflow.input_name": input_name},
            validate_serving_input=validate,
            **kwargs,
        )
    if alias:
        from mlflow import MlflowClient

        (client or MlflowClient()).set_registered_model_alias(
            kwargs["registered_model_name"], alias, str(info.registered_model_version)
        )
    logger.info(
        "kedroflow: logged model %s (%s)%s", info.model_uri, input_name,
        f", registered as {kwargs.get('registered_model_name')} "
        f"v{info.registered_model_version}" if info.registered_model_version else "",
    )  # fmt: skip
    return info


def _pyfunc_flavor() -> Any:
    """``mlflow.pyfunc`` as ``Model.log``'s flavor, taking ``validate_serving_input``.

    After saving, ``Model.log`` loads the saved model a second time to predict its input
    example unless its ``validate_serving_input`` keyword is false, and hands every
    keyword on to the flavor's ``save_model``, which for pyfunc rejects that one.
    kedroflow has already loaded the model through the same ``setup`` and predicted on
    that very sample before logging, so it passes False by default (the second load
    only costs time); ``log_model_kwargs={"validate_serving_input": True}`` restores it.
    """
    pyfunc = importlib.import_module("mlflow.pyfunc")

    def save_model(validate_serving_input: bool = True, **kwargs: Any) -> Any:
        return pyfunc.save_model(**kwargs)

    return SimpleNamespace(__name__=pyfunc.__name__, save_model=save_model)


def _filters(run_params: Mapping[str, Any]) -> str:
    options = {
        "tags": "--tags", "node_names": "--nodes", "namespaces": "--namespaces",
        "from_nodes": "--from-nodes", "to_nodes": "--to-nodes",
        "from_inputs": "--from-inputs", "to_outputs": "--to-outputs",
    }  # fmt: skip
    used = [
        f"{opt} {','.join(map(str, run_params[k]))}"
        for k, opt in options.items()
        if run_params.get(k)
    ]
    return " ".join(used) or "no filter"


def log_training_model(
    pipeline_names: list[str],
    run_params: Mapping[str, Any],
    pipeline: Any,
    catalog: Any,
    *,
    run_id: str,
    client: MlflowClient | None = None,
) -> None:
    """Log the inference pipeline bound to the training pipeline that just ran.

    Kedro hooks get a plain ``Pipeline``: the ``PipelineML`` bindings are found in the
    project's registry by ``pipeline_names``, those that were run (``run_params``,
    normalised, name the filters in messages). A binding is logged when the run
    executed some of its training nodes and every artifact of its inference pipeline
    was produced by the run or can be loaded from storage; otherwise a WARNING says
    which artifacts are missing and why.
    """
    from kedro.framework.project import pipelines as registry

    from kedroflow.pipeline import find_pipeline_ml

    bindings = find_pipeline_ml(registry, pipeline_names, pipeline)
    produced = pipeline.all_outputs()
    for name, ml in bindings:
        missing = {}
        for artifact in sorted(ml.artifact_names):
            ok = artifact in catalog and catalog.exists(artifact)
            if ok:
                continue
            producers = [n.name for n in ml.nodes if artifact in n.outputs]
            missing[artifact] = (
                "produced by this run but not kept (a MemoryDataset released after "
                "its last use: persist it in catalog.yml)"
                if artifact in produced
                else f"its training node(s) {producers} did not run ({_filters(run_params)})"
                " and it is not in storage from an earlier run"
            )
        if missing:
            logger.warning(
                "kedroflow: no model logged for PipelineML '%s': %s. Run the whole "
                "training pipeline, or log the model later with `kedro mlflow modelify "
                "--pipeline %s --input-name %s`.", name,
                "; ".join(f"'{a}' is {why}" for a, why in missing.items()), name, ml.input_name,
            )  # fmt: skip
            continue
        reused = sorted(ml.artifact_names - produced)
        if reused:
            logger.info(
                "kedroflow: PipelineML '%s': artifacts %s were not produced by this run; "
                "the model uses their stored version.", name, reused,
            )  # fmt: skip
        log_pipeline_model(
            ml.inference, catalog, input_name=ml.input_name,
            output_name=ml.output_name, run_id=run_id, kpm_kwargs=ml.kpm_kwargs,
            log_model_kwargs=ml.log_model_kwargs, tags={"kedroflow.pipeline": name},
            client=client,
        )  # fmt: skip
