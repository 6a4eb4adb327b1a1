"""The promotion gate: a registered version takes the alias only if it earns it.

``log_model_kwargs["promote_if"]`` names thresholds on the training run's metrics
(evaluation metrics included) and, with ``beat_current``, a metric on which the
candidate must beat the version the alias points at now::

    promote_if = {
        "valid.f1": {"min": 0.8},
        "worst_slice.f1_score": {"min": 0.7},
        "beat_current": {"metric": "valid.log_loss", "greater_is_better": False},
    }

The version is always registered. When every condition holds the alias moves to it
and the version is tagged ``kedroflow.promotion: promoted to @<alias>``; otherwise
the alias stays where it was and the tag says why, e.g.
``rejected: valid.f1 0.71 < 0.8``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

PROMOTION_TAG = "kedroflow.promotion"


@dataclass(frozen=True)
class Decision:
    """What the gate decided for one registered version."""

    promoted: bool
    reasons: tuple[str, ...]  # why it was rejected (empty when promoted)
    alias: str
    previous: str | None  # version the alias pointed at before

    @property
    def text(self) -> str:
        """The value of the version's ``kedroflow.promotion`` tag."""
        if self.promoted:
            return f"promoted to @{self.alias}"
        return "rejected: " + "; ".join(self.reasons)


def check(
    promote_if: Mapping[str, Any],
    metrics: Mapping[str, float],
    current: Mapping[str, float] | None,
    current_version: str | None = None,
) -> list[str]:
    """The reasons to reject a candidate with ``metrics`` (none: promote it).

    Examples:
        >>> check({"valid.f1": {"min": 0.8}}, {"valid.f1": 0.71}, None)
        ['valid.f1 0.71 < 0.8']
        >>> check({"beat_current": "f1"}, {"f1": 0.7}, {"f1": 0.75}, "3")
        ['f1 0.7 does not beat 0.75 of the current version 3']
        >>> check(
        ...     {"loss": {"max": 0.5}, "beat_current": "f1"},
        ...     {"loss": 0.2, "f1": 1},
        ...     None,
        ... )
        []
    """
    reasons = []
    for metric, bounds in promote_if.items():
        if metric == "beat_current":
            continue
        value = metrics.get(metric)
        if value is None:
            reasons.append(f"{metric} missing from the run's metrics")
            continue
        if "min" in bounds and value < bounds["min"]:
            reasons.append(f"{metric} {value:.4g} < {bounds['min']:.4g}")
        if "max" in bounds and value > bounds["max"]:
            reasons.append(f"{metric} {value:.4g} > {bounds['max']:.4g}")
    beat = promote_if.get("beat_current")
    if beat and current is not None:
        metric, higher = _beat(beat)
        mine, theirs = metrics.get(metric), current.get(metric)
        if mine is None:
            reasons.append(f"{metric} missing from the run's metrics")
        elif theirs is not None and not (mine > theirs if higher else mine < theirs):
            reasons.append(
                f"{metric} {mine:.4g} does not beat {theirs:.4g} of the current "
                f"version {current_version}"
            )
    return reasons


def _beat(beat: Any) -> tuple[str, bool]:
    if isinstance(beat, str):
        from kedroflow.evaluation import greater_is_better

        return beat, greater_is_better(beat)
    return str(beat["metric"]), bool(beat.get("greater_is_better", True))


def promote(
    client: MlflowClient,
    *,
    name: str,
    version: str,
    alias: str,
    promote_if: Mapping[str, Any] | None,
    metrics: Mapping[str, float],
) -> Decision:
    """Run the gate for ``name`` v``version`` and move ``alias`` if it passes."""
    from mlflow.exceptions import MlflowException

    previous = current = None
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:  # no version holds the alias yet
        holder = None
    if holder is not None and str(holder.version) != str(version):
        previous = str(holder.version)
        current = client.get_run(holder.run_id).data.metrics if holder.run_id else {}
    reasons = check(promote_if or {}, metrics, current, previous)
    decision = Decision(not reasons, tuple(reasons), alias, previous)
    if decision.promoted:
        client.set_registered_model_alias(name, alias, str(version))
    client.set_model_version_tag(name, str(version), PROMOTION_TAG, decision.text)
    if promote_if is not None:
        log = logger.info if decision.promoted else logger.warning
        log(
            "kedroflow: %s v%s %s%s", name, version, decision.text,
            "" if decision.promoted or previous is None
            else f" (@{alias} stays on v{previous})",
        )  # fmt: skip
    return decision
