"""Readable random run names: the ``${kf.random_name:}`` resolver of ``mlflow.yml``.

kedro-mlflow's ``${km.random_name:}`` is registered too, so its users' files work.
They are registered through OmegaConf's current API: ``register_new_resolver`` is
deprecated from OmegaConf 2.4 on, and its warning would add lines to every command.
"""

from __future__ import annotations

import inspect
from typing import Any

_ADJECTIVES = (
    "amber",
    "bold",
    "brisk",
    "calm",
    "clever",
    "crisp",
    "deft",
    "eager",
    "fair",
    "gentle",
    "keen",
    "lucid",
    "merry",
    "nimble",
    "quiet",
    "rapid",
    "steady",
    "vivid",
)
_NOUNS = (
    "otter",
    "heron",
    "lynx",
    "falcon",
    "maple",
    "cedar",
    "comet",
    "delta",
    "ember",
    "fjord",
    "grove",
    "harbor",
    "island",
    "meadow",
    "quartz",
    "river",
    "summit",
    "willow",
)


def random_run_name() -> str:
    """A readable random run name such as ``brisk-heron-417``."""
    import secrets

    return (
        f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-"
        f"{secrets.randbelow(1000):03d}"
    )


def register_resolvers() -> None:
    """Register ``${kf.random_name:}`` (and kedro-mlflow's ``${km.random_name:}``)."""
    from omegaconf import OmegaConf

    register = _register_function(OmegaConf)
    for name in ("kf.random_name", "km.random_name"):
        if not OmegaConf.has_resolver(name):
            register(name, random_run_name, use_cache=True)


def _register_function(omegaconf: Any) -> Any:
    """``OmegaConf.register_resolver`` where it is the current API (2.4+), else ``_new_``.

    Before 2.4 ``register_resolver`` is the legacy string-only API: told apart by its
    signature, which has no ``use_cache``.
    """
    current = getattr(omegaconf, "register_resolver", None)
    if current is not None and "use_cache" in inspect.signature(current).parameters:
        return current
    return omegaconf.register_new_resolver
