"""The secret values of a run, and masking of credentials inside URIs.

A :class:`Secrets` value is built when a run starts, from the project's
``credentials.yml`` values, and grows (as a new value) with the parameter values that
``tracking.params.redact`` hides. Whatever kedroflow writes to MLflow as text goes
through :meth:`Secrets.scrub`. Pure: no MLflow, no module state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

REDACTED = "***"
#: Shorter values are too likely to be common words or numbers to be replaced.
MIN_SECRET_LENGTH = 4
_USERINFO = re.compile(r"//[^/@]*@")


@dataclass(frozen=True)
class Secrets:
    """An immutable set of secret values, longest first (a secret containing another
    is replaced whole)."""

    values: tuple[str, ...] = ()

    @classmethod
    def of(cls, values: Iterable[str]) -> Secrets:
        """The secrets ``values`` (too short ones dropped, duplicates merged)."""
        kept = {v for v in values if len(v) >= MIN_SECRET_LENGTH}
        return cls(tuple(sorted(kept, key=lambda v: (-len(v), v))))

    @classmethod
    def from_tree(cls, tree: Any) -> Secrets:
        """Every leaf value of a ``credentials.yml``-like tree of dicts and lists."""
        return cls.of(leaf_values(tree))

    def __or__(self, other: Secrets | Iterable[str]) -> Secrets:
        more = other.values if isinstance(other, Secrets) else tuple(other)
        return Secrets.of((*self.values, *more))

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for secret in self.values:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def leaf_values(tree: Any) -> list[str]:
    """The leaves of a tree of dicts and lists, as text (None and booleans skipped)."""
    if isinstance(tree, dict):
        return [value for item in tree.values() for value in leaf_values(item)]
    if isinstance(tree, list | tuple):
        return [value for item in tree for value in leaf_values(item)]
    return [str(tree)] if tree is not None and not isinstance(tree, bool) else []


def mask_uri(uri: str) -> str:
    """The URI with any ``user:password@`` part masked, for messages and tags.

    >>> mask_uri("https://me:pw@mlflow.example.com/")
    'https://***@mlflow.example.com/'
    """
    return _USERINFO.sub("//***@", uri)


def strip_userinfo(uri: str) -> str:
    """The URI without its ``user:password@`` part (credentials go in headers)."""
    return _USERINFO.sub("//", uri)
