"""Autologging and system metrics from ``mlflow.yml``, for the time of one run.

``tracking.autolog: {sklearn: {log_models: false}, openai: {}}`` turns each flavor's
autologging on when the run opens and off when it closes. Nodes see the kedro run as
MLflow's active run (:mod:`kedroflow.fluent`), so what autologging records lands in it,
never in a stray run. ``tracking.system_metrics: {enabled: true, sampling_interval: 10}``
starts ONE monitor for the run, whatever the node count, stopped with the run.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kedroflow.errors import ConfigError

if TYPE_CHECKING:
    from kedroflow.config import TrackingConfig

logger = logging.getLogger(__name__)

#: ``tracking.autolog`` keys that mean MLflow's all-flavors ``mlflow.autolog``.
ALL_FLAVORS = ("all", "mlflow")


def _autolog_function(flavor: str) -> Any:
    """``mlflow.<flavor>.autolog``, or ONE error naming the key and the choices."""
    import mlflow

    if flavor in ALL_FLAVORS:
        return mlflow.autolog
    try:
        module = importlib.import_module(f"mlflow.{flavor}")
    except ImportError as exc:
        module, reason = None, f" ({exc})"
    else:
        reason = ""
    function = getattr(module, "autolog", None)
    if not callable(function):
        from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

        known = sorted(AUTOLOGGING_INTEGRATIONS) or []
        close = difflib.get_close_matches(flavor, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"tracking.autolog.{flavor}: MLflow has no autologging for '{flavor}'"
            f"{reason}.{hint} Use a flavor of mlflow.<flavor>.autolog (sklearn, "
            "openai, langchain, pytorch, ...) or 'all' for mlflow.autolog."
        )
    return function


@dataclass
class RunInstruments:
    """The autologging flavors turned on and the system-metrics monitor of one run."""

    flavors: dict[str, Any] = field(default_factory=dict)  # flavor -> its autolog
    monitor: Any = None

    @classmethod
    def start(cls, settings: TrackingConfig, run_id: str) -> RunInstruments:
        """Turn on what ``mlflow.yml`` asks for; on failure undo it and raise."""
        started = cls()
        try:
            for flavor, kwargs in settings.autolog.items():
                function = _autolog_function(flavor)
                function(**{**(kwargs or {}), "disable": False})
                started.flavors[flavor] = function
            metrics = settings.system_metrics
            if metrics.enabled:
                started.monitor = _start_monitor(run_id, metrics.sampling_interval)
        except BaseException:
            started.stop()
            raise
        return started

    def stop(self) -> None:
        """Autologging off for the flavors turned on, the monitor stopped."""
        for flavor, function in self.flavors.items():
            try:
                function(disable=True)
            except Exception:
                logger.exception("kedroflow: could not turn %s autolog off", flavor)
        self.flavors.clear()
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.finish()


def _start_monitor(run_id: str, sampling_interval: float) -> Any:
    if importlib.util.find_spec("psutil") is None:
        raise ConfigError(
            "tracking.system_metrics.enabled is true but psutil is not installed: "
            "`pip install psutil` (or kedroflow[system-metrics]), or set "
            "tracking.system_metrics.enabled: false."
        )
    from mlflow.system_metrics import system_metrics_monitor

    monitor: Any = system_metrics_monitor.SystemMetricsMonitor  # untyped in MLflow
    monitor = monitor(run_id, sampling_interval=sampling_interval, resume_logging=False)
    monitor.start()
    return monitor
