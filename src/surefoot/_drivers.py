"""The drivers of :func:`~surefoot._core._pipeline.request_flow`: one for blocking code,
one for an event loop.

Both carry out every effect but :class:`Send` themselves (waits, token work, the pacer's
operations: a shared store's waits within what is left of the request's deadline, see
:mod:`surefoot.stores._deadline`) and stop at each :class:`Send` for the caller to send
the attempt its own way: :func:`advance` / :func:`advance_async` are the step ("send
this value in, run until the flow wants an attempt sent or ends"); :func:`drive_sync` /
:func:`drive_async` are the loops for a transport that sends attempts itself. The
standalone auth objects drive the same flow with the same steps, yielding their attempts
to httpx or sending them through requests' connection (:mod:`surefoot._adapters._auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from surefoot._core._clock import Clock
from surefoot._core._effects import (
    PACER_EFFECTS,
    Effect,
    FetchToken,
    PacerEffect,
    Send,
    Sleep,
)
from surefoot._core._pipeline import Flow, FlowResult
from surefoot._core._policy import Failure, ResponseInfo
from surefoot.errors import ConfigurationError
from surefoot.pacing._config import PacingPolicy
from surefoot.pacing._pacer import Pacer
from surefoot.stores._deadline import within

__all__ = [
    "Outcome",
    "advance",
    "advance_async",
    "drive_async",
    "drive_sync",
    "finish",
    "make_pacer",
]

N = TypeVar("N")

#: What sending one attempt gives: the outcome the core sees, and the native response
#: (or the HTTP library's exception).
Outcome = tuple["ResponseInfo | Failure", object]


def _left(effect: FetchToken | PacerEffect, clock: Clock) -> float | None:
    """Seconds left of the request's deadline (``None``: none), for the store calls the
    effect makes (:func:`~surefoot.stores._deadline.within`: in real time, whatever the
    flow's clock)."""
    return None if effect.deadline is None else effect.deadline - clock.monotonic()


def _carry_out(effect: Effect, clock: Clock) -> object:
    if isinstance(effect, Sleep):
        clock.sleep(effect.seconds)
        return None
    if isinstance(effect, FetchToken):
        with within(_left(effect, clock)):
            return effect.run()
    if isinstance(effect, PACER_EFFECTS):
        if not effect.pacer.does_io:
            return effect.run(clock)  # in-process state: nothing to bound
        with within(_left(effect, clock)):
            return effect.run(clock)
    raise TypeError(f"unknown effect {effect!r}")  # pragma: no cover - programming error


async def _carry_out_async(effect: Effect, clock: Clock) -> object:
    # (``within`` is context-local: the worker threads below run in a copy of this
    # task's context, so the store calls there see the deadline too.)
    if isinstance(effect, Sleep):
        await clock.asleep(effect.seconds)
        return None
    if isinstance(effect, FetchToken):
        with within(_left(effect, clock)):
            return await effect.run_async()  # token work runs off the loop
    if isinstance(effect, PACER_EFFECTS):
        if effect.pacer.does_io:  # a shared store (Redis, SQLite): one round trip, off the loop
            with within(_left(effect, clock)):
                return await asyncio.to_thread(effect.run, clock)
        return effect.run(clock)  # O(1), microseconds: stay on the loop
    raise TypeError(f"unknown effect {effect!r}")  # pragma: no cover - programming error


def _resume(flow: Flow, value: object) -> Effect | FlowResult:
    """The flow's next effect, or its result when it ends."""
    try:
        return flow.send(value)
    except StopIteration as stop:
        result: FlowResult = stop.value
        return result


#: where a driver's step stops: an attempt to send, or the end
_STOPS = (Send, FlowResult)


def advance(flow: Flow, value: object, clock: Clock) -> Send | FlowResult:
    """Send ``value`` into the flow (``None`` to start it) and carry out its effects until
    it asks for an attempt to be sent (returned) or ends (its result returned)."""
    while True:
        try:
            step = flow.send(value)
        except StopIteration as stop:
            result: FlowResult = stop.value
            return result
        if isinstance(step, Send):
            return step
        value = _carry_out(step, clock)


async def _settle_async(
    flow: Flow, step: Effect | FlowResult, clock: Clock
) -> Send | FlowResult:
    """Carry out ``step`` and the effects after it on the event loop, up to a stop."""
    while not isinstance(step, _STOPS):
        step = _resume(flow, await _carry_out_async(step, clock))
    return step


async def advance_async(flow: Flow, value: object, clock: Clock) -> Send | FlowResult:
    """:func:`advance` on an event loop: waits are ``clock.asleep``, token work and store
    round trips run in worker threads."""
    step = _resume(flow, value)
    return step if isinstance(step, _STOPS) else await _settle_async(flow, step, clock)


class _Last(Generic[N]):
    """The last native response (released when another attempt is sent) and the last
    exception of the HTTP library."""

    __slots__ = ("cause", "native")

    def __init__(self) -> None:
        self.native: N | None = None
        self.cause: BaseException | None = None

    def take(self, outcome: Outcome) -> ResponseInfo | Failure:
        info, obj = outcome
        if isinstance(info, ResponseInfo):
            self.native, self.cause = obj, None  # type: ignore[assignment]
        else:
            self.cause = obj if isinstance(obj, BaseException) else None
        return info

    def pop(self) -> N | None:
        native, self.native = self.native, None
        return native


def _abandon(flow: Flow, exc: BaseException) -> None:
    """The request ends with ``exc``, raised outside the flow (by the transport, or by
    an effect the driver carried out): tell the flow, which reports how the request
    ended (``REQUEST_DONE``) and re-raises. A flow that raised it itself is over."""
    if getattr(flow, "gi_frame", None) is None:  # (a generator that is over)
        return
    with contextlib.suppress(BaseException):  # exc, re-raised: the caller raises it
        flow.throw(exc)


def finish(result: FlowResult, native: object, cause: BaseException | None) -> None:
    """Raise the flow's error, if any, with ``.response`` (the last native response) and
    ``.exception`` (the HTTP library's last exception) set. Not chained: the library's
    message may carry the full URL and its query."""
    if result.error is not None:
        result.error.response = native
        result.error.exception = cause
        raise result.error from None


def drive_sync(
    flow: Flow,
    *,
    send: Callable[[Send], Outcome],
    discard: Callable[[N], None],
    clock: Clock,
) -> tuple[N, FlowResult]:
    """Run the flow to its end, sending each attempt with ``send`` (``discard`` releases
    a response that will not be returned). Returns the last native response and the
    result; raises the flow's error (see :func:`finish`)."""
    last: _Last[N] = _Last()
    try:
        step = advance(flow, None, clock)
        while isinstance(step, Send):
            stale = last.pop()
            if stale is not None:
                discard(stale)
            step = advance(flow, last.take(send(step)), clock)
    except BaseException as exc:
        _abandon(flow, exc)
        stale = last.pop()
        if stale is not None:
            discard(stale)
        raise
    finish(step, last.native, last.cause)
    assert last.native is not None  # no error: the last attempt got a response
    return last.native, step


async def drive_async(
    flow: Flow,
    *,
    send: Callable[[Send], Awaitable[Outcome]],
    discard: Callable[[N], Awaitable[None]],
    clock: Clock,
) -> tuple[N, FlowResult]:
    """:func:`drive_sync` on an event loop."""
    last: _Last[N] = _Last()
    try:
        # (the common step, straight to an attempt or the end, awaits nothing)
        step = _resume(flow, None)
        while True:
            if not isinstance(step, _STOPS):
                step = await _settle_async(flow, step, clock)
            if not isinstance(step, Send):
                break
            stale = last.pop()
            if stale is not None:
                await discard(stale)
            step = _resume(flow, last.take(await send(step)))
    except BaseException as exc:
        _abandon(flow, exc)
        stale = last.pop()
        if stale is not None:
            await discard(stale)
        raise
    finish(step, last.native, last.cause)
    assert last.native is not None  # no error: the last attempt got a response
    return last.native, step


def make_pacer(pacing: PacingPolicy | Pacer | None) -> Pacer | None:
    """A front door's ``pacing=`` option: ``None``, a :class:`PacingPolicy` (a pacer of its
    own) or a :class:`Pacer` (shared with other clients)."""
    if pacing is None or isinstance(pacing, Pacer):
        return pacing
    if isinstance(pacing, PacingPolicy):
        return Pacer(pacing)
    raise ConfigurationError(
        "pacing must be a surefoot.PacingPolicy, a surefoot.Pacer or None, not "
        f"{type(pacing).__name__}")
