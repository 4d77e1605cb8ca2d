"""Instrumentation: one typed hook receiving frozen events.

By default events go to the stdlib logger ``surefoot`` (DEBUG for attempts, INFO for
retries and refreshes, WARNING for giving up). URLs in events are redacted
(:func:`redact_url`): the values of credential parameters (:data:`CREDENTIAL_PARAMS`) are
replaced, userinfo and fragments are dropped.
Events never carry header values, tokens, keys or signatures.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

from surefoot._log import logger

__all__ = [
    "CREDENTIAL_PARAMS",
    "Event",
    "EventKind",
    "Hook",
    "LoggingHook",
    "combine_hooks",
    "redact_url",
]



class EventKind(str, enum.Enum):
    """What happened. A logical request is ``REQUEST_STARTED`` ... ``REQUEST_DONE``
    (always, however it ends), with its attempts, waits and token work in between, all
    carrying its ``request_id``."""

    REQUEST_STARTED = "request_started"
    REQUEST_DONE = "request_done"
    PACING_WAIT = "pacing_wait"
    CIRCUIT_OPEN = "circuit_open"
    ATTEMPT_SENT = "attempt_sent"
    ATTEMPT_DONE = "attempt_done"
    RETRY_SCHEDULED = "retry_scheduled"
    GAVE_UP = "gave_up"
    TOKEN_REFRESHED = "token_refreshed"
    TOKEN_REFRESH_FAILED = "token_refresh_failed"
    TOKEN_INVALIDATED = "token_invalidated"
    SIGNATURE_APPLIED = "signature_applied"
    CREDENTIALS_WITHHELD = "credentials_withheld"


class Event(NamedTuple):
    """What happened. Immutable; safe to keep and to log (no secrets).

    ``request_id`` tells the logical requests of a process apart (0: an event outside a
    request, e.g. a token refresh made ahead of time); ``partition`` is the pacing
    partition the request is counted in (its host, or what ``partition_by`` made of it;
    empty without pacing). ``wait`` is seconds waited (a retry's backoff, a pacing wait,
    the time until an open circuit's next probe); ``elapsed`` is seconds taken (an
    attempt's, or the whole request's on ``REQUEST_DONE``).
    """

    kind: EventKind
    method: str = ""
    url: str = ""
    attempt: int = 0
    status: int | None = None
    error: str | None = None
    wait: float | None = None
    elapsed: float | None = None
    reason: str = ""
    request_id: int = 0
    partition: str = ""

    def fields(self) -> dict[str, str | int | float]:
        """The fields that are set, by name (``kind`` left out; ``request_id`` always):
        what a structured logger or a tracer records. ``wait`` and ``elapsed`` are kept
        when they are 0; ``attempt`` 0 and empty strings are not set."""
        found: dict[str, str | int | float] = {}
        for name in ("method", "url", "attempt", "status", "error", "wait", "elapsed",
                     "reason"):
            value = getattr(self, name)
            if value is not None and value != "" and not (name == "attempt" and value == 0):
                found[name] = value
        found["request_id"] = self.request_id
        if self.partition:
            found["partition"] = self.partition
        return found

    def message(self) -> str:
        parts = [self.kind.value]
        if self.method:
            parts.append(f"{self.method} {self.url}")
        if self.attempt:
            parts.append(f"attempt={self.attempt}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.error:
            parts.append(f"error={self.error}")
        if self.wait is not None:
            parts.append(f"wait={self.wait:.3f}s")
        if self.elapsed is not None:
            parts.append(f"elapsed={self.elapsed * 1000:.1f}ms")
        if self.reason:
            parts.append(f"reason={self.reason}")
        return " ".join(parts)


Hook = Callable[[Event], None]

_LEVELS = {
    EventKind.REQUEST_STARTED: logging.DEBUG,
    EventKind.REQUEST_DONE: logging.DEBUG,
    EventKind.PACING_WAIT: logging.DEBUG,
    EventKind.CIRCUIT_OPEN: logging.INFO,
    EventKind.ATTEMPT_SENT: logging.DEBUG,
    EventKind.ATTEMPT_DONE: logging.DEBUG,
    EventKind.SIGNATURE_APPLIED: logging.DEBUG,
    EventKind.RETRY_SCHEDULED: logging.INFO,
    EventKind.TOKEN_REFRESHED: logging.INFO,
    EventKind.TOKEN_INVALIDATED: logging.INFO,
    EventKind.CREDENTIALS_WITHHELD: logging.INFO,
    EventKind.GAVE_UP: logging.WARNING,
    EventKind.TOKEN_REFRESH_FAILED: logging.WARNING,
}


class LoggingHook:
    """The default hook: every event to the ``surefoot`` logger."""

    __slots__ = ("logger",)

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.logger = log or logger

    def wants(self, kind: EventKind) -> bool:
        """Whether an event of this kind would be logged: events nobody logs are not built."""
        return self.logger.isEnabledFor(_LEVELS.get(kind, logging.INFO))

    def __call__(self, event: Event) -> None:
        level = _LEVELS.get(event.kind, logging.INFO)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", event.message(), extra={"surefoot_event": event})

    def __repr__(self) -> str:
        return f"LoggingHook({self.logger.name!r})"

    def __eq__(self, other: object) -> bool:
        """Two logging hooks on the same logger are the same hook (an event is logged
        once)."""
        if not isinstance(other, LoggingHook):
            return NotImplemented
        return self.logger is other.logger

    def __hash__(self) -> int:
        return hash(self.logger)


class _Combined:
    """Several hooks as one: each event to each hook that wants it (a failing hook is
    logged and never breaks a request); ``wants`` is true when any of them wants the
    kind, so events none of them uses are not built."""

    __slots__ = ("hooks",)

    def __init__(self, hooks: tuple[Hook, ...]) -> None:
        self.hooks = hooks

    def wants(self, kind: EventKind) -> bool:
        for hook in self.hooks:
            wants: Callable[[EventKind], bool] | None = getattr(hook, "wants", None)
            if wants is None or wants(kind):
                return True
        return False

    def __call__(self, event: Event) -> None:
        for hook in self.hooks:
            wants: Callable[[EventKind], bool] | None = getattr(hook, "wants", None)
            if wants is not None and not wants(event.kind):
                continue
            try:
                hook(event)
            except Exception:
                logger.exception("surefoot event hook %r failed", hook)

    def __repr__(self) -> str:
        return f"combine_hooks({list(self.hooks)!r})"


def combine_hooks(hooks: Iterable[Hook]) -> Hook:
    """One hook calling several; a failing hook is logged and never breaks a request."""
    return _Combined(tuple(hooks))


#: Names of URL parameters whose values are credentials, lower case. Matched whole (not
#: as substrings: ``code`` is a credential, ``zip_code`` and ``codes`` are not), case
#: insensitively and with ``-`` and ``_`` alike, after percent-decoding; in the query and
#: in ``;`` parameters of path segments (the fragment is dropped whole).
CREDENTIAL_PARAMS: frozenset[str] = frozenset({
    # OAuth 2 / OpenID Connect, OAuth 1.0a
    "access_token", "refresh_token", "id_token", "token", "code", "client_secret",
    "client_assertion", "assertion", "jwt", "oauth_token", "oauth_token_secret",
    "oauth_signature", "oauth_verifier",
    # API keys and other secrets
    "api_key", "apikey", "api-key", "x-api-key", "key", "app_key", "appkey",
    "subscription-key", "private_key", "access_key", "secret_key", "secret",
    "auth", "authorization", "auth_token", "authtoken", "api_token", "apitoken",
    "accesstoken", "private_token", "credential", "credentials",
    # passwords
    "password", "passwd", "pwd", "passphrase",
    # signatures (S3/SigV4 and GCS presigned URLs, Azure SAS)
    "signature", "sig", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "x-goog-signature", "x-goog-credential",
    # sessions
    "session", "sessionid", "session_id", "jsessionid", "phpsessid",
})

_CREDENTIAL_KEYS = frozenset(name.replace("-", "_") for name in CREDENTIAL_PARAMS)
_REDACTED = "REDACTED"
_PAIR_SEPARATORS = re.compile(r"([&;])")


def _is_credential(raw_name: str) -> bool:
    name = unquote_plus(raw_name).strip().lower().replace("-", "_")
    return name in _CREDENTIAL_KEYS


def _redact_pair(item: str) -> str:
    name, equals, _ = item.partition("=")
    return f"{name}={_REDACTED}" if equals and _is_credential(name) else item


def _redact_query(query: str) -> str:
    """``name=value`` items split on ``&`` (and ``;``), kept as sent but for the values of
    credentials."""
    return "".join(_redact_pair(part) for part in _PAIR_SEPARATORS.split(query))


def _redact_path(path: str) -> str:
    """Matrix parameters (``/p;access_token=...``) of each segment."""
    if ";" not in path:
        return path
    out = []
    for segment in path.split("/"):
        head, semi, params = segment.partition(";")
        out.append(head + semi + _redact_query(params) if semi else segment)
    return "/".join(out)


def redact_url(url: str) -> str:
    """The URL with its userinfo and fragment removed and the values of credential
    parameters (:data:`CREDENTIAL_PARAMS`, in the query and in path segments' ``;``
    parameters) replaced by ``REDACTED``. Never raises: a URL that cannot be parsed is
    ``"<unparseable url>"``."""
    if not any(c in url for c in "?@#;"):
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(SplitResult(parts.scheme, netloc, _redact_path(parts.path),
                                      _redact_query(parts.query), ""))
    except ValueError:
        return "<unparseable url>"
