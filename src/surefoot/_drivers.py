"""The synchronous driver of :func:`~surefoot._core._pipeline.request_flow`.

Adapters give it two callables: ``send`` (one attempt → an outcome and the native
response or exception) and ``discard`` (release a response that will not be returned).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from surefoot._core._clock import Clock
from surefoot._core._pipeline import FetchToken, FlowResult, PacerCall, Send, Sleep
from surefoot._core._policy import Failure, ResponseInfo

__all__ = ["drive_async", "drive_sync", "make_pacer"]

def drive_sync(
    flow: Generator[Any, Any, FlowResult],
    *,
    send: Callable[[Send], tuple[ResponseInfo | Failure, Any]],
    discard: Callable[[Any], None],
    clock: Clock,
) -> tuple[Any, FlowResult]:
    """Run the flow to its end. Returns the last native response and the result; raises
    the flow's error (with ``.response`` and ``.exception`` set: the last native response
    and the last exception of the HTTP library, which is not chained because its message
    may carry the full URL)."""
    native: Any = None
    cause: BaseException | None = None
    try:
        effect = next(flow)
        while True:
            value: Any
            if isinstance(effect, Send):
                if native is not None:
                    discard(native)
                    native = None
                outcome, obj = send(effect)
                if isinstance(outcome, ResponseInfo):
                    native, cause = obj, None
                else:
                    cause = obj
                value = outcome
            elif isinstance(effect, PacerCall):
                value = effect.run(clock)
            elif isinstance(effect, Sleep):
                clock.sleep(effect.seconds)
                value = None
            elif isinstance(effect, FetchToken):
                cache = effect.cache
                if effect.stale is not None:
                    value = cache.refresh_if_current(effect.stale, deadline=effect.deadline)
                else:
                    value = cache.get(deadline=effect.deadline)
            else:  # pragma: no cover - programming error
                raise TypeError(f"unknown effect {effect!r}")
            effect = flow.send(value)
    except StopIteration as stop:
        result: FlowResult = stop.value
    except BaseException:
        if native is not None:
            discard(native)
        raise
    if result.error is not None:
        result.error.response = native
        result.error.exception = cause
        # Not chained: the HTTP library's message may carry the full URL and its query.
        raise result.error from None
    return native, result


async def drive_async(
    flow: Generator[Any, Any, FlowResult],
    *,
    send: Callable[[Send], Awaitable[tuple[ResponseInfo | Failure, Any]]],
    discard: Callable[[Any], Awaitable[None]],
    clock: Clock,
) -> tuple[Any, FlowResult]:
    """The same as :func:`drive_sync` for an event loop: waits are ``clock.asleep``,
    token work runs off the loop (``TokenCache.get_async``)."""
    native: Any = None
    cause: BaseException | None = None
    try:
        effect = next(flow)
        while True:
            value: Any
            if isinstance(effect, Send):
                if native is not None:
                    await discard(native)
                    native = None
                outcome, obj = await send(effect)
                if isinstance(outcome, ResponseInfo):
                    native, cause = obj, None
                else:
                    cause = obj
                value = outcome
            elif isinstance(effect, PacerCall):
                if effect.pacer.does_io:
                    # A shared store (Redis, SQLite): one round trip, off the loop.
                    value = await asyncio.to_thread(effect.run, clock)
                else:
                    value = effect.run(clock)  # O(1), microseconds: stay on the loop
            elif isinstance(effect, Sleep):
                await clock.asleep(effect.seconds)
                value = None
            elif isinstance(effect, FetchToken):
                cache = effect.cache
                if effect.stale is not None:
                    value = await cache.refresh_if_current_async(
                        effect.stale, deadline=effect.deadline
                    )
                else:
                    value = await cache.get_async(deadline=effect.deadline)
            else:  # pragma: no cover - programming error
                raise TypeError(f"unknown effect {effect!r}")
            effect = flow.send(value)
    except StopIteration as stop:
        result: FlowResult = stop.value
    except BaseException:
        if native is not None:
            await discard(native)
        raise
    if result.error is not None:
        result.error.response = native
        result.error.exception = cause
        # Not chained: the HTTP library's message may carry the full URL and its query.
        raise result.error from None
    return native, result


def make_pacer(pacing: Any) -> Any:
    """An adapter's ``pacing=`` option: ``None``, a ``PacingPolicy`` configuration (a pacer of
    its own) or a ``Pacer`` (shared with other clients)."""
    if pacing is None:
        return None
    from surefoot.pacing._config import PacingPolicy
    from surefoot.pacing._pacer import Pacer

    if isinstance(pacing, Pacer):
        return pacing
    if isinstance(pacing, PacingPolicy):
        return Pacer(pacing)
    raise TypeError("pacing must be a surefoot.PacingPolicy or a surefoot.Pacer")
