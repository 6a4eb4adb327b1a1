"""``MlflowMetricsHistoryDataset``: many metrics, with their steps, in one request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from kedroflow.errors import MlflowDatasetError
from kedroflow.io.metric_dataset import (
    MetricDatasetBase,
    metric_value,
    now_ms,
    text_arg,
)
from kedroflow.params import sanitize_key
from kedroflow.stores import limits


class MlflowMetricsHistoryDataset(MetricDatasetBase):
    """``MlflowMetricsHistoryDataset`` logs many metrics, with their steps, in one request.

    It saves ``{name: float}``, ``{name: {"value": v, "step": s}}`` or
    ``{name: [{"value": v, "step": s}, ...]}``. Keys are ``<prefix>.<name>``; the
    prefix defaults to the catalog entry name (``prefix: ""`` for none). Loading returns
    ``{name: {"value", "step"}}``, or a list of them for metrics with several steps.

    Examples:
        ```yaml
        scores:
          type: kedroflow.MlflowMetricsHistoryDataset
          prefix: eval          # metrics eval.auc, eval.f1
        ```

        >>> import mlflow
        >>> from kedroflow.io import MlflowMetricsHistoryDataset
        >>> mlflow.set_tracking_uri(tracking_uri)
        >>> run = mlflow.start_run()
        >>> dataset = MlflowMetricsHistoryDataset(prefix="eval")
        >>> dataset.save({"auc": 0.9, "f1": [{"value": 0.7, "step": 0}, {"value": 0.8, "step": 1}]})
        >>> sorted(mlflow.get_run(run.info.run_id).data.metrics)
        ['eval.auc', 'eval.f1']
        >>> dataset.load()["auc"]
        {'value': 0.9, 'step': 0}
        >>> mlflow.end_run()
    """

    def __init__(
        self,
        *,
        run_id: str | None = None,
        prefix: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create a dataset of several metric histories.

        Args:
            run_id: Read from / log to this run instead of the current one.
            prefix: Key prefix; defaults to the catalog entry name, ``""`` for none.
            metadata: Free-form metadata, ignored by kedroflow.
        """
        super().__init__(key=None, run_id=run_id, metadata=metadata)
        self._prefix: str | None = text_arg(prefix, "prefix", type(self).__name__)

    @property
    def prefix(self) -> str:
        """The key prefix: ``prefix:`` from the catalog, else the entry name, else ''."""
        if self._prefix is not None:
            return self._prefix
        return self._catalog_name or ""

    def _full_key(self, name: str) -> str:
        return sanitize_key(
            f"{self.prefix}.{name}" if self.prefix else name, limits().key
        )

    def load(self) -> dict[str, Any]:
        run_id = self._run_for("load its metrics", self._run_id)
        self._flush(run_id)
        try:
            keys = self._client().get_run(run_id).data.metrics
        except MlflowException as error:
            raise self._mlflow_error(error, "load its metrics", run_id) from error
        start = f"{self.prefix}." if self.prefix else ""
        out: dict[str, Any] = {}
        for key in sorted(k for k in keys if k.startswith(start)):
            points = [
                {"value": m.value, "step": m.step} for m in self._history(run_id, key)
            ]
            out[key[len(start) :]] = points[0] if len(points) == 1 else points
        return out

    def save(self, data: Mapping[str, Any]) -> None:
        if self._skip():
            return
        run_id = self._run_for("log its metrics", self._run_id)
        if not isinstance(data, Mapping):
            raise MlflowDatasetError(
                f"Dataset {self._label()} expects a dict of metrics, got "
                f"{type(data).__name__}."
            )
        now, metrics = now_ms(), []
        for name, item in data.items():
            key, where = self._full_key(str(name)), f"Dataset {self._label()}, '{name}'"
            points = item if isinstance(item, list | tuple) else [item]
            for point in points:
                if isinstance(point, Mapping):
                    if "value" not in point:
                        raise MlflowDatasetError(
                            f"{where}: a metric dict needs a 'value' (and optional "
                            f"'step', 'timestamp'); got {dict(point)}."
                        )
                    metrics.append(
                        Metric(
                            key,
                            metric_value(point["value"], where),
                            int(point.get("timestamp") or now),
                            int(point.get("step", 0)),
                        )
                    )
                else:
                    metrics.append(Metric(key, metric_value(point, where), now, 0))
        self._log(run_id, metrics)

    def _exists(self) -> bool:
        run_id = self._run_id or self._current_run_id()
        if run_id is None:
            return False
        start = f"{self.prefix}." if self.prefix else ""
        self._flush(run_id)
        try:
            metrics = self._client().get_run(run_id).data.metrics
        except MlflowException:
            return False
        return any(key.startswith(start) for key in metrics)

    def _describe(self) -> dict[str, Any]:
        return {"prefix": self._prefix, "run_id": self._run_id}
