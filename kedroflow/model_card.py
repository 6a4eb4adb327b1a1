"""The model card: a registered version's description says where the model comes from.

Written by kedroflow on every version a training run registers, in Markdown (the
MLflow UI renders it on the version's page): the training run and how to reproduce
it (git commit, ``kedro run`` command), the data it read and the runs that produced
that data, its parameters, metrics, evaluation and the promotion gate's decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlflow import MlflowClient

_MAX_ROWS = 40  # parameters or metrics listed (the run page has them all)


def render(
    run: Any,
    *,
    run_link: str,
    model_uri: str,
    evaluation: Mapping[str, float] | None,
    decision: str | None,
) -> str:
    """The card of a version logged by ``run`` (an MLflow ``Run``), as Markdown."""
    tags, data = run.data.tags, run.data
    lines = [
        f"## Model card: `{tags.get('kedro.pipeline', run.info.run_name)}`",
        "",
        f"- **Training run**: [{run.info.run_id}]({run_link}) "
        f"({run.info.status}, experiment {run.info.experiment_id})",
        f"- **Model**: `{model_uri}`",
        f"- **Code**: git commit `{tags.get('git.commit', 'unknown')}`"
        + (" (uncommitted changes)" if tags.get("git.dirty") == "true" else ""),
        f"- **Reproduce**: `{tags.get('kedro.command', 'kedro run')}`",
    ]
    if decision:
        lines.append(f"- **Promotion gate**: {decision}")
    lines += ["", "### Data", ""]
    inputs = run.inputs.dataset_inputs if run.inputs else []
    if not inputs:
        lines.append("No persisted dataset input recorded.")
    for item in inputs:
        context = {t.key: t.value for t in item.tags}
        producer = context.get("kedroflow.produced_by")
        lines.append(
            f"- `{item.dataset.name}` ({context.get('mlflow.data.context', 'input')}, "
            f"digest `{item.dataset.digest}`)"
            + (f", produced by run `{producer}`" if producer else "")
        )
    lines += _table("Parameters", data.params)
    training = {  # kedroflow.inputs links the data listed above
        k: v
        for k, v in data.metrics.items()
        if not _is_evaluation(k, evaluation) and not k.startswith("kedroflow.")
    }
    lines += _table("Metrics", {k: f"{v:.4g}" for k, v in training.items()})
    if evaluation:
        lines += _table("Evaluation", {k: f"{v:.4g}" for k, v in evaluation.items()})
    return "\n".join(lines) + "\n"


def write(
    client: MlflowClient,
    name: str,
    version: str,
    card: str,
) -> None:
    """Set ``card`` as the description of ``name`` v``version``."""
    client.update_model_version(name, str(version), description=card)


def run_link(tracking_uri: str, run: Any) -> str:
    """A link to the run: its UI page on a server, else its ``runs:/`` URI."""
    if tracking_uri.startswith(("http://", "https://")):
        base = tracking_uri.rstrip("/")
        return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return f"runs:/{run.info.run_id}"


def _is_evaluation(key: str, evaluation: Mapping[str, float] | None) -> bool:
    return bool(evaluation) and key in (evaluation or {})


def _table(title: str, values: Mapping[str, Any]) -> list[str]:
    if not values:
        return []
    rows = ["", f"### {title}", "", "| name | value |", "|---|---|"]
    items = sorted(values.items())
    rows += [f"| `{k}` | {v} |" for k, v in items[:_MAX_ROWS]]
    if len(items) > _MAX_ROWS:
        rows.append(f"| ... | {len(items) - _MAX_ROWS} more on the run's page |")
    return rows
