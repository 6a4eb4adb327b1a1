"""Exceptions raised by kedroflow.

Every error says what went wrong and how to fix it. Errors raised while a dataset
loads or saves subclass Kedro's ``DatasetError`` so callers that already catch it keep
working.
"""

from __future__ import annotations

from click import ClickException
from kedro.io.core import DatasetError


class KedroflowError(Exception):
    """Base class of every kedroflow error."""


class ConfigError(KedroflowError, ClickException):
    """``mlflow.yml`` is invalid. The message lists every problem with its key path.

    A ``ClickException`` too, so that ``kedro run`` shows the message alone: the
    traceback of a configuration problem says nothing the message does not.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        #: One line per problem, in the order they were found.
        self.problems = problems or []


class TrackingError(KedroflowError):
    """MLflow could not be reached or refused a request needed to track the run."""


class PipelineMLError(KedroflowError):
    """A ``PipelineML`` binding of training and inference pipelines is inconsistent."""


class ModelError(KedroflowError):
    """A ``KedroPipelineModel`` cannot be built, logged, loaded or called."""


class MlflowDatasetError(DatasetError, KedroflowError):
    """A kedroflow dataset is misconfigured or has no MLflow run to log to."""
