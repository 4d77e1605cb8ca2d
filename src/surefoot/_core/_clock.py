"""Time, injected. The core never reads a clock or sleeps on its own.

``Clock.monotonic()`` measures durations and deadlines, ``Clock.wall()`` stamps
signatures and token expiry. ``sleep``/``asleep`` are what the adapters call to wait.

Test mode (:func:`set_testing`) replaces real waiting by a virtual clock, so the
users' own test suites run retries and Retry-After waits without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Clock",
    "FakeClock",
    "SystemClock",
    "default_clock",
    "is_testing",
    "set_testing",
    "testing",
]


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def wall(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


@dataclass(slots=True)
class FakeClock:
    """A virtual clock: ``sleep`` advances time at once instead of waiting.

    Thread-safe. ``slept`` records every wait, for assertions in tests.
    """

    start_monotonic: float = 1_000.0
    start_wall: float = field(default_factory=time.time)
    slept: list[float] = field(default_factory=list)
    _offset: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def monotonic(self) -> float:
        return self.start_monotonic + self._offset

    def wall(self) -> float:
        return self.start_wall + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += max(seconds, 0.0)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self._offset += max(seconds, 0.0)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


class _TestAwareClock:
    """The default clock: real, unless test mode is on, then virtual waits."""

    __slots__ = ()

    def monotonic(self) -> float:
        fake = _testing.clock
        return fake.monotonic() if fake is not None else time.monotonic()

    def wall(self) -> float:
        fake = _testing.clock
        return fake.wall() if fake is not None else time.time()

    def sleep(self, seconds: float) -> None:
        fake = _testing.clock
        if fake is not None:
            fake.sleep(seconds)
        elif seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        fake = _testing.clock
        if fake is not None:
            await fake.asleep(seconds)
        else:
            await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "default_clock"


class _TestingState:
    __slots__ = ("clock",)

    def __init__(self) -> None:
        self.clock: FakeClock | None = None


_testing = _TestingState()

#: The clock every policy uses unless one is injected.
default_clock: Clock = _TestAwareClock()


def set_testing(on: bool) -> FakeClock | None:
    """Switch test mode on or off globally.

    In test mode, surefoot never really waits: backoff and Retry-After waits advance a
    virtual clock (returned, so tests can inspect ``clock.slept``). Deadlines still
    apply, measured on that virtual clock; network time is not counted.
    """
    if on:
        if _testing.clock is None:
            _testing.clock = FakeClock(start_monotonic=time.monotonic(), start_wall=time.time())
        return _testing.clock
    _testing.clock = None
    return None


def is_testing() -> bool:
    return _testing.clock is not None


@contextmanager
def testing() -> Iterator[FakeClock]:
    """Context manager form of :func:`set_testing`:
    ``with surefoot.testing.testing() as clock: ...``."""
    was = _testing.clock
    _testing.clock = None
    clock = set_testing(True)
    assert clock is not None
    try:
        yield clock
    finally:
        _testing.clock = was
