"""The part the SQLite and Redis pacer states share: what they do while their backend is
out of reach (failing open), and when it comes back having lost a partition.

Both run every operation on the backend's state. While the backend is unavailable and
the store fails open, the operations run on a local :class:`LocalPacerState` instead
(:class:`PacingFallback`), which on its own knows nothing the servers said. So each
shared state keeps, per partition (a bounded table), a small *mirror* of what its last
successful backend operations showed:

* the partition's learned quota, and the share of it in use (a derated rate);
* this process's share of the fleet's recent sends: the reservations it made through the
  backend over the last couple of seconds against all those the backend counted (1.0
  while unknown, never less than :data:`SHARE_FLOOR`);
* the last slot the backend handed to this process.

**Failing over.** Before an operation runs on the fallback, the local state is told the
mirrored quota scaled by the share (the processes of a fleet falling back together offer
about the quota between them, not each the whole of it; a 429 derates the rest, as
always), its schedule going on after this process's last shared slot. A quota learned
from a response meanwhile replaces the mirrored one, scaled too.

**Coming back.** When a backend operation loads a partition that has no learned quota
(Redis restarted empty, the key expired, the SQLite row gone) while the mirror knows
one, the quota is put back before the operation applies: paced from now, without
charging the sends a blank partition let through unpaced meanwhile, and after the last
slot the fallback handed out (the schedules of the processes that fell back are merged
into the shared one, so that they do not run side by side).

Every method is O(1) and does no I/O.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable

from surefoot.pacing._breaker import Admission
from surefoot.pacing._budget import WindowCounts
from surefoot.pacing._config import _SEND_WINDOW, PacingPolicy, Report
from surefoot.pacing._gcra import Quota, Reservation
from surefoot.pacing._state import LocalPacerState

__all__ = ["MAX_PARTITIONS", "SHARE_FLOOR", "PacingFallback"]

#: The least share of a mirrored quota a process paces at on the fallback: one that
#: sent little while the backend answered still gets this much of the quota (a low
#: share that is too low is never corrected, a high one is by the 429s it draws).
SHARE_FLOOR = 0.1
#: Partitions mirrored per state (the least recently used are forgotten beyond).
MAX_PARTITIONS = 4096


class _Mirror:
    """What the backend last showed of one partition (see the module's docstring)."""

    __slots__ = (
        "factor",
        "fleet",
        "local_until",
        "own",
        "primed",
        "quota",
        "share",
        "shared_until",
    )

    def __init__(self) -> None:
        self.quota: Quota | None = None
        #: The share of the quota in use (the derated rate) as of the last look.
        self.factor = 1.0
        #: The fleet's reservations in the backend's send window, as of the last look.
        self.fleet = 0
        #: This process's reservations through the backend (caller's clock).
        self.own = WindowCounts(_SEND_WINDOW)
        self.share = 1.0
        #: The last slot the backend handed this process (caller's clock), and the one
        #: the fallback's schedule was last told to go on after.
        self.shared_until = -math.inf
        self.primed = -math.inf
        #: The last slot the fallback handed out (caller's clock); -inf once the
        #: backend's schedule has been told to go on after it.
        self.local_until = -math.inf


class PacingFallback:
    """The fallback of a shared pacer state (``local``) and the mirror that primes it.

    The shared state calls :meth:`prepare` on every engine it loads, :meth:`observe`
    after each successful step, :meth:`reserved` when a reservation came from the
    backend; its fail-open path calls the operations below instead of the backend's.
    Thread-safe."""

    __slots__ = ("_lock", "_mirrors", "local")

    def __init__(self, pacing: PacingPolicy) -> None:
        self.local = LocalPacerState(pacing)
        self._mirrors: OrderedDict[str, _Mirror] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PacingFallback(mirrored={len(self._mirrors)})"

    def _mirror(self, partition: str) -> _Mirror:
        """The partition's mirror, made if need be (the caller holds the lock)."""
        mirror = self._mirrors.get(partition)
        if mirror is None:
            mirror = self._mirrors[partition] = _Mirror()
            if len(self._mirrors) > MAX_PARTITIONS:
                self._mirrors.popitem(last=False)
        else:
            self._mirrors.move_to_end(partition)
        return mirror

    def mirrored(self, partition: str) -> tuple[Quota | None, float, float]:
        """``(quota, factor, share)`` as mirrored (for tests and debugging)."""
        with self._lock:
            mirror = self._mirrors.get(partition)
            if mirror is None:
                return None, 1.0, 1.0
            return mirror.quota, mirror.factor, mirror.share

    # -- the backend's side --------------------------------------------------------------

    def prepare(
        self,
        engine: LocalPacerState,
        partition: str,
        t: float,
        to_store: Callable[[float], float],
    ) -> float:
        """Before operations apply to ``engine`` (the partition's state as loaded, on
        the store's clock ``t``; ``to_store`` moves a caller's instant onto it): a lost
        quota is put back, and the schedule goes on after the slots the fallback handed
        out. Returns what :meth:`observe` is to be given once the step is written."""
        with self._lock:
            mirror = self._mirrors.get(partition)
            if mirror is None:
                return -math.inf
            quota, local_until = mirror.quota, mirror.local_until
        # (The engine is this call's own: its limiter needs no lock.)
        if quota is not None and engine.limiter.learned(partition, t) is None:
            engine.seed(partition, quota, now=t)
        if local_until > -math.inf:
            engine.continue_after(partition, to_store(local_until), now=t)
        return local_until

    def fleet_sends(self, partition: str, sends: float) -> None:
        """The backend counted about ``sends`` reservations of the partition over the
        last couple of seconds (what :meth:`observe` reads off a whole load)."""
        with self._lock:
            self._mirror(partition).fleet = max(round(sends), 1)

    def learned_quota(self, partition: str, quota: Quota) -> None:
        """The backend paces the partition at its learned ``quota``, in full (what
        :meth:`observe` reads off a whole load)."""
        with self._lock:
            mirror = self._mirror(partition)
            mirror.quota, mirror.factor = quota, 1.0

    def to_merge(self, partition: str) -> bool:
        """Has the fallback handed out slots of the partition that the backend's
        schedule must go on after (:meth:`prepare`, on a whole load of the state)?"""
        mirror = self._mirrors.get(partition)
        return mirror is not None and mirror.local_until > -math.inf

    def observe(self, engine: LocalPacerState, partition: str, t: float, merged: float) -> None:
        """A step on the partition was written (or left the state unchanged): mirror
        what ``engine`` holds now. ``merged``: what :meth:`prepare` returned."""
        learned = engine.learned(partition, now=t)
        fleet = engine.recent_sends(partition, now=t)
        with self._lock:
            mirror = self._mirror(partition)
            if learned is not None:
                mirror.quota, mirror.factor = learned
            if fleet is not None:
                mirror.fleet = fleet
            if mirror.local_until <= merged:
                mirror.local_until = -math.inf

    def reserved(
        self, partition: str, previous: Reservation | None, got: Reservation, now: float
    ) -> None:
        """The backend handed this process ``got`` (``previous``: what it asked with)."""
        with self._lock:
            mirror = self._mirror(partition)
            if previous is None:  # one count per attempt, as the backend counts them
                mirror.own.add(now)
                if mirror.fleet > 0:
                    share = mirror.own.total(now) / mirror.fleet
                    mirror.share = min(max(share, SHARE_FLOOR), 1.0)
            if not got.tentative and got.at > mirror.shared_until:
                mirror.shared_until = got.at

    # -- the fallback's side: PacerState operations on the local state ----------------

    def _prime(self, partition: str, now: float) -> None:
        """Tell the local state what the mirror knows of the partition (a no-op once
        told, until the mirror learns something new)."""
        with self._lock:
            mirror = self._mirrors.get(partition)
            if mirror is None:
                return
            quota, scale = mirror.quota, mirror.factor * mirror.share
            after = None
            if mirror.shared_until > mirror.primed:
                after = mirror.primed = mirror.shared_until
        if quota is not None:
            self.local.seed(partition, _scaled(quota, scale), now=now, after=after)
        elif after is not None:
            self.local.continue_after(partition, after, now=now)

    def reserve(
        self, partition: str, previous: Reservation | None, *, now: float, adaptive: bool
    ) -> Reservation:
        self._prime(partition, now)
        got = self.local.reserve(partition, previous, now=now, adaptive=adaptive)
        if not got.tentative and got is not previous:
            with self._lock:
                mirror = self._mirror(partition)
                mirror.local_until = max(mirror.local_until, got.at)
        return got

    def release(self, partition: str, reservation: Reservation, *, now: float) -> None:
        self.local.release(partition, reservation, now=now)

    def admit(self, partition: str, *, now: float) -> Admission:
        return self.local.admit(partition, now=now)

    def on_request(self, partition: str, *, now: float) -> None:
        self.local.on_request(partition, now=now)

    def try_retry(self, *, now: float) -> bool:
        return self.local.try_retry(now=now)

    def report(self, partition: str, report: Report, *, now: float) -> None:
        if report.learned:
            # Stated by the server just now: the mirror's from now on, used scaled here
            # (and put back in the backend if it comes back without one).
            with self._lock:
                self._mirror(partition).quota = report.learned[-1]
            report = report._replace(learned=())
        self._prime(partition, now)
        self.local.report(partition, report, now=now)


def _scaled(quota: Quota, scale: float) -> Quota:
    """``quota`` at ``scale`` of its rate (and burst)."""
    if scale >= 1.0:
        return quota
    return Quota(
        limit=quota.limit * scale,
        period=quota.period,
        burst=max(1, int(quota.burst * scale)),
        safety=quota.safety,
    )
