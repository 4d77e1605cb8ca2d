"""An adaptive request rate for servers that state no quota: CUBIC in requests/second. Pure.

When a server publishes no rate limit, the only signal is being throttled (429, or a
throttling 503). :class:`AdaptiveRate` finds the rate the server tolerates the way TCP
CUBIC (RFC 8312, RFC 9438) finds a path's capacity, with the congestion window replaced
by a rate in requests per second — the approach of botocore's adaptive retry mode
(``botocore/retries/adaptive.py``, ``cubic.py``).

**Decrease.** A throttle for a request sent at ``sent_at`` multiplies the rate by
``beta`` (never below ``floor``), remembers the rate before the cut as ``w_max`` and
starts a new *epoch* at ``now``. Responses to requests sent before the latest cut
describe the old rate, so a throttle with ``sent_at`` before the latest cut is ignored:
k concurrent 429s cut the rate once, not ``beta**k``.

**Recovery.** On success, with ``t`` the seconds since the epoch started::

    W(t) = w_max + c·w_max · (t - K)³,    K = ∛((w_max - rate_after_cut) / (c·w_max))

``W(0)`` is the rate just after the cut; the curve rises quickly at first, flattens as
it approaches ``w_max`` (concave: the rate that was last throttled is approached
carefully), passes it at ``t = K`` and then accelerates (convex: probing for more room).
``K = ∛((1-β)/c)`` — RFC 8312 §4.1's form, with ``c`` scaled by ``w_max`` so that the
curve's timing does not depend on the magnitude of the rate (TCP's ``C = 0.4`` is tuned
for windows of tens of packets; rates here span 0.1/s to thousands/s) — unless
``floor`` held the cut above ``β·w_max`` (RFC 9438 §4.2's form, used here, keeps
``W(0)`` equal to the actual rate).
**Slow start.** Until the first throttle, the rate doubles every half second (as TCP's
slow start doubles per round trip), within the growth cap below; the first throttle
ends it.
Fast convergence and the TCP-friendly region of CUBIC are not used.

**Growth cap.** The cubic curve keeps rising while little is sent, and a rate granted
but never exercised is not known to be tolerated. So the rate is capped by
``max(initial_rate, max_growth * measured send rate)``, the send rate being measured
over the last ~2 s of :meth:`AdaptiveRate.on_send` calls (a ring of 8 buckets of 0.25 s).
The cap is applied at every :meth:`~AdaptiveRate.on_send` and
:meth:`~AdaptiveRate.on_success`: after an idle period the rate falls back to at most
``initial_rate`` (the configured cold-start rate) rather than letting a burst go at a
stale, never-tested rate, and from there it may at most double (``max_growth``) per
measurement window while the traffic keeps up — like botocore's ``2 * measured rate``
and TCP's congestion window validation after idle (RFC 7661). The rate is always in
``[floor, ceiling]``.

Not thread-safe by itself: adapters serialise calls with their own lock. Every call is
O(1) and memory is constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from surefoot.errors import ConfigurationError
from surefoot.pacing._budget import WindowCounts

__all__ = ["AdaptivePolicy", "AdaptiveRate"]

#: Before the first throttle the rate doubles this often (seconds).
_SLOW_START_DOUBLING = 0.5
#: The send rate is measured over this many seconds...
_MEASURE_WINDOW = 2.0
#: ...in this many buckets.
_MEASURE_BUCKETS = 8
#: A throttle cuts the rate to this share of the rate the server was admitting.
_ADMITTED_SHARE = 0.95


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptivePolicy:
    """How the adaptive rate moves.

    * ``initial_rate`` — requests/second to start with, and the most the rate may be
      without traffic to show for it (see the growth cap in the module docstring).
    * ``floor`` — the rate never drops below this (requests/second, > 0).
    * ``ceiling`` — the rate never rises above this (``None``: no ceiling).
    * ``beta`` — multiplicative decrease on a throttle (0.7: cut by 30 %).
    * ``c`` — cubic scaling, relative to ``w_max``: the curve moves by ``c·w_max`` per
      second³, so a server allowing 5/s and one allowing 500/s are recovered from (and
      probed) in the same time: with ``beta=0.7`` and ``c=0.4``, ``w_max`` is regained
      ``K ≈ 0.9 s`` after a cut, and 40 % more is tried one second later.
    * ``max_growth`` — the rate may not exceed ``max_growth *`` the measured send rate
      (beyond ``initial_rate``).
    """

    initial_rate: float = 10.0
    floor: float = 0.5
    ceiling: float | None = None
    beta: float = 0.7
    c: float = 0.4
    max_growth: float = 2.0

    def __post_init__(self) -> None:
        numbers = (self.initial_rate, self.floor, self.beta, self.c, self.max_growth)
        if not all(math.isfinite(x) for x in numbers) or not (
            self.ceiling is None or math.isfinite(self.ceiling)
        ):
            raise ConfigurationError("adaptive rate settings must be finite numbers")
        if not self.floor > 0:
            raise ConfigurationError("adaptive rate floor must be positive")
        if self.initial_rate < self.floor:
            raise ConfigurationError(
                f"adaptive initial_rate ({self.initial_rate}) is below the floor ({self.floor})"
            )
        if self.ceiling is not None and self.ceiling < self.initial_rate:
            raise ConfigurationError(
                f"adaptive ceiling ({self.ceiling}) is below initial_rate ({self.initial_rate})"
            )
        if not 0 < self.beta < 1:
            raise ConfigurationError("adaptive beta must be in (0, 1)")
        if not self.c > 0:
            raise ConfigurationError("adaptive c must be positive")
        if not self.max_growth >= 1:
            raise ConfigurationError("adaptive max_growth must be >= 1")


class AdaptiveRate:
    """The allowed request rate for one scope (a host, a partition). See the module
    docstring for the algorithm.

    ``config=None`` takes the defaults; ``now`` starts the first epoch. :attr:`rate` is
    the current allowed rate in requests/second; feed it to a pacer.
    Report every request sent (:meth:`on_send`), every throttle (:meth:`on_throttle`)
    and every other response (:meth:`on_success`). Times are monotonic seconds and should
    not go backwards.

    Not thread-safe by itself: adapters serialise calls with their own lock.
    """

    __slots__ = (
        "_config", "_epoch", "_k", "_last_cut", "_rate", "_sends", "_started", "_w_max"
    )

    def __init__(
        self, config: AdaptivePolicy | None, now: float, *, start: float | None = None
    ) -> None:
        self._config = config if config is not None else AdaptivePolicy()
        rate = self._config.initial_rate if start is None else start
        ceiling = self._config.ceiling
        if ceiling is not None:
            rate = min(rate, ceiling)
        self._rate = max(self._config.floor, rate)
        self._w_max = self._rate
        self._k = 0.0
        self._epoch = now
        self._started = now
        #: When the rate was last cut (-inf: never).
        self._last_cut = -math.inf
        self._sends = WindowCounts(_MEASURE_WINDOW, buckets=_MEASURE_BUCKETS)

    @property
    def config(self) -> AdaptivePolicy:
        return self._config

    @property
    def rate(self) -> float:
        """The allowed rate, in requests/second."""
        return self._rate

    @property
    def w_max(self) -> float:
        """The rate before the latest cut (``initial_rate`` before any)."""
        return self._w_max

    def measured_rate(self, now: float) -> float:
        """Requests/second sent over the last ~2 seconds (or since the start, when that
        is shorter: a young rate is not measured over time it did not exist)."""
        sends = self._sends
        return sends.total(now) / min(sends.span(now), max(now - self._started, 0.1))

    def _cap(self, now: float) -> float:
        config = self._config
        cap = max(config.initial_rate, config.max_growth * self.measured_rate(now))
        if config.ceiling is not None:
            cap = min(cap, config.ceiling)
        return cap

    def on_send(self, now: float) -> None:
        """A request is being sent."""
        self._sends.add(now)
        self._rate = max(self._config.floor, min(self._rate, self._cap(now)))

    def on_throttle(
        self, sent_at: float, now: float, *, admitted: float | None = None
    ) -> bool:
        """The request sent at ``sent_at`` was throttled (429, throttling 503). Cuts the
        rate and returns ``True``, or returns ``False`` if the request was sent before
        the latest cut (its throttle is already accounted for).

        ``admitted``: the rate of requests the server let through lately. A throttle
        while sending above it says the server's limit is about there: the rate is cut
        to just under it (:data:`_ADMITTED_SHARE`) rather than by ``beta``, never
        below ``beta`` times the rate, and never up."""
        if sent_at < self._last_cut:
            return False
        config = self._config
        self._w_max = self._rate
        cut = self._rate * config.beta
        if admitted is not None and admitted > 0:
            cut = max(cut, min(self._rate, admitted * _ADMITTED_SHARE))
        self._rate = max(config.floor, cut)
        self._k = ((self._w_max - self._rate) / (config.c * self._w_max)) ** (1 / 3)
        self._epoch = now
        self._last_cut = now
        return True

    def on_success(self, now: float) -> None:
        """A response that is not a throttle: the rate moves along the cubic curve,
        within the growth cap."""
        config = self._config
        t = max(now - self._epoch, 0.0)
        try:
            if self._last_cut == -math.inf:
                # Slow start (as in TCP): until the first throttle, double every half
                # second — still within the growth cap of what is actually sent.
                target = self._w_max * 2.0 ** min(t / _SLOW_START_DOUBLING, 1000.0)
            else:
                target = self._w_max + config.c * self._w_max * (t - self._k) ** 3
        except OverflowError:  # decades without a throttle
            target = math.inf
        cap = self._cap(now)
        self._rate = max(config.floor, min(self._rate, cap), min(target, cap))

    def to_state(self) -> dict[str, object]:
        """A JSON-able snapshot (for stores that keep this state outside the process)."""
        return {
            "r": self._rate,
            "m": self._w_max,
            "k": self._k,
            "e": self._epoch,
            "x": self._last_cut,
            "s": self._sends.to_state(),
            "a": self._started,
        }

    def load_state(self, state: dict[str, object]) -> None:
        try:
            rate, w_max, k, epoch, last_cut = (
                float(state[name])  # type: ignore[arg-type]
                for name in ("r", "m", "k", "e", "x")
            )
        except (KeyError, TypeError, ValueError):
            return
        if not (rate > 0 and w_max > 0):
            return
        self._rate, self._w_max, self._k, self._epoch, self._last_cut = (
            rate, w_max, k, epoch, last_cut
        )
        self._sends.load_state(state.get("s"))
        started = state.get("a")
        if isinstance(started, (int, float)):
            self._started = float(started)

    def __repr__(self) -> str:
        return f"AdaptiveRate(rate={self._rate:.3f}, w_max={self._w_max:.3f})"
