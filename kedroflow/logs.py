"""kedroflow's log lines reach the console wherever Kedro's own INFO lines do.

Kedro's logging configurations (its default, the starters' ``conf/logging.yml``) give a
level, and sometimes handlers, to the ``kedro`` logger and the project's package only.
Any other logger keeps the root's WARNING level, which would hide kedroflow's key lines
(the run and its store, the model logged and registered). Unless ``logging.yml``
configures a ``kedroflow`` logger itself, kedroflow's logger therefore takes the
``kedro`` logger's level, and its records also go to the ``kedro`` logger's handlers
when that logger does not propagate to the root.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

LOGGER = "kedroflow"


class KedroHandlers(logging.Handler):
    """Hands kedroflow's records to the ``kedro`` logger's handlers if it does not
    propagate: those handlers are then the only ones that show Kedro's lines."""

    def emit(self, record: logging.LogRecord) -> None:
        kedro = logging.getLogger("kedro")
        if kedro.propagate:
            return  # the root's handlers show the record, as they show Kedro's
        for handler in kedro.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def follow_kedro_logging(logging_config: Mapping[str, Any]) -> None:
    """Give the ``kedroflow`` logger the ``kedro`` logger's level and handlers.

    ``logging_config`` is the configuration Kedro applied (``kedro.framework.project.
    LOGGING``); a ``kedroflow`` entry in its ``loggers`` is left as the user set it.
    """
    if LOGGER in (logging_config.get("loggers") or {}):
        return
    ours = logging.getLogger(LOGGER)
    ours.setLevel(logging.getLogger("kedro").getEffectiveLevel())
    if not any(isinstance(handler, KedroHandlers) for handler in ours.handlers):
        ours.addHandler(KedroHandlers())


@contextmanager
def quiet_config_reads() -> Iterator[None]:
    """kedroflow's reads of the project's configuration add no warning of Kedro's.

    Kedro 1.0's config loader registers a resolver through OmegaConf's deprecated API
    on every read; Kedro's own reads show that warning already, and any import that
    resets Python's warning registry (MLflow's, a plugin's) would show it again.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"register_new_resolver\(\) is deprecated"
        )
        yield
