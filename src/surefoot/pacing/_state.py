"""The pacer's state: the :class:`PacerState` protocol and its in-process implementation,
the reference that the SQLite and Redis states follow.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, NamedTuple, Protocol, runtime_checkable

from surefoot.pacing._adaptive import AdaptiveRate
from surefoot.pacing._breaker import Admission, CircuitBreaker
from surefoot.pacing._budget import RetryBudget, WindowCounts
from surefoot.pacing._config import (
    _DEMAND_WINDOW,
    _MIN_OBSERVED,
    _SEND_WINDOW,
    PacingPolicy,
    Report,
)
from surefoot.pacing._gcra import Quota, RateLimiter, Reservation

__all__ = ["Elsewhere", "LocalPacerState", "PacerState", "SharedSchedule"]

#: The shortest hold a stated wait is first cut down to (seconds).
_MIN_HOLD = 0.001
_ALLOWED = Admission(allowed=True, state="closed", probe=False, retry_at=None)
#: How many of the oldest breakers an eviction looks through for one holding no state.
_BREAKER_EVICT_SCAN = 8


class SharedSchedule(NamedTuple):
    """What a shared store needs to book a partition's slots and admit its attempts by
    itself, in one script call (see :meth:`LocalPacerState.shared_schedule`)."""

    #: The partition's generation (a reservation of another one is void).
    generation: int
    #: No slot before this (a pause, a "none remaining" floor).
    earliest: float
    #: Per quota: its name, interval and tolerance (see ``RateLimiter.schedule``).
    quotas: tuple[tuple[str, float, float], ...]
    #: It holds until then (``inf``: until the state changes).
    until: float
    #: The breaker lets every call through and a success changes nothing but counts.
    quiet: bool
    #: During a paced release: when the quota named ``recovery`` stops counting (see
    #: ``RateLimiter.schedule``); ``None``: no release under way.
    recovery: tuple[float, float] | None = None


class Elsewhere(NamedTuple):
    """What was done to a partition outside this class, from its
    :class:`SharedSchedule`, between ``since`` and ``now`` (see
    :meth:`LocalPacerState.take_in`)."""

    #: The quotas' theoretical arrival times as they now are.
    tats: dict[str, float]
    #: Slots let go with no quota known, and when the first of them went.
    unpaced: int = 0
    unpaced_since: float = 0.0
    #: Logical requests that arrived, attempts booked, answers that were not throttles
    #: (the adaptive rate's measure), and successes while the breaker was quiet.
    arrivals: int = 0
    sends: int = 0
    oks: int = 0
    successes: int = 0
    #: The latest "sent late" mark (see ``RateLimiter.late``; 0: none).
    late_until: float = 0.0


@runtime_checkable
class PacerState(Protocol):
    """The state behind a :class:`Pacer`. Each method is one atomic operation; ``now`` is
    the caller's monotonic clock, and instants returned (slots, probe times) are on that
    clock too, whatever clock the backend keeps internally."""

    #: True when operations do I/O (a shared store): async drivers run them off the loop.
    does_io: bool

    def reserve(
        self, partition: str, previous: Reservation | None, *, now: float, adaptive: bool
    ) -> Reservation: ...
    def admit(self, partition: str, *, now: float) -> Admission: ...
    def on_request(self, partition: str, *, now: float) -> None: ...
    def try_retry(self, *, now: float) -> bool: ...
    def report(self, partition: str, report: Report, *, now: float) -> None: ...


class LocalPacerState:
    """In-process pacing state. Thread-safe; every method holds the lock for an O(1) step.

    Also the engine of the SQLite and Redis stores, which load one partition's state into
    a throw-away instance (:meth:`import_partition`), applies the operation and saves
    the result (:meth:`export_partition`) inside one transaction.
    """

    does_io = False

    __slots__ = (
        "_adaptive",
        "_arrivals",
        "_breakers",
        "_budget",
        "_lock",
        "_oks",
        "_sends",
        "limiter",
        "pacing",
    )

    def __init__(self, pacing: PacingPolicy) -> None:
        self.pacing = pacing
        self.limiter = RateLimiter(
            pacing.quotas, first_contact=pacing.learn, burst_ahead=pacing.burst_ahead
        )
        self._adaptive: dict[str, AdaptiveRate] = {}
        self._arrivals: dict[str, tuple[float, WindowCounts]] = {}
        #: Reservations (attempts) per partition, over the last couple of seconds.
        self._sends: dict[str, tuple[float, WindowCounts]] = {}
        #: Responses that were not throttles per partition (the rate the server grants).
        self._oks: dict[str, tuple[float, WindowCounts]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        config = pacing.budget
        self._budget = RetryBudget(config) if config is not None else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalPacerState(partitions={len(self._arrivals)})"

    # -- operations ------------------------------------------------------------------

    def gate(
        self, partition: str, *, arrival: bool, now: float, adaptive: bool
    ) -> tuple[Reservation, Admission | None]:
        """The start of an attempt in one step: the logical request's arrival (its first
        attempt: ``on_request``), its slot (``reserve``) and, when the slot is now, the
        breaker's verdict (``admit``; ``None``: the attempt waits for its slot first)."""
        with self._lock:
            if arrival:
                self._on_request(partition, now)
            reservation = self._reserve(partition, None, now, adaptive)
            if reservation.at > now:
                return reservation, None
            return reservation, self._admit(partition, now)

    def reserve(
        self, partition: str, previous: Reservation | None, *, now: float, adaptive: bool
    ) -> Reservation:
        with self._lock:
            return self._reserve(partition, previous, now, adaptive)

    def _reserve(
        self, partition: str, previous: Reservation | None, now: float, adaptive: bool
    ) -> Reservation:
        if (
            previous is not None
            and not previous.tentative
            and self.limiter.still_valid(previous)
        ):
            return self.limiter.refresh(previous, now)
        if adaptive:
            rate = self._adaptive.get(partition)
            if rate is not None:
                self.limiter.learn(
                    partition, Quota(limit=max(rate.rate, 1e-6)), now, guess=True
                )
                rate.on_send(now)
        self._speed_up_release(partition, now)
        if previous is None:
            # One count per attempt: a waiter re-booking after a pause voided its
            # slot is the same send (1,000 waiters re-booking once a second through
            # an outage are not a demand of 1,000/s).
            _count(self._sends, partition, now, _SEND_WINDOW, self.limiter.max_partitions)
        return self.limiter.reserve(partition, now)

    def _speed_up_release(self, partition: str, now: float) -> None:
        if self.limiter.recovering(partition):
            # The release speeds up when demand measured now is higher than when the
            # pause began (a closed loop that was just starting, say). It never slows
            # down: a closed loop whose callers all wait sends no new requests, and
            # its measured demand falls only because of the pause itself.
            release = self._release_rate(partition, now)
            if release is not None:
                self.limiter.speed_up_release(partition, release)

    def release(self, partition: str, reservation: Reservation, *, now: float) -> None:
        """Give back a slot its holder will not use (see :meth:`RateLimiter.release`)."""
        with self._lock:
            self.limiter.release(reservation, now)

    def admit(self, partition: str, *, now: float) -> Admission:
        if self.pacing.breaker is None:
            return _ALLOWED
        with self._lock:
            return self._admit(partition, now)

    def _admit(self, partition: str, now: float) -> Admission:
        config = self.pacing.breaker
        if config is None:
            return _ALLOWED
        breaker = self._breakers.get(partition)
        if breaker is None:
            if len(self._breakers) >= self.limiter.max_partitions:
                self._evict_breaker(now)
            breaker = self._breakers[partition] = CircuitBreaker(config)
        return breaker.allow(now)

    def _evict_breaker(self, now: float) -> None:
        """Make room for one breaker (as many as the limiter keeps partitions): the
        first of the oldest few that holds no state (dropping it changes nothing it
        decides), else the oldest."""
        breakers = self._breakers
        oldest = None
        for name, breaker in itertools.islice(breakers.items(), _BREAKER_EVICT_SCAN):
            if oldest is None:
                oldest = name
            if not breaker.holds_state(now):
                del breakers[name]
                return
        if oldest is not None:
            del breakers[oldest]

    def on_request(self, partition: str, *, now: float) -> None:
        with self._lock:
            self._on_request(partition, now)

    def _on_request(self, partition: str, now: float) -> None:
        if self._budget is not None:
            self._budget.on_request(now)
        _count(self._arrivals, partition, now, _DEMAND_WINDOW, self.limiter.max_partitions)

    def try_retry(self, *, now: float) -> bool:
        if self._budget is None:
            return True
        with self._lock:
            return self._budget.try_spend(now)

    def report(self, partition: str, report: Report, *, now: float) -> None:
        pacing = self.pacing
        limiter = self.limiter
        sent_at = now - report.age
        with self._lock:
            limiter.answered(partition)
            if report.healthy is not None:
                breaker = self._breakers.get(partition)
                if breaker is not None:
                    breaker.on_result(now, ok=report.healthy, probe=report.probe)
            for quota in report.learned:
                limiter.learn(partition, quota, now)
            if report.late:
                limiter.late(partition, sent_at=sent_at, late=report.late)
            if report.throttled is not None and pacing.adaptive is not None:
                self._adapt(partition, report, now)
            elif report.quota:
                limiter.derate(partition, now, sent_at=sent_at)
            if report.quota:
                limiter.refused(partition, sent_at=sent_at)
            elif report.remaining is not None:
                limiter.observe(
                    partition,
                    remaining=report.remaining,
                    reset_after=report.remaining_reset,
                    sent_at=sent_at,
                    now=now,
                )
            # What the server says of its waits is checked against its rate, when one is
            # known: a short hold first, the whole wait once a request sent after the
            # hold began is refused too (see RateLimiter.pause).
            if not report.tighten and report.pause is None:
                return
            interval = limiter.interval(partition)
            hold = None if interval is None else max(interval, _MIN_HOLD)
            for remaining, reset_after in report.tighten:
                limiter.tighten(
                    partition, remaining=remaining, reset_after=reset_after, now=now,
                    hold=hold,
                )
            if report.pause is not None:
                limiter.pause(
                    partition,
                    now + report.pause,
                    now,
                    release_rate=self._release_rate(partition, now, at_pause=True),
                    recovery=report.pause,
                    hold=hold if report.quota else None,
                    sent_at=sent_at,
                )

    def _adapt(self, partition: str, report: Report, now: float) -> None:
        """The adaptive rate (for a partition whose server states no quota): armed by
        the first throttle, at what the server was granting until then."""
        assert self.pacing.adaptive is not None
        adaptive = self._adaptive.get(partition)
        if not report.throttled:
            _count(self._oks, partition, now, _SEND_WINDOW, self.limiter.max_partitions)
            if adaptive is None:
                return
            adaptive.on_success(now)
        else:
            admitted = _rate(self._oks.get(partition), now)
            if adaptive is None:
                sent = _rate(self._sends.get(partition), now) or 0.0
                start = max(admitted or 0.0, sent, self.pacing.adaptive.floor)
                adaptive = self._adaptive[partition] = AdaptiveRate(
                    self.pacing.adaptive, now, start=start
                )
                if len(self._adaptive) > self.limiter.max_partitions:
                    self._adaptive.pop(next(iter(self._adaptive)))
            cut = adaptive.on_throttle(now - report.age, now, admitted=admitted)
            self.limiter.learn(
                partition, Quota(limit=max(adaptive.rate, 1e-6)), now, guess=True
            )
            if cut and report.pause is None:
                # No Retry-After to hold on: the slots booked at the old rate (a queue
                # of waiters) would each be refused in turn. They are booked again at
                # the new one, from one slot of it on.
                self.limiter.pause(partition, now + 1.0 / max(adaptive.rate, 1e-6), now)
            return
        self.limiter.learn(partition, Quota(limit=max(adaptive.rate, 1e-6)), now, guess=True)

    def _release_rate(
        self, partition: str, now: float, *, at_pause: bool = False
    ) -> float | None:
        """How fast waiters are let go after a pause: at most ``release_factor`` times
        the recent demand, so that a server coming back from an outage is not hit by the
        whole backlog at once (``None``: no demand measured yet).

        Demand is the rate of new logical requests; when the pause begins it is also at
        least the rate attempts were sent at just before (a closed loop that is
        ramping up has sent faster than its average arrivals say). During the release
        only arrivals count: the send rate then is the release itself."""
        demand = _rate(self._arrivals.get(partition), now)
        if at_pause:
            sent = _rate(self._sends.get(partition), now)
            demand = sent if demand is None else max(demand, sent or 0.0)
        if demand is None:
            return None
        return max(demand * self.pacing.release_factor, 1.0)

    # -- what a shared state keeps for its fallback (see stores/_pacing_fallback.py) -------

    def learned(self, partition: str, *, now: float) -> tuple[Quota, float] | None:
        """The partition's server-stated quota and the share of it in use (``None``:
        none, or only the adaptive rate's guess: that one lives and dies with its
        :class:`AdaptiveRate`)."""
        with self._lock:
            if partition in self._adaptive:
                return None
            return self.limiter.learned(partition, now)

    def recent_sends(self, partition: str, *, now: float) -> int | None:
        """Reservations (attempts) on the partition over the last couple of seconds
        (``None``: never counted)."""
        with self._lock:
            entry = self._sends.get(partition)
            return None if entry is None else entry[1].total(now)

    def seed(
        self, partition: str, quota: Quota, *, now: float, after: float | None = None
    ) -> None:
        """Pace the partition at ``quota``, known from elsewhere (see
        :meth:`RateLimiter.seed`), and with ``after``, not before the slots handed out
        up to that instant elsewhere (see :meth:`RateLimiter.continue_after`)."""
        with self._lock:
            self.limiter.seed(partition, quota, now)
            if after is not None:
                self.limiter.continue_after(partition, after, now)

    def continue_after(self, partition: str, slot: float, *, now: float) -> None:
        """See :meth:`RateLimiter.continue_after`."""
        with self._lock:
            self.limiter.continue_after(partition, slot, now)

    # -- a shared store's script (see stores/_redis/_pacing.py) ---------------------------

    def shared_schedule(self, partition: str, *, now: float) -> SharedSchedule | None:
        """The partition as a plain GCRA a shared store may book from by itself (see
        ``RateLimiter.schedule``), with what its script needs to admit attempts and to
        defer reports; ``None``: every operation must load the whole state (also while
        the partition has an adaptive rate, which each booking moves). During a paced
        release, the release is first sped up to the demand measured ``now``."""
        with self._lock:
            if partition in self._adaptive:
                return None
            # (a paced release's schedule holds SCHEDULE_DRIFT seconds: its spacing is
            # brought up to the demand measured now, as a booking here would)
            self._speed_up_release(partition, now)
            schedule = self.limiter.schedule(partition, now)
            if schedule is None:
                return None
            breaker = self._breakers.get(partition)
            generation, earliest, quotas, until, recovery = schedule
            return SharedSchedule(
                generation, earliest, quotas, until,
                quiet=breaker is None or breaker.quiet(now), recovery=recovery,
            )

    def take_in(self, partition: str, done: Elsewhere, *, since: float, now: float) -> None:
        """Take in what was done to the partition outside (``done``, counted evenly
        between ``since`` and ``now``), as if it had been done here."""
        with self._lock:
            limit = self.limiter.max_partitions
            self.limiter.booked_elsewhere(
                partition, done.tats, unpaced=done.unpaced, unpaced_since=done.unpaced_since
            )
            if done.late_until:
                self.limiter.sent_late(partition, done.late_until)
            for table, amount, window in (
                (self._arrivals, done.arrivals, _DEMAND_WINDOW),
                (self._sends, done.sends, _SEND_WINDOW),
                (self._oks, done.oks if self.pacing.adaptive is not None else 0, _SEND_WINDOW),
            ):
                if amount > 0:
                    _count(table, partition, since, window, limit, amount=amount, now=now)
            if done.successes > 0:
                breaker = self._breakers.get(partition)
                if breaker is not None:
                    breaker.count_successes(since, now, done.successes)

    # -- state in and out (the SQLite store) -------------------------------------------

    def export_partition(self, partition: str) -> dict[str, object]:
        """The partition's state as JSON-able data."""
        adaptive = self._adaptive.get(partition)
        breaker = self._breakers.get(partition)
        arrivals = self._arrivals.get(partition)
        sends = self._sends.get(partition)
        oks = self._oks.get(partition)
        return {
            "lim": self.limiter.export_partition(partition),
            "ada": None if adaptive is None else adaptive.to_state(),
            "brk": None if breaker is None else breaker.to_state(),
            "arr": None if arrivals is None else [arrivals[0], arrivals[1].to_state()],
            "snd": None if sends is None else [sends[0], sends[1].to_state()],
            "oks": None if oks is None else [oks[0], oks[1].to_state()],
        }

    def import_partition(self, partition: str, state: object) -> None:
        """Load :meth:`export_partition`'s data (garbage: a fresh partition)."""
        data: dict[str, Any] = state if isinstance(state, dict) else {}
        pacing = self.pacing
        if data.get("lim") is not None:
            self.limiter.import_partition(partition, data["lim"])
        ada = data.get("ada")
        if isinstance(ada, dict) and pacing.adaptive is not None:
            rate = AdaptiveRate(pacing.adaptive, 0.0)
            rate.load_state(ada)
            self._adaptive[partition] = rate
        brk = data.get("brk")
        if isinstance(brk, dict) and pacing.breaker is not None:
            breaker = CircuitBreaker(pacing.breaker)
            breaker.load_state(brk)
            self._breakers[partition] = breaker
        for name, into, window in (
            ("arr", self._arrivals, _DEMAND_WINDOW),
            ("snd", self._sends, _SEND_WINDOW),
            ("oks", self._oks, _SEND_WINDOW),
        ):
            saved = data.get(name)
            if isinstance(saved, list) and len(saved) == 2 and isinstance(saved[0], (int, float)):
                counts = WindowCounts(window)
                counts.load_state(saved[1])
                into[partition] = (float(saved[0]), counts)

    def export_budget(self) -> object:
        return None if self._budget is None else self._budget.to_state()

    def import_budget(self, state: object) -> None:
        if self._budget is not None and state is not None:
            self._budget.load_state(state)


def _count(
    table: dict[str, tuple[float, WindowCounts]],
    partition: str,
    at: float,
    window: float,
    max_entries: int,
    *,
    amount: int = 1,
    now: float | None = None,
) -> None:
    """Count one event at ``at`` (or with ``now``: ``amount`` events spread evenly from
    ``at`` to ``now``)."""
    entry = table.get(partition)
    if entry is None:
        if len(table) >= max_entries:
            table.clear()
        entry = table[partition] = (at, WindowCounts(window))
    if now is None:
        entry[1].add(at)
    else:
        entry[1].add_spread(at, now, amount)


def _rate(entry: tuple[float, WindowCounts] | None, now: float) -> float | None:
    """Events per second in the window, over the time actually observed (a young
    partition has not filled the window); ``None``: never counted."""
    if entry is None:
        return None
    first_seen, counts = entry
    observed = min(counts.span(now), max(now - first_seen, _MIN_OBSERVED))
    return counts.total(now) / observed
