"""Drift monitoring: the profile of a model's training input, compared with new data.

When a training run logs its model, kedroflow stores a :func:`profile` of the data of
``input_name`` beside it (per column: quantile bins and a sample of values for a
numeric column, category frequencies for a categorical one, the length of the text
for free text). At scoring time, :func:`drift_metrics` compares a batch of new inputs
with the profile of the model that scores them and returns, per column, the
population stability index (PSI) and the p-value of a two-sample test from SciPy
(Kolmogorov-Smirnov for numbers, chi-square on the contingency table for
categories), ready to be saved by a ``kedroflow.MlflowMetricsHistoryDataset``::

    # pipeline.py                                  # catalog.yml
    Node(drift_metrics, ["registered_model",       drift:
         "instances"], "drift")                      type: kedroflow.MlflowMetricsHistoryDataset
                                                     prefix: drift

Nothing here needs an MLflow run or ``mlflow.yml``: the profile travels with the model.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from kedroflow.errors import ModelError

#: Layout version of a profile.
PROFILE_VERSION = 1
_SAMPLE = 1000  # values kept per numeric column for the two-sample test
_BINS = 10  # quantile bins of a numeric column
_TOP = 20  # categories kept per categorical column (the rest is "other")
_OTHER = "__other__"
_EPS = 1e-4  # floor of a bin's share in the PSI (an empty bin would be infinite)
_KEY = re.compile(r"[^\w\-. /]")


def profile(data: Any) -> dict[str, Any]:
    """Per-column statistics of ``data`` (a DataFrame, Series or 2-D array).

    Examples:
        >>> frame = pd.DataFrame({"x": range(100), "color": ["red", "blue"] * 50})
        >>> stats = profile(frame)
        >>> stats["columns"]["x"]["kind"], stats["columns"]["color"]["frequencies"]
        ('numeric', {'blue': 0.5, 'red': 0.5})
    """
    frame = _frame(data)
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        key = str(name)
        if _is_numeric(series):
            columns[key] = _numeric(series.astype(float))
        elif _is_free_text(series):
            lengths = series.dropna().astype(str).str.len().astype(float)
            columns[key] = {**_numeric(lengths), "kind": "text_length"}
        else:
            columns[key] = _categorical(series)
    return {"version": PROFILE_VERSION, "rows": len(frame), "columns": columns}


def drift(reference: dict[str, Any], data: Any) -> dict[str, float]:
    """Drift of ``data`` from the ``reference`` profile: PSI and test per column.

    Keys are ``<column>.psi`` and ``<column>.ks_pvalue`` (numbers, text lengths) or
    ``<column>.chi2_pvalue`` (categories); columns absent from ``data`` are skipped.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> train = pd.DataFrame({"x": rng.normal(0, 1, 500)})
        >>> same = drift(profile(train), pd.DataFrame({"x": rng.normal(0, 1, 200)}))
        >>> moved = drift(profile(train), pd.DataFrame({"x": rng.normal(2, 1, 200)}))
        >>> same["x.psi"] < 0.1 < moved["x.psi"], moved["x.ks_pvalue"] < 0.01
        (True, True)
    """
    frame = _frame(data)
    metrics: dict[str, float] = {}
    for name, stats in reference.get("columns", {}).items():
        if name not in frame.columns.astype(str):
            continue
        series = frame[frame.columns[frame.columns.astype(str) == name][0]]
        key = _KEY.sub("_", name)
        if stats["kind"] == "categorical":
            metrics.update(_categorical_drift(key, stats, series))
            continue
        if stats["kind"] == "text_length":
            series = series.dropna().astype(str).str.len()
        metrics.update(_numeric_drift(key, stats, series.astype(float)))
    return metrics


def model_profile(model: Any) -> dict[str, Any]:
    """The training-input profile stored with a kedroflow model.

    ``model`` is what ``mlflow.pyfunc.load_model`` (or a ``kedroflow`` model dataset)
    returns, or the ``KedroPipelineModel`` itself.
    """
    python_model = model
    if hasattr(model, "unwrap_python_model"):
        try:
            python_model = model.unwrap_python_model()
        except Exception as exc:
            raise ModelError(f"The model has no Python model to read: {exc}") from exc
    found = getattr(python_model, "profile", None)
    if not found:
        raise ModelError(
            "This model has no training-input profile: it was logged by a kedroflow "
            "version without drift monitoring, or not by kedroflow. Train it again "
            "with `kedro run` to log a model that carries one."
        )
    return dict(found)


def drift_metrics(model: Any, data: Any) -> dict[str, float]:
    """Node function: drift of ``data`` from the training input of ``model``."""
    return drift(model_profile(model), data)


def _frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame(name=str(data.name or "value"))
    array = np.asarray(data)
    if array.ndim == 1:
        return pd.DataFrame({"value": array})
    if array.ndim == 2:  # noqa: PLR2004
        return pd.DataFrame(array, columns=[str(i) for i in range(array.shape[1])])
    raise ModelError(
        f"Cannot profile data of type {type(data).__name__} with {array.ndim} "
        "dimensions: give a DataFrame, a Series or a 2-D array."
    )


def _is_numeric(series: pd.Series) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    )


def _is_free_text(series: pd.Series) -> bool:
    values = series.dropna()
    if not len(values) or not all(isinstance(v, str) for v in values.iloc[:100]):
        return False
    return bool(values.nunique() > max(_TOP, len(values) // 2))


def _numeric(series: pd.Series) -> dict[str, Any]:
    values = series.dropna().to_numpy(dtype=float)
    if not len(values):
        return {"kind": "numeric", "count": 0, "missing": int(series.isna().sum())}
    edges = np.unique(np.quantile(values, np.linspace(0, 1, _BINS + 1)))
    inner = edges[1:-1].tolist()
    sample = np.random.default_rng(0).choice(
        values, size=min(_SAMPLE, len(values)), replace=False
    )
    return {
        "kind": "numeric",
        "count": len(values),
        "missing": int(series.isna().sum()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "edges": inner,
        "shares": _shares(values, inner).tolist(),
        "sample": sample.tolist(),
    }


def _shares(values: np.ndarray, inner_edges: list[float]) -> np.ndarray:
    """Share of ``values`` in each bin bounded by ``inner_edges`` (open ends)."""
    counts = np.bincount(
        np.searchsorted(inner_edges, values, side="right"),
        minlength=len(inner_edges) + 1,
    )
    return counts / max(len(values), 1)


def _categorical(series: pd.Series) -> dict[str, Any]:
    values = series.dropna().astype(str)
    shares = values.value_counts(normalize=True)
    top = shares.iloc[:_TOP]
    frequencies = {str(k): float(v) for k, v in sorted(top.items())}
    if len(shares) > _TOP:
        frequencies[_OTHER] = float(shares.iloc[_TOP:].sum())
    return {
        "kind": "categorical",
        "count": len(values),
        "missing": int(series.isna().sum()),
        "frequencies": frequencies,
    }


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(expected, _EPS, None)
    actual = np.clip(actual, _EPS, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _numeric_drift(key: str, stats: dict[str, Any], series: pd.Series) -> dict:
    from scipy import stats as tests

    values = series.dropna().to_numpy(dtype=float)
    if not len(values) or not stats.get("count"):
        return {}
    psi = _psi(np.asarray(stats["shares"]), _shares(values, stats["edges"]))
    result = tests.ks_2samp(np.asarray(stats["sample"]), values)
    return {
        f"{key}.psi": psi,
        f"{key}.ks_statistic": float(result.statistic),
        f"{key}.ks_pvalue": _finite(result.pvalue),
    }


def _categorical_drift(key: str, stats: dict[str, Any], series: pd.Series) -> dict:
    from scipy import stats as tests

    values = series.dropna().astype(str)
    if not len(values) or not stats.get("count"):
        return {}
    known = stats["frequencies"]
    mapped = values.where(values.isin(known.keys()), _OTHER)
    categories = sorted(set(known) | set(mapped.unique()))
    counts = mapped.value_counts()
    actual = np.array([counts.get(c, 0) for c in categories], dtype=float)
    expected = np.array([known.get(c, 0.0) for c in categories])
    psi = _psi(expected, actual / actual.sum())
    reference = np.round(expected * stats["count"])
    table = np.array([reference, actual])
    table = table[:, table.sum(axis=0) > 0]
    pvalue = 1.0
    if table.shape[1] > 1:
        pvalue = tests.chi2_contingency(table).pvalue
    return {f"{key}.psi": psi, f"{key}.chi2_pvalue": _finite(pvalue)}


def _finite(value: Any) -> float:
    number = float(value)
    return number if math.isfinite(number) else 1.0
