"""The MLflow package of a :class:`~kedroflow.model.KedroPipelineModel`: models from code.

One way to write it, whoever logs the model: the end of a training run and ``kedro
mlflow modelify`` (:mod:`kedroflow.packaging`) and hand-written logging
(:meth:`KedroPipelineModel.log_model <kedroflow.model.KedroPipelineModel.log_model>`).
The package holds an entry-point file (``kedroflow_model.py``, which builds an empty
``KedroPipelineModel``), the ``model_config`` in ``MLmodel``, the artifacts and the
project's package under ``code/``: nothing pickled, so loading it executes no pickle
of kedroflow or Kedro objects.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedroflow.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The file MLflow runs to build the model (``python_model`` of models from code).
MODEL_CODE_FILE = "kedroflow_model.py"
_MODEL_CODE = '''"""Entry point of a kedroflow model (MLflow models-from-code); written by kedroflow."""

import mlflow

from kedroflow.model import KedroPipelineModel

mlflow.models.set_model(KedroPipelineModel())
'''
#: ``mlflow.pyfunc.log_model`` arguments kedroflow sets itself.
OWN_ARGUMENTS = ("python_model", "model_config", "loader_module", "data_path")


def project_code_path() -> list[str]:
    """The configured Kedro project's package folder (none outside a project)."""
    from kedro.framework.project import PACKAGE_NAME

    if not PACKAGE_NAME:
        return []
    module = importlib.import_module(PACKAGE_NAME)
    return [str(Path(module.__file__).parent)] if module.__file__ else []


def log_package(
    folder: Path,
    config: Mapping[str, Any],
    artifacts: Mapping[str, str],
    *,
    run_id: str | None = None,
    code_paths: list[str] | None = None,
    validate_serving_input: bool = False,
    **kwargs: Any,
) -> Any:
    """``Model.log`` of the model as MLflow "models from code"; MLflow's ``ModelInfo``.

    ``folder`` receives the entry-point file; ``kwargs`` are ``mlflow.pyfunc.log_model``'s
    (``name``, ``signature``, ``conda_env``, ``registered_model_name``...). Without
    ``run_id`` the model is linked to MLflow's active run, if any, as
    ``mlflow.pyfunc.log_model`` does.

    Raises:
        ModelError: ``kwargs`` set what kedroflow sets (:data:`OWN_ARGUMENTS`).
    """
    from mlflow.models import Model

    own = sorted(set(kwargs) & set(OWN_ARGUMENTS))
    if own:
        raise ModelError(
            f"{own} are set by kedroflow for a KedroPipelineModel (models from code "
            "with its own model_config): remove them from the logging arguments."
        )
    code_file = folder / MODEL_CODE_FILE
    code_file.write_text(_MODEL_CODE)
    code_paths = [*project_code_path(), *(code_paths or [])]
    kwargs.setdefault("artifact_path", None)
    if kwargs["artifact_path"] is None:
        kwargs.setdefault("name", "model")
    return Model.log(
        flavor=PyfuncFlavor(),
        run_id=run_id,
        python_model=str(code_file),
        kedroflow_model_config=dict(config),  # see PyfuncFlavor: not the run's params
        artifacts=dict(artifacts),
        code_paths=code_paths or None,
        validate_serving_input=bool(validate_serving_input),
        **kwargs,
    )


class PyfuncFlavor:
    """``mlflow.pyfunc`` as ``Model.log``'s flavor, taking ``validate_serving_input``.

    After saving, ``Model.log`` loads the saved model a second time to predict its
    input example unless its ``validate_serving_input`` keyword is false, and hands
    every keyword on to the flavor's ``save_model``, which for pyfunc rejects that
    one. kedroflow has already loaded the model through the same ``setup`` and
    predicted on that very sample before logging, so it passes False by default (the
    second load only costs time); ``log_model_kwargs={"validate_serving_input":
    True}`` restores it. ``Model.log`` reads the flavor's name from ``__name__``.

    The ``model_config`` reaches ``save_model`` under another name: ``Model.log`` logs
    a ``model_config`` keyword as the run's parameters (flattened: 17 params
    ``artifacts/model/dataset/...`` for a 5-node pipeline), and the run's parameters
    are the pipeline's, not the model's layout.
    """

    def __init__(self) -> None:
        self.__name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(
        validate_serving_input: bool = True,
        kedroflow_model_config: Any = None,
        **kwargs: Any,
    ) -> Any:
        """``mlflow.pyfunc.save_model`` without ``validate_serving_input``."""
        pyfunc = importlib.import_module("mlflow.pyfunc")
        return pyfunc.save_model(model_config=kedroflow_model_config, **kwargs)
