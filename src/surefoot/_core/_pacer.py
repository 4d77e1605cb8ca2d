"""Pacing, retry budget and circuit breaking for the pipeline: configuration and state.

:class:`Pacing` is the immutable configuration; :class:`Pacer` the in-process state it
drives (a :class:`~surefoot._core._ratelimit.RateLimiter` per pacer, plus per-partition
adaptive rates and breakers, and one retry budget). The pipeline talks to it only through
effects (``Reserve``, ``Admit``, ``Report``, ``SpendRetry``), so that shared stores (one
host, a fleet) can later serve the same calls. Every method is O(1) and holds the pacer's
lock for microseconds; none waits or does I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from ._adaptive import AdaptiveConfig, AdaptiveRate
from ._breaker import Admission, BreakerConfig, CircuitBreaker
from ._budget import RetryBudget, RetryBudgetConfig, WindowCounts
from ._errors import ConfigurationError
from ._history import FailureKind
from ._policy import Failure, ResponseInfo
from ._quota_headers import QuotaObservation, parse_quota_headers
from ._ratelimit import Quota, RateLimiter, Reservation
from ._retry_after import retry_after_from_headers

__all__ = ["Pacer", "Pacing"]

PartitionBy = Literal["host", "origin", "api_key"] | Callable[[str, "dict[str, str]"], str]

_THROTTLE_STATUSES = frozenset({429, 503})
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
      to catch up; the default 1.4 keeps the peak under 1.5x demand even when demand
      was measured a few percent low.
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
    release_factor: float = 1.4

    def __post_init__(self) -> None:
        object.__setattr__(self, "quotas", tuple(self.quotas))
        if not (0 < self.safety <= 1):
            raise ConfigurationError("safety must be in (0, 1]")
        if not (self.max_pause > 0):
            raise ConfigurationError("max_pause must be positive")
        if not (self.release_factor > 1):
            raise ConfigurationError("release_factor must be greater than 1 (at 1, a backlog would never drain)")
        if not callable(self.partition_by) and self.partition_by not in (
            "host",
            "origin",
            "api_key",
        ):
            raise ConfigurationError(
                "partition_by must be 'host', 'origin', 'api_key' or a function"
            )


class Pacer:
    """The state behind a :class:`Pacing`, shared by every request of a client (or of
    several clients given the same pacer). Thread-safe."""

    __slots__ = (
        "_adaptive",
        "_arrivals",
        "_breakers",
        "_budget",
        "_lock",
        "_resets",
        "_server_learned",
        "_windows",
        "limiter",
        "pacing",
    )

    def __init__(self, pacing: Pacing | None = None, *, now: float = 0.0) -> None:
        self.pacing = pacing or Pacing()
        self.limiter = RateLimiter(self.pacing.quotas)
        self._adaptive: dict[str, AdaptiveRate] = {}
        self._arrivals: dict[str, tuple[float, WindowCounts]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        config = self.pacing.budget
        self._budget = RetryBudget(config) if config is not None else None
        self._server_learned: set[str] = set()
        self._resets: dict[tuple[str, str], float] = {}
        self._windows: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pacer({self.pacing!r})"

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
                return f"{host}|key:{key}"
        return host

    # -- before an attempt -----------------------------------------------------------

    def reserve(
        self, partition: str, previous: Reservation | None = None, *, now: float
    ) -> Reservation:
        """A slot to send at; ``previous`` is returned again while it is still valid."""
        with self._lock:
            if previous is not None and self.limiter.still_valid(previous):
                return previous
            adaptive = self._adaptive.get(partition)
            if adaptive is not None:
                adaptive_quota = Quota(limit=max(adaptive.rate, 1e-6), period=1.0)
                if partition not in self._server_learned:
                    self.limiter.learn(partition, adaptive_quota, now)
                    adaptive.on_send(now)
            return self.limiter.reserve(partition, now)

    def admit(self, partition: str, *, now: float) -> Admission:
        """The breaker's verdict for this attempt."""
        config = self.pacing.breaker
        if config is None:
            return Admission(allowed=True, state="closed", probe=False, retry_at=None)
        with self._lock:
            breaker = self._breakers.get(partition)
            if breaker is None:
                breaker = self._breakers[partition] = CircuitBreaker(config)
            return breaker.allow(now)

    def on_request(self, partition: str, *, now: float) -> None:
        """A logical request started: feeds the retry budget and the partition's measure
        of demand (which bounds how fast a backlog is released after a pause)."""
        with self._lock:
            if self._budget is not None:
                self._budget.on_request(now)
            entry = self._arrivals.get(partition)
            if entry is None:
                if len(self._arrivals) >= self.limiter.max_partitions:
                    self._arrivals.clear()
                entry = self._arrivals[partition] = (now, WindowCounts(_DEMAND_WINDOW))
            entry[1].add(now)

    def _release_rate(self, partition: str, now: float) -> float | None:
        """How fast waiters are let go after a pause: at most ``release_factor`` times
        the recent demand, so that a server coming back from an outage is not hit by the
        whole backlog at once (``None``: no demand measured yet)."""
        entry = self._arrivals.get(partition)
        if entry is None:
            return None
        first_seen, arrivals = entry
        # Over the time actually observed: a young partition has not filled the window.
        observed = min(arrivals.span(now), max(now - first_seen, 0.5))
        demand = arrivals.total(now) / observed
        return max(demand * self.pacing.release_factor, 1.0)

    def try_retry(self, now: float) -> bool:
        """May one more retry be spent? (The retry budget.)"""
        if self._budget is None:
            return True
        with self._lock:
            return self._budget.try_spend(now)

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
        with self._lock:
            if pacing.breaker is not None:
                breaker = self._breakers.get(partition)
                if breaker is not None:
                    breaker.on_result(now, ok=_healthy(outcome), probe=probe)
            if not isinstance(outcome, ResponseInfo):
                return
            throttled = outcome.status in _THROTTLE_STATUSES
            if pacing.learn:
                if self._learn(partition, outcome, now, wall_now):
                    self._server_learned.add(partition)
                if throttled:
                    # Retry-After wins over the quota headers, and holds the whole partition.
                    wait = retry_after_from_headers(outcome.header, now=wall_now)
                    if wait is not None:
                        wait = min(wait, pacing.max_pause)
                        self.limiter.pause(
                            partition,
                            now + wait,
                            now,
                            release_rate=self._release_rate(partition, now),
                            recovery=wait,
                        )
            if pacing.adaptive is not None and partition not in self._server_learned:
                adaptive = self._adaptive.get(partition)
                if adaptive is None:
                    adaptive = self._adaptive[partition] = AdaptiveRate(pacing.adaptive, now)
                if throttled:
                    adaptive.on_throttle(sent_at, now)
                else:
                    adaptive.on_success(now)
                self.limiter.learn(partition, Quota(limit=max(adaptive.rate, 1e-6)), now)

    def _learn(self, partition: str, info: ResponseInfo, now: float, wall_now: float) -> bool:
        observations = parse_quota_headers(info.header, now=wall_now)
        learned = False
        for obs in observations:
            window = obs.window or self._infer_window(partition, obs, wall_now)
            if obs.limit is not None and window:
                self.limiter.learn(
                    partition,
                    Quota(limit=obs.limit, period=window, safety=self.pacing.safety),
                    now,
                )
                learned = True
            if obs.remaining is not None and obs.reset_after is not None:
                reset_after = min(obs.reset_after, self.pacing.max_pause)
                if window:
                    # A reset further away than a whole window is the rounding of epoch
                    # seconds (GitHub, X), not a longer wait.
                    reset_after = min(reset_after, window)
                self.limiter.tighten(
                    partition, remaining=obs.remaining, reset_after=reset_after, now=now
                )
                learned = True
        return learned


    def _infer_window(self, partition: str, obs: QuotaObservation, wall_now: float) -> float:
        """Dialects that state a limit and a reset but no window (GitHub, X, X-RateLimit)
        reveal it when the reset instant jumps: the jump is the window's length."""
        if obs.limit is None or obs.reset_after is None:
            return 0.0
        key = (partition, obs.policy or obs.dialect)
        reset_at = wall_now + obs.reset_after
        previous = self._resets.get(key)
        self._resets[key] = reset_at
        if len(self._resets) > 4 * self.limiter.max_partitions:
            self._resets.clear()
        if previous is not None and reset_at - previous >= 0.5:
            self._windows[key] = round(reset_at - previous, 3)
        return self._windows.get(key, 0.0)


def _healthy(outcome: ResponseInfo | Failure) -> bool:
    if isinstance(outcome, Failure):
        return outcome.kind is FailureKind.OTHER  # a programming/TLS error is not the server's
    return outcome.status < 500 and outcome.status != 429
