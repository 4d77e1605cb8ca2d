"""The whole attempt within the deadline: connect, headers and body.

The HTTP stacks' timeouts bound each socket operation, not the attempt: a server that
trickles its status line, headers or body a byte at a time, each within the read timeout,
would hold an attempt (and its deadline) for as long as it likes. So:

* where an adapter reads the body inside the attempt, it reads it with
  :func:`read_within`: one receive at a time, the socket's timeout shrunk to what is left
  before each, and the clock checked after each;
* the async transport runs the whole attempt in one cancel scope;
* the sync httpx transport shrinks each socket operation's timeout to what is left of
  the attempt (its network backend wrapped, :mod:`surefoot._adapters._httpx`);
* requests (whose status line and headers are read inside ``http.client``) registers the
  attempt's connection with the process's :class:`Watchdog`: one thread for every
  attempt, which shuts the socket of an attempt past its end down (the blocked read
  returns at once, and the attempt is reported timed out).

An attempt whose end is the request's deadline ends early by a margin (:class:`Lateness`,
:class:`Reserve`): how late this process's attempts have recently ended after their time
was up (a thread or an event loop that wakes up late, the unwinding after it), so that the
call returns by its deadline rather than that much after it.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from surefoot._core._clock import Clock

__all__ = [
    "ASYNC_LATENESS",
    "MAX_SOCKET_TIMEOUT",
    "SYNC_LATENESS",
    "AttemptTimedOut",
    "Lateness",
    "Reserve",
    "Watch",
    "Watchdog",
    "read_within",
    "reserve",
    "socket_timeout",
    "socket_timeout_setter",
    "watchdog",
]

#: The longest timeout handed to a socket (a far-off deadline does not fit a timeval).
MAX_SOCKET_TIMEOUT = 86400.0


class AttemptTimedOut(Exception):
    """The attempt's deadline passed while its body was being read."""


def socket_timeout(left: float) -> float:
    """A socket timeout for ``left`` seconds: at least a millisecond (0 would mean
    non-blocking), at most :data:`MAX_SOCKET_TIMEOUT`."""
    return min(max(left, 0.001), MAX_SOCKET_TIMEOUT)


def socket_timeout_setter(sock: object) -> Callable[[float], None] | None:
    """``sock.settimeout`` if ``sock`` is a socket still open, else ``None``."""
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return None
    return sock.settimeout


def read_within(
    read1: Callable[[], bytes],
    *,
    ends: float,
    clock: Clock,
    settimeout: Callable[[float], None] | None,
    timeout_errors: tuple[type[BaseException], ...],
    limit: int | None = None,
) -> bytes:
    """The rest of a body, read with ``read1`` (one receive: ``b""`` at its end) until
    ``ends`` (a ``clock.monotonic()`` instant). Raises :class:`AttemptTimedOut` once the
    deadline has passed (a receive that times out after it counts as the deadline, one
    of ``timeout_errors`` before it is the stack's own read timeout and propagates).
    ``limit``: the body is cut there (its first ``limit`` bytes)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        left = ends - clock.monotonic()
        if left <= 0:
            raise AttemptTimedOut
        if settimeout is not None:
            try:
                settimeout(socket_timeout(left))
            except OSError:  # closed under us: the read below reports it
                settimeout = None
        try:
            chunk = read1()
        except timeout_errors:
            if ends - clock.monotonic() <= 0.001:
                raise AttemptTimedOut from None
            raise
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size >= limit:
            return b"".join(chunks)[:limit]


# -- ending on time ----------------------------------------------------------------------


class Lateness:
    """How late attempts have recently ended after their time was up, in real seconds:
    the :attr:`QUANTILE` of the last :attr:`SAMPLES` latenesses noted in the last
    :attr:`WINDOW` seconds (of two samples, the smaller); one stall alone does not set
    it, a loop or a thread that keeps waking up late does.

    :class:`Reserve` ends an attempt that would end at the request's deadline that much
    early (never more than :attr:`MAX_MARGIN`), so that, ending as late as attempts
    recently did, the call still returns by its deadline. One per kind of waiter:
    :data:`SYNC_LATENESS` (threads), :data:`ASYNC_LATENESS` (event loops). No lock: a
    sample lost to a race is harmless.
    """

    __slots__ = ("_last", "_margin", "_samples")

    SAMPLES = 100
    QUANTILE = 0.95
    WINDOW = 60.0
    MAX_MARGIN = 0.25
    #: A sample this much before the instant (the attempt ended by its own time limit,
    #: a hair early) still counts as "at" it.
    SLACK = 0.001

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=self.SAMPLES)
        self._margin = 0.0
        self._last = -math.inf

    def margin(self) -> float:
        """The current margin, seconds (0: none)."""
        if self._margin <= 0.0 or time.monotonic() - self._last > self.WINDOW:
            return 0.0
        return self._margin

    def note(self, ended: float, due: float) -> None:
        """An attempt whose time was up at ``due`` ended at ``ended`` (``time.monotonic()``
        instants). Ignored when it ended before its time was up."""
        late = ended - due
        if late < -self.SLACK:
            return
        self._samples.append((ended, min(max(late, 0.0), self.MAX_MARGIN)))
        fresh = sorted(late for at, late in list(self._samples) if ended - at <= self.WINDOW)
        self._margin = fresh[int(self.QUANTILE * (len(fresh) - 1))] if len(fresh) > 1 else 0.0
        self._last = ended

    def reset(self) -> None:
        self._samples.clear()
        self._margin = 0.0
        self._last = -math.inf

    def __repr__(self) -> str:
        return f"Lateness(margin={self.margin() * 1000:.1f} ms)"


class Reserve:
    """One logical request's clock, and the ends of its attempts.

    An attempt that would end within ``lateness``'s margin of the request's deadline (its
    timeout cut to what is left of the deadline, or an attempt of its own timeout that
    happens to end just before it) is given until the deadline minus the margin, never
    less than half of its timeout (:meth:`cap`). If it times out, the margin was
    reserved for the wake-up and is counted as spent (:meth:`spend`: this clock moves on
    past the deadline), so the flow gives up at once (``DeadlineExceeded``) instead of
    sending another attempt into the margin.
    """

    __slots__ = ("_clock", "_cut", "_deadline_at", "_lateness", "_spent")

    def __init__(self, clock: Clock, lateness: Lateness, deadline: float) -> None:
        self._clock = clock
        self._lateness = lateness
        self._spent = 0.0
        # (a hair before the flow's own deadline, which starts when the flow does)
        self._deadline_at = clock.monotonic() + deadline
        self._cut = False

    def monotonic(self) -> float:
        return self._clock.monotonic() + self._spent

    def wall(self) -> float:
        return self._clock.wall()

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await self._clock.asleep(seconds)

    @property
    def cut(self) -> bool:
        """The last attempt given a limit was ended early by the margin."""
        return self._cut

    def cap(self, timeout: float | None) -> float | None:
        """The time limit of an attempt whose timeout is ``timeout``."""
        self._cut = False
        if timeout is None:
            return None
        margin = self._lateness.margin()
        left = self._deadline_at - self.monotonic()
        if margin <= 0.0 or left - timeout >= margin:  # it ends well before the deadline
            return timeout
        bound = max(left - margin, timeout / 2)
        if bound >= timeout:
            return timeout
        self._cut = True
        return bound

    def spend(self) -> None:
        """The attempt just timed out: if the margin cut it, the rest of the request's
        time is spent."""
        if self._cut:
            self._spent += max(self._deadline_at - self.monotonic(), 0.0) + self.PAST
            self._cut = False

    #: How far past the deadline :meth:`spend` moves the clock (the flow's deadline
    #: started a hair after this one).
    PAST = 0.001

    def __repr__(self) -> str:
        return f"Reserve({self._clock!r}, {self._lateness!r})"


def reserve(clock: Clock, lateness: Lateness, deadline: float | None) -> Reserve | None:
    """A :class:`Reserve` for a new logical request with ``deadline`` (the policy's), or
    ``None`` without a deadline or while attempts end on time (no margin: the request
    runs on ``clock`` itself, at no cost)."""
    if deadline is None or lateness.margin() <= 0.0:
        return None
    return Reserve(clock, lateness, deadline)


#: How late a thread's attempts end (a socket timeout or the watchdog, then the GIL).
SYNC_LATENESS = Lateness()
#: How late an event loop's attempts end (the loop's timer, then the unwinding).
ASYNC_LATENESS = Lateness()


class Watch:
    """One attempt under the :class:`Watchdog`: its end (a ``time.monotonic()``
    instant) and what it reads from: its connection (an object with a ``sock``
    attribute), attached once it is known, and the socket its body is read from if the
    connection let go of it; both detached before the connection may serve another
    attempt.

    A thread reuses its watch for each of its attempts in turn (:meth:`arm`): watching an
    attempt allocates nothing. Each watch has its own lock (held while the watchdog
    shuts its socket down): attempts in different threads never wait for each other."""

    __slots__ = ("__weakref__", "_lock", "conn", "done", "ends", "expired", "sock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ends = math.inf
        self.conn: object | None = None
        self.sock: object | None = None
        self.expired = False  # its socket was shut down: the attempt timed out
        self.done = True  # not watching an attempt

    def arm(self, ends: float) -> None:
        """Watch a new attempt, which must be over at ``ends``."""
        with self._lock:
            self.conn = self.sock = None
            self.expired = False
            self.ends = ends
            self.done = False

    def attach(self, conn: object) -> None:
        self.conn = conn

    def attach_socket(self, sock: object) -> None:
        self.sock = sock

    def detach(self, conn: object) -> None:
        """``conn`` goes back to its pool: never shut down from now on for this attempt."""
        if self.conn is conn:
            with self._lock:
                self.conn = self.sock = None

    def finish(self) -> bool:
        """The attempt is over; ``True`` if the watchdog cut it (its time was up)."""
        with self._lock:
            self.done = True
            self.conn = self.sock = None
        return self.expired

    def socket(self) -> socket.socket | None:
        sock = self.sock if self.sock is not None else getattr(self.conn, "sock", None)
        return sock if isinstance(sock, socket.socket) else None

    def fire(self, now: float) -> bool:
        """Shut the attempt's socket down if it is still running past its end at ``now``;
        ``False``: it has no socket yet (look again)."""
        with self._lock:
            if self.done or now < self.ends:
                return True
            sock = self.socket()
            if sock is None:
                return False
            self.expired = True
            # socket.socket's own shutdown, also for an SSLSocket (whose override would
            # unwrap it under the reading thread): the descriptor itself is shut down.
            # OSError: already closed, the attempt is ending anyway.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            return True


#: How soon the watchdog looks again at an attempt past its end that has no socket yet
#: (still connecting: its connect timeout is capped by the attempt's time anyway).
_RECHECK = 0.005
#: How long after an attempt's end the watchdog shuts its socket down (seconds).
GRACE = 0.005


class Watchdog:
    """One daemon thread for every attempt of the process: it sleeps until the earliest
    end of the attempts in progress and shuts down the socket of each one still running
    past its end (``socket.shutdown``, from this thread: the read blocked in the
    attempt's thread returns at once, and the adapter reports the attempt timed out).

    Each thread has one :class:`Watch`, registered once and re-armed for each of its
    attempts (a nested attempt gets a watch of its own), so watching an attempt costs a
    few attribute writes: the thread is woken only when an attempt ends before the
    instant it sleeps until, and wakes about once per attempt timeout, not once per
    attempt (it then looks at one watch per thread). A thread's watch goes with the
    thread. The watchdog starts with the first attempt it watches (again in a forked
    child).
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        self._local = threading.local()
        self._cond = threading.Condition(threading.Lock())
        self._until = math.inf  # when the thread wakes next (inf: idle)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def watch(self, ends: float) -> Watch:
        """Watch an attempt that must be over at ``ends`` (``time.monotonic()``): its socket
        is shut down :data:`GRACE` after it (a socket timeout that ends the attempt at
        ``ends`` takes one wake-up, the watchdog two: the first is left to win)."""
        ends += GRACE
        local = self._local
        watch: Watch | None = getattr(local, "watch", None)
        if watch is None or not watch.done:  # this thread's first attempt, or a nested one
            fresh = Watch()
            if watch is None:
                local.watch = fresh
            watch = fresh
            with self._cond:
                self._watches.add(watch)
        watch.arm(ends)
        if self._thread is None:
            self._start()
        if ends < self._until:
            with self._cond:
                self._cond.notify()
        return watch

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="surefoot-watchdog",
                                          daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        with self._cond:
            while True:
                # An attempt armed while the watches are looked at wakes the thread again
                # (its notify waits for the wait below).
                self._until = math.inf
                now = time.monotonic()
                until = math.inf
                for watch in list(self._watches):
                    if watch.done:
                        continue
                    ends = watch.ends
                    if ends > now:
                        until = min(until, ends)
                    elif not watch.fire(now):
                        until = min(until, now + _RECHECK)
                self._until = until
                self._cond.wait(None if until == math.inf else max(until - now, 0.0))


_WATCHDOG = Watchdog()


def watchdog() -> Watchdog:
    """The process's watchdog."""
    return _WATCHDOG
