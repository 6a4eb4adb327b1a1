"""What every kedroflow dataset shares: its catalog name, the run it logs to, errors.

A dataset never asks the hook for anything: the run comes from
:func:`kedroflow.tracking.current_run` (which works in ThreadRunner threads and
ParallelRunner workers) with the stores it lives in, and the hook only gives each dataset its catalog entry name
through :meth:`MlflowBaseDataset.bind_name` before the first node runs.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from kedro.io import AbstractDataset

from kedroflow import tracking
from kedroflow.errors import MlflowDatasetError

if TYPE_CHECKING:
    from types import ModuleType

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from kedroflow.outbox import Outbox

logger = logging.getLogger(__name__)

_DI = TypeVar("_DI")
_DO = TypeVar("_DO")


class MlflowBaseDataset(AbstractDataset[_DI, _DO]):
    """Base of the datasets that read from or log to an MLflow run.

    Subclasses call :meth:`_run_for` to find the run to use and :meth:`_mlflow_error`
    to turn MLflow's errors into a ``DatasetError`` that names the catalog entry.
    """

    _catalog_name: str | None = None
    #: Whether the dataset has a ``run_id`` argument (named in "no run" errors).
    _takes_run_id: ClassVar[bool] = False

    def bind_name(self, name: str) -> None:
        """Give the dataset its catalog entry name (the default metric key or prefix).

        The hook calls it for every kedroflow entry of the pipeline, including
        entries created by dataset factory patterns, before the first node runs.
        """
        self._catalog_name = name

    @property
    def catalog_name(self) -> str | None:
        """The catalog entry name, once bound by the hook or :meth:`bind_name`."""
        return self._catalog_name

    def _label(self) -> str:
        kind = type(self).__name__
        return f"'{self._catalog_name}' ({kind})" if self._catalog_name else kind

    @staticmethod
    def _logging_off() -> bool:
        """True while the ``kedro run`` in progress has tracking switched off."""
        return tracking.tracking_disabled()

    @staticmethod
    def _current_run_id() -> str | None:
        run = tracking.current_run()
        return run.run_id if run is not None else None

    @staticmethod
    def _outbox(run_id: str) -> Outbox | None:
        """The outbox of ``run_id`` when it is the ``kedro run``'s own run, else None.

        Through it, metrics are buffered and artifacts uploaded in the background;
        without it (another run, a notebook's run) they are sent at once.
        """
        run = tracking.current_run()
        return run.outbox if run is not None and run.run_id == run_id else None

    @staticmethod
    def _client() -> MlflowClient:
        """A client on the current run's stores (MLflow's own outside a kedro run)."""
        return tracking.current_stores().client

    def _run_for(self, action: str, run_id: str | None = None) -> str:
        """The run to ``action`` with: ``run_id`` if given, else the current run."""
        found = run_id or self._current_run_id()
        if found is None:
            existing = (
                ", or set `run_id:` in its catalog entry to use an existing run"
                if self._takes_run_id
                else ""
            )
            raise MlflowDatasetError(
                f"Dataset {self._label()} cannot {action}: no MLflow run is open. Run it "
                "inside `kedro run` with kedroflow's hook enabled (a run is opened for "
                "you), or call `mlflow.start_run()` first in a notebook or script"
                f"{existing}."
            )
        return found

    def _mlflow_error(
        self, error: MlflowException, action: str, run_id: str | None
    ) -> MlflowDatasetError:
        """A DatasetError naming the entry, the run and the fix for ``error``."""
        code = getattr(error, "error_code", "")
        if run_id and code == "RESOURCE_DOES_NOT_EXIST" and "run" in str(error).lower():
            return MlflowDatasetError(
                f"Dataset {self._label()} cannot {action}: MLflow run '{run_id}' does "
                f"not exist in the tracking store {tracking.current_stores().display_uri}. "
                "Check `run_id:` in its catalog entry (copy the id from the MLflow UI) "
                "and that mlflow.yml points at the store holding that run."
            )
        return MlflowDatasetError(
            f"Dataset {self._label()} cannot {action} (run {run_id}): {error.message}"
        )


def mapping_arg(value: Any, name: str, owner: str) -> dict[str, Any]:
    """``value`` (``load_args``, ``save_args``...) as a dict, or a clear error.

    A null option means "not set", as a null argument does: catalogs write optional
    values as ``${runtime_params:name,null}``, which gives None when not passed.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MlflowDatasetError(
            f"{owner}: `{name}` must be a mapping of option: value, got "
            f"{type(value).__name__} {value!r}."
        )
    return {key: item for key, item in value.items() if item is not None}


_WORKFLOWS = ("python_model", "loader_module")


def load_flavor(flavor: str, needs: tuple[str, ...], owner: str) -> ModuleType:
    """The flavor module ``flavor``, checked to have the functions ``needs``."""
    try:
        module = importlib.import_module(flavor)
    except ImportError as error:
        raise MlflowDatasetError(
            f"{owner}: flavor '{flavor}' cannot be imported ({error}). Use an MLflow "
            "flavor module such as mlflow.sklearn or mlflow.pyfunc, and install its "
            "library."
        ) from error
    missing = [name for name in needs if not hasattr(module, name)]
    if missing:
        raise MlflowDatasetError(
            f"{owner}: '{flavor}' is not an MLflow flavor (no {', '.join(missing)}). "
            "Use e.g. mlflow.sklearn, mlflow.pyfunc, mlflow.pytorch."
        )
    return module


def check_workflow(flavor: str, workflow: str | None, owner: str) -> str | None:
    """The validated ``pyfunc_workflow`` (None for flavors other than pyfunc)."""
    if flavor != "mlflow.pyfunc":
        return None
    if workflow not in _WORKFLOWS:
        raise MlflowDatasetError(
            f"{owner}: flavor mlflow.pyfunc needs `pyfunc_workflow: python_model` (the "
            "node returns a PythonModel) or `pyfunc_workflow: loader_module`; got "
            f"{workflow!r}."
        )
    return workflow


def model_args(
    model: Any, workflow: str | None, save_args: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments for ``log_model``/``save_model``."""
    kwargs = dict(save_args)
    if workflow is not None:
        kwargs[workflow] = model
        return (), kwargs
    return (model,), kwargs
