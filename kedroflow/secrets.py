"""The secret values of a run, and the one scrubber for whatever leaves the process.

A :class:`Secrets` value is built when a run starts, from the project's
``credentials.yml`` values, and grows (as a new value) with the parameter values that
``tracking.params.redact`` hides. Whatever kedroflow writes to MLflow or prints goes
through :meth:`Secrets.scrub`, which also masks what needs no list of values: the
``user:password@`` part of URLs, well-known token query parameters (``token=``,
``sig=``, ``X-Amz-Signature=``...) and ``Authorization`` schemes. While a run is open,
:class:`LogScrubber` applies it to every log record. Pure: no MLflow, no module state.
"""

from __future__ import annotations

import logging
import re
import traceback
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

REDACTED = "***"
#: Shorter values are not secrets worth the name: they are not masked (a limit).
MIN_SECRET_LENGTH = 4
#: Values shorter than this, or made of letters only or digits only (``5432``,
#: ``admin``), are masked as whole tokens only, never inside a longer word or number.
STRONG_SECRET_LENGTH = 12
#: Credential values that are configuration words, never secrets.
_NOT_SECRETS = frozenset({"true", "false", "none", "null", "yes", "no", "on", "off"})
#: ``scheme://user:password@host``: everything between ``//`` and the last ``@``
#: before the path, query or fragment.
_USERINFO = re.compile(r"//[^/?#\s]*@")
#: Query parameters holding a credential in signed or authenticated URLs.
_QUERY_TOKEN = re.compile(
    r"(?i)([?&;](?:access_token|refresh_token|id_token|token|sig|signature|key|"
    r"api[_-]?key|code|auth|password|passwd|pwd|secret|client_secret|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|sas|sv_sig)=)([^&#\s'\"]+)"
)
#: ``name=value`` pairs that are credentials wherever they appear (connection strings,
#: messages); ``\b`` keeps ``db.password=`` and leaves ``my_password_hint=`` alone.
_NAMED_TOKEN = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|secret|client_secret|access_token|"
    r"refresh_token|token|api[_-]?key|accountkey|sharedaccesskey|"
    r"sharedaccesssignature)\s*=\s*)([^&#\s'\",;)]+)"
)
#: ``Authorization: Bearer <token>``: a credential has digits or symbols, words do not.
_AUTH_SCHEME = re.compile(
    r"(?i)\b(bearer|basic)\s+(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}"
)


@dataclass(frozen=True)
class Secrets:
    """An immutable set of secret values, longest first (a secret containing another
    is replaced whole)."""

    values: tuple[str, ...] = ()

    @classmethod
    def of(cls, values: Iterable[str]) -> Secrets:
        """The secrets ``values`` (too short and configuration words dropped)."""
        kept = {
            v
            for v in values
            if len(v.strip()) >= MIN_SECRET_LENGTH and v.lower() not in _NOT_SECRETS
        }
        return cls(tuple(sorted(kept, key=lambda v: (-len(v), v))))

    @classmethod
    def from_tree(cls, tree: Any) -> Secrets:
        """Every leaf value of a ``credentials.yml``-like tree of dicts and lists."""
        return cls.of(leaf_values(tree))

    def __or__(self, other: Secrets | Iterable[str]) -> Secrets:
        more = other.values if isinstance(other, Secrets) else tuple(other)
        return Secrets.of((*self.values, *more))

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        forms = {form for value in self.values for form in _forms(value)}
        if not forms:
            return None
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        return re.compile("|".join(_token_pattern(form) for form in ordered))

    def scrub(self, text: str) -> str:
        """``text`` with secret values, URL user-info and credential tokens as ``***``."""
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return mask_credentials(text)

    def scrub_tree(self, value: Any) -> Any:
        """``value`` (dicts, lists, text) with every text leaf scrubbed."""
        if isinstance(value, dict):
            return {k: self.scrub_tree(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_tree(v) for v in value)
        return self.scrub(value) if isinstance(value, str) else value

    def found_in(self, text: str) -> list[str]:
        """The secret values present in ``text`` (as :meth:`scrub` would match them)."""
        found = []
        for value in self.values:
            pattern = Secrets((value,))._pattern
            if pattern is not None and pattern.search(text):
                found.append(value)
        return found


def _forms(value: str) -> set[str]:
    """A value as it may appear in text: raw, URL-quoted, JSON/repr-escaped."""
    escaped = value.replace("\\", "\\\\")
    return {value, quote(value, safe=""), escaped, escaped.replace('"', '\\"')}


def _token_pattern(form: str) -> str:
    """Short and all-letter/all-digit values match whole tokens only."""
    escaped = re.escape(form)
    if len(form) < STRONG_SECRET_LENGTH or form.isalpha() or form.isdigit():
        return rf"(?<![\w]){escaped}(?![\w])"
    return escaped


def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """``tracking.params.redact`` as case-insensitive regular expressions."""
    return [re.compile(pattern, re.IGNORECASE) for pattern in patterns]


def matches(name: str, patterns: Iterable[re.Pattern[str]]) -> bool:
    """True when ``name`` matches one of the redaction ``patterns``."""
    return any(pattern.search(name) for pattern in patterns)


def _entries(
    tree: Any, patterns: list[re.Pattern[str]], path: str = ""
) -> Iterator[tuple[str, Any, bool]]:
    """``(dotted name, value, redacted)``: each redacted entry of a parameter tree
    (its key or its dotted path matches), and each leaf outside them."""
    if isinstance(tree, dict):
        for key, item in tree.items():
            name = f"{path}.{key}" if path else str(key)
            if matches(str(key), patterns) or matches(name, patterns):
                yield name, item, True
            else:
                yield from _entries(item, patterns, name)
    elif isinstance(tree, list | tuple):
        for item in tree:
            yield from _entries(item, patterns, path)
    else:
        yield path, tree, False


def redacted_values(params: Mapping[str, Any], redact: Iterable[str]) -> Secrets:
    """Every value under a redacted name anywhere in ``params``, logged or not.

    A name is redacted when its key or its dotted path (``db.password``) matches
    ``tracking.params.redact``, so the values are the same with or without
    ``flatten``. The hook gives it all of the run's parameters (``--params``
    included) before the run opens: a secret parameter that the pipeline does not
    consume still never shows up in a tag, the run name or the uncommitted diff.
    """
    entries = _entries(dict(params), compile_patterns(redact))
    return Secrets.of(v for _, value, hit in entries if hit for v in leaf_values(value))


def secret_parameters(
    parameters: Mapping[str, Any], redact: Iterable[str], secrets: Secrets
) -> list[str]:
    """The names (``db.password``) of the secret values among Kedro ``parameters``.

    ``parameters`` are Kedro inputs (``params:x``, ``parameters``). A value is secret
    when its name matches ``redact`` or when it is one of ``secrets`` (a
    ``credentials.yml`` value reused as a parameter).
    """
    tree: dict[str, Any] = {}
    for name, value in parameters.items():
        tree.update(value if name == "parameters" else {name[len("params:") :]: value})
    known = set(secrets.values)
    return sorted(
        {
            name
            for name, value, hit in _entries(tree, compile_patterns(redact))
            if hit or str(value) in known
        }
    )


def leaf_values(tree: Any) -> list[str]:
    """The leaves of a tree of dicts and lists, as text (None and booleans skipped)."""
    if isinstance(tree, dict):
        return [value for item in tree.values() for value in leaf_values(item)]
    if isinstance(tree, list | tuple):
        return [value for item in tree for value in leaf_values(item)]
    return [str(tree)] if tree is not None and not isinstance(tree, bool) else []


def mask_credentials(text: str) -> str:
    """``text`` with URL user-info, token query parameters and auth headers masked.

    >>> mask_credentials("https://me:pw@host/x?a=1&sig=abc%2F")
    'https://***@host/x?a=1&sig=***'
    """
    text = _USERINFO.sub("//***@", text)
    text = _QUERY_TOKEN.sub(rf"\1{REDACTED}", text)
    text = _NAMED_TOKEN.sub(rf"\1{REDACTED}", text)
    return _AUTH_SCHEME.sub(rf"\1 {REDACTED}", text)


def mask_uri(uri: str) -> str:
    """The URI with any ``user:password@`` part (and token parameter) masked.

    >>> mask_uri("https://me:pw@mlflow.example.com/")
    'https://***@mlflow.example.com/'
    """
    return mask_credentials(uri)


def strip_userinfo(uri: str) -> str:
    """The URI without its ``user:password@`` part (credentials go in headers)."""
    return _USERINFO.sub("//", uri)


def scrub_exception(error: BaseException, secrets: Secrets) -> None:
    """Mask secrets in the messages (text ``args``) of ``error`` and its causes.

    For the exception that fails a run: Kedro prints its traceback on the console
    after the run has ended. Exceptions whose message does not come from ``args``
    (a custom ``__str__``) are left as they are.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        args = tuple(
            secrets.scrub(a) if isinstance(a, str) else a for a in current.args
        )
        if args != current.args:
            try:
                current.args = args
            except (AttributeError, TypeError):  # an exception type that forbids it
                pass
        current = current.__cause__ or current.__context__


class LogScrubber:
    """Scrubs every log record created while installed, whatever its logger.

    Installed as the process's log record factory for the duration of a run (log
    filters would only see records of the logger they sit on, not of its children).
    ``secrets`` is asked at each record: the run's secrets grow once its parameters
    are known. A record whose traceback holds a secret gets the scrubbed traceback in
    its message instead (rich and other handlers render ``exc_info`` themselves).
    """

    def __init__(self, secrets: Callable[[], Secrets]) -> None:
        self._secrets = secrets
        self._previous: Callable[..., logging.LogRecord] | None = None

    def install(self) -> None:
        """Scrub records from now on (once: a second call keeps the first install)."""
        if self._previous is None:
            self._previous = logging.getLogRecordFactory()
            logging.setLogRecordFactory(self._make)

    def uninstall(self) -> None:
        """Put back the factory found at install (unless someone replaced ours)."""
        previous, self._previous = self._previous, None
        if previous is not None and logging.getLogRecordFactory() == self._make:
            logging.setLogRecordFactory(previous)

    def _make(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        factory = self._previous or logging.LogRecord
        record = factory(*args, **kwargs)
        try:
            scrub_record(record, self._secrets())
        except Exception:  # noqa: S110 - logging must never fail because of us
            pass
        return record


def scrub_record(record: logging.LogRecord, secrets: Secrets) -> None:
    """Scrub ``record``'s message and, if it holds a secret, its traceback."""
    message = record.getMessage()
    clean = secrets.scrub(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info))
        cleaned = secrets.scrub(text)
        if cleaned != text:
            record.msg, record.args = f"{clean}\n{cleaned.rstrip()}", None
            record.exc_info, record.exc_text = None, None


def project_credentials(context: Any) -> dict[str, Any]:
    """The project's ``credentials.yml`` (empty when there is none).

    Read before MLflow is imported in a ``kedro run``: importing it resets Python's
    warning registry, and Kedro's config loader would repeat its warnings.
    """
    try:
        return dict(context.config_loader["credentials"])
    except Exception:
        return {}
