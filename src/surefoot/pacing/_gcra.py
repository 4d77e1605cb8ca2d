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
short).

**Memory is bounded**: at most ``max_partitions`` partitions (default
:data:`MAX_PARTITIONS`) are kept, a few hundred bytes each. A new partition beyond that
evicts, among the :data:`EVICT_SCAN` least recently used, the first that holds nothing a
fresh partition would not (no learned quota, no pause, hold or reset floor, no schedule
booked ahead of the clock, no first contact in progress); those that do hold state are
given a second chance (moved to the most recently used end). Only when all of them hold
state does the least recently used of them go. So a flood of partitions that state no
quota (requests to ever new hosts or keys) evicts its own kind, not the partitions whose
quota was learned. The trade-off when a partition holding state is evicted all the same
(more than ``max_partitions`` such partitions in use at once): it starts afresh, with a
first contact (its first request goes alone and its answer states the quota again); its
earlier reservations are void (every incarnation of a partition has generations of its
own, so a waiter holding a slot of the old schedule books again instead of being let go
beside the new one), and what it had learned is known again only when the server states
it again (the :class:`~surefoot.pacing.Pacer` tells an unchanged quota again at most every
few seconds).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

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
#: ...and recovers by this share of the stated rate per second without a 429, up to
#: the whole rate before the first cut, and to this share of it after (a window
#: counts the few requests jitter pushes across its boundary: at the whole rate that
#: is a 429 every few seconds; a token bucket's burst absorbs them).
DERATE_RECOVERY = 0.03
DERATE_CEILING = 0.99

#: A request sent more than this many slots of the learned rate (and more than
#: :data:`LATE_MIN` seconds) after its slot went late: the requests around it may have
#: reached the server bunched (a fleet starting on few cores wakes its threads up to
#: 0.4 s late), and refusals of requests sent up to :data:`LATE_GRACE` seconds after it
#: do not derate.
LATE_SLOTS = 2
LATE_MIN = 0.01
LATE_GRACE = 0.5

#: While the first request to a partition nobody has heard from is out, the others wait
#: for its answer (which may state the quota) in steps of this many seconds...
FIRST_CONTACT_STEP = 0.005
#: ...but never longer than this in all.
FIRST_CONTACT_WAIT = 0.25

#: Burst credit (see :meth:`RateLimiter.observe`): a ``remaining`` observation is used
#: for this many seconds after it arrived (another client may share the quota)...
CREDIT_TTL = 1.0
#: ...less this many requests (a safety margin)...
CREDIT_MARGIN = 1
#: ...and less every request booked to go after the observed one was sent, or less
#: than its round trip (at least this many seconds) before: those may have reached the
#: server after it.
CREDIT_SLACK = 0.002
#: The longest recent round trip decays by this factor per answer.
CREDIT_RTT_DECAY = 0.995
#: The bookings kept to count against an observation (the older half is dropped beyond).
CREDIT_LOG = 4096
#: Bookings older than this many seconds are forgotten (an observation of a request
#: sent before the oldest one kept is not used).
CREDIT_HORIZON = 10.0
#: A waiter whose slot is far off while credit may appear looks again after an eighth
#: of its wait, but not sooner than this many seconds.
RECHECK_MIN = 0.005

#: The partitions a :class:`RateLimiter` keeps by default (see the module docstring).
MAX_PARTITIONS = 10_000
#: How long a derated quota's or a paced release's schedule holds (see
#: :meth:`RateLimiter.schedule`): recovering at DERATE_RECOVERY per second, a derated
#: rate changes by under 1 % meanwhile; a release speeds up with demand that late.
SCHEDULE_DRIFT = 0.25
#: A new partition beyond the bound looks at this many of the least recently used ones
#: for one that holds no state worth keeping (see the module docstring).
EVICT_SCAN = 8

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


class Reservation(NamedTuple):
    """A booked slot: send at ``at`` (a ``now``-clock instant). ``generation`` identifies
    the partition's state it was booked against (a pause voids older ones). A
    ``tentative`` one is not a slot but "ask again at ``at``" (the partition is waiting
    for its first answer). ``recheck``: ask again then, before ``at`` (the server may
    state burst credit meanwhile, which lets the request go at once).

    Immutable; a NamedTuple rather than a frozen dataclass: one is made per attempt,
    and it is built in half the time."""

    partition: str
    at: float
    generation: int
    tentative: bool = False
    recheck: float | None = None


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
    #: What the derated rate recovers to: the whole quota until a 429 at it, then
    #: :data:`DERATE_CEILING` of it.
    ceiling: float = 1.0
    #: Requests sent before this were booked before the last cut (at the old rate):
    #: their refusals say nothing of the new one.
    derate_guard: float = 0.0
    #: A request was sent well after its slot (see :meth:`RateLimiter.late`): refusals
    #: of requests sent before this say nothing of the server's rate.
    late_until: float = 0.0

    def holds_state(self, now: float) -> bool:
        """Would forgetting the partition change what happens next (a learned quota, a
        pause, hold or reset floor, slots booked ahead of ``now``, a first contact in
        progress, a paced release)?"""
        if (
            self.learned is not None
            or self.pause_until > now
            or self.floor_until > now
            or self.recovery is not None
            or (self.contact == 1 and now < self.contact_at + FIRST_CONTACT_WAIT)
        ):
            return True
        return any(tat > now for tat in self.tats.values())

    def derated(self, now: float) -> float:
        ceiling = self.ceiling
        if self.derate >= ceiling:
            return ceiling
        factor = self.derate + DERATE_RECOVERY * max(now - self.derate_at, 0.0)
        if factor >= ceiling:
            self.derate = ceiling
            return ceiling
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
    #: Burst credit (in-process only: not part of :meth:`to_state`). ``booked``: the
    #: slots handed out since ``booked_since`` (sorted; ``None``: the server has never
    #: stated a ``remaining``); ``credit``: the best observation ``(remaining, sent_at,
    #: expires)``; ``burst_seen``: the largest ``remaining`` ever stated.
    booked: list[float] | None = None
    booked_since: float = 0.0
    #: ``(remaining, since, expires, until)``: bookings of slots between ``since`` and
    #: ``until`` (the server's reset: its quota is whole again then) spend it.
    credit: tuple[int, float, float, float] | None = None
    #: Observations of requests sent before this are void (a later one was refused).
    credit_void: float = -math.inf
    burst_seen: int = 0
    #: The longest recent round trip (decaying): how far back a request may have been
    #: sent and still reach the server after a later one.
    slowest: float = 0.0

    def book(self, slot: float, now: float) -> None:
        booked = self.booked
        if booked is None:
            return
        if not booked or slot >= booked[-1]:
            booked.append(slot)
        else:
            bisect.insort(booked, slot)
        if len(booked) > CREDIT_LOG:
            half = len(booked) // 2
            self.booked_since = max(self.booked_since, booked[half - 1])
            del booked[:half]
        elif len(booked) > 64 and booked[0] < now - CREDIT_HORIZON:
            cut = bisect.bisect_left(booked, now - CREDIT_HORIZON)
            self.booked_since = max(self.booked_since, booked[cut - 1])
            del booked[:cut]

    def unbook(self, slot: float) -> None:
        booked = self.booked
        if booked is None:
            return
        index = bisect.bisect_left(booked, slot)
        if index < len(booked) and booked[index] == slot:
            del booked[index]

    def later(self, since: float, until: float = math.inf) -> int:
        """Bookings of slots from ``since`` on, before ``until``."""
        booked = self.booked
        if booked is None:
            return 0
        end = len(booked) if until == math.inf else bisect.bisect_left(booked, until)
        return max(end - bisect.bisect_left(booked, since), 0)

    def available(self, now: float) -> int:
        """Requests the server's last statements leave for us now (0: none known)."""
        credit = self.credit
        if credit is None or now >= credit[2]:
            return 0
        return max(credit[0] - CREDIT_MARGIN - self.later(credit[1], credit[3]), 0)

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
            "d": [self.derate, self.derate_at, self.derate_guard, self.late_until, self.ceiling],
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
            derate = state.get("d") or (1.0, 0.0, 0.0, 0.0, 1.0)
            part.derate = min(max(float(derate[0]), DERATE_FLOOR), 1.0)
            part.derate_at = float(derate[1])
            part.derate_guard = float(derate[2]) if len(derate) > 2 else part.derate_at
            part.late_until = float(derate[3]) if len(derate) > 3 else 0.0
            ceiling = float(derate[4]) if len(derate) > 4 else 1.0
            part.ceiling = min(max(ceiling, DERATE_CEILING), 1.0)
            part.derate = min(part.derate, part.ceiling)
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

    __slots__ = (
        "_generation",
        "_now",
        "_partitions",
        "burst_ahead",
        "first_contact",
        "max_partitions",
        "quotas",
    )

    def __init__(
        self,
        quotas: Iterable[Quota] = (),
        *,
        max_partitions: int = MAX_PARTITIONS,
        first_contact: bool = False,
        burst_ahead: float = 0.0,
    ) -> None:
        if max_partitions < 1:
            raise ConfigurationError("max_partitions must be at least 1")
        self.quotas = tuple(quotas)
        #: The first request to a partition goes alone (see :meth:`reserve`).
        self.first_contact = first_contact
        #: How far ahead of its paced slot burst credit may send a request (seconds).
        self.burst_ahead = burst_ahead
        self.max_partitions = max_partitions
        self._partitions: OrderedDict[str, _Partition] = OrderedDict()
        #: The highest generation handed out (a new partition, a pause: see
        #: :meth:`_next_generation`).
        self._generation = 0
        #: The latest ``now`` seen by :meth:`reserve` (what eviction judges state by).
        self._now = -math.inf

    def __repr__(self) -> str:
        return f"RateLimiter(quotas={self.quotas!r}, partitions={len(self._partitions)})"

    def __len__(self) -> int:
        """The partitions kept (at most ``max_partitions``)."""
        return len(self._partitions)

    def __contains__(self, partition: object) -> bool:
        """Is ``partition``'s state kept (not new, nor evicted)?"""
        return partition in self._partitions

    def _next_generation(self, at_least: int = 0) -> int:
        """A generation above every one handed out so far (and at least ``at_least``):
        a reservation of a partition's earlier incarnation (before it was evicted)
        never matches the new one's."""
        self._generation = max(self._generation + 1, at_least)
        return self._generation

    def _get(self, key: str) -> _Partition:
        part = self._partitions.get(key)
        if part is None:
            part = _Partition(self.quotas, generation=self._next_generation())
            self._partitions[key] = part
            if len(self._partitions) > self.max_partitions:
                self._evict()
        else:
            self._partitions.move_to_end(key)
        return part

    def _evict(self) -> None:
        """Drop one partition, never the newest (see the module docstring): the least
        recently used of the :data:`EVICT_SCAN` oldest that holds no state, the ones
        before it moved to the most recently used end; if all of those hold state, the
        least recently used of them."""
        partitions = self._partitions
        now = self._now
        oldest: str | None = None
        for _ in range(min(EVICT_SCAN, len(partitions) - 1)):
            key, part = next(iter(partitions.items()))
            if not part.holds_state(now):
                del partitions[key]
                return
            if oldest is None:
                oldest = key
            partitions.move_to_end(key)  # a second chance
        if oldest is None:
            partitions.popitem(last=False)
        else:
            del partitions[oldest]

    def export_partition(self, partition: str) -> dict[str, object] | None:
        """The partition's state as JSON-able data (``None``: never used)."""
        part = self._partitions.get(partition)
        return None if part is None else part.to_state()

    def import_partition(self, partition: str, state: object) -> None:
        """Replace the partition's state with :meth:`export_partition`'s data."""
        part = _Partition.from_state(self.quotas, state)
        self._generation = max(self._generation, part.generation)
        self._partitions[partition] = part
        self._partitions.move_to_end(partition)
        if len(self._partitions) > self.max_partitions:
            self._evict()

    def reserve(self, partition: str, now: float) -> Reservation:
        """Book the earliest slot for one request on ``partition``.

        With ``first_contact``, the first request to a partition goes alone: until it
        is answered (its headers may state the quota) the others get a *tentative*
        reservation, "ask again shortly", for at most :data:`FIRST_CONTACT_WAIT`
        seconds."""
        self._now = max(self._now, now)
        part = self._get(partition)
        if not self.first_contact or part.configured:
            pass  # configured quotas: the caller has said how fast to go
        elif part.contact == 0:
            part.contact, part.contact_at = 1, now
        elif part.contact == 1 and now < part.contact_at + FIRST_CONTACT_WAIT:
            return Reservation(
                partition, now + FIRST_CONTACT_STEP, part.generation, tentative=True
            )
        if part.booked is None and self.first_contact and self.burst_ahead:
            # Learning from the server: count bookings from the first, so that the
            # first answers' `remaining` can be checked against them.
            part.booked = []
            part.booked_since = now
        earliest = max(now, part.pause_until, part.floor_until)
        slot = earliest
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
        if (
            now == earliest < slot <= now + self.burst_ahead
            and part.recovery is None
            and part.available(now) > 0
        ):
            slot = now  # burst credit: the schedule is charged as if it went at its slot
        part.book(slot, now)
        return Reservation(partition, slot, part.generation, recheck=self._recheck(part, slot, now))

    def schedule(
        self, partition: str, now: float
    ) -> (
        tuple[int, float, tuple[tuple[str, float, float], ...], float,
              tuple[float, float] | None]
        | None
    ):
        """The partition's schedule as a plain GCRA that a shared store may book slots
        from by itself (in one script call, without loading this class's state): the
        generation, the earliest slot (a pause, a reset floor) and each quota's name,
        interval ``T`` and tolerance ``tau``. Booking is then what :meth:`reserve` does
        in that case: ``slot = max(now, earliest, tat - tau for each quota)``, then
        ``tat = max(tat, slot) + T`` for each (a missing ``tat`` is ``now``); with no
        quota at all, the slot is ``max(now, earliest)`` and counts as unpaced. The
        ``tat``s so moved come back through :meth:`booked_elsewhere`. The fourth item:
        until when the schedule holds (a derated quota recovers with time, a paced
        release may speed up with demand: it holds for :data:`SCHEDULE_DRIFT` seconds,
        a derated rate changing by less than 1 % meanwhile; ``inf`` otherwise). The
        last: during a paced release after a pause, ``(until, hard_until)``: the quota
        named ``recovery`` counts only while ``now < hard_until`` and either ``now <
        until`` or its ``tat`` is still ahead of ``now`` (the backlog is not released
        yet); ``None`` otherwise.

        ``None`` while booking needs more than that: the partition unknown or in its
        first contact."""
        part = self._partitions.get(partition)
        if part is None:
            return None
        if self.first_contact and not part.configured and part.contact != 2:
            return None
        until = math.inf
        if part.learned is not None and part.derated(now) < part.ceiling:
            until = now + SCHEDULE_DRIFT
        quotas = tuple(
            (name, quota.interval, (quota.burst - 1) * quota.interval)
            for name, quota in part.quotas(now)
        )
        recovery = None
        if part.recovery is not None:  # (still in force after quotas() looked at it)
            recovery = (part.recovery[0], part.recovery[2])
            until = min(until, now + SCHEDULE_DRIFT)
        return part.generation, max(part.pause_until, part.floor_until), quotas, until, recovery

    def booked_elsewhere(
        self,
        partition: str,
        tats: dict[str, float],
        *,
        unpaced: int = 0,
        unpaced_since: float = 0.0,
    ) -> None:
        """Take in the slots booked from :meth:`schedule` elsewhere: the quotas' ``tat``s
        as they are now (each only ever moved forward there), and ``unpaced`` slots let
        go with no quota known, the first at ``unpaced_since``."""
        part = self._get(partition)
        own = part.tats
        for name, tat in tats.items():
            if math.isfinite(tat) and tat > own.get(name, -math.inf):
                own[name] = tat
        if unpaced > 0:
            if part.unpaced == 0:
                part.unpaced_since = unpaced_since
            part.unpaced += unpaced

    def sent_late(self, partition: str, until: float) -> None:
        """Refusals of requests sent before ``until`` say nothing of the server's rate
        (what :meth:`late` decided elsewhere, for a shared store)."""
        part = self._partitions.get(partition)
        if part is not None and until > part.late_until:
            part.late_until = until

    def late_until(self, partition: str, *, sent_at: float, late: float) -> float | None:
        """What :meth:`late` would set ``late_until`` to (``None``: nothing)."""
        part = self._partitions.get(partition)
        if part is None or part.learned is None:
            return None
        if late <= max(LATE_SLOTS * part.learned.interval, LATE_MIN):
            return None
        return sent_at + LATE_GRACE

    def refresh(self, reservation: Reservation, now: float) -> Reservation:
        """A still-valid reservation asked about again (at its ``recheck``): go now if the
        server has stated burst credit since, else the same slot, to be checked again."""
        part = self._partitions.get(reservation.partition)
        if part is None or reservation.at <= now or reservation.tentative:
            return reservation
        if (
            max(part.pause_until, part.floor_until) <= now
            and reservation.at <= now + self.burst_ahead
            and part.recovery is None
            and part.available(now) > 0
        ):
            part.unbook(reservation.at)
            part.book(now, now)
            return Reservation(reservation.partition, now, reservation.generation)
        recheck = self._recheck(part, reservation.at, now)
        if recheck == reservation.recheck:
            return reservation
        return Reservation(
            reservation.partition, reservation.at, reservation.generation, recheck=recheck
        )

    def _recheck(self, part: _Partition, slot: float, now: float) -> float | None:
        """When a waiter for ``slot`` should look again (``None``: at its slot). Only where
        the server has stated more room than there are waiters (a window or a large
        bucket); a small token bucket's waiters just sleep."""
        booked = part.booked
        if (
            booked is None
            or not self.burst_ahead
            or slot - now <= 2 * RECHECK_MIN
        ):
            return None
        if part.burst_seen <= len(booked) - bisect.bisect_right(booked, now):
            return None
        return now + max(RECHECK_MIN, (slot - now) / 8)

    def observe(
        self,
        partition: str,
        *,
        remaining: int,
        reset_after: float | None = None,
        sent_at: float,
        now: float,
    ) -> None:
        """The server stated ``remaining`` requests left (until its quota is whole again
        in ``reset_after`` seconds, if stated) when it answered a request sent at
        ``sent_at``: burst credit. Every request booked to go after that one (and before
        the reset) may already have spent part of it, and each one booked from now on
        spends one more.
        Credit lets a request go before its paced slot *instead of* at it (the schedule
        is charged as if it had waited): a window's unused remainder, or a large
        bucket's, is sent at once rather than spread over the window, and the long-run
        rate stays the quota's. Never on a shared state (another process's bookings are
        not in this log); a 429 voids it (see :meth:`refused`)."""
        part = self._get(partition)
        if remaining < 0:
            return
        part.burst_seen = max(part.burst_seen, remaining)
        if part.booked is None:
            part.booked = []
            part.booked_since = now
            return  # earlier bookings are not in the log: this one cannot be counted
        age = max(now - sent_at, CREDIT_SLACK)
        part.slowest = max(age, part.slowest * CREDIT_RTT_DECAY)
        if sent_at <= part.credit_void:
            return
        # Requests sent up to the slowest recent round trip before this one may have
        # reached the server after it (a thread that was slow to write, a slow path).
        if sent_at < part.booked_since:
            return  # sent before the log began: what it spent is not known
        since = max(sent_at - part.slowest, part.booked_since)
        until = (
            now + reset_after
            if reset_after is not None and math.isfinite(reset_after) and reset_after > 0
            else math.inf
        )
        current = part.credit
        if (
            current is not None
            and now < current[2]
            and since < current[1]
            and remaining - part.later(since, until)
            <= current[0] - part.later(current[1], current[3])
        ):
            # An answer overtaken by a later one replaces it only if it leaves more
            # (each is a lower bound); the later one is kept alive.
            part.credit = (current[0], current[1], now + CREDIT_TTL, current[3])
            return
        part.credit = (remaining, since, now + CREDIT_TTL, until)

    def refused(self, partition: str, *, sent_at: float) -> None:
        """A 429 for a request sent at ``sent_at``: what the server stated before it
        is void."""
        part = self._partitions.get(partition)
        if part is None:
            return
        part.credit = None
        part.credit_void = max(part.credit_void, sent_at)

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

    def release(self, reservation: Reservation, now: float) -> None:
        """The holder of ``reservation`` gives it up without sending (its wait was over the
        cap or past its deadline): the schedule gives one slot back, so callers that give
        up do not push it ever further ahead of the clock. The last slot is the one given
        back (every waiter keeps its own); a slot whose time has come, a void
        reservation or a tentative one gives nothing back."""
        part = self._partitions.get(reservation.partition)
        if (
            part is None
            or reservation.tentative
            or reservation.at <= now
            or part.generation != reservation.generation
        ):
            return
        for name, quota in part.quotas(now):
            tat = part.tats.get(name)
            if tat is not None and tat - quota.interval >= now:
                part.tats[name] = tat - quota.interval
        part.unbook(reservation.at)

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
        part.generation = self._next_generation(part.generation + 1)
        part.credit = None
        if part.booked is not None:
            # Every booking is void; observations of requests sent before now cannot be
            # counted against the new ones.
            part.booked.clear()
            part.booked_since = now
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
                charged = part.unpaced_since + part.unpaced * quota.interval - tau
                # A server sent more than its quota refused the excess: it holds that
                # against no one for longer than the quota's period (a schedule charged
                # for every unpaced send of a busy fleet would lock it out for seconds).
                start = max(start, min(charged, now + quota.period))
                part.unpaced = 0
            part.tats["learned"] = start

    def seed(self, partition: str, quota: Quota, now: float) -> None:
        """Use ``quota``, known from elsewhere (what a shared state showed before it lost
        the partition, or before it became unreachable), as the partition's learned
        quota: like :meth:`learn`, but the partition is past its first contact, and a
        schedule that had no quota starts paced from ``now`` without charging the sends
        made meanwhile (they were paced elsewhere, or refused)."""
        part = self._get(partition)
        part.contact = 2
        part.unpaced = 0
        if part.learned == quota:
            return
        previous = part.learned
        part.learned = quota
        if previous is None:
            part.tats["learned"] = max(part.tats.get("learned", now), now)

    def learned(self, partition: str, now: float) -> tuple[Quota, float] | None:
        """The partition's learned quota and the share of it used now (see
        :meth:`derate`); ``None``: none learned."""
        part = self._partitions.get(partition)
        if part is None or part.learned is None:
            return None
        return part.learned, part.derated(now)

    def continue_after(self, partition: str, slot: float, now: float) -> None:
        """Slots up to ``slot`` were handed out by another schedule for the same server
        (a shared state's, or the local fallback's while the shared one was out of
        reach): this one goes on after them, as if it had booked them itself (no slot
        before ``slot`` plus one interval, no burst over them)."""
        part = self._partitions.get(partition)
        if part is None or not math.isfinite(slot):
            return
        for name, quota in part.quotas(now):
            tau = (quota.burst - 1) * quota.interval
            floor = slot + quota.interval + tau
            if part.tats.get(name, now) < floor:
                part.tats[name] = floor

    def derate(self, partition: str, now: float, *, sent_at: float) -> None:
        """A 429 although the partition is paced at its learned quota: use less of it
        (see :data:`DERATE_STEP`). A request sent before the last cut does not cut
        again (k concurrent 429s cut once)."""
        part = self._partitions.get(partition)
        if part is None or part.learned is None:
            return
        if sent_at < max(part.derate_at, part.derate_guard, part.late_until):
            return
        part.derate = max(DERATE_FLOOR, part.derated(now) * DERATE_STEP)
        part.derate_at = now
        part.ceiling = DERATE_CEILING
        # Every slot booked so far was booked at the old rate (a fleet's queue of
        # waiters can be a second long): only requests sent after them test the new one.
        part.derate_guard = max(now, part.tats.get("learned", now))

    def late(self, partition: str, *, sent_at: float, late: float) -> None:
        """A request was sent ``late`` seconds after its slot (a thread starved of CPU,
        a slow token fetch): if by more than :data:`LATE_SLOTS` slots of the rate, the
        sends around it may have reached the server bunched, and a refusal of a request
        sent up to :data:`LATE_GRACE` seconds later is no sign that the server admits
        less than it states (see :meth:`derate`)."""
        part = self._partitions.get(partition)
        if part is None or part.learned is None:
            return
        if late <= max(LATE_SLOTS * part.learned.interval, LATE_MIN):
            return
        part.late_until = max(part.late_until, sent_at + LATE_GRACE)

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
