"""Instrumentation: one typed hook receiving frozen events.

By default events go to the stdlib logger ``surefoot`` (DEBUG for attempts, INFO for
retries and refreshes, WARNING for giving up). URLs in events are redacted: query
values whose names look like credentials are replaced, userinfo is dropped.
Events never carry header values, tokens, keys or signatures.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "Event",
    "EventKind",
    "Hook",
    "LoggingHook",
    "combine_hooks",
    "redact_url",
]

logger = logging.getLogger("surefoot")


class EventKind(str, enum.Enum):
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
    """What happened. Immutable; safe to keep and to log (no secrets)."""

    kind: EventKind
    method: str = ""
    url: str = ""
    attempt: int = 0
    status: int | None = None
    error: str | None = None
    wait: float | None = None
    elapsed: float | None = None
    reason: str = ""

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


def combine_hooks(hooks: Iterable[Hook]) -> Hook:
    """One hook calling several; a failing hook is logged and never breaks a request."""
    items = tuple(hooks)

    def _call(event: Event) -> None:
        for hook in items:
            try:
                hook(event)
            except Exception:
                logger.exception("surefoot event hook %r failed", hook)

    return _call


_SECRET_NAME = re.compile(
    r"(token|secret|password|passwd|pwd|key|sig|signature|auth|credential|session|code)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """The URL with userinfo removed and credential-like query values replaced."""
    if "?" not in url and "@" not in url and "#" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "REDACTED" if _SECRET_NAME.search(k) else v) for k, v in pairs], safe="/:"
        )
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))
