"""The per-request pipeline as a generator of effects — sans-I/O.

``request_flow`` runs one *logical* request. It yields effects (:mod:`._effects`) that a
driver carries out — sync for requests and ``httpx.Client``, async for
``httpx.AsyncClient`` — and is sent back their results. It returns a
:class:`~._state.FlowResult`: hand the last response to the caller, or raise the error.

Per attempt: pacing (wait for a rate-limit slot) → the breaker (may this attempt go?) →
auth (sign, or attach a token: fresh for each attempt) → send → classify → decide. The
idempotency key belongs to the logical request, the signature to the attempt.

Every way of attaching surefoot runs this flow: the transports and the transport adapter
with the caller's policy, the auth objects used alone (``session.auth``,
``httpx.Client(auth=...)``) with a no-retry policy, and the token cache's calls to the
token endpoint.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, cast

from surefoot._core._clock import Clock
from surefoot._core._effects import (
    Admit,
    AuthStrategy,
    Effect,
    FetchToken,
    Gate,
    Release,
    ReportOutcome,
    Reserve,
    Send,
    Sleep,
    TryRetry,
)
from surefoot._core._messages import HttpRequest
from surefoot._core._origin import withheld_headers
from surefoot._core._policy import (
    Decision,
    Failure,
    ResponseInfo,
    RetryPolicy,
    Verdict,
    decide,
    over_cap,
)
from surefoot._core._state import FlowResult, RequestState, RequestView
from surefoot.errors import (
    CircuitOpen,
    DeadlineExceeded,
    RequestFailed,
    RetryAfterTooLong,
    RetryBudgetExhausted,
    SigningError,
    SurefootError,
    TransportError,
    Unauthorized,
)
from surefoot.events import EventKind, Hook

if TYPE_CHECKING:
    from surefoot._core._history import Attempt
    from surefoot.oauth._token import Token
    from surefoot.pacing._breaker import Admission
    from surefoot.pacing._gcra import Reservation
    from surefoot.pacing._pacer import Pacer

__all__ = ["Flow", "FlowResult", "RequestView", "request_flow"]

#: A flow: yields effects, is sent each one's result, returns a FlowResult.
Flow = Generator[Effect, object, FlowResult]


def request_flow(
    request: RequestView,
    *,
    policy: RetryPolicy,
    auth: AuthStrategy | None,
    clock: Clock,
    hook: Hook,
    rng: Callable[[], float],
    key_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
    pacer: Pacer | None = None,
) -> Flow:
    method = request.method.upper()
    state = RequestState(method, request.url, policy, clock, hook)
    events = state.events
    if pacer is not None:
        events.partition = pacer.partition_of(request.url, request.headers)
    events.emit(EventKind.REQUEST_STARTED)
    try:
        result = yield from _request(state, request, method, policy, auth, clock, rng,
                                     key_factory, pacer)
    except GeneratorExit:  # the driver let go of the flow (cancelled, interrupted)
        _done(state, clock, None, error="abandoned", reason="the request was abandoned")
        raise
    except BaseException as exc:
        # (only surefoot's own messages, which never carry a secret: another library's
        # may quote the whole URL)
        reason = str(exc) if isinstance(exc, SurefootError) else ""
        _done(state, clock, None, error=type(exc).__name__, reason=reason)
        raise
    _done(state, clock, result)
    return result


def _done(state: RequestState, clock: Clock, result: FlowResult | None, *,
          error: str | None = None, reason: str = "") -> None:
    """``REQUEST_DONE``: the logical request is over, however it ended (``result``: the
    flow's, else it raised ``error``)."""
    events = state.events
    if events.wants is not None and not events.wants(EventKind.REQUEST_DONE):
        return
    status: int | None = None
    if result is not None:
        last = result.history[-1] if result.history else None
        status = None if last is None else last.status
        if result.error is not None:
            error, reason = type(result.error).__name__, str(result.error)
        elif last is not None:
            error, reason = last.error, last.decision
    events.emit(EventKind.REQUEST_DONE, attempt=state.number, status=status, error=error,
                elapsed=clock.monotonic() - state.start, reason=reason)


def _request(
    state: RequestState,
    request: RequestView,
    method: str,
    policy: RetryPolicy,
    auth: AuthStrategy | None,
    clock: Clock,
    rng: Callable[[], float],
    key_factory: Callable[[], str],
    pacer: Pacer | None,
) -> Flow:
    if method in policy.idempotent_methods:
        base_headers: dict[str, str] = {}
        idempotent = True
    else:
        base_headers, idempotent = _idempotency(request, policy, key_factory)
    use_auth, remove = (
        (None, ()) if auth is None and not request.redirected_elsewhere
        else _credentials(state, request, auth)
    )

    partition = state.events.partition
    # An in-process pacer does no I/O: the flow runs its operations itself (each one is
    # the effect's own ``run``), without a round trip through the driver.
    local = pacer is not None and not pacer.does_io

    while True:
        probe = False
        slot: float | None = None
        if pacer is not None:
            # (the first attempt's gate counts the logical request's arrival)
            gated = yield from _gate(state, pacer, partition, clock, local, state.number == 0)
            if isinstance(gated, FlowResult):
                return gated
            probe, slot = gated
        state.number += 1
        state.tries += 1
        token: Token | None = None
        headers = dict(base_headers)
        if use_auth is not None:
            token = yield from _authorize(state, use_auth, request, method, headers, clock)
        started = clock.monotonic()
        timeout = state.timeout_at(started)
        if state.deadline is not None and state.deadline - started <= 0:
            return state.give_up(
                _error(DeadlineExceeded),
                f"the {policy.deadline:g} s deadline was reached before the attempt",
            )
        state.events.emit(EventKind.ATTEMPT_SENT, attempt=state.number,
                          wait=state.wait_before or None)
        outcome = cast("ResponseInfo | Failure", (
            yield Send(state.number, headers, remove, timeout)
        ))
        ended = clock.monotonic()
        if pacer is not None:
            late = 0.0 if slot is None else max(started - slot, 0.0)
            report = ReportOutcome(pacer, partition, outcome, started, probe, late, state.deadline)
            _ = report.run(clock) if local else (yield report)

        if isinstance(outcome, ResponseInfo) and outcome.status == 401 and token is not None:
            assert use_auth is not None  # a token was attached
            result = yield from _after_401(state, request, use_auth, token, started, ended)
            if result is not None:
                return result
            continue

        decision = decide(
            policy, outcome, attempt=state.tries, idempotent=idempotent,
            replayable=request.replayable, elapsed=ended - state.start,
            wall_now=clock.wall(), rng=rng,
        )
        if decision.verdict is Verdict.RETRY and pacer is not None:
            spend = TryRetry(pacer, state.deadline)
            if not (spend.run(clock) if local else (yield spend)):
                decision = Decision(
                    Verdict.GIVE_UP,
                    f"{decision.cause}: the retry budget is spent "
                    "(retries are over their share of recent traffic)",
                    error=RetryBudgetExhausted,
                )
        result = _conclude(state, decision, outcome, started, ended)
        if result is not None:
            return result
        state.wait_before = decision.wait
        yield Sleep(decision.wait)


def _credentials(
    state: RequestState, request: RequestView, auth: AuthStrategy | None
) -> tuple[AuthStrategy | None, tuple[str, ...]]:
    """The auth to apply (none where the credentials do not belong) and the header names
    to remove from every attempt: on a redirect hop to another origin, the auth object's
    credential headers and every credential header the hop carries, whoever set it
    (:func:`~surefoot._core._origin.withheld_headers`, the one rule)."""
    if request.redirected_elsewhere:
        remove = withheld_headers(request.headers, auth.credential_headers if auth else ())
        if auth is not None or remove:
            state.events.emit(  # names only: never a value
                EventKind.CREDENTIALS_WITHHELD,
                reason="a redirect hop to another origin"
                + (f": {', '.join(remove)} withheld" if remove else ""),
            )
        return None, remove
    if auth is None:
        return None, ()
    if not request.credentials_allowed:
        state.events.emit(EventKind.CREDENTIALS_WITHHELD,
                          reason="not the origin the credentials belong to")
        return None, auth.credential_headers
    if auth.signs_body and not request.replayable:
        raise SigningError("cannot sign a streaming request body (the signature covers the "
                           "body): pass bytes, or with requests a seekable file")
    return auth, ()


def _idempotency(
    request: RequestView, policy: RetryPolicy, key_factory: Callable[[], str]
) -> tuple[dict[str, str], bool]:
    """For a method that is not idempotent: the logical request's own headers (an
    idempotency key, generated once) and whether it may be repeated (it has a key)."""
    headers: dict[str, str] = {}
    key = request.header(policy.idempotency_header)
    if key is None and policy.idempotency_keys == "auto" and request.method.upper() in (
        "POST", "PATCH"
    ):
        key = key_factory()
        headers[policy.idempotency_header] = key
    return headers, key is not None


def _gate(
    state: RequestState, pacer: Pacer, partition: str, clock: Clock, local: bool,
    arrival: bool,
) -> Generator[Effect, object, FlowResult | tuple[bool, float]]:
    """Pacing, then the breaker: wait for this attempt's slot and its admission. Returns
    whether the attempt is the breaker's probe and its slot, or a FlowResult when it
    must give up.

    The wait for a slot obeys the same rules as a retry's wait (:func:`decide`): none
    longer than ``retry_after_cap`` (counted from when the attempt began waiting for
    its slot, re-bookings included: a slot far off is the server's hold on the
    partition, a Retry-After in all but name), none past the deadline. The pacer holds
    the partition for as long as the server said, for every caller; each request
    applies its own policy to it."""
    deadline = state.deadline
    while True:
        reservation: Reservation | None = None
        admission: Admission | None = None
        waiting_since = clock.monotonic()
        while True:
            if reservation is None:  # the attempt's first booking: one step (Pacer.gate)
                gate = Gate(pacer, partition, arrival, deadline)
                reservation, admission = cast(
                    "tuple[Reservation, Admission | None]",
                    gate.run(clock) if local else (yield gate),
                )
                arrival = False
            else:
                booking = Reserve(pacer, partition, reservation, deadline)
                reservation = cast(
                    "Reservation", booking.run(clock) if local else (yield booking)
                )
                admission = None
            now = clock.monotonic()
            wait = reservation.at - now
            if wait <= 0:
                break
            # (A tentative reservation is no slot, only "ask again" during first
            # contact, which lasts a fraction of a second by design.)
            refused = None if reservation.tentative else over_cap(
                state.policy, reservation.at - waiting_since,
                "waiting for the next rate-limit slot would take",
            )
            if refused is not None:
                assert refused.requested_wait is not None
                yield from _release(pacer, partition, reservation, deadline, clock, local)
                return state.give_up(_too_long(refused.requested_wait), refused.reason)
            if deadline is not None and now + wait >= deadline:
                yield from _release(pacer, partition, reservation, deadline, clock, local)
                return state.give_up(
                    _error(DeadlineExceeded),
                    f"the next rate-limit slot is in {wait:.3f} s, past the deadline",
                )
            recheck = reservation.recheck
            pause = wait if recheck is None else min(wait, max(recheck - now, 0.0))
            state.events.emit(EventKind.PACING_WAIT, attempt=state.number + 1, wait=pause,
                              reason="waiting for a rate-limit slot")
            yield Sleep(pause)
        if admission is None:
            asking = Admit(pacer, partition, deadline)
            admission = cast("Admission", asking.run(clock) if local else (yield asking))
        if admission.allowed:
            return bool(admission.probe), reservation.at
        retry_at = admission.retry_at
        assert retry_at is not None  # refused: the breaker says when to come back
        retry_in = max(retry_at - clock.monotonic(), 0.0)
        state.events.emit(EventKind.CIRCUIT_OPEN, attempt=state.number + 1, wait=retry_in,
                          reason=f"circuit open; next probe in {retry_in:.3f} s")
        most = state.policy.circuit_wait
        if most is not None and retry_in > most:
            return state.give_up(
                functools.partial(_circuit_open, retry_in=retry_in),
                f"the circuit is open and its next probe is in {retry_in:.3f} s"
                + (" (failing fast: RetryPolicy(circuit_wait=0))" if most == 0 else
                   f", longer than circuit_wait ({most:g} s)"),
                event_reason=f"circuit open; next probe in {retry_in:.3f} s",
            )
        if deadline is not None and retry_at >= deadline:
            return state.give_up(
                functools.partial(_circuit_open, retry_in=retry_in),
                f"the circuit is open and its next probe (in {retry_in:.3f} s) is past the "
                "deadline",
                event_reason=f"circuit open; next probe in {retry_in:.3f} s",
            )
        yield Sleep(retry_in)  # waiting is allowed and the probe is due in time


def _release(
    pacer: Pacer,
    partition: str,
    reservation: Reservation,
    deadline: float | None,
    clock: Clock,
    local: bool,
) -> Generator[Effect, object, None]:
    release = Release(pacer, partition, reservation, deadline)
    _ = release.run(clock) if local else (yield release)


def _authorize(
    state: RequestState,
    auth: AuthStrategy,
    request: RequestView,
    method: str,
    headers: dict[str, str],
    clock: Clock,
) -> Generator[Effect, object, Token | None]:
    """Attach this attempt's credentials to ``headers``: a token (fetched for each
    attempt: it may have been refreshed meanwhile) or a fresh signature."""
    token: Token | None = None
    source = auth.token_source
    if source is not None:
        token = cast("Token", (yield FetchToken(source, state.deadline, events=state.events)))
    # The attempt's other headers as sent: the request's own (repeated fields kept) and
    # the logical request's (an idempotency key).
    sent = {**request.headers, **headers} if headers else request.headers
    attempt = HttpRequest(method, request.url, sent, request.body or b"")
    headers.update(auth.attempt_headers(attempt, token, now=clock.wall()))
    if auth.signs_body:
        state.events.emit(EventKind.SIGNATURE_APPLIED, attempt=state.number)
    return token


def _after_401(
    state: RequestState,
    request: RequestView,
    auth: AuthStrategy,
    token: Token,
    started: float,
    ended: float,
) -> Generator[Effect, object, FlowResult | None]:
    """A 401 for the token we sent: refresh it and replay once (``None``), or give up."""
    state.events.emit(EventKind.ATTEMPT_DONE, attempt=state.number, status=401,
                      elapsed=ended - started, reason="unauthorized")
    if state.refreshed or not request.replayable:
        why = ("401 again after a token refresh" if state.refreshed
               else "401 and the body cannot be replayed")
        state.record(401, None, started, ended, f"gave up: {why}")
        raising = state.policy.on_exhausted == "raise"
        return state.give_up(_error(Unauthorized) if raising else None, why, status=401)
    state.refreshed = True
    state.tries -= 1  # the replay after a refresh does not spend a retry
    state.record(401, None, started, ended, "refresh token and replay")
    source = auth.token_source
    assert source is not None  # a token was attached
    yield FetchToken(source, state.deadline, stale=token, events=state.events)
    state.wait_before = 0.0
    return None


def _conclude(
    state: RequestState,
    decision: Decision,
    outcome: ResponseInfo | Failure,
    started: float,
    ended: float,
) -> FlowResult | None:
    """Record the attempt and act on the decision: the result when the request is over,
    ``None`` when it is retried (after ``decision.wait``)."""
    status = outcome.status if isinstance(outcome, ResponseInfo) else None
    kind = outcome.kind.value if isinstance(outcome, Failure) else None
    verdict = decision.verdict
    if verdict is Verdict.DONE:
        state.record(status, kind, started, ended, "done")
        state.events.emit(EventKind.ATTEMPT_DONE, attempt=state.number, status=status,
                          elapsed=ended - started, reason=decision.reason)
        return FlowResult(tuple(state.history))
    state.events.emit(EventKind.ATTEMPT_DONE, attempt=state.number, status=status,
                      error=kind, elapsed=ended - started, reason=decision.reason)
    if verdict is Verdict.GIVE_UP:
        state.record(status, kind, started, ended, f"gave up: {decision.reason}")
        return state.give_up(
            _failure_error(state, decision, outcome), decision.reason, status=status, kind=kind
        )
    state.record(status, kind, started, ended, f"retry: {decision.reason}")
    state.events.emit(EventKind.RETRY_SCHEDULED, attempt=state.number, status=status,
                      error=kind, wait=decision.wait, reason=decision.reason)
    return None


ErrorFactory = Callable[[str, "tuple[Attempt, ...]"], RequestFailed]


def _error(error_type: type[RequestFailed]) -> ErrorFactory:
    return lambda message, history: error_type(message, history=history)


def _too_long(requested: float) -> ErrorFactory:
    return lambda message, history: RetryAfterTooLong(
        message, requested_wait=requested, history=history
    )


def _circuit_open(message: str, history: tuple[Attempt, ...], *, retry_in: float) -> CircuitOpen:
    return CircuitOpen(message, retry_in=retry_in, history=history)


def _failure_error(
    state: RequestState, decision: Decision, outcome: ResponseInfo | Failure
) -> ErrorFactory | None:
    """The error a GIVE_UP decision raises (``None``: hand the response back)."""
    error_type = decision.error or RequestFailed
    if isinstance(outcome, Failure):
        if error_type is TransportError:
            kind = outcome.kind.value
            return lambda message, history: TransportError(message, kind=kind, history=history)
        return _error(error_type)
    if error_type is RetryAfterTooLong:
        assert decision.requested_wait is not None
        return _too_long(decision.requested_wait)
    return _error(error_type) if state.policy.on_exhausted == "raise" else None
