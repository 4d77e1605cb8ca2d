"""Pacing, retry budget and circuit breaking for the pipeline: configuration and state.

:class:`PacingPolicy` is the immutable configuration. :class:`Pacer` is what the pipeline
talks to (through ``PacerCall`` effects): it reads the server's headers (quota dialects,
Retry-After) and turns every event into one operation on a :class:`PacerState`:

* :class:`LocalPacerState` — in-process (the default): a
  :class:`~surefoot.pacing._gcra.RateLimiter`, per-partition adaptive rates, breakers
  and demand counters, and one retry budget, behind a lock held for microseconds;
* a shared state (SQLite for one host, Redis for a fleet; see ``surefoot.SQLiteStore``
  and ``surefoot.RedisStore``), where each operation is one atomic step on the store.

Every operation is O(1). The local state never waits or does I/O; a shared one does one
round trip per operation (``PacerState.does_io``), which the async driver runs off the
event loop.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from surefoot._core._history import FailureKind
from surefoot._core._policy import Failure, ResponseInfo
from surefoot._core._retry_after import retry_after_from_headers
from surefoot.errors import ConfigurationError
from surefoot.pacing._breaker import Admission
from surefoot.pacing._config import _THROTTLE_STATUSES, PacingPolicy, Report
from surefoot.pacing._gcra import LATE_MIN, Quota, RateLimiter, Reservation
from surefoot.pacing._quota_headers import QuotaObservation, parse_quota_headers, quota_fields
from surefoot.pacing._state import LocalPacerState, PacerState

if TYPE_CHECKING:
    from surefoot.stores._protocols import Store

__all__ = ["Pacer"]


class Pacer:
    """What the pipeline talks to: reads the server's answers and drives a
    :class:`PacerState` (in-process by default; pass ``state=`` from a shared store, e.g.
    ``surefoot.RedisStore(...).pacer_state(pacing)``, or use ``store=``). Thread-safe."""

    __slots__ = (
        "_answered",
        "_late_told",
        "_lock",
        "_longest",
        "_refills",
        "_resets",
        "_sent_learned",
        "_server_learned",
        "_windows",
        "pacing",
        "state",
    )

    def __init__(
        self,
        pacing: PacingPolicy | None = None,
        *,
        state: PacerState | None = None,
        store: Store | None = None,
        now: float = 0.0,
    ) -> None:
        self.pacing = pacing or PacingPolicy()
        if state is not None and store is not None:
            raise ConfigurationError("give a Pacer either state= or store=, not both")
        if store is not None:
            state = store.pacer_state(self.pacing)
        self.state: PacerState = state if state is not None else LocalPacerState(self.pacing)
        #: Partitions whose server states its rate (adaptive pacing is not for them).
        self._server_learned: set[str] = set()
        #: Partitions this process has reported an answer for (the first one always
        #: reaches the state: it ends the partition's first contact).
        self._answered: set[str] = set()
        #: The quotas last told to the state per partition, and when: the same ones are
        #: told again only after :data:`_RETELL` seconds (a shared state costs a round
        #: trip per report, and forgets what expires).
        self._sent_learned: dict[str, tuple[tuple[Quota, ...], float]] = {}
        #: When this process last told the state of a late send, per partition.
        self._late_told: dict[str, float] = {}
        self._resets: dict[tuple[str, str], float] = {}
        self._windows: dict[tuple[str, str], float] = {}
        self._longest: dict[tuple[str, str], float] = {}
        self._refills: dict[tuple[str, str], _Refill] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pacer({self.pacing!r}, state={self.state!r})"

    @property
    def does_io(self) -> bool:
        return self.state.does_io

    @property
    def limiter(self) -> RateLimiter:
        """The in-process limiter (local state only)."""
        state = self.state
        if not isinstance(state, LocalPacerState):
            raise AttributeError(  # noqa: TRY004 - it is a missing attribute
                "a shared pacer state has no in-process limiter"
            )
        return state.limiter

    def partition_of(self, url: str, headers: Mapping[str, str]) -> str:
        how = self.pacing.partition_by
        if callable(how):
            return how(url, headers)
        parts = urlsplit(url)
        host = (parts.netloc.rpartition("@")[2]).lower()
        if how == "origin":
            return f"{parts.scheme}://{host}"
        if how == "api_key":
            key = headers.get("x-api-key")
            if key:
                # A partition name ends up in logs and store keys: never the key itself.
                digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
                return f"{host}|key:{digest[:16]}"
        return host

    # -- before an attempt -----------------------------------------------------------

    def gate(
        self, partition: str, *, arrival: bool, now: float
    ) -> tuple[Reservation, Admission | None]:
        """The start of an attempt: :meth:`on_request` when ``arrival`` (the logical
        request's first attempt), :meth:`reserve`, and :meth:`admit` when the slot is
        now (``None``: the attempt waits for its slot, then asks :meth:`admit`). An
        in-process state does all three in one step; a shared state that has no
        ``gate`` of its own makes the three calls."""
        adaptive = (
            self.pacing.adaptive is not None and partition not in self._server_learned
        )
        state = self.state
        gate = getattr(state, "gate", None)
        if gate is not None:
            result: tuple[Reservation, Admission | None] = gate(
                partition, arrival=arrival, now=now, adaptive=adaptive
            )
            return result
        # Each call is a round trip: the next one is told the time it starts at, not
        # ``now`` (a slot computed on a stale ``now`` would be early by the calls before).
        started = time.monotonic()
        if arrival:
            state.on_request(partition, now=now)
        at = now + time.monotonic() - started
        reservation = state.reserve(partition, None, now=at, adaptive=adaptive)
        if reservation.at > at:
            return reservation, None
        return reservation, self.admit(partition, now=now + time.monotonic() - started)

    def reserve(
        self, partition: str, previous: Reservation | None = None, *, now: float
    ) -> Reservation:
        """A slot to send at; ``previous`` is returned again while it is still valid."""
        adaptive = (
            self.pacing.adaptive is not None and partition not in self._server_learned
        )
        return self.state.reserve(partition, previous, now=now, adaptive=adaptive)

    def release(self, partition: str, reservation: Reservation, *, now: float) -> None:
        """The attempt that held ``reservation`` gives up without sending: its slot goes
        back to the schedule (a shared state gives it back in one store operation; a
        state without ``release`` keeps it booked)."""
        release = getattr(self.state, "release", None)
        if release is not None:
            release(partition, reservation, now=now)

    def admit(self, partition: str, *, now: float) -> Admission:
        """The breaker's verdict for this attempt."""
        if self.pacing.breaker is None:
            return _ALLOWED
        return self.state.admit(partition, now=now)

    def on_request(self, partition: str, *, now: float) -> None:
        """A logical request started: feeds the retry budget and the partition's measure
        of demand (which bounds how fast a backlog is released after a pause)."""
        self.state.on_request(partition, now=now)

    def try_retry(self, now: float) -> bool:
        """May one more retry be spent? (The retry budget.)"""
        if self.pacing.budget is None:
            return True
        return self.state.try_retry(now=now)

    # -- after an attempt ------------------------------------------------------------

    def report(
        self,
        partition: str,
        outcome: ResponseInfo | Failure,
        *,
        sent_at: float,
        now: float,
        wall_now: float,
        probe: bool,
        late: float = 0.0,
    ) -> None:
        """``late``: the attempt was sent this many seconds after its paced slot."""
        pacing = self.pacing
        healthy = _healthy(outcome) if pacing.breaker is not None else None
        age = max(now - sent_at, 0.0)
        first = partition not in self._answered
        if first:
            with self._lock:
                if len(self._answered) > _MAX_REMEMBERED:
                    self._answered.clear()
                self._answered.add(partition)
        late = self._late(partition, late, sent_at)
        if not isinstance(outcome, ResponseInfo):
            if healthy is not None or first or late:
                self.state.report(partition, Report(healthy, probe, age=age, late=late),
                                  now=now)
            return
        throttled = outcome.status in _THROTTLE_STATUSES
        learned: tuple[Quota, ...] = ()
        tighten: tuple[tuple[int, float], ...] = ()
        remaining: tuple[int, float | None] | None = None
        pause = None
        fields = quota_fields(outcome.headers) if pacing.learn else None
        if fields:  # (most answers state no quota: nothing to parse, no lock to take)
            with self._lock:
                learned, tighten, remaining = self._learn(partition, fields, wall_now)
                if learned:
                    if partition not in self._server_learned:
                        if len(self._server_learned) > _MAX_REMEMBERED:
                            self._server_learned.clear()
                        self._server_learned.add(partition)
                    told = self._sent_learned.get(partition)
                    if (
                        told is not None
                        and told[0] == learned
                        and now - told[1] < _RETELL
                        and (
                            # (an in-process state that evicted the partition meanwhile
                            # is told again at once)
                            not isinstance(self.state, LocalPacerState)
                            or self.state.limiter.learned(partition, now) is not None
                        )
                    ):
                        learned = ()
                    else:
                        if len(self._sent_learned) > _MAX_REMEMBERED:
                            self._sent_learned.clear()
                        self._sent_learned[partition] = (learned, now)
        if pacing.learn and throttled:
            # Retry-After wins over the quota headers, and holds the whole partition.
            wait = retry_after_from_headers(outcome.header, now=wall_now)
            if wait is not None:
                pause = min(wait, pacing.max_pause)
        adapt = (
            throttled
            if pacing.adaptive is not None and partition not in self._server_learned
            else None
        )
        if self.state.does_io or not pacing.burst_ahead:
            remaining = None  # burst credit (off, or counts this process's bookings only)
        if (
            healthy is None
            and adapt is None
            and pause is None
            and remaining is None
            and not (learned or tighten or first or late)
            and outcome.status != 429
        ):
            return  # nothing to tell the state (a shared one would cost a round trip)
        self.state.report(
            partition,
            Report(
                healthy, probe, learned, tighten, pause, adapt, age,
                quota=outcome.status == 429,
                remaining=None if remaining is None else remaining[0],
                remaining_reset=None if remaining is None else remaining[1],
                late=late,
            ),
            now=now,
        )

    def _late(self, partition: str, late: float, sent_at: float) -> float:
        """The lateness worth telling the state (0: none): more than ``LATE_MIN``
        seconds (the least :meth:`RateLimiter.late` acts on), and at most once per
        ``LATE_MIN`` seconds of sends per partition (a shared state costs a round trip
        per report; one late send in that span stands for the others)."""
        if late <= LATE_MIN:
            return 0.0
        with self._lock:
            told = self._late_told.get(partition)
            if told is not None and told <= sent_at < told + LATE_MIN:
                return 0.0
            if len(self._late_told) > _MAX_REMEMBERED:
                self._late_told.clear()
            self._late_told[partition] = sent_at
        return late

    def _learn(
        self, partition: str, fields: Mapping[str, str], wall_now: float
    ) -> tuple[
        tuple[Quota, ...], tuple[tuple[int, float], ...], tuple[int, float | None] | None
    ]:
        """What the quota headers ``fields`` (:func:`quota_fields`) state."""
        observations = parse_quota_headers(fields.get, now=wall_now)
        learned: list[Quota] = []
        tighten: list[tuple[int, float]] = []
        remaining: tuple[int, float | None] | None = None
        for obs in observations:
            if obs.remaining is not None and (remaining is None or obs.remaining < remaining[0]):
                remaining = (obs.remaining, obs.reset_after)
            window = obs.window or self._infer_window(partition, obs, wall_now)
            if obs.limit is not None and window:
                learned.append(Quota(limit=obs.limit, period=window, safety=self.pacing.safety))
            elif obs.dialect == "openai":
                rate = self._refill_rate(partition, obs)
                if rate is not None:
                    learned.append(Quota(limit=rate, safety=self.pacing.safety))
            # Only "none remaining" acts on the schedule (RateLimiter.tighten).
            if obs.remaining == 0 and obs.reset_after is not None:
                reset_after = min(obs.reset_after, self.pacing.max_pause)
                if window:
                    # A reset further away than a whole window is the rounding of epoch
                    # seconds (GitHub, X), not a longer wait.
                    reset_after = min(reset_after, window)
                tighten.append((obs.remaining, reset_after))
        return tuple(learned), tuple(tighten), remaining

    def _refill_rate(self, partition: str, obs: QuotaObservation) -> float | None:
        """OpenAI states no window: its reset is the time until the bucket is full again.
        A bucket refilling at ``r`` per second states ``reset = (capacity - remaining -
        f) / r`` (``f`` the fraction of a token it holds), a line in the deficit
        ``capacity - remaining`` (``0 <= f < 1``): answers with different deficits bound
        ``r`` from both sides (see :meth:`_Refill._fit`), and only bounds that agree
        count: a window's reset is the time to its end, which shrinks as the deficit
        grows, and so is never read as a rate. ``capacity``: one more than the most
        ``remaining`` seen (at most the limit)."""
        if obs.limit is None or obs.remaining is None or obs.reset_after is None:
            return None
        key = (partition, obs.policy or obs.dialect)
        refill = self._refills.get(key)
        if refill is None:
            if len(self._refills) > _MAX_REMEMBERED:
                self._refills.clear()
            refill = self._refills[key] = _Refill()
        return refill.add(obs.limit, obs.remaining, obs.reset_after)

    def _infer_window(self, partition: str, obs: QuotaObservation, wall_now: float) -> float:
        """Dialects that state a limit and a reset but no window (GitHub, X, X-RateLimit)
        reveal it when the reset instant jumps: the jump is the window's length."""
        if obs.limit is None or obs.reset_after is None or obs.dialect == "openai":
            return 0.0  # (OpenAI's reset is a refill time: see _refill_rate)
        key = (partition, obs.policy or obs.dialect)
        reset_at = wall_now + obs.reset_after
        previous = self._resets.get(key)
        self._resets[key] = reset_at
        if len(self._resets) > _MAX_REMEMBERED:
            self._resets.clear()
        # A jump means a new window only once the previous one is over (give or take
        # the rounding of epoch seconds).
        if previous is not None and reset_at - previous >= 0.5 and wall_now >= previous - 1.0:
            if key not in self._windows and len(self._windows) > _MAX_REMEMBERED:
                self._windows.clear()
            self._windows[key] = round(reset_at - previous, 3)
        window = self._windows.get(key)
        if window is not None:
            return window
        # No jump seen (yet): the window is at least the longest reset stated, in whole
        # seconds (a token bucket's "full again in 40 ms" is a quota per second). A
        # reset seen late in a longer window guesses short; the next ones correct it.
        longest = max(self._longest.get(key, 0.0), obs.reset_after)
        if len(self._longest) > _MAX_REMEMBERED:
            self._longest.clear()
        self._longest[key] = longest
        return float(max(1, math.ceil(longest - 1e-6)))


class _Refill:
    """The answers of one OpenAI-style quota (see :meth:`Pacer._refill_rate`)."""

    __slots__ = ("capacity", "rate", "samples")

    def __init__(self) -> None:
        self.capacity = 0
        self.samples: deque[tuple[int, float]] = deque(maxlen=_REFILL_SAMPLES)
        self.rate: float | None = None

    def add(self, limit: int, remaining: int, reset_after: float) -> float | None:
        self.capacity = min(limit, max(self.capacity, remaining + 1))
        if remaining < self.capacity and reset_after >= _REFILL_MIN_RESET:
            self.samples.append((remaining, reset_after))
        fitted = self._fit()
        if fitted is not None and (
            self.rate is None or abs(fitted - self.rate) > _REFILL_HYSTERESIS * self.rate
        ):
            self.rate = fitted
        return self.rate

    def _fit(self) -> float | None:
        """Each answer bounds the rate: ``reset * r`` lies in ``(d - 1, d]`` for the
        deficit ``d`` (and the reset is rounded to the millisecond). Over answers with
        different deficits the bounds close in on the rate; a window's reset (the time
        to its end: shorter as more is spent) contradicts them at once."""
        if len(self.samples) < _REFILL_MIN_SAMPLES:
            return None
        low, high = 0.0, math.inf
        least, most = math.inf, 0
        for rem, reset in self.samples:
            deficit = self.capacity - rem
            if deficit <= 0:
                continue
            least, most = min(least, deficit), max(most, deficit)
            low = max(low, (deficit - 1) / (reset + _RESET_ROUNDING))
            high = min(high, deficit / max(reset - _RESET_ROUNDING, 1e-9))
        if most - least < _REFILL_MIN_SPREAD or not low > 0:
            return None
        if low > high or high > _REFILL_TOLERANCE * low:
            return None  # contradictory (not a bucket's refill time) or not yet narrow
        return (low + high) / 2


#: OpenAI-style refill times (see :meth:`Pacer._refill_rate`): the answers kept per
#: quota, the fewest used, the least spread of their deficits, the widest the bounds
#: on the rate may be (high/low), the shortest reset used and its rounding (stated to
#: the millisecond), and the change of the rate below which the last one is kept (the
#: same quota is not told again).
_REFILL_SAMPLES = 64
_REFILL_MIN_SAMPLES = 6
_REFILL_MIN_SPREAD = 3
_REFILL_TOLERANCE = 1.25
_REFILL_MIN_RESET = 0.004
_RESET_ROUNDING = 0.0005
_REFILL_HYSTERESIS = 0.03

#: Seconds after which an unchanged learned quota is told to the state again.
_RETELL = 5.0

#: The most partitions each of the pacer's own tables remembers: a table that grows
#: past it starts again (what it held is relearned from the next answers), so a client
#: that meets ever new hosts or API keys does not grow without limit.
_MAX_REMEMBERED = 40_000

_ALLOWED = Admission(allowed=True, state="closed", probe=False, retry_at=None)


def _healthy(outcome: ResponseInfo | Failure) -> bool:
    if isinstance(outcome, Failure):
        return outcome.kind is FailureKind.OTHER  # a programming/TLS error is not the server's
    return outcome.status < 500 and outcome.status != 429
