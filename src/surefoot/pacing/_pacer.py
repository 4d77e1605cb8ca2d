"""Pacing, retry budget and circuit breaking for the pipeline: configuration and state.

:class:`Pacing` is the immutable configuration. :class:`Pacer` is what the pipeline
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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import urlsplit

from surefoot._core._history import FailureKind
from surefoot._core._policy import Failure, ResponseInfo
from surefoot._core._retry_after import retry_after_from_headers
from surefoot.errors import ConfigurationError
from surefoot.pacing._adaptive import AdaptiveConfig, AdaptiveRate
from surefoot.pacing._breaker import Admission, BreakerConfig, CircuitBreaker
from surefoot.pacing._budget import RetryBudget, RetryBudgetConfig, WindowCounts
from surefoot.pacing._gcra import Quota, RateLimiter, Reservation
from surefoot.pacing._quota_headers import QuotaObservation, parse_quota_headers

__all__ = ["LocalPacerState", "Pacer", "PacerState", "Pacing", "Report"]

PartitionBy = Literal["host", "origin", "api_key"] | Callable[[str, "dict[str, str]"], str]

_THROTTLE_STATUSES = frozenset({429, 503})
#: The send rate just before a pause is measured over this many seconds.
_SEND_WINDOW = 2.0
#: Demand is never measured over less than this (one request in a millisecond is not
#: a thousand per second).
_MIN_OBSERVED = 0.1
#: Demand (logical requests per second) is measured over this many seconds.
_DEMAND_WINDOW = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Pacing:
    """How attempts are paced and protected.

    * ``quotas`` — client-side quotas for every partition (e.g. 100/s and 5000/h).
    * ``partition_by`` — ``"host"`` (default), ``"origin"``, ``"api_key"`` (the
      ``X-API-Key`` header, or the host when absent), or a function of (url, headers).
    * ``learn`` — learn the quota from the server's headers (RateLimit, X-RateLimit-*,
      GitHub, X, Discord, OpenAI dialects) and pause a partition on Retry-After.
    * ``adaptive`` — when the server states no quota, pace with a CUBIC-style adaptive
      rate that backs off on 429/503 (``None``: no adaptive pacing).
    * ``budget`` — retries may be at most a fraction of recent traffic (``None``: off).
    * ``breaker`` — a circuit breaker per partition (``None``: off).
    * ``safety`` — learned quotas are used at this fraction, so that jitter on the way
      does not turn into 429s.
    * ``release_factor`` — after a pause (Retry-After), the waiters are released at no
      more than this multiple of the recent demand on the partition (and never faster
      than the quota) until the backlog is gone: a server back from an outage gets the
      backlog spread out, not as a spike. The backlog drains at ``release_factor - 1``
      times demand, so an outage of T seconds takes about ``T / (release_factor - 1)``
      to catch up; the default 1.3 keeps the peak under 1.5x demand even when the
      demand measured over the last seconds runs 15 % above the true mean (Poisson
      arrivals do).
    * ``max_pause`` — the longest a partition is held by a Retry-After or a reset in the
      quota headers (a guard against absurd values; the request's own deadline and
      ``retry_after_cap`` still apply to it).
    """

    quotas: tuple[Quota, ...] = ()
    partition_by: PartitionBy = "host"
    learn: bool = True
    adaptive: AdaptiveConfig | None = None
    budget: RetryBudgetConfig | None = field(default_factory=RetryBudgetConfig)
    breaker: BreakerConfig | None = None
    safety: float = 0.99
    max_pause: float = 3600.0
    release_factor: float = 1.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "quotas", tuple(self.quotas))
        if not (0 < self.safety <= 1):
            raise ConfigurationError("safety must be in (0, 1]")
        if not (self.max_pause > 0):
            raise ConfigurationError("max_pause must be positive")
        if not (self.release_factor > 1):
            raise ConfigurationError(
                "release_factor must be greater than 1 (at 1, a backlog would never drain)"
            )
        if not callable(self.partition_by) and self.partition_by not in (
            "host",
            "origin",
            "api_key",
        ):
            raise ConfigurationError(
                "partition_by must be 'host', 'origin', 'api_key' or a function"
            )


class Report(NamedTuple):
    """What one attempt's outcome means for the shared state, decided by :class:`Pacer`
    from the response (so that every backend applies the same instructions)."""

    #: For the breaker: was the outcome healthy? (``None``: no breaker.)
    healthy: bool | None
    #: The attempt was a half-open probe.
    probe: bool
    #: Quotas the server stated (RateLimit-Policy, X-RateLimit-Limit ...).
    learned: tuple[Quota, ...] = ()
    #: ``(remaining, reset_after)`` observations, in seconds from now.
    tighten: tuple[tuple[int, float], ...] = ()
    #: Retry-After on a throttle: hold the partition this many seconds.
    pause: float | None = None
    #: For the adaptive rate: ``True`` throttled, ``False`` not (``None``: no update).
    throttled: bool | None = None
    #: Seconds since the attempt was sent (the adaptive rate's epoch test).
    age: float = 0.0


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

    Also the engine of the SQLite store, which loads one partition's state into a
    throw-away instance (:meth:`import_partition`), applies the operation and saves
    the result (:meth:`export_partition`) inside one transaction.
    """

    does_io = False

    __slots__ = (
        "_adaptive",
        "_arrivals",
        "_breakers",
        "_budget",
        "_lock",
        "_sends",
        "limiter",
        "pacing",
    )

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self.limiter = RateLimiter(pacing.quotas)
        self._adaptive: dict[str, AdaptiveRate] = {}
        self._arrivals: dict[str, tuple[float, WindowCounts]] = {}
        #: Reservations (attempts) per partition, over the last couple of seconds.
        self._sends: dict[str, tuple[float, WindowCounts]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        config = pacing.budget
        self._budget = RetryBudget(config) if config is not None else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalPacerState(partitions={len(self._arrivals)})"

    # -- operations ------------------------------------------------------------------

    def reserve(
        self, partition: str, previous: Reservation | None, *, now: float, adaptive: bool
    ) -> Reservation:
        with self._lock:
            if previous is not None and self.limiter.still_valid(previous):
                return previous
            if adaptive:
                rate = self._adaptive.get(partition)
                if rate is not None:
                    self.limiter.learn(
                        partition, Quota(limit=max(rate.rate, 1e-6)), now, guess=True
                    )
                    rate.on_send(now)
            if self.limiter.recovering(partition):
                # The release speeds up when demand measured now is higher than when the
                # pause began (a closed loop that was just starting, say). It never slows
                # down: a closed loop whose callers all wait sends no new requests, and
                # its measured demand falls only because of the pause itself.
                release = self._release_rate(partition, now)
                if release is not None:
                    self.limiter.speed_up_release(partition, release)
            _count(self._sends, partition, now, _SEND_WINDOW, self.limiter.max_partitions)
            return self.limiter.reserve(partition, now)

    def admit(self, partition: str, *, now: float) -> Admission:
        config = self.pacing.breaker
        if config is None:
            return Admission(allowed=True, state="closed", probe=False, retry_at=None)
        with self._lock:
            breaker = self._breakers.get(partition)
            if breaker is None:
                breaker = self._breakers[partition] = CircuitBreaker(config)
            return breaker.allow(now)

    def on_request(self, partition: str, *, now: float) -> None:
        with self._lock:
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
        with self._lock:
            if report.healthy is not None:
                breaker = self._breakers.get(partition)
                if breaker is not None:
                    breaker.on_result(now, ok=report.healthy, probe=report.probe)
            for quota in report.learned:
                self.limiter.learn(partition, quota, now)
            for remaining, reset_after in report.tighten:
                self.limiter.tighten(
                    partition, remaining=remaining, reset_after=reset_after, now=now
                )
            if report.pause is not None:
                self.limiter.pause(
                    partition,
                    now + report.pause,
                    now,
                    release_rate=self._release_rate(partition, now, at_pause=True),
                    recovery=report.pause,
                )
            if report.throttled is not None and pacing.adaptive is not None:
                adaptive = self._adaptive.get(partition)
                if adaptive is None:
                    adaptive = self._adaptive[partition] = AdaptiveRate(pacing.adaptive, now)
                if report.throttled:
                    adaptive.on_throttle(now - report.age, now)
                else:
                    adaptive.on_success(now)
                self.limiter.learn(
                    partition, Quota(limit=max(adaptive.rate, 1e-6)), now, guess=True
                )

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

    # -- state in and out (the SQLite store) -------------------------------------------

    def export_partition(self, partition: str) -> dict[str, Any]:
        """The partition's state as JSON-able data."""
        adaptive = self._adaptive.get(partition)
        breaker = self._breakers.get(partition)
        arrivals = self._arrivals.get(partition)
        sends = self._sends.get(partition)
        return {
            "lim": self.limiter.export_partition(partition),
            "ada": None if adaptive is None else adaptive.to_state(),
            "brk": None if breaker is None else breaker.to_state(),
            "arr": None if arrivals is None else [arrivals[0], arrivals[1].to_state()],
            "snd": None if sends is None else [sends[0], sends[1].to_state()],
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
    now: float,
    window: float,
    max_entries: int,
) -> None:
    entry = table.get(partition)
    if entry is None:
        if len(table) >= max_entries:
            table.clear()
        entry = table[partition] = (now, WindowCounts(window))
    entry[1].add(now)


def _rate(entry: tuple[float, WindowCounts] | None, now: float) -> float | None:
    """Events per second in the window, over the time actually observed (a young
    partition has not filled the window); ``None``: never counted."""
    if entry is None:
        return None
    first_seen, counts = entry
    observed = min(counts.span(now), max(now - first_seen, _MIN_OBSERVED))
    return counts.total(now) / observed


class Pacer:
    """What the pipeline talks to: reads the server's answers and drives a
    :class:`PacerState` (in-process by default; pass ``state=`` from a shared store, e.g.
    ``surefoot.RedisStore(...).pacer_state(pacing)``, or use ``store=``). Thread-safe."""

    __slots__ = ("_lock", "_resets", "_server_learned", "_windows", "pacing", "state")

    def __init__(
        self,
        pacing: Pacing | None = None,
        *,
        state: PacerState | None = None,
        store: Any = None,
        now: float = 0.0,
    ) -> None:
        self.pacing = pacing or Pacing()
        if state is not None and store is not None:
            raise ConfigurationError("give a Pacer either state= or store=, not both")
        if store is not None:
            state = store.pacer_state(self.pacing)
        self.state: PacerState = state if state is not None else LocalPacerState(self.pacing)
        self._server_learned: set[str] = set()
        self._resets: dict[tuple[str, str], float] = {}
        self._windows: dict[tuple[str, str], float] = {}
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

    def partition_of(self, url: str, headers: dict[str, str]) -> str:
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

    def reserve(
        self, partition: str, previous: Reservation | None = None, *, now: float
    ) -> Reservation:
        """A slot to send at; ``previous`` is returned again while it is still valid."""
        adaptive = (
            self.pacing.adaptive is not None and partition not in self._server_learned
        )
        return self.state.reserve(partition, previous, now=now, adaptive=adaptive)

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
    ) -> None:
        pacing = self.pacing
        healthy = _healthy(outcome) if pacing.breaker is not None else None
        age = max(now - sent_at, 0.0)
        if not isinstance(outcome, ResponseInfo):
            if healthy is not None:
                self.state.report(partition, Report(healthy, probe, age=age), now=now)
            return
        throttled = outcome.status in _THROTTLE_STATUSES
        learned: tuple[Quota, ...] = ()
        tighten: tuple[tuple[int, float], ...] = ()
        pause = None
        if pacing.learn:
            with self._lock:
                learned, tighten = self._learn(partition, outcome, wall_now)
                if learned or tighten:
                    self._server_learned.add(partition)
            if throttled:
                # Retry-After wins over the quota headers, and holds the whole partition.
                wait = retry_after_from_headers(outcome.header, now=wall_now)
                if wait is not None:
                    pause = min(wait, pacing.max_pause)
        adapt = (
            throttled
            if pacing.adaptive is not None and partition not in self._server_learned
            else None
        )
        if healthy is None and adapt is None and pause is None and not (learned or tighten):
            return  # nothing to tell the state (a shared one would cost a round trip)
        self.state.report(
            partition, Report(healthy, probe, learned, tighten, pause, adapt, age), now=now
        )

    def _learn(
        self, partition: str, info: ResponseInfo, wall_now: float
    ) -> tuple[tuple[Quota, ...], tuple[tuple[int, float], ...]]:
        observations = parse_quota_headers(info.header, now=wall_now)
        learned: list[Quota] = []
        tighten: list[tuple[int, float]] = []
        for obs in observations:
            window = obs.window or self._infer_window(partition, obs, wall_now)
            if obs.limit is not None and window:
                learned.append(Quota(limit=obs.limit, period=window, safety=self.pacing.safety))
            if obs.remaining is not None and obs.reset_after is not None:
                reset_after = min(obs.reset_after, self.pacing.max_pause)
                if window:
                    # A reset further away than a whole window is the rounding of epoch
                    # seconds (GitHub, X), not a longer wait.
                    reset_after = min(reset_after, window)
                tighten.append((obs.remaining, reset_after))
        return tuple(learned), tuple(tighten)

    def _infer_window(self, partition: str, obs: QuotaObservation, wall_now: float) -> float:
        """Dialects that state a limit and a reset but no window (GitHub, X, X-RateLimit)
        reveal it when the reset instant jumps: the jump is the window's length."""
        if obs.limit is None or obs.reset_after is None:
            return 0.0
        key = (partition, obs.policy or obs.dialect)
        reset_at = wall_now + obs.reset_after
        previous = self._resets.get(key)
        self._resets[key] = reset_at
        if len(self._resets) > 40_000:
            self._resets.clear()
        if previous is not None and reset_at - previous >= 0.5:
            self._windows[key] = round(reset_at - previous, 3)
        return self._windows.get(key, 0.0)


_ALLOWED = Admission(allowed=True, state="closed", probe=False, retry_at=None)


def _healthy(outcome: ResponseInfo | Failure) -> bool:
    if isinstance(outcome, Failure):
        return outcome.kind is FailureKind.OTHER  # a programming/TLS error is not the server's
    return outcome.status < 500 and outcome.status != 429
