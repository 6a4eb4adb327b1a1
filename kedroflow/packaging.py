"""Package a Kedro inference pipeline as an MLflow pyfunc model, and log it.

:func:`log_pipeline_model` is what ``kedro mlflow modelify`` and, at the end of a
training run, :mod:`kedroflow.training` call. The pipeline becomes data
(:func:`kedroflow.model_config.build_model_config`): node functions by import path, parameters, and each
artifact written by its own dataset class, so the served
:class:`~kedroflow.model.KedroPipelineModel` needs neither this module nor a Kedro run.
The steps: stage the artifacts, check the model loads and predicts, infer signature
and example, pin requirements (:mod:`kedroflow.requirements`), log (the models-from-code
package of :mod:`kedroflow.model_package`, as hand-written logging writes it), register.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedroflow.errors import ModelError
from kedroflow.model import PROFILE_ARTIFACT, KedroPipelineModel
from kedroflow.model_config import build_model_config, import_function
from kedroflow.model_package import log_package
from kedroflow.pipeline import LOG_MODEL_DEFAULTS
from kedroflow.requirements import pip_requirements
from kedroflow.secrets import Secrets, secret_parameters

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from kedro.pipeline import Pipeline
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

_SECRET_PARAMETERS = (
    "The inference pipeline consumes the secret parameter(s) {names}: kedroflow does "  # noqa: S105
    "not store them in the model (its model_config and signature defaults would keep "
    "them in clear text for anyone who can read the model). Read the secret where the "
    "model runs instead (e.g. os.environ in the node, or a credentials dataset of the "
    "catalog loaded at predict time), or drop it from the inference pipeline's inputs. "
    "If it is not a secret, rename it or narrow tracking.params.redact in mlflow.yml."
)

_SAMPLE_ROWS = 5
_PARAMS_PREFIX = "params:"  # Kedro's; the model's config keeps Kedro's names


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
    redact: Iterable[str] = (),
    secrets: Secrets | None = None,
) -> Any:
    """Log ``inference`` with its artifacts as a pyfunc model; return MLflow's ``ModelInfo``.

    A parameter of ``inference`` that is secret (its name matches
    ``redact``, ``tracking.params.redact`` for the hook and modelify, or its value is
    one of ``secrets``) is refused with a
    :class:`~kedroflow.errors.ModelError`: the model would keep it in clear text.

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
        model = _checked_model(config, paths, redact, secrets or Secrets())
        signature, example, sample = _signature_and_example(
            model, catalog, input_name, config["parameters"],
            signature=kwargs.pop("signature"),
            example=kwargs.pop("input_example", "auto"),
            profile_to=paths, folder=folder,
        )  # fmt: skip
        requirements = kwargs.pop("pip_requirements", None) or _requirements(
            model, catalog, config, sample
        )
        info = log_package(
            folder, config, paths, run_id=run_id, signature=signature,
            input_example=example, pip_requirements=requirements,
            tags={**(tags or {}), "kedroflow.input_name": input_name}, **kwargs,
        )  # fmt: skip
    if alias:
        _set_alias(client, kwargs["registered_model_name"], alias, info)
    _log_logged(info, input_name, kwargs.get("registered_model_name"))
    return info


def _checked_model(
    config: dict[str, Any],
    paths: dict[str, str],
    redact: Iterable[str],
    secrets: Secrets,
) -> KedroPipelineModel:
    """The model as serving loads it, refused if it would keep a secret in clear."""
    secret = secret_parameters(config["parameters"], redact, secrets)
    if secret:
        raise ModelError(_SECRET_PARAMETERS.format(names=secret))
    model = KedroPipelineModel()
    model.setup(config, paths)  # the exact load path of serving, checked now
    return model


def _requirements(
    model: KedroPipelineModel, catalog: Any, config: dict[str, Any], sample: Any
) -> list[str]:
    """Pins for what the model loads, its input sample and its nodes' code."""
    return pip_requirements(
        [*model.loaded_inputs.values(), sample]
        + [catalog[s["name"]] for s in config["artifacts"].values()],
        [import_function(spec["func"]) for spec in config["nodes"]],
    )


def _log_logged(info: Any, input_name: str, registered_name: str | None) -> None:
    version = info.registered_model_version
    registered = f", registered as {registered_name} v{version}" if version else ""
    logger.info(
        "kedroflow: logged model %s (%s)%s", info.model_uri, input_name, registered
    )


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
    profile_to: dict[str, str],
    folder: Path,
) -> tuple[Any, Any, Any]:
    """Signature, input example and input sample; ``"auto"`` ones from the sample.

    The signature's output comes from predicting on the sample with the model just
    set up, and its params are the parameters overridable at predict time. The input,
    loaded once, also gives the drift profile stored with the model (added to
    ``profile_to``, the model's artifacts).
    """
    from mlflow.models import infer_signature

    sample = None
    try:
        data = catalog.load(input_name)
    except Exception as exc:
        if signature == "auto" or example == "auto":
            logger.warning(
                "kedroflow: no signature, input example nor drift profile for the "
                "model: the input '%s' cannot be loaded after the run (%s). Persist "
                "it, or pass log_model_kwargs signature/input_example.", input_name, exc,
            )  # fmt: skip
    else:
        sample = _sample(data)
        profile_file = _write_profile(data, folder)
        if profile_file:
            profile_to[PROFILE_ARTIFACT] = profile_file
    if signature == "auto":
        signature = None
        if sample is not None:
            params = _signature_params(parameters)
            output = model.predict(None, sample)
            signature = infer_signature(sample, output, params=params or None)
    if example == "auto":
        example = sample
    return signature, example, sample


def _write_profile(data: Any, folder: Path) -> str | None:
    """The training input's profile (kedroflow.monitoring), as a model artifact file."""
    import json

    from kedroflow.monitoring import profile

    try:
        stats = profile(data)
    except Exception as exc:  # drift monitoring is optional: the model still logs
        logger.warning("kedroflow: no drift profile for the model's input: %s", exc)
        return None
    target = folder / f"{PROFILE_ARTIFACT}.json"
    target.write_text(json.dumps(stats), encoding="utf-8")
    return str(target)


def _set_alias(client: MlflowClient | None, name: str, alias: str, info: Any) -> None:
    """Point ``alias`` of registered model ``name`` at the version just registered."""
    if client is None:  # a caller outside kedroflow: MLflow's configured registry
        from mlflow import MlflowClient

        client = MlflowClient()
    client.set_registered_model_alias(name, alias, str(info.registered_model_version))
