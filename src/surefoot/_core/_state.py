"""The state of one logical request, and the one way it gives up (sans-I/O).

:class:`RequestState` is to :func:`~surefoot._core._pipeline.request_flow` what h11's
``_state.py`` is to its connection: the bookkeeping (attempt numbers, retries spent, the
deadline, the history, the events), so that the flow itself reads as the decisions it
makes. Every way a request ends without a final response goes through
:meth:`RequestState.give_up`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import NamedTuple

from surefoot._core._clock import Clock
from surefoot._core._history import Attempt
from surefoot._core._policy import RetryPolicy, case_insensitive
from surefoot._log import logger
from surefoot.errors import DeadlineExceeded, RequestFailed
from surefoot.events import Event, EventKind, Hook, redact_url

__all__ = ["REQUEST_EVENTS", "FlowResult", "RequestEvents", "RequestState", "RequestView"]

#: The ids of logical requests (``next`` is atomic under the GIL).
_request_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RequestView:
    """What the core sees of a request. ``body`` is the bytes to sign (``None``: empty)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    replayable: bool = True
    #: False where the auth object's credentials do not belong (a redirect hop to another
    #: origin, outside ``credential_origins``): they are not attached.
    credentials_allowed: bool = True
    #: True on a redirect hop to another origin than the logical request's first: it
    #: carries no credential at all (:func:`~surefoot._core._origin.hop_rule`).
    redirected_elsewhere: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", case_insensitive(self.headers))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class FlowResult(NamedTuple):
    """``error`` set: raise it (the driver attaches the last response). Else return the
    last response."""

    history: tuple[Attempt, ...]
    error: RequestFailed | None = None


class RequestEvents:
    """Builds events only for hooks that want them (a hook may expose
    ``wants(kind) -> bool``; :class:`~surefoot.events.LoggingHook` does, from the logger's
    level), and redacts the URL once, on first use. Every event carries the logical
    request's id and, once known, its pacing partition."""

    __slots__ = ("_shown", "hook", "method", "partition", "request_id", "url", "wants")

    def __init__(self, hook: Hook, method: str, url: str) -> None:
        self.hook = hook
        self.wants: Callable[[EventKind], bool] | None = getattr(hook, "wants", None)
        self.method = method
        self.url = url
        self.request_id = next(_request_ids)
        self.partition = ""
        self._shown: str | None = None

    def emit(
        self,
        kind: EventKind,
        *,
        attempt: int = 0,
        status: int | None = None,
        error: str | None = None,
        wait: float | None = None,
        elapsed: float | None = None,
        reason: str = "",
    ) -> None:
        if self.wants is not None and not self.wants(kind):
            return
        try:
            self.hook(Event(kind, self.method, self._url(), attempt, status, error, wait,
                            elapsed, reason, self.request_id, self.partition))
        except Exception:  # an instrument never breaks a request
            logger.exception("surefoot event hook %r failed", self.hook)

    def event(self, kind: EventKind, reason: str) -> Event:
        """An event of the request's (its method, redacted URL, id and partition) about
        something done for it: the token work its auth does."""
        return Event(kind, self.method, self._url(), reason=reason,
                     request_id=self.request_id, partition=self.partition)

    def _url(self) -> str:
        if self._shown is None:
            self._shown = redact_url(self.url)
        return self._shown


#: The events of the logical request whose token work is being done in this context (set
#: by :class:`~surefoot._core._effects.FetchToken`): a token cache reports its refreshes
#: to that request's hook too, with the request's id.
REQUEST_EVENTS: ContextVar[RequestEvents | None] = ContextVar("surefoot_request_events",
                                                         default=None)


class RequestState:
    """Attempt numbers, retries spent, the deadline, the history and the events of one
    logical request."""

    __slots__ = (
        "deadline",
        "events",
        "history",
        "method",
        "number",
        "policy",
        "refreshed",
        "start",
        "tries",
        "url",
        "wait_before",
    )

    def __init__(self, method: str, url: str, policy: RetryPolicy, clock: Clock,
                 hook: Hook) -> None:
        self.method = method
        self.url = url
        self.policy = policy
        self.events = RequestEvents(hook, method, url)
        self.start = clock.monotonic()
        self.deadline = self.start + policy.deadline if policy.deadline is not None else None
        self.history: list[Attempt] = []
        #: the attempt being made (1-based; 0 before the first)
        self.number = 0
        #: attempts that count against ``max_attempts`` (a replay after a refresh does not)
        self.tries = 0
        #: the wait before the attempt being made
        self.wait_before = 0.0
        #: the token was already refreshed after a 401
        self.refreshed = False

    def timeout_at(self, started: float) -> float | None:
        """The attempt's timeout: the policy's, capped by what is left of the deadline."""
        timeout = self.policy.attempt_timeout
        if self.deadline is not None:
            left = self.deadline - started
            timeout = left if timeout is None else min(timeout, left)
        return timeout

    def record(self, status: int | None, error: str | None, started: float, ended: float,
               decision: str) -> None:
        self.history.append(
            Attempt(self.number, self.method, status, error, self.wait_before, started,
                    ended - started, decision)
        )

    def summary(self, reason: str) -> str:
        n = len(self.history)
        return (f"{self.method} {redact_url(self.url)} failed after {n} "
                f"attempt{'s' * (n != 1)}: {reason}")

    def give_up(
        self,
        error: Callable[[str, tuple[Attempt, ...]], RequestFailed] | None,
        reason: str,
        *,
        status: int | None = None,
        kind: str | None = None,
        event_reason: str | None = None,
    ) -> FlowResult:
        """End the request: emit ``GAVE_UP`` and return the result, with the error built
        by ``error(message, history)`` (``None``: hand the last response back)."""
        self.events.emit(EventKind.GAVE_UP, attempt=self.number, status=status, error=kind,
                         reason=reason if event_reason is None else event_reason)
        history = tuple(self.history)
        if error is None:
            return FlowResult(history)
        built = error(self.summary(reason), history)
        if isinstance(built, DeadlineExceeded) and history:
            built.args = (f"{built.args[0]}; {self._spent(history)}",)
        return FlowResult(history, built)

    @staticmethod
    def _spent(history: tuple[Attempt, ...]) -> str:
        """What used the deadline: the attempts' time (the slowest named) and the waits."""
        attempts = sum(a.elapsed for a in history)
        waits = sum(a.wait_before for a in history)
        slowest = max(history, key=lambda a: a.elapsed)
        what = f"HTTP {slowest.status}" if slowest.status is not None else slowest.error
        n = len(history)
        return (f"{n} attempt{'s' * (n != 1)} took {attempts:.3f} s (the longest: "
                f"#{slowest.number}, {what}, {slowest.elapsed:.3f} s) and the waits "
                f"{waits:.3f} s")
