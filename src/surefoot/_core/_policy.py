"""Retry policy: configuration, backoff and the per-attempt decision. Pure.

``decide()`` takes the policy, what happened on an attempt and where the logical
request stands (attempt number, time spent), and returns a :class:`Decision`. It reads
no clock and never sleeps: the caller passes ``elapsed`` and ``wall_now``, and a
``rng`` returning floats in [0, 1).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from surefoot._core._history import FailureKind
from surefoot._core._retry_after import retry_after_from_headers
from surefoot.errors import (
    ConfigurationError,
    DeadlineExceeded,
    NotRetryable,
    RequestFailed,
    RetriesExhausted,
    RetryAfterTooLong,
    TransportError,
)

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "IDEMPOTENT_METHODS",
    "Decision",
    "Failure",
    "ResponseInfo",
    "RetryPolicy",
    "Verdict",
    "backoff_delay",
    "case_insensitive",
    "decide",
    "over_cap",
]

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_SHOULD_RETRY_HEADERS = ("x-should-retry", "stripe-should-retry")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How a logical request is retried. Immutable; derive variants with :meth:`replace`.

    * ``max_attempts`` — total tries, the first included (a 401 refresh-and-replay is
      extra and does not count).
    * ``deadline`` — seconds for the whole logical request, waits included (``None``:
      no deadline). No wait is scheduled that would overrun it, and every attempt's
      timeout is capped by what is left of it.
    * ``attempt_timeout`` — the longest one attempt may take (connect, send, wait for the
      response), also capped by what is left of the deadline; ``None``: the HTTP client's
      own timeout, capped by the deadline.
    * ``backoff_initial``, ``backoff_max``, ``backoff_multiplier``, ``jitter`` — the wait
      before retry *n* is drawn from ``[0, min(max, initial * multiplier**(n-1))]``
      ("full" jitter), ``[cap/2, cap]`` ("equal") or is exactly ``cap`` ("none").
    * ``retry_statuses`` — response statuses that are retryable.
    * ``retry_after_cap`` — the longest wait on the server's say-so: a ``Retry-After``
      above it, and (with pacing) a wait for a rate-limit slot longer than it (mostly a
      partition held by an earlier ``Retry-After`` or a quota reset with none
      remaining), fail fast with :class:`~surefoot.RetryAfterTooLong` instead of
      sleeping (``None``: no cap; ``0``: never wait for either). Backoff is bounded by
      ``backoff_max`` instead.
    * ``circuit_wait`` — the longest a request waits for an open circuit breaker's next
      probe (with pacing and a breaker): ``0`` (the default) fails fast with
      :class:`~surefoot.CircuitOpen`, whose ``retry_in`` says when the next probe is due;
      a positive number of seconds waits for it when it is due by then; ``None`` waits as
      long as the deadline allows. No wait runs past the deadline.
    * ``respect_retry_after`` — use the server's ``Retry-After``/``retry-after-ms``.
    * ``idempotent_methods`` — methods retried after the server may have processed them.
      Other methods are retried then only when they carry an idempotency key.
    * ``idempotency_keys`` — ``"auto"`` generates one ``idempotency_header`` value per
      logical request for POST and PATCH (the same on every attempt; a caller-supplied
      key is never replaced); ``"off"`` never adds one.
    * ``on_exhausted`` — when retries run out: ``"return"`` the last response (like
      requests) or ``"raise"`` a typed :class:`~surefoot.RequestFailed` with the history.
      Transport failures always raise: there is no response to return.
    """

    max_attempts: int = 4
    deadline: float | None = 60.0
    attempt_timeout: float | None = None
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_multiplier: float = 2.0
    jitter: Literal["full", "equal", "none"] = "full"
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    retry_after_cap: float | None = 120.0
    circuit_wait: float | None = 0.0
    respect_retry_after: bool = True
    idempotent_methods: frozenset[str] = IDEMPOTENT_METHODS
    idempotency_keys: Literal["off", "auto"] = "off"
    idempotency_header: str = "Idempotency-Key"
    on_exhausted: Literal["return", "raise"] = "return"

    def __post_init__(self) -> None:
        numbers = (self.backoff_initial, self.backoff_max, self.backoff_multiplier)
        optional = (self.deadline, self.retry_after_cap)
        if not all(math.isfinite(x) for x in numbers) or not all(
            x is None or not math.isnan(x) for x in optional
        ):
            raise ConfigurationError("backoff and deadline settings must be real numbers")
        if self.attempt_timeout is not None:
            if not (math.isfinite(self.attempt_timeout) and self.attempt_timeout > 0):
                raise ConfigurationError("attempt_timeout must be a positive number (or None)")
            if self.deadline is not None and self.attempt_timeout > self.deadline:
                raise ConfigurationError(
                    f"attempt_timeout ({self.attempt_timeout:g} s) is longer than the whole "
                    f"deadline ({self.deadline:g} s)"
                )
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if self.deadline is not None and not self.deadline > 0:
            raise ConfigurationError("deadline must be positive (or None)")
        if not (self.backoff_initial >= 0 and self.backoff_max >= 0):
            raise ConfigurationError("backoff_initial and backoff_max must be >= 0")
        if self.backoff_max < self.backoff_initial:
            raise ConfigurationError(
                f"backoff_max ({self.backoff_max}) is below backoff_initial "
                f"({self.backoff_initial})"
            )
        if self.backoff_multiplier < 1:
            raise ConfigurationError("backoff_multiplier must be >= 1")
        if self.jitter not in ("full", "equal", "none"):
            raise ConfigurationError("jitter must be 'full', 'equal' or 'none'")
        if self.retry_after_cap is not None and self.retry_after_cap < 0:
            raise ConfigurationError("retry_after_cap must be >= 0 (or None)")
        if self.circuit_wait is not None and not (
            isinstance(self.circuit_wait, (int, float)) and self.circuit_wait >= 0
        ):
            raise ConfigurationError(
                f"circuit_wait must be a number of seconds >= 0 (or None), "
                f"not {self.circuit_wait!r}")
        if self.idempotency_keys not in ("off", "auto"):
            raise ConfigurationError("idempotency_keys must be 'off' or 'auto'")
        if self.on_exhausted not in ("return", "raise"):
            raise ConfigurationError("on_exhausted must be 'return' or 'raise'")
        if not self.idempotency_header or any(c in self.idempotency_header for c in ":\r\n "):
            raise ConfigurationError("idempotency_header must be a header name")
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))
        object.__setattr__(
            self, "idempotent_methods", frozenset(m.upper() for m in self.idempotent_methods)
        )

    def replace(self, **changes: object) -> RetryPolicy:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        return cls(max_attempts=1)


def backoff_delay(policy: RetryPolicy, retry_number: int, rng: Callable[[], float]) -> float:
    """The wait before retry number ``retry_number`` (1 for the first retry)."""
    exponent = max(retry_number - 1, 0)
    try:
        cap = policy.backoff_initial * float(policy.backoff_multiplier) ** exponent
    except OverflowError:
        cap = policy.backoff_max
    cap = min(cap, policy.backoff_max)
    if policy.jitter == "full":
        return cap * rng()
    if policy.jitter == "equal":
        return cap / 2 + cap / 2 * rng()
    return cap


def case_insensitive(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Headers that answer ``.get(lower_case_name)``: case-insensitive mappings
    (requests' ``CaseInsensitiveDict``, ``httpx.Headers``) are used as they are; a plain
    ``dict`` is copied with lower-case keys."""
    if type(headers) is dict:
        return {k.lower(): v for k, v in headers.items()}
    return headers


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """What the core needs of a response: its status and its headers."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", case_insensitive(self.headers))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that failed below HTTP."""

    kind: FailureKind
    detail: str = ""


class Verdict(str, enum.Enum):
    DONE = "done"  # hand the response to the caller
    RETRY = "retry"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str
    wait: float = 0.0
    #: On GIVE_UP: the error to raise (or, in "return" mode for a response, not to raise).
    error: type[RequestFailed] | None = None
    #: On GIVE_UP because of RetryAfterTooLong: what the server asked for.
    requested_wait: float | None = None
    #: What the attempt ended with, in a few words (``"status 503"``, ``"reset error"``).
    cause: str = ""


_SUCCESS = Decision(Verdict.DONE, "success")


def _server_directive(info: ResponseInfo) -> bool | None:
    for name in _SHOULD_RETRY_HEADERS:
        value = info.header(name)
        if value is not None:
            text = value.strip().lower()
            if text == "true":
                return True
            if text == "false":
                return False
    return None


def _classify_response(
    policy: RetryPolicy, outcome: ResponseInfo, *, idempotent: bool, wall_now: float
) -> Decision | tuple[str, type[RequestFailed], float | None]:
    """A response's decision when its status settles it, else (why, the error if retries
    run out, the wait the server asked for)."""
    status = outcome.status
    if status < 400 and status not in policy.retry_statuses:
        return _SUCCESS  # a should-retry directive on a success means nothing
    directive = _server_directive(outcome)
    if directive is None:
        retryable = outcome.status in policy.retry_statuses
        why = f"status {outcome.status}"
    else:
        retryable = directive
        why = f"status {outcome.status} (server says should-retry={str(directive).lower()})"
    if not retryable:
        return Decision(Verdict.DONE, why)
    # The server explicitly asking for a retry vouches that it is safe to repeat.
    if not (idempotent or directive):
        return Decision(
            Verdict.GIVE_UP,
            f"{why} not retried: the method is not idempotent and has no idempotency key",
            error=NotRetryable,
        )
    requested = None
    if policy.respect_retry_after:
        requested = retry_after_from_headers(outcome.header, now=wall_now)
    return why, RetriesExhausted, requested


def _classify_failure(
    outcome: Failure, *, idempotent: bool
) -> Decision | tuple[str, type[RequestFailed], float | None]:
    """A failure's decision when its kind settles it, else as :func:`_classify_response`."""
    why = f"{outcome.kind.value} error"
    if outcome.kind is FailureKind.OTHER:
        return Decision(Verdict.GIVE_UP, f"{why} is not retryable", error=TransportError)
    if outcome.kind.request_sent and not idempotent:
        return Decision(
            Verdict.GIVE_UP,
            f"{why} not retried: the request may have been processed and the method is "
            "not idempotent and has no idempotency key",
            error=TransportError,
        )
    return why, TransportError, None


def over_cap(policy: RetryPolicy, wait: float, what: str) -> Decision | None:
    """The one rule for a wait the server imposes (a ``Retry-After``, or a paced slot far
    off because the server held the partition): above ``retry_after_cap`` it is not
    waited, the request gives up with :class:`~surefoot.RetryAfterTooLong` at once.
    ``None``: within the cap. ``what`` introduces the wait in the reason."""
    cap = policy.retry_after_cap
    if cap is None or not wait > cap:
        return None
    return Decision(
        Verdict.GIVE_UP,
        f"{what} {wait:g} s, above the cap of {cap:g} s",
        error=RetryAfterTooLong,
        requested_wait=wait,
    )


def decide(
    policy: RetryPolicy,
    outcome: ResponseInfo | Failure,
    *,
    attempt: int,
    idempotent: bool,
    replayable: bool = True,
    elapsed: float,
    wall_now: float,
    rng: Callable[[], float],
) -> Decision:
    """What to do after attempt number ``attempt`` (1-based) ended with ``outcome``.

    ``idempotent``: the method is idempotent or the request carries an idempotency key.
    ``replayable``: the body can be sent again. ``elapsed``: seconds since the logical
    request started (waits included). ``wall_now``: Unix time, for HTTP-date values.
    """
    if isinstance(outcome, ResponseInfo):
        first = _classify_response(policy, outcome, idempotent=idempotent, wall_now=wall_now)
    else:
        first = _classify_failure(outcome, idempotent=idempotent)
    if isinstance(first, Decision):
        return first
    why, fail_error, requested = first
    if not replayable and (isinstance(outcome, ResponseInfo) or outcome.kind.request_sent):
        return Decision(
            Verdict.GIVE_UP, f"{why} not retried: the request body cannot be replayed",
            error=NotRetryable if isinstance(outcome, ResponseInfo) else TransportError,
        )
    if attempt >= policy.max_attempts:
        return Decision(
            Verdict.GIVE_UP,
            f"{why}: no attempts left ({attempt} of {policy.max_attempts})",
            error=fail_error,
        )
    if requested is not None:
        refused = over_cap(policy, requested, f"{why}: server asked to wait")
        if refused is not None:
            return refused
        wait, source = requested, "Retry-After"
    else:
        wait, source = backoff_delay(policy, attempt, rng), "backoff"
    if policy.deadline is not None and elapsed + wait >= policy.deadline:
        return Decision(
            Verdict.GIVE_UP,
            f"{why}: waiting {wait:.3f} s ({source}) would overrun the "
            f"{policy.deadline:g} s deadline ({elapsed:.3f} s spent)",
            error=DeadlineExceeded,
            requested_wait=wait,
        )
    return Decision(
        Verdict.RETRY, f"{why}: retry in {wait:.3f} s ({source})", wait=wait, cause=why
    )
