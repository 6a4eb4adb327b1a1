"""Parameters as MLflow takes them: flattened, keys sanitised, secrets redacted, sized.

Pure functions: nothing here calls MLflow. MLflow's size limits are passed in as a
:class:`Limits` value (``kedroflow.tracking.limits()`` reads them from the installed
MLflow), so this module stays importable and testable without MLflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from kedroflow.errors import TrackingError
from kedroflow.secrets import (
    REDACTED,
    Secrets,
    compile_patterns,
    leaf_values,
    matches,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kedroflow.config import ParamsConfig

PARAMS_PREFIX = "params:"
_KEY_FORBIDDEN = re.compile(r"[^\w\-. /:]")


@dataclass(frozen=True)
class Limits:
    """MLflow's lengths: parameter value, tag value, key (metric, param, tag)."""

    param_value: int
    tag_value: int
    key: int


class PreparedParams(NamedTuple):
    """What to log: parameters, over-long ones as tags, and the secrets redacted."""

    values: dict[str, str]
    tags: dict[str, str]
    secrets: Secrets


def parameter_name(name: str) -> str:
    """A Kedro parameter input without its ``params:`` prefix."""
    return name.removeprefix(PARAMS_PREFIX)


def prepare_params(
    params: Mapping[str, Any],
    settings: ParamsConfig,
    *,
    limits: Limits,
    secrets: Secrets = Secrets(),  # noqa: B008 - immutable
) -> PreparedParams:
    """Flatten, redact, stringify and size-check parameters.

    Values under a redacted name are logged as ``***`` and returned as secrets, so
    that they are also scrubbed wherever else they appear (here, in other parameters,
    and in what the run logs later). With ``long_params_strategy: tag`` over-long
    values are returned as tags instead.
    """
    redact = compile_patterns(settings.redact)
    flat = _flat(params, settings)
    found: list[str] = []
    texts = {}
    for name, value in flat.items():
        if matches(name, redact):
            found.extend(leaf_values(value))
            texts[name] = REDACTED
        else:
            texts[name] = str(_redact_nested(value, redact, found))
    scrubber = secrets | found
    limit = settings.max_length or limits.param_value
    values: dict[str, str] = {}
    tags: dict[str, str] = {}
    for name, raw in texts.items():
        key, text = sanitize_key(name, limits.key), scrubber.scrub(raw)
        if len(text) <= limit:
            values[key] = text
        elif settings.long_params_strategy == "truncate":
            values[key] = text[:limit]
        elif settings.long_params_strategy == "tag":
            tags[key] = clip(text, limits.tag_value)
        else:
            raise TrackingError(
                f"Parameter '{name}' is {len(text)} characters long; MLflow accepts at "
                f"most {limit}. Set tracking.params.long_params_strategy "
                "to 'truncate' or 'tag' in mlflow.yml, or "
                "tracking.params.dict_params.flatten: true for dict parameters."
            )
    return PreparedParams(values, tags, Secrets.of(found))


def _flat(params: Mapping[str, Any], settings: ParamsConfig) -> dict[str, Any]:
    dict_params = settings.dict_params
    flat: dict[str, Any] = {}
    for name, value in params.items():
        if dict_params.flatten and isinstance(value, dict):
            flat.update(flatten(value, name, dict_params.sep, dict_params.recursive))
        else:
            flat[name] = value
    return flat


def sanitize_key(name: str, max_length: int) -> str:
    """A valid MLflow key: Kedro's ``params:`` prefix dropped, odd characters as ``_``."""
    key = _KEY_FORBIDDEN.sub("_", parameter_name(name)).strip("/")
    key = key.replace("..", "_.")
    return key[:max_length] or "_"


def flatten(
    value: dict, prefix: str, sep: str = ".", recursive: bool = True
) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` with prefix ``p`` -> ``{"p.a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{sep}{key}"
        if recursive and isinstance(item, dict) and item:
            out.update(flatten(item, name, sep, recursive))
        else:
            out[name] = item
    return out


def _redact_nested(
    value: Any, patterns: list[re.Pattern[str]], found: list[str]
) -> Any:
    """``value`` with redacted keys' values as ``***``; their leaves go to ``found``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if matches(str(key), patterns):
                found.extend(leaf_values(item))
                out[key] = REDACTED
            else:
                out[key] = _redact_nested(item, patterns, found)
        return out
    if isinstance(value, list | tuple):
        return type(value)(_redact_nested(item, patterns, found) for item in value)
    return value


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending with ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
