"""Readable random run names: the ``${kf.random_name:}`` resolver of ``mlflow.yml``.

kedro-mlflow's ``${km.random_name:}`` is registered too, so its users' files work.
"""

from __future__ import annotations

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

    for name in ("kf.random_name", "km.random_name"):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, random_run_name, use_cache=True)
