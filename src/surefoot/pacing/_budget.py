"""A retry budget: retries may be at most a fraction of recent traffic. Pure.

Per-request retry limits (``max_attempts``) do not stop a *retry storm*: when a
dependency goes down, every caller retrying three times multiplies the load on it by
four, exactly when it can least take it. A retry budget bounds retries across all
requests instead: the rule is Finagle's ``RetryBudget`` (``ttl``, ``minRetriesPerSec``,
``percentCanRetry``), in the same family as gRPC's retry throttling (gRFC A6) and
botocore's retry quota.

**The rule.** Let ``R`` be the number of first attempts (:meth:`RetryBudget.on_request`)
and ``S`` the number of retries granted (:meth:`RetryBudget.try_spend` returning ``True``)
in the last ``window`` seconds. Then::

    available = min_retries_per_second * window + ratio * R - S

and a retry is granted, costing 1, iff ``available >= 1``. So within any window, retries
are at most ``ratio * first attempts + min_retries_per_second * window``: in a storm where
every request fails, about ``ratio`` retries per request get through (plus the small
floor, which lets low traffic retry at all), and when traffic stops the budget comes back
to the floor within ``window`` seconds as old retries leave it.

"Last ``window`` seconds" is measured in :class:`WindowCounts` buckets of ``window/10``:
an event leaves the window between 0.9 * ``window`` and ``window`` seconds after it
happened. Memory is constant and every operation O(1) (amortised over the buckets).

:class:`WindowCounts`, the bucketed sliding-window counter, is shared with the circuit
breaker and the adaptive rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

from surefoot.errors import ConfigurationError

__all__ = ["RetryBudget", "RetryBudgetPolicy", "WindowCounts"]


#: Bucket widths by (window, buckets): every counter of one configuration shares one
#: float object (one per pacing partition and series would cost 24 bytes each).
_WIDTHS: dict[tuple[float, int], float] = {}


def _width(window: float, buckets: int) -> float:
    width = _WIDTHS.get((window, buckets))
    if width is None:
        width = window / buckets
        if len(_WIDTHS) < 256:  # configurations, not data: a handful in practice
            _WIDTHS[(window, buckets)] = width
    return width


class WindowCounts:
    """Counts of events over a sliding time window, in a fixed ring of buckets.

    The window of ``window`` seconds is cut into ``buckets`` buckets of equal width,
    aligned on multiples of the width; events are counted in the bucket of their time and
    a bucket is dropped as a whole when it falls out of the window. ``series`` independent
    counts share one clock (e.g. calls and failures). Times are expected not to go
    backwards; an earlier time is counted in the newest bucket.

    Memory is one list of ``series * (buckets + 1)`` integers (the counts, then each
    series' total; kept per pacing partition, so kept small); :meth:`add` and
    :meth:`total` are O(1) amortised (moving forward clears at most ``buckets`` buckets).
    Not thread-safe.
    """

    __slots__ = ("_counts", "_index", "_n", "_series", "_width")

    def __init__(self, window: float, *, buckets: int = 10, series: int = 1) -> None:
        if not (math.isfinite(window) and window > 0):
            raise ConfigurationError("a counting window must be a positive number of seconds")
        if buckets < 1 or series < 1:
            raise ConfigurationError("a counting window needs at least one bucket and series")
        self._n = buckets
        self._series = series
        self._width = _width(window, buckets)
        # Flat: the count of series s in ring slot i is at s * buckets + i; the total of
        # series s at series * buckets + s.
        self._counts = [0] * (series * (buckets + 1))
        #: Absolute index (``floor(time / width)``) of the newest bucket; None: no event yet.
        self._index: int | None = None

    def _advance(self, now: float) -> None:
        index = math.floor(now / self._width)
        current = self._index
        if current is None:
            self._index = index
            return
        if index <= current:
            return
        n = self._n
        if index - current >= n:
            self.clear()
        else:
            counts = self._counts
            base = self._series * n
            for absolute in range(current + 1, index + 1):
                slot = absolute % n
                for s in range(self._series):
                    at = s * n + slot
                    counts[base + s] -= counts[at]
                    counts[at] = 0
        self._index = index

    def add(self, now: float, series: int = 0, amount: int = 1) -> None:
        """Count ``amount`` events of ``series`` at ``now``."""
        index = self._index
        if index is None or math.floor(now / self._width) != index:  # (the usual: same bucket)
            self._advance(now)
            index = self._index
            assert index is not None
        n = self._n
        counts = self._counts
        counts[series * n + index % n] += amount
        counts[self._series * n + series] += amount

    def add_spread(self, since: float, now: float, amount: int, series: int = 0) -> None:
        """Count ``amount`` events of ``series`` that happened evenly between ``since``
        and ``now`` (counted elsewhere and learned of at ``now``): each bucket gets its
        share, those that fell out of the window are dropped."""
        if amount <= 0:
            return
        # (the oldest bucket the ring still holds at ``now``)
        start = max(since, (math.floor(now / self._width) - self._n + 1) * self._width)
        if not now > start:
            if since >= now:
                self.add(now, series, amount)
            return
        if start > since:  # the share that happened before the window
            amount = round(amount * (now - start) / (now - since))
        width = self._width
        given = 0
        bucket = math.floor(start / width)
        last = math.floor(now / width)
        while given < amount:
            hi = min(now, (bucket + 1) * width) if bucket < last else now
            due = amount if hi >= now else round(amount * (hi - start) / (now - start))
            if due > given:
                self.add(max(start, bucket * width), series, due - given)
                given = due
            bucket += 1

    def total(self, now: float, series: int = 0) -> int:
        """Events of ``series`` counted in the window ending at ``now``."""
        self._advance(now)
        return self._counts[self._series * self._n + series]

    def span(self, now: float) -> float:
        """Seconds the buckets in the window cover at ``now``: between ``(buckets-1) *
        width`` and ``buckets * width`` (the newest bucket is partly elapsed)."""
        self._advance(now)
        if self._index is None:
            return (self._n - 1) * self._width
        into = min(max(now - self._index * self._width, 0.0), self._width)
        return (self._n - 1) * self._width + into

    def clear(self) -> None:
        """Forget every event (the clock position is kept)."""
        counts = self._counts
        counts[:] = [0] * len(counts)

    def to_state(self) -> list[object]:
        """A JSON-able snapshot (for stores that keep this state outside the process)."""
        return [self._index, self._counts[: self._series * self._n]]

    def load_state(self, state: object) -> None:
        """Restore :meth:`to_state`'s snapshot; a snapshot that does not fit (another
        configuration, garbage) is ignored and the counts start empty."""
        try:
            raw_index, raw_counts = cast("tuple[Any, Any]", state)
            counts: list[int] = [int(c) for c in raw_counts]
            index: int | None = None if raw_index is None else int(raw_index)
            if len(counts) != self._series * self._n:
                raise ValueError
        except (TypeError, ValueError):
            return
        self._index = index
        n = self._n
        self._counts = counts + [sum(counts[s * n:(s + 1) * n]) for s in range(self._series)]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudgetPolicy:
    """How many retries the budget allows.

    * ``ratio`` — retries may be at most this fraction of the first attempts made in the
      last ``window`` seconds (0.1: one retry per ten requests).
    * ``min_retries_per_second`` — a floor, so that low traffic can still retry:
      ``min_retries_per_second * window`` retries are allowed per window on top.
    * ``window`` — seconds of "recent" traffic.
    """

    ratio: float = 0.1
    min_retries_per_second: float = 1.0
    window: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ratio) and self.ratio >= 0):
            raise ConfigurationError("retry budget ratio must be a number >= 0")
        if not (math.isfinite(self.min_retries_per_second) and self.min_retries_per_second >= 0):
            raise ConfigurationError("retry budget min_retries_per_second must be a number >= 0")
        if not (math.isfinite(self.window) and self.window > 0):
            raise ConfigurationError("retry budget window must be a positive number of seconds")


_REQUESTS = 0
_RETRIES = 1
#: ``ratio * requests`` is a float: 0.1 * 30 may come out a hair under 3.
_EPSILON = 1e-9


class RetryBudget:
    """The retry budget of one scope (a client, a host). See the module docstring for
    the rule.

    Call :meth:`on_request` for every first attempt and :meth:`try_spend` before every
    retry (not before first attempts); a retry refused by the budget should fail the
    logical request with its current outcome instead of waiting and retrying.

    Not thread-safe by itself: adapters serialise calls with their own lock.
    """

    __slots__ = ("_config", "_counts", "_reserve")

    def __init__(self, config: RetryBudgetPolicy | None = None) -> None:
        self._config = config if config is not None else RetryBudgetPolicy()
        self._counts = WindowCounts(self._config.window, buckets=10, series=2)
        self._reserve = self._config.min_retries_per_second * self._config.window

    @property
    def config(self) -> RetryBudgetPolicy:
        return self._config

    def on_request(self, now: float) -> None:
        """A first attempt is being sent: it deposits ``ratio`` into the budget."""
        self._counts.add(now, _REQUESTS)

    def on_success(self, now: float) -> None:
        """An attempt succeeded. The rule does not depend on outcomes, so this does
        nothing; it exists so that callers can report outcomes uniformly."""

    def available(self, now: float) -> float:
        """Retries the budget could grant at ``now`` (may be fractional or negative: a
        retry needs at least 1)."""
        counts = self._counts
        return (
            self._reserve
            + self._config.ratio * counts.total(now, _REQUESTS)
            - counts.total(now, _RETRIES)
        )

    def to_state(self) -> list[object]:
        return self._counts.to_state()

    def load_state(self, state: object) -> None:
        self._counts.load_state(state)

    def try_spend(self, now: float) -> bool:
        """A retry wants to go: ``True`` (and the retry is counted) if the budget allows
        it, else ``False``."""
        if self.available(now) >= 1.0 - _EPSILON:
            self._counts.add(now, _RETRIES)
            return True
        return False
