"""The pacing policy: how attempts are paced and protected (frozen configuration).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from surefoot.errors import ConfigurationError
from surefoot.pacing._adaptive import AdaptivePolicy
from surefoot.pacing._breaker import BreakerPolicy
from surefoot.pacing._budget import RetryBudgetPolicy
from surefoot.pacing._gcra import Quota

__all__ = ["PacingPolicy", "PartitionBy", "Report"]

PartitionBy = Literal["host", "origin", "api_key"] | Callable[[str, "Mapping[str, str]"], str]


_THROTTLE_STATUSES = frozenset({429, 503})


#: The send rate just before a pause is measured over this many seconds.
_SEND_WINDOW = 2.0


#: Demand is never measured over less than this (one request in a millisecond is not
#: a thousand per second).
_MIN_OBSERVED = 0.1


#: Demand (logical requests per second) is measured over this many seconds.
_DEMAND_WINDOW = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PacingPolicy:
    """How attempts are paced and protected.

    * ``quotas`` — client-side quotas for every partition (e.g. 100/s and 5000/h).
    * ``partition_by`` — ``"host"`` (default), ``"origin"``, ``"api_key"`` (the
      ``X-API-Key`` header, or the host when absent), or a function of (url, headers).
    * ``learn`` — learn the quota from the server's headers (RateLimit, X-RateLimit-*,
      GitHub, X, Discord, OpenAI dialects), hold a partition on Retry-After or when none
      remains (briefly first when its rate is known, see ``surefoot.pacing._gcra``), and
      let the first request to a partition go alone.
    * ``adaptive`` — when the server states no quota, pace with a CUBIC-style adaptive
      rate, armed by the first 429/503 at just under the rate the server was admitting
      (default on; ``None``: no adaptive pacing). Nothing is paced before a throttle.
    * ``budget`` — retries may be at most a fraction of recent traffic (``None``: off).
    * ``breaker`` — a circuit breaker per partition (``None``: off).
    * ``safety`` — learned quotas are used at this fraction (default 1: the whole
      quota; a 429 at the learned rate uses 5 % less of it for a while, see
      ``RateLimiter.derate``). Under 1 keeps a margin for servers that count
      differently from what they state.
    * ``release_factor`` — after a pause (Retry-After), the waiters are released at no
      more than this multiple of the recent demand on the partition (and never faster
      than the quota) until the backlog is gone: a server back from an outage gets the
      backlog spread out, not as a spike. The backlog drains at ``release_factor - 1``
      times demand, so an outage of T seconds takes about ``T / (release_factor - 1)``
      to catch up; the default 1.3 keeps the peak under 1.5x demand even when the
      demand measured over the last seconds runs 15 % above the true mean (Poisson
      arrivals do).
    * ``burst_ahead`` — when the server states room (``remaining``) beyond the requests
      already booked, a request may go at once instead of at its paced slot, up to this
      many seconds ahead of it (the schedule is charged as if it had waited, so the
      long-run rate stays the quota's): a window's or a large bucket's room is used
      when it is there, not spread thin. Off by default (``0``): many servers state
      ``remaining`` as what the rest of the window allows, not what may be sent at
      once (a token bucket with a small burst behind window headers refuses such a
      burst). For a server whose ``remaining`` is available at once (a fixed window,
      a large bucket), ``120.0`` uses it. In-process pacing only (a shared store's
      pacing does not know the other processes' bookings).
    * ``max_pause`` — the longest a partition is held by a Retry-After or a reset in the
      quota headers (a guard against absurd values; the request's own deadline and
      ``retry_after_cap`` still apply to it).
    """

    quotas: tuple[Quota, ...] = ()
    partition_by: PartitionBy = "host"
    learn: bool = True
    adaptive: AdaptivePolicy | None = field(default_factory=AdaptivePolicy)
    budget: RetryBudgetPolicy | None = field(default_factory=RetryBudgetPolicy)
    breaker: BreakerPolicy | None = None
    safety: float = 1.0
    burst_ahead: float = 0.0
    max_pause: float = 3600.0
    release_factor: float = 1.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "quotas", tuple(self.quotas))
        if not (0 < self.safety <= 1):
            raise ConfigurationError("safety must be in (0, 1]")
        if not (self.burst_ahead >= 0 and math.isfinite(self.burst_ahead)):
            raise ConfigurationError("burst_ahead must be a number of seconds, 0 or more")
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
    #: The throttle is a quota's (429): its stated wait may be checked against the
    #: partition's rate (a short hold first). A 503's wait is always honoured.
    quota: bool = False
    #: The least ``remaining`` the server stated (burst credit; in-process state only),
    #: and the seconds until that quota is whole again (``None``: not stated).
    remaining: int | None = None
    remaining_reset: float | None = None
    #: Seconds the attempt was sent after its paced slot, when that is worth telling
    #: (see ``RateLimiter.late``; 0: on time or not told).
    late: float = 0.0


#: What a client paces with when given no ``pacing=``: its own pacer learning the quota
#: from the server's headers, adaptive pacing once throttled, and a retry budget.
DEFAULT_PACING = PacingPolicy()
