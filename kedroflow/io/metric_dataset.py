"""Metric datasets of one key: one value, or one history, logged to the run.

Inside ``kedro run`` the run's outbox (:mod:`kedroflow.outbox`) buffers what they save
and sends it in one ``log_batch`` (the client splits it in chunks of 1,000 metrics,
MLflow's limit per request) at the end of the run, or earlier; it also knows each
key's last step, so choosing a step reads nothing. Anything that reads the run's
metrics back sends the buffer first. Elsewhere (a notebook's run, ``run_id:``) each
save is one ``log_batch``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from kedroflow.errors import MlflowDatasetError
from kedroflow.io._base import MlflowBaseDataset, mapping_arg
from kedroflow.params import sanitize_key
from kedroflow.stores import limits

logger = logging.getLogger(__name__)


class MetricDatasetBase(MlflowBaseDataset[Any, Any]):
    """Key and run handling shared by the metric datasets."""

    _takes_run_id = True

    def __init__(self, *, key: str | None, run_id: str | None, metadata: Any) -> None:
        self._key = text_arg(key, "key", type(self).__name__)
        self._run_id = text_arg(run_id, "run_id", type(self).__name__)
        self.metadata = metadata

    @property
    def key(self) -> str:
        """The metric key: ``key:`` from the catalog, else the catalog entry name."""
        key = self._key or self._catalog_name
        if not key:
            raise MlflowDatasetError(
                f"{type(self).__name__} has no metric key: set `key:` in its catalog "
                "entry (or `key=` in Python). Inside `kedro run` the key defaults to "
                "the catalog entry name."
            )
        return sanitize_key(key, limits().key)

    def _log(self, run_id: str, metrics: list[Metric]) -> None:
        outbox = self._outbox(run_id)
        try:
            if outbox is not None:
                outbox.log_metrics(self._label(), metrics)
            else:
                self._client().log_batch(run_id, metrics=metrics)
        except MlflowException as error:
            raise self._mlflow_error(error, "log metrics", run_id) from error

    def _last_step(self, run_id: str, key: str) -> int | None:
        """The last step of ``key`` in the run: known to its outbox, else read."""
        outbox = self._outbox(run_id)
        if outbox is None:
            history = self._history(run_id, key)
            return history[-1].step if history else None
        try:
            return outbox.last_step(key)
        except MlflowException as error:
            raise self._mlflow_error(error, "read metrics", run_id) from error

    def _flush(self, run_id: str) -> None:
        """Send the run's buffered metrics, before reading its metrics back."""
        outbox = self._outbox(run_id)
        if outbox is not None:
            outbox.flush_metrics()

    def _history(self, run_id: str, key: str) -> list[Metric]:
        self._flush(run_id)
        try:
            history = self._client().get_metric_history(run_id, key)
        except MlflowException as error:
            raise self._mlflow_error(error, "read metrics", run_id) from error
        if not history and self._run_id:  # an unknown run id reads as no history
            try:
                self._client().get_run(run_id)
            except MlflowException as error:
                raise self._mlflow_error(error, "read metrics", run_id) from error
        return sorted(history, key=lambda m: (m.step, m.timestamp))

    def _exists(self) -> bool:
        run_id = self._run_id or self._current_run_id()
        if run_id is None or (self._key is None and self._catalog_name is None):
            return False
        self._flush(run_id)
        try:
            return self.key in self._client().get_run(run_id).data.metrics
        except MlflowException:
            return False

    def _skip(self) -> bool:
        if self._logging_off():
            logger.debug("Tracking is off: %s does not log", self._label())
            return True
        return False


class _KeyedMetric(MetricDatasetBase):
    """A metric dataset of one key, with checked ``load_args`` and ``save_args``.

    Args (keyword-only):
        key: The metric key; defaults to the catalog entry name.
        run_id: Read from / log to this run instead of the current one.
        load_args: See the dataset's documentation.
        save_args: See the dataset's documentation.
        metadata: Free-form metadata, ignored by kedroflow.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        run_id: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(key=key, run_id=run_id, metadata=metadata)
        owner = type(self).__name__
        self._load_args, self._save_args = self._checked_args(
            mapping_arg(load_args, "load_args", owner),
            mapping_arg(save_args, "save_args", owner),
        )

    def _checked_args(
        self, load_args: dict[str, Any], save_args: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``load_args`` and ``save_args`` with defaults, or a clear error."""
        raise NotImplementedError

    def _describe(self) -> dict[str, Any]:
        return {
            "key": self._key or self._catalog_name,
            "run_id": self._run_id,
            "load_args": self._load_args,
            "save_args": self._save_args,
        }


def text_arg(value: Any, name: str, owner: str) -> str | None:
    """``value`` if it is text (or None), else one clear error."""
    if value is None or isinstance(value, str):
        return value
    raise MlflowDatasetError(
        f"{owner}: `{name}` must be text, got {value!r} of type "
        f'{type(value).__name__}; quote it in catalog.yml ({name}: "{value}")'
    )


def _step_arg(args: dict[str, Any], where: str) -> None:
    step = args.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise MlflowDatasetError(
            f"MlflowMetricDataset {where}.step must be a whole number (the metric's "
            f"step), got {step!r}."
        )


def now_ms() -> int:
    """MLflow's timestamp of now (milliseconds)."""
    return int(time.time() * 1000)


def metric_value(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        several = (
            " To log a dict of metrics in one go, use kedroflow.MlflowMetricsHistoryDataset"
            " (one metric per key)."
            if isinstance(value, Mapping)
            else ""
        )
        raise MlflowDatasetError(
            f"{where}: MLflow metrics are numbers, got {value!r} of type "
            f"{type(value).__name__}. Return a float (or int/bool) from the node."
            f"{several}"
        ) from None


class MlflowMetricDataset(_KeyedMetric):
    """``MlflowMetricDataset`` logs one metric value to the MLflow run and loads it back.

    The key defaults to the catalog entry name. ``save_args.mode: overwrite`` (default)
    logs at the last step of the key, ``append`` at the next step; ``save_args.step``
    forces a step. Loading returns the latest value, or the value at ``load_args.step``.

    Examples:
        ```yaml
        accuracy:
          type: kedroflow.MlflowMetricDataset
          save_args:
            mode: append

        "{name}_metric":          # dataset factory: the key is the entry name
          type: kedroflow.MlflowMetricDataset
        ```

        >>> import mlflow
        >>> from kedroflow.io import MlflowMetricDataset
        >>> mlflow.set_tracking_uri(tracking_uri)
        >>> run = mlflow.start_run()
        >>> dataset = MlflowMetricDataset(key="accuracy", save_args={"mode": "append"})
        >>> dataset.save(0.8)
        >>> dataset.save(0.9)
        >>> dataset.load()
        0.9
        >>> MlflowMetricDataset(key="accuracy", load_args={"step": 0}).load()
        0.8
        >>> mlflow.end_run()
    """

    MODES: ClassVar[tuple[str, ...]] = ("overwrite", "append")

    def _checked_args(
        self, load_args: dict[str, Any], save_args: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if set(load_args) - {"step"}:
            raise MlflowDatasetError(
                f"MlflowMetricDataset load_args accept only `step`; got {load_args}."
            )
        save_args = {"mode": "overwrite", **save_args}
        unknown = set(save_args) - {"mode", "step"}
        if unknown or save_args["mode"] not in self.MODES:
            raise MlflowDatasetError(
                f"MlflowMetricDataset save_args accept `mode` ({' | '.join(self.MODES)}) "
                f"and `step`; got {save_args}."
            )
        _step_arg(load_args, "load_args")
        _step_arg(save_args, "save_args")
        return load_args, save_args

    def load(self) -> float:
        run_id = self._run_for("load its metric", self._run_id)
        history = self._history(run_id, self.key)
        if "step" in self._load_args:
            history = [m for m in history if m.step == self._load_args["step"]]
        if not history:
            at = (
                f" at step {self._load_args['step']}"
                if "step" in self._load_args
                else ""
            )
            raise MlflowDatasetError(
                f"Dataset {self._label()}: run {run_id} has no metric '{self.key}'{at}. "
                "Save it first, or point `run_id:` / `load_args.step` at a logged value."
            )
        return float(history[-1].value)

    def save(self, data: float) -> None:
        if self._skip():
            return
        run_id = self._run_for("log its metric", self._run_id)
        value = metric_value(data, f"Dataset {self._label()}")
        step = self._save_args.get("step")
        if step is None:
            last = self._last_step(run_id, self.key)
            if last is None:
                step = 0
            else:
                step = last + 1 if self._save_args["mode"] == "append" else last
        self._log(run_id, [Metric(self.key, value, now_ms(), int(step))])


class MlflowMetricHistoryDataset(_KeyedMetric):
    """``MlflowMetricHistoryDataset`` logs a whole metric history in one request.

    Modes, for ``save_args.mode`` and ``load_args.mode`` (default ``list``):

    * ``list``: ``[v0, v1, ...]``, the step is the position;
    * ``dict``: ``{step: value}``;
    * ``history``: ``[{"step": s, "value": v, "timestamp": ms}, ...]`` (timestamp
      optional on save).

    Examples:
        ```yaml
        loss_history:
          type: kedroflow.MlflowMetricHistoryDataset
          key: loss
          save_args:
            mode: dict
          load_args:
            mode: list
        ```

        >>> import mlflow
        >>> from kedroflow.io import MlflowMetricHistoryDataset
        >>> mlflow.set_tracking_uri(tracking_uri)
        >>> run = mlflow.start_run()
        >>> dataset = MlflowMetricHistoryDataset(key="loss", save_args={"mode": "dict"})
        >>> dataset.save({0: 1.0, 5: 0.5, 10: 0.25})
        >>> dataset.load()
        [1.0, 0.5, 0.25]
        >>> MlflowMetricHistoryDataset(key="loss", load_args={"mode": "dict"}).load()
        {0: 1.0, 5: 0.5, 10: 0.25}
        >>> mlflow.end_run()
    """

    MODES: ClassVar[tuple[str, ...]] = ("list", "dict", "history")

    def _checked_args(
        self, load_args: dict[str, Any], save_args: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        load_args = {"mode": "list", **load_args}
        save_args = {"mode": "list", **save_args}
        for name, args in (("load_args", load_args), ("save_args", save_args)):
            if args["mode"] not in self.MODES or set(args) != {"mode"}:
                raise MlflowDatasetError(
                    f"MlflowMetricHistoryDataset {name} accept only `mode`, one of "
                    f"{' | '.join(self.MODES)}; got {args}."
                )
        return load_args, save_args

    def load(self) -> list[float] | dict[int, float] | list[dict[str, Any]]:
        run_id = self._run_for("load its metric history", self._run_id)
        history = self._history(run_id, self.key)
        mode = self._load_args["mode"]
        if mode == "list":
            return [m.value for m in history]
        if mode == "dict":
            return {m.step: m.value for m in history}
        return [
            {"step": m.step, "value": m.value, "timestamp": m.timestamp}
            for m in history
        ]

    def save(self, data: Any) -> None:
        if self._skip():
            return
        run_id = self._run_for("log its metric history", self._run_id)
        self._log(run_id, self._metrics(data))

    def _metrics(self, data: Any) -> list[Metric]:
        key, now, mode = self.key, now_ms(), self._save_args["mode"]
        where = f"Dataset {self._label()} (save_args.mode: {mode})"
        if mode == "list" and isinstance(data, list | tuple):
            return [
                Metric(key, metric_value(v, where), now, i) for i, v in enumerate(data)
            ]
        if mode == "dict" and isinstance(data, Mapping):
            return [
                Metric(key, metric_value(v, where), now, int(s))
                for s, v in data.items()
            ]
        if mode == "history" and isinstance(data, list | tuple):
            try:
                return [
                    Metric(
                        key,
                        metric_value(item["value"], where),
                        int(item.get("timestamp") or now),
                        int(item.get("step", i)),
                    )
                    for i, item in enumerate(data)
                ]
            except (KeyError, TypeError, AttributeError):
                pass
        expected = {
            "list": "a list of numbers",
            "dict": "a {step: value} dict",
            "history": 'a list of {"step", "value"[, "timestamp"]} dicts',
        }[mode]
        raise MlflowDatasetError(
            f"{where} expects {expected}; got {type(data).__name__}. Change the node's "
            "output or `save_args.mode`."
        )
