"""Client-side pacing: a GCRA rate limiter with reserve-and-wait. Pure.

GCRA (the generic cell rate algorithm) keeps one number per partition and quota: the
*theoretical arrival time* ``tat``. For a quota of ``rate`` requests per second with a
``burst``, the emission interval is ``T = 1/rate`` and the tolerance ``tau = (burst-1)·T``.
A request may go at ``max(now, tat - tau)``; sending moves ``tat`` to ``max(tat, slot) + T``.

**Reserve and wait.** :meth:`RateLimiter.reserve` hands the caller its slot — the instant
it may send — and books it at once, so callers are served in the order they asked (FIFO),
each sleeps exactly until its own slot, and nobody polls. With several quotas on one
partition (say 100/s and 5000/h) the slot is the latest any of them allows, and it is
booked on all of them.

**Pauses.** A 429 with Retry-After pauses the whole partition (:meth:`RateLimiter.pause`):
no slot is handed out before the pause ends, and the slots after it are spaced by the
rate — waiters are released paced, not all at once. Reservations made before the pause
are void: :meth:`RateLimiter.still_valid` tells a waiter to reserve again when it wakes.

**Learning.** :meth:`RateLimiter.learn` replaces the server-stated quota of a partition
(from ``RateLimit-Policy``, ``X-RateLimit-Limit`` ...), and :meth:`RateLimiter.tighten`
applies a ``remaining``/``reset`` observation: only "none remaining" acts (no slot before
the reset); it never grants a burst.

**What the server does wins over what it says.** A wait the server states (Retry-After on
a 429, a reset with none remaining) may be far longer than its quota needs: a token
bucket answers "retry in 1 s" when its next token is 5 ms away, because the header is in
whole seconds. When the partition's rate is known, such a wait first holds the partition
for one slot of that rate only, and the next request is the test: each refusal of a
request sent after the hold ended makes the next hold :data:`HOLD_GROWTH` times longer,
up to the stated wait (see :meth:`RateLimiter.pause`). A window that admits nothing
before its reset costs a few refusals; a token bucket costs milliseconds, not a second.

**First contact.** With ``first_contact``, the first request to a partition goes alone
and the others wait (briefly, see :data:`FIRST_CONTACT_WAIT`) for its answer, whose
headers may state the quota: a burst of C callers does not meet a server blind.

Not thread-safe by itself: adapters serialise calls with a lock (each call is O(1) and
short). Memory is bounded: least recently used partitions beyond ``max_partitions`` are
forgotten.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from surefoot.errors import ConfigurationError

#: The paced release of a backlog after a pause never lasts longer than this (seconds
#: after the pause ends), whatever the backlog.
MAX_RECOVERY = 120.0

#: Each refusal that proves a short hold too short makes the next one this much longer.
HOLD_GROWTH = 4.0

#: A refusal proves a short hold too short only for a request sent within the hold's
#: length (or this many slots of the rate) after it ended; later ones are new refusals.
PROOF_SLOTS = 8

#: A 429 on a partition whose server stated its quota means that the server admits less
#: than it states, or with less slack for jitter than the pacing leaves: the learned
#: rate is used at this factor less per 429 (down to :data:`DERATE_FLOOR` of it)...
DERATE_STEP = 0.95
DERATE_FLOOR = 0.5
#: ...and recovers by this share of the stated rate per second without a 429.
DERATE_RECOVERY = 0.03

#: While the first request to a partition nobody has heard from is out, the others wait
#: for its answer (which may state the quota) in steps of this many seconds...
FIRST_CONTACT_STEP = 0.005
#: ...but never longer than this in all.
FIRST_CONTACT_WAIT = 0.25

__all__ = ["Quota", "RateLimiter", "Reservation"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """``limit`` requests per ``period`` seconds, at most ``burst`` at once (default 1:
    evenly spaced). ``safety`` slightly under-uses the quota (0.99 sends at 99 % of it) so
    that jitter on the way does not turn into 429s."""

    limit: float
    period: float = 1.0
    burst: int = 1
    safety: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.limit) and self.limit > 0):
            raise ConfigurationError("a quota's limit must be a positive number")
        if not (math.isfinite(self.period) and self.period > 0):
            raise ConfigurationError("a quota's period must be a positive number of seconds")
        if self.burst < 1:
            raise ConfigurationError("a quota's burst must be at least 1")
        if not (0 < self.safety <= 1):
            raise ConfigurationError("a quota's safety factor must be in (0, 1]")

    @property
    def rate(self) -> float:
        return self.limit / self.period * self.safety

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    @classmethod
    def per_second(cls, limit: float, *, burst: int = 1) -> Quota:
        return cls(limit=limit, period=1.0, burst=burst)

    @classmethod
    def per_minute(cls, limit: float, *, burst: int = 1) -> Quota:
        return cls(limit=limit, period=60.0, burst=burst)

    @classmethod
    def per_hour(cls, limit: float, *, burst: int = 1) -> Quota:
        return cls(limit=limit, period=3600.0, burst=burst)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A booked slot: send at ``at`` (a ``now``-clock instant). ``generation`` identifies
    the partition's state it was booked against (a pause voids older ones). A
    ``tentative`` one is not a slot but "ask again at ``at``" (the partition is waiting
    for its first answer)."""

    partition: str
    at: float
    generation: int
    tentative: bool = False


@dataclass(slots=True)
class _Partition:
    configured: tuple[Quota, ...]
    learned: Quota | None = None
    tats: dict[str, float] = field(default_factory=dict)
    pause_until: float = 0.0
    generation: int = 0
    #: Earliest slot from a "none remaining" observation.
    floor_until: float = 0.0
    #: A short hold (see :meth:`RateLimiter.pause`) ends at ``[0]``; until ``[1]`` (the
    #: end of the wait the server asked for), a refusal of a request sent after ``[0]``
    #: shows it was not enough. ``[2]``: how many refusals did so already.
    hold: tuple[float, float, float] | None = None
    #: First contact: 0 nobody has sent yet, 1 the first request is out since
    #: ``contact_at`` and nothing has come back, 2 the server has answered.
    contact: int = 0
    contact_at: float = 0.0
    #: The learned quota is used at ``derate`` of its rate as of ``derate_at``,
    #: recovering with time (see :data:`DERATE_STEP`).
    derate: float = 1.0
    derate_at: float = 0.0
    #: Requests sent before this were booked before the last cut (at the old rate):
    #: their refusals say nothing of the new one.
    derate_guard: float = 0.0

    def derated(self, now: float) -> float:
        if self.derate >= 1.0:
            return 1.0
        factor = self.derate + DERATE_RECOVERY * max(now - self.derate_at, 0.0)
        if factor >= 1.0:
            self.derate = 1.0
            return 1.0
        return factor
    #: After a pause: slots at least ``[1]`` apart (the release rate) until ``[0]`` and
    #: for as long after it as the paced schedule is still ahead of the clock (the
    #: backlog is not yet released), but never past ``[2]``.
    recovery: tuple[float, float, float] | None = None
    #: Requests let go while no quota at all was known, and when the first of them went:
    #: a quota learned later starts its schedule after them (they spent the server's
    #: bucket already).
    unpaced: int = 0
    unpaced_since: float = 0.0

    def quotas(self, now: float) -> Iterable[tuple[str, Quota]]:
        for index, quota in enumerate(self.configured):
            yield f"c{index}", quota
        if self.learned is not None:
            factor = self.derated(now)
            if factor < 1.0:
                learned = self.learned
                yield "learned", Quota(
                    limit=learned.limit * factor, period=learned.period, burst=learned.burst,
                    safety=learned.safety,
                )
            else:
                yield "learned", self.learned
        if self.recovery is not None:
            until, spacing, hard_until = self.recovery
            if now < hard_until and (now < until or self.tats.get("recovery", now) > now):
                yield "recovery", Quota(limit=1.0, period=spacing)
            else:
                self.recovery = None
                self.tats.pop("recovery", None)

    def to_state(self) -> dict[str, object]:
        """A JSON-able snapshot (the configured quotas are not part of it)."""
        learned = self.learned
        return {
            "l": None
            if learned is None
            else [learned.limit, learned.period, learned.burst, learned.safety],
            "t": dict(self.tats),
            "p": self.pause_until,
            "g": self.generation,
            "f": self.floor_until,
            "h": None if self.hold is None else list(self.hold),
            "c": [self.contact, self.contact_at],
            "d": [self.derate, self.derate_at, self.derate_guard],
            "r": None if self.recovery is None else list(self.recovery),
            "u": [self.unpaced, self.unpaced_since],
        }

    @classmethod
    def from_state(cls, configured: tuple[Quota, ...], state: object) -> _Partition:
        """Rebuild a partition from :meth:`to_state`; garbage gives a fresh partition."""
        part = cls(configured)
        if not isinstance(state, dict):
            return part
        try:
            learned = state.get("l")
            if learned is not None:
                limit, period, burst, safety = learned
                part.learned = Quota(
                    limit=float(limit), period=float(period), burst=int(burst),
                    safety=float(safety),
                )
            part.tats = {str(k): float(v) for k, v in dict(state.get("t") or {}).items()}
            part.pause_until = float(state.get("p", 0.0))
            part.generation = int(state.get("g", 0))
            part.floor_until = float(state.get("f", 0.0))
            hold = state.get("h")
            part.hold = (
                None if hold is None else (float(hold[0]), float(hold[1]), float(hold[2]))
            )
            contact = state.get("c") or (0, 0.0)
            part.contact, part.contact_at = int(contact[0]), float(contact[1])
            derate = state.get("d") or (1.0, 0.0, 0.0)
            part.derate = min(max(float(derate[0]), DERATE_FLOOR), 1.0)
            part.derate_at = float(derate[1])
            part.derate_guard = float(derate[2]) if len(derate) > 2 else part.derate_at
            recovery = state.get("r")
            part.recovery = (
                None
                if recovery is None
                else (float(recovery[0]), float(recovery[1]), float(recovery[2]))
            )
            unpaced = state.get("u") or (0, 0.0)
            part.unpaced, part.unpaced_since = int(unpaced[0]), float(unpaced[1])
        except (TypeError, ValueError, IndexError, ConfigurationError):
            return cls(configured)
        return part


class RateLimiter:
    """GCRA pacing per partition (a host, an API key, any caller-chosen string).

    ``quotas`` apply to every partition (none: only what is learned from the server and
    pauses apply).
    """

    __slots__ = ("_partitions", "first_contact", "max_partitions", "quotas")

    def __init__(
        self,
        quotas: Iterable[Quota] = (),
        *,
        max_partitions: int = 10_000,
        first_contact: bool = False,
    ) -> None:
        if max_partitions < 1:
            raise ConfigurationError("max_partitions must be at least 1")
        self.quotas = tuple(quotas)
        #: The first request to a partition goes alone (see :meth:`reserve`).
        self.first_contact = first_contact
        self.max_partitions = max_partitions
        self._partitions: OrderedDict[str, _Partition] = OrderedDict()

    def __repr__(self) -> str:
        return f"RateLimiter(quotas={self.quotas!r}, partitions={len(self._partitions)})"

    def _get(self, key: str) -> _Partition:
        part = self._partitions.get(key)
        if part is None:
            part = _Partition(self.quotas)
            self._partitions[key] = part
            if len(self._partitions) > self.max_partitions:
                self._partitions.popitem(last=False)
        else:
            self._partitions.move_to_end(key)
        return part

    def export_partition(self, partition: str) -> dict[str, object] | None:
        """The partition's state as JSON-able data (``None``: never used)."""
        part = self._partitions.get(partition)
        return None if part is None else part.to_state()

    def import_partition(self, partition: str, state: object) -> None:
        """Replace the partition's state with :meth:`export_partition`'s data."""
        self._partitions[partition] = _Partition.from_state(self.quotas, state)
        self._partitions.move_to_end(partition)
        if len(self._partitions) > self.max_partitions:
            self._partitions.popitem(last=False)

    def reserve(self, partition: str, now: float) -> Reservation:
        """Book the earliest slot for one request on ``partition``.

        With ``first_contact``, the first request to a partition goes alone: until it
        is answered (its headers may state the quota) the others get a *tentative*
        reservation, "ask again shortly", for at most :data:`FIRST_CONTACT_WAIT`
        seconds."""
        part = self._get(partition)
        if not self.first_contact or part.configured:
            pass  # configured quotas: the caller has said how fast to go
        elif part.contact == 0:
            part.contact, part.contact_at = 1, now
        elif part.contact == 1 and now < part.contact_at + FIRST_CONTACT_WAIT:
            return Reservation(
                partition, now + FIRST_CONTACT_STEP, part.generation, tentative=True
            )
        slot = max(now, part.pause_until, part.floor_until)
        quotas = tuple(part.quotas(now))
        if not quotas:
            if part.unpaced == 0:
                part.unpaced_since = slot
            part.unpaced += 1
        for name, quota in quotas:
            tat = part.tats.get(name, now)
            tau = (quota.burst - 1) * quota.interval
            slot = max(slot, tat - tau)
        for name, quota in quotas:
            tat = part.tats.get(name, now)
            part.tats[name] = max(tat, slot) + quota.interval
        return Reservation(partition, slot, part.generation)

    def answered(self, partition: str) -> None:
        """The server answered a request on ``partition`` (first contact is over)."""
        self._get(partition).contact = 2

    def interval(self, partition: str) -> float | None:
        """The spacing of the partition's slowest known rate (``None``: none known)."""
        part = self._partitions.get(partition)
        if part is None:
            return None
        intervals = [quota.interval for quota in part.configured]
        if part.learned is not None:
            intervals.append(part.learned.interval)
        return max(intervals, default=None)

    def still_valid(self, reservation: Reservation) -> bool:
        """False if the partition was paused after the reservation: reserve again."""
        part = self._partitions.get(reservation.partition)
        return part is None or part.generation == reservation.generation

    def pause(
        self,
        partition: str,
        until: float,
        now: float,
        *,
        release_rate: float | None = None,
        recovery: float = 0.0,
        hold: float | None = None,
        sent_at: float | None = None,
    ) -> None:
        """Nothing goes out on ``partition`` before ``until`` (Retry-After); afterwards the
        slots are spaced by the rate, starting with one request at ``until``. With
        ``release_rate``, bookings are also spaced by at least ``1/release_rate`` for
        ``recovery`` seconds after ``until``, and after that for as long as the backlog
        booked at that spacing lasts (at most :data:`MAX_RECOVERY` seconds after
        ``until``): the backlog is released paced, and new arrivals queue behind it
        instead of being sent beside it at the full quota.

        ``hold``: the caller believes the server can take a request again much sooner
        (at ``now + hold``: its rate says a slot comes back then). The partition is held
        that long only, and the next request is the test: each refusal of a request sent
        after the hold in force ended (``sent_at``), while the stated wait lasts, makes
        the next hold :data:`HOLD_GROWTH` times longer, up to the whole wait (a window
        that admits nothing before its reset costs a few refusals; a token bucket a
        few milliseconds). Refusals of requests sent earlier test nothing."""
        part = self._get(partition)
        if hold is not None:
            current = part.hold if part.hold is not None and now < part.hold[1] else None
            if current is not None and (sent_at is None or sent_at < current[0]):
                return  # sent before the hold in force ended: it tests nothing
            if current is not None and sent_at is not None and sent_at > current[0] + max(
                hold * HOLD_GROWTH ** current[2], PROOF_SLOTS * hold
            ):
                # Sent well after the hold ended, and the requests sent between went
                # through: the hold was long enough, this is a new refusal (a rate a
                # little too high), not proof that the server is still closed.
                current = None
            strikes = 0 if current is None else int(current[2]) + 1
            longer = hold * HOLD_GROWTH**strikes
            if longer < until - now:
                part.hold = (now + longer, max(until, 0.0 if current is None else current[1]),
                             float(strikes))
                until = now + longer
                release_rate = None  # a short hold releases at the rate, not as a backlog
        if until <= part.pause_until:
            return
        part.pause_until = until
        part.generation += 1
        # Every booking is void: the slots from `until` on are booked at today's rate.
        part.derate_guard = min(part.derate_guard, until)
        if release_rate is not None and release_rate > 0 and math.isfinite(release_rate):
            part.recovery = (until + recovery, 1.0 / release_rate, until + MAX_RECOVERY)
            part.tats.pop("recovery", None)
        for name, quota in part.quotas(now):
            tau = (quota.burst - 1) * quota.interval
            # Every earlier booking is void (its holder reserves again), so the schedule
            # restarts: the next slot is `until`, each one after it an interval later.
            part.tats[name] = until + tau

    def learn(self, partition: str, quota: Quota, now: float, *, guess: bool = False) -> None:
        """Use the server-stated ``quota`` for ``partition`` from now on (``guess``: a rate
        found by adaptive pacing, not stated: the sends made before it are not charged
        to it, as it says nothing of the server's bucket)."""
        part = self._get(partition)
        if part.learned == quota:
            return
        previous = part.learned
        part.learned = quota
        if previous is None:
            # Start paced: whatever the server's bucket holds, assume nothing to spare,
            # and count what was sent before any quota was known as already spent.
            start = max(part.tats.get("learned", now), now)
            if part.unpaced and not guess:
                tau = (quota.burst - 1) * quota.interval
                start = max(start, part.unpaced_since + part.unpaced * quota.interval - tau)
                part.unpaced = 0
            part.tats["learned"] = start

    def derate(self, partition: str, now: float, *, sent_at: float) -> None:
        """A 429 although the partition is paced at its learned quota: use less of it
        (see :data:`DERATE_STEP`). A request sent before the last cut does not cut
        again (k concurrent 429s cut once)."""
        part = self._partitions.get(partition)
        if part is None or part.learned is None:
            return
        if sent_at < max(part.derate_at, part.derate_guard):
            return
        part.derate = max(DERATE_FLOOR, part.derated(now) * DERATE_STEP)
        part.derate_at = now
        # Every slot booked so far was booked at the old rate (a fleet's queue of
        # waiters can be a second long): only requests sent after them test the new one.
        part.derate_guard = max(now, part.tats.get("learned", now))

    def recovering(self, partition: str) -> bool:
        """Is the partition releasing a backlog after a pause (see :meth:`pause`)?"""
        part = self._partitions.get(partition)
        return part is not None and part.recovery is not None

    def speed_up_release(self, partition: str, release_rate: float) -> None:
        """Demand grew during a paced release: release at least at ``release_rate``
        (the spacing only ever shrinks within one recovery)."""
        part = self._partitions.get(partition)
        if part is None or part.recovery is None or not release_rate > 0:
            return
        until, spacing, hard_until = part.recovery
        part.recovery = (until, min(spacing, 1.0 / release_rate), hard_until)

    def tighten(
        self,
        partition: str,
        *,
        remaining: int,
        reset_after: float,
        now: float,
        hold: float | None = None,
    ) -> None:
        """The server says ``remaining`` requests are left for the next ``reset_after``
        seconds. Only "none left" acts: no slot before the reset — or, with ``hold``,
        before ``now + hold`` only, the next request testing it as in :meth:`pause` (a
        token bucket refills long before a reset rounded up to whole seconds; a window
        does not, and its refusal then makes the whole wait count). The rate of the
        quota spaces the rest; ``remaining`` never grants a burst."""
        if remaining != 0 or not (math.isfinite(reset_after) and reset_after > 0):
            return
        part = self._get(partition)
        until = now + reset_after
        if hold is not None:
            current = part.hold if part.hold is not None and now < part.hold[1] else None
            if current is None:
                part.hold = (now + hold, until, 0.0)
            else:
                hold = max(hold, current[0] - now)  # the hold in force, not a new test
            until = min(until, now + hold)
        part.floor_until = max(part.floor_until, until)

    def snapshot(self, partition: str) -> dict[str, float]:
        """The partition's state (for tests and instrumentation)."""
        part = self._partitions.get(partition)
        if part is None:
            return {}
        state = {f"tat_{name}": tat for name, tat in part.tats.items()}
        state["pause_until"] = part.pause_until
        state["floor_until"] = part.floor_until
        if part.learned is not None:
            state["learned_rate"] = part.learned.rate
        return state
