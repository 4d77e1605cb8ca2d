"""What is left of the request's deadline, for the waits inside a shared store.

A request's pacer and token-store calls run within its deadline. The driver that carries
them out says so with :func:`within` (the seconds left of the request's deadline, turned
into a ``time.monotonic()`` instant, context-local: it follows the call into the worker
thread of an async driver, never into another request's calls). Every wait inside a
store — SQLite's busy wait and lock retries, a Redis round trip, the Redis pacing lock —
asks :func:`wait_for` how long it may take. The rule, here only:

* no request deadline: the store's own timeout;
* else at most :data:`SHARE` of what is left of the deadline, so that a store that does
  not answer leaves the request time to go on without it (failing open: with local
  state) or to report it (failing closed: :class:`~surefoot.StoreUnavailable`) — but
  never less than :data:`MIN_WAIT`, so that a healthy store is not reported down (and
  skipped for a second, for every request of the process) just because one request
  reached it with its deadline all but spent.

A store call that runs out of this time fails like a store that is down
(:class:`~surefoot.StoreUnavailable`), and the store's failure mode decides what
happens next (:class:`~surefoot.stores._failure.FailureMode`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import overload

__all__ = ["MIN_WAIT", "SHARE", "wait_for", "within"]

#: The part of what is left of the request's deadline that one store wait may take.
SHARE = 0.5
#: The shortest a store wait is cut to (seconds), even at or past the deadline.
MIN_WAIT = 0.02

#: The request's deadline, a ``time.monotonic()`` instant (``None``: no deadline).
_deadline: ContextVar[float | None] = ContextVar("surefoot_store_deadline", default=None)


@contextmanager
def within(seconds_left: float | None) -> Iterator[None]:
    """Store calls made inside are bounded by a request deadline ``seconds_left`` seconds
    from now (``None``: no deadline of its own; an enclosing one still applies)."""
    if seconds_left is None:
        yield
        return
    instant = time.monotonic() + seconds_left
    enclosing = _deadline.get()
    token = _deadline.set(instant if enclosing is None else min(instant, enclosing))
    try:
        yield
    finally:
        _deadline.reset(token)


@overload
def wait_for(timeout: float) -> float: ...
@overload
def wait_for(timeout: None) -> float | None: ...
def wait_for(timeout: float | None) -> float | None:
    """How long a store may wait now: its own ``timeout`` (``None``: no limit of its own),
    cut down to the request's share of its deadline (see the module's rule)."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    share = max((deadline - time.monotonic()) * SHARE, MIN_WAIT)
    return share if timeout is None else min(timeout, share)
