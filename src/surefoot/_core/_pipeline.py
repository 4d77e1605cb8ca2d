"""The per-request pipeline as a generator of effects — sans-I/O.

``request_flow`` runs one *logical* request. It yields effects that a driver (sync for
requests and httpx.Client, async for httpx.AsyncClient) carries out, and receives their
results back:

* :class:`Send` — send one attempt with these extra headers and this timeout; the driver
  sends back a :class:`ResponseInfo` or a :class:`Failure`.
* :class:`Sleep` — wait this long; the driver sends back ``None``.
* :class:`FetchToken` — get a token from a cache (refreshing it if ``stale`` is the
  current one); the driver sends back the :class:`Token`.

It returns a :class:`FlowResult`: hand the last response to the caller, or raise the
error. Per attempt: auth (sign or attach a token, fresh each time) → send → classify →
decide. The idempotency key belongs to the logical request, the signature to the attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from surefoot._core._clock import Clock
from surefoot._core._history import Attempt
from surefoot._core._policy import (
    Decision,
    Failure,
    ResponseInfo,
    RetryPolicy,
    Verdict,
    case_insensitive,
    decide,
)
from surefoot.errors import (
    CircuitOpen,
    DeadlineExceeded,
    RequestFailed,
    RetryAfterTooLong,
    RetryBudgetExhausted,
    TransportError,
    Unauthorized,
)
from surefoot.events import Event, EventKind, Hook, redact_url

if TYPE_CHECKING:
    from surefoot.oauth._token import Token


__all__ = [
    "AuthStrategy",
    "FetchToken",
    "FlowResult",
    "RequestView",
    "Send",
    "Sleep",
    "request_flow",
]


class AuthStrategy(Protocol):
    """What the pipeline needs of an auth object.

    ``token_cache`` is opaque to the core (``None`` for pure signers): the driver calls
    its ``get``/``refresh_if_current``. ``credential_headers`` are the header names that
    must never reach another origin. ``attempt_headers`` gets the attempt's other
    headers (``headers``, as they will be sent, names in any case) for schemes that sign
    some of them (RFC 9421, SigV4).
    """

    @property
    def credential_headers(self) -> tuple[str, ...]: ...

    @property
    def token_cache(self) -> Any | None: ...

    def attempt_headers(
        self,
        method: str,
        url: str,
        body: bytes | None,
        token: Token | None,
        now: float,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class RequestView:
    """What the core sees of a request. ``body`` is the bytes to sign (``None``: empty)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    replayable: bool = True
    #: False on a redirect hop to another origin: no credentials are attached.
    credentials_allowed: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", case_insensitive(self.headers))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Send(NamedTuple):
    attempt: int
    headers: Mapping[str, str]
    #: Header names to remove from the request (credentials on a cross-origin hop).
    remove: tuple[str, ...]
    #: Cap for this attempt's timeouts: what is left of the deadline (None: no cap).
    timeout: float | None


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class FetchToken:
    cache: Any
    deadline: float | None
    stale: Token | None = None


class PacerCall(NamedTuple):
    """Call ``pacer.<method>(*args, now=..., ...)`` now: O(1) and never waits. With the
    in-process state it does no I/O either; with a shared store (``pacer.does_io``) it is
    one round trip, which the async driver runs off the event loop. The driver passes
    the clock's readings and sends back the result."""

    pacer: Any
    method: str
    args: tuple[Any, ...] = ()

    def run(self, clock: Clock) -> Any:
        method = self.method
        pacer = self.pacer
        now = clock.monotonic()
        if method == "reserve":
            return pacer.reserve(*self.args, now=now)
        if method == "admit":
            return pacer.admit(*self.args, now=now)
        if method == "report":
            partition, outcome, sent_at, probe = self.args
            return pacer.report(partition, outcome, sent_at=sent_at, now=now,
                                wall_now=clock.wall(), probe=probe)
        if method == "on_request":
            return pacer.on_request(*self.args, now=now)
        if method == "try_retry":
            return pacer.try_retry(now)
        raise ValueError(f"unknown pacer call {method!r}")  # pragma: no cover


Effect = Send | Sleep | FetchToken | PacerCall


class FlowResult(NamedTuple):
    """``error`` set: raise it (the driver attaches the last response). Else return the
    last response."""

    history: tuple[Attempt, ...]
    error: RequestFailed | None = None


def _summary(method: str, url: str, history: list[Attempt], reason: str) -> str:
    n = len(history)
    return f"{method} {redact_url(url)} failed after {n} attempt{'s' * (n != 1)}: {reason}"


class _Emitter:
    """Builds events only for hooks that want them (a hook may expose
    ``wants(kind) -> bool``; :class:`LoggingHook` does, from the logger's level), and
    redacts the URL once, on first use."""

    __slots__ = ("_shown", "hook", "method", "url", "wants")

    def __init__(self, hook: Hook, method: str, url: str) -> None:
        self.hook = hook
        self.wants: Callable[[EventKind], bool] | None = getattr(hook, "wants", None)
        self.method = method
        self.url = url
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
        if self._shown is None:
            self._shown = redact_url(self.url)
        self.hook(
            Event(kind, self.method, self._shown, attempt, status, error, wait, elapsed, reason)
        )


def request_flow(
    request: RequestView,
    *,
    policy: RetryPolicy,
    auth: AuthStrategy | None,
    clock: Clock,
    hook: Hook,
    rng: Callable[[], float],
    key_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
    pacer: Any | None = None,
) -> Generator[Effect, Any, FlowResult]:
    method = request.method.upper()
    url = request.url
    events = _Emitter(hook, method, url)
    start = clock.monotonic()
    deadline = start + policy.deadline if policy.deadline is not None else None

    base_headers: dict[str, str] = {}
    idempotent = method in policy.idempotent_methods
    if not idempotent:
        key = request.header(policy.idempotency_header)
        if key is None and policy.idempotency_keys == "auto" and method in ("POST", "PATCH"):
            key = key_factory()
            base_headers[policy.idempotency_header] = key
        idempotent = key is not None

    use_auth = auth if request.credentials_allowed else None
    remove: tuple[str, ...] = ()
    if auth is not None and not request.credentials_allowed:
        remove = auth.credential_headers
        events.emit(EventKind.CREDENTIALS_WITHHELD,
                    reason="not the origin the credentials belong to")
    signs = use_auth is not None and bool(getattr(use_auth, "signs_body", False))

    partition = ""
    if pacer is not None:
        partition = pacer.partition_of(url, request.headers)
        yield PacerCall(pacer, "on_request", (partition,))

    def gate() -> Generator[Effect, Any, FlowResult | bool]:
        """Pacing, then the breaker: wait for this attempt's slot and admission.
        Returns the probe flag, or a FlowResult when the request must give up."""
        assert pacer is not None
        while True:
            reservation = None
            while True:
                reservation = yield PacerCall(pacer, "reserve", (partition, reservation))
                now = clock.monotonic()
                wait = reservation.at - now
                if wait <= 0:
                    break
                if deadline is not None and now + wait >= deadline:
                    return give_up_before(
                        DeadlineExceeded,
                        f"the next rate-limit slot is in {wait:.3f} s, past the deadline",
                    )
                yield Sleep(wait)
            admission = yield PacerCall(pacer, "admit", (partition,))
            if admission.allowed:
                return bool(admission.probe)
            now = clock.monotonic()
            retry_in = max(admission.retry_at - now, 0.0)
            if deadline is not None and admission.retry_at >= deadline:
                events.emit(EventKind.GAVE_UP, attempt=number,
                            reason=f"circuit open; next probe in {retry_in:.3f} s")
                return FlowResult(
                    tuple(history),
                    CircuitOpen(
                        _summary(method, url, history,
                                 f"the circuit is open and its next probe (in {retry_in:.3f} s)"
                                 " is past the deadline"),
                        retry_in=retry_in,
                        history=history,
                    ),
                )
            yield Sleep(retry_in)  # the deadline outlasts the outage: wait for the probe

    def give_up_before(error_type: type[RequestFailed], reason: str) -> FlowResult:
        events.emit(EventKind.GAVE_UP, attempt=number, reason=reason)
        return FlowResult(
            tuple(history), error_type(_summary(method, url, history, reason), history=history)
        )

    history: list[Attempt] = []
    tries = 0  # attempts that count against max_attempts
    number = 0
    wait_before = 0.0
    refreshed = False

    def record(status: int | None, error: str | None, started: float, decision: str) -> None:
        history.append(
            Attempt(number, method, status, error, wait_before, started, ended - started,
                    decision)
        )

    def finish(decision: Decision, outcome: ResponseInfo | Failure) -> FlowResult:
        is_response = isinstance(outcome, ResponseInfo)
        events.emit(
            EventKind.GAVE_UP,
            attempt=number,
            status=outcome.status if isinstance(outcome, ResponseInfo) else None,
            error=outcome.kind.value if isinstance(outcome, Failure) else None,
            reason=decision.reason,
        )
        error_type = decision.error or RequestFailed
        message = _summary(method, url, history, decision.reason)
        if isinstance(outcome, Failure):
            if error_type is TransportError:
                error: RequestFailed = TransportError(
                    message, kind=outcome.kind.value, history=history
                )
            else:
                error = error_type(message, history=history)
            return FlowResult(tuple(history), error)
        if error_type is RetryAfterTooLong:
            assert decision.requested_wait is not None
            return FlowResult(
                tuple(history),
                RetryAfterTooLong(
                    message, requested_wait=decision.requested_wait, history=history
                ),
            )
        if is_response and policy.on_exhausted == "raise":
            return FlowResult(tuple(history), error_type(message, history=history))
        return FlowResult(tuple(history))

    while True:
        probe = False
        if pacer is not None:
            gated = yield from gate()
            if isinstance(gated, FlowResult):
                return gated
            probe = gated
        number += 1
        tries += 1
        token: Token | None = None
        headers = dict(base_headers)
        if use_auth is not None:
            cache = use_auth.token_cache
            if cache is not None:
                token = yield FetchToken(cache, deadline)
            headers.update(
                use_auth.attempt_headers(
                    method, url, request.body, token, clock.wall(), {**request.headers, **headers}
                )
            )
            if signs:
                events.emit(EventKind.SIGNATURE_APPLIED, attempt=number)
        started = clock.monotonic()
        timeout: float | None = policy.attempt_timeout
        if deadline is not None:
            left = deadline - started
            timeout = left if timeout is None else min(timeout, left)
            if left <= 0:
                reason = f"the {policy.deadline:g} s deadline was reached before the attempt"
                events.emit(EventKind.GAVE_UP, attempt=number, reason=reason)
                return FlowResult(
                    tuple(history),
                    DeadlineExceeded(_summary(method, url, history, reason), history=history),
                )
        events.emit(EventKind.ATTEMPT_SENT, attempt=number, wait=wait_before or None)
        outcome: ResponseInfo | Failure = yield Send(number, headers, remove, timeout)
        ended = clock.monotonic()
        if pacer is not None:
            yield PacerCall(pacer, "report", (partition, outcome, started, probe))

        if (
            isinstance(outcome, ResponseInfo)
            and outcome.status == 401
            and token is not None
            and use_auth is not None
        ):
            events.emit(EventKind.ATTEMPT_DONE, attempt=number, status=401,
                        elapsed=ended - started, reason="unauthorized")
            if refreshed or not request.replayable:
                why = ("401 again after a token refresh" if refreshed
                       else "401 and the body cannot be replayed")
                record(401, None, started, f"gave up: {why}")
                events.emit(EventKind.GAVE_UP, attempt=number, status=401, reason=why)
                if policy.on_exhausted == "raise":
                    return FlowResult(
                        tuple(history),
                        Unauthorized(_summary(method, url, history, why), history=history),
                    )
                return FlowResult(tuple(history))
            refreshed = True
            tries -= 1  # the replay after a refresh does not spend a retry
            record(401, None, started, "refresh token and replay")
            yield FetchToken(use_auth.token_cache, deadline, stale=token)
            wait_before = 0.0
            continue

        decision = decide(
            policy,
            outcome,
            attempt=tries,
            idempotent=idempotent,
            replayable=request.replayable,
            elapsed=ended - start,
            wall_now=clock.wall(),
            rng=rng,
        )
        status = outcome.status if isinstance(outcome, ResponseInfo) else None
        error = outcome.kind.value if isinstance(outcome, Failure) else None
        verdict = decision.verdict
        if verdict is Verdict.DONE:
            record(status, error, started, "done")
            events.emit(EventKind.ATTEMPT_DONE, attempt=number, status=status,
                        elapsed=ended - started, reason=decision.reason)
            return FlowResult(tuple(history))
        events.emit(EventKind.ATTEMPT_DONE, attempt=number, status=status, error=error,
                    elapsed=ended - started, reason=decision.reason)
        if verdict is Verdict.RETRY and pacer is not None:
            allowed = yield PacerCall(pacer, "try_retry")
            if not allowed:
                decision = Decision(
                    Verdict.GIVE_UP,
                    f"{decision.reason.split(':')[0]}: the retry budget is spent "
                    "(retries are over their share of recent traffic)",
                    error=RetryBudgetExhausted,
                )
                verdict = Verdict.GIVE_UP
        if verdict is Verdict.GIVE_UP:
            record(status, error, started, f"gave up: {decision.reason}")
            return finish(decision, outcome)
        record(status, error, started, f"retry: {decision.reason}")
        events.emit(EventKind.RETRY_SCHEDULED, attempt=number, status=status, error=error,
                    wait=decision.wait, reason=decision.reason)
        wait_before = decision.wait
        yield Sleep(decision.wait)
