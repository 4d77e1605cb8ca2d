"""A circuit breaker: stop calling a dependency that keeps failing, probe it, resume. Pure.

The classic three-state breaker (Nygard, *Release It!*; Fowler's "CircuitBreaker"; the
count and rate rules of resilience4j and Polly's advanced breaker):

* **closed** — calls go through. Outcomes are counted; the breaker *opens* after
  ``failure_threshold`` consecutive failures, or when ``failure_ratio`` is set, at least
  ``min_throughput`` calls ended in the last ``window`` seconds and the share of
  failures among them is ``>= failure_ratio``.
* **open** — calls are refused (fail fast) for ``open_for`` seconds, then the breaker is
  *half-open*. The transition happens by time alone, when the state is next looked at.
* **half_open** — at most ``half_open_probes`` calls (*probes*) are let through at once.
  A probe failure reopens the breaker for another ``open_for``; ``close_after`` probe
  successes close it, with every counter reset.

:meth:`CircuitBreaker.allow` answers with an :class:`Admission`; a refused admission
carries ``retry_at``, the instant the next probe will be allowed, so that a caller can
fail fast and say when to come back. The caller reports every admitted call's outcome
with :meth:`CircuitBreaker.on_result`, passing back ``admission.probe``.

**Lost probes.** A probe whose outcome is never reported (a cancelled task, a crashed
caller) would hold its slot forever and wedge the breaker half-open. So a probe slot is
a lease of ``open_for`` seconds: after it the slot is free again, and a refusal while
every slot is taken says ``retry_at`` = the earliest lease end.

**Stale outcomes.** Outcomes of calls admitted while closed that end after the breaker
opened describe the past: they are ignored while open or half-open, and only probes'
outcomes move a half-open breaker. A probe outcome that arrives after the breaker
closed again is counted like any closed-state outcome.

Counting is O(1) in time and memory: the window is a ring of 10 buckets of
``window/10`` seconds (:class:`~surefoot.pacing._budget.WindowCounts`), and a call leaves
it between 0.9 * ``window`` and ``window`` seconds after it ended. Probe leases are at
most ``half_open_probes`` instants (a short list: a breaker is kept per pacing partition,
and a ``deque`` would cost over 600 bytes each). :meth:`CircuitBreaker.holds_state` tells
whether a breaker differs from a fresh one (what a bounded table of breakers may drop).
Not thread-safe by itself: adapters serialise calls with their own lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from surefoot.errors import ConfigurationError
from surefoot.pacing._budget import WindowCounts

__all__ = ["Admission", "BreakerPolicy", "BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]

_CALLS = 0
_FAILURES = 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When the breaker opens and how it recovers.

    * ``failure_threshold`` — consecutive failures (while closed) that open it.
    * ``failure_ratio`` — open when the failures among the calls of the last ``window``
      seconds reach this share (``None``: only the consecutive rule applies).
    * ``window`` — seconds the ratio rule looks back.
    * ``min_throughput`` — the ratio rule applies only with at least this many calls in
      the window (two failures out of three calls say little).
    * ``open_for`` — seconds refused before probing (half-open); also how long a probe
      may hold its slot without reporting.
    * ``half_open_probes`` — calls allowed at once while half-open.
    * ``close_after`` — probe successes that close the breaker.
    """

    failure_threshold: int = 5
    failure_ratio: float | None = 0.5
    window: float = 10.0
    min_throughput: int = 10
    open_for: float = 5.0
    half_open_probes: int = 1
    close_after: int = 1

    def __post_init__(self) -> None:
        counts = (
            self.failure_threshold,
            self.min_throughput,
            self.half_open_probes,
            self.close_after,
        )
        if not all(_is_int(n) for n in counts):
            raise ConfigurationError(
                "failure_threshold, min_throughput, half_open_probes and close_after "
                "must be integers"
            )
        if self.failure_threshold < 1:
            raise ConfigurationError("breaker failure_threshold must be at least 1")
        if self.failure_ratio is not None and not (0 < self.failure_ratio <= 1):
            raise ConfigurationError("breaker failure_ratio must be in (0, 1] (or None)")
        if not (math.isfinite(self.window) and self.window > 0):
            raise ConfigurationError("breaker window must be a positive number of seconds")
        if self.min_throughput < 1:
            raise ConfigurationError("breaker min_throughput must be at least 1")
        if not (math.isfinite(self.open_for) and self.open_for > 0):
            raise ConfigurationError("breaker open_for must be a positive number of seconds")
        if self.half_open_probes < 1:
            raise ConfigurationError("breaker half_open_probes must be at least 1")
        if self.close_after < 1:
            raise ConfigurationError("breaker close_after must be at least 1")


@dataclass(frozen=True, slots=True)
class Admission:
    """The breaker's answer to "may this call go?".

    ``allowed``: whether it may. ``state``: the breaker's state when asked. ``probe``: the
    call is a half-open probe (pass it back to :meth:`CircuitBreaker.on_result`).
    ``retry_at``: when refused, the instant (same clock as ``now``) the next probe will be
    allowed; ``None`` when allowed.
    """

    allowed: bool
    state: BreakerState
    probe: bool = False
    retry_at: float | None = None


_CLOSED_ADMISSION = Admission(True, "closed")


class CircuitBreaker:
    """A circuit breaker for one scope (a host, an endpoint). See the module docstring.

    Times are monotonic seconds and should not go backwards. Not thread-safe by itself:
    adapters serialise calls with their own lock.
    """

    __slots__ = (
        "_config",
        "_consecutive",
        "_leases",
        "_open_until",
        "_probe_successes",
        "_state",
        "_window",
    )

    def __init__(self, config: BreakerPolicy | None = None) -> None:
        self._config = config if config is not None else BreakerPolicy()
        self._state: BreakerState = "closed"
        self._open_until = -math.inf
        self._consecutive = 0
        self._window = WindowCounts(self._config.window, buckets=10, series=2)
        #: End of each probe slot's lease, oldest first (at most half_open_probes).
        self._leases: list[float] = []
        self._probe_successes = 0

    @property
    def config(self) -> BreakerPolicy:
        return self._config

    def state(self, now: float) -> BreakerState:
        """The state at ``now``; an open breaker whose ``open_for`` is over is half-open."""
        if self._state == "open" and now >= self._open_until:
            self._state = "half_open"
            self._leases.clear()
            self._probe_successes = 0
        return self._state

    def allow(self, now: float) -> Admission:
        """May a call go at ``now``? An allowed probe takes a half-open slot until its
        outcome is reported (or its lease of ``open_for`` seconds runs out)."""
        state = self.state(now)
        if state == "closed":
            return _CLOSED_ADMISSION
        if state == "open":
            return Admission(False, state, False, self._open_until)
        leases = self._leases
        while leases and leases[0] <= now:
            del leases[0]
        if len(leases) < self._config.half_open_probes:
            leases.append(now + self._config.open_for)
            return Admission(True, state, True, None)
        return Admission(False, state, False, leases[0])

    def on_result(self, now: float, ok: bool, probe: bool = False) -> None:
        """Report the outcome of a call that :meth:`allow` admitted; ``probe`` is the
        admission's ``probe``."""
        state = self.state(now)
        if probe and self._leases:
            del self._leases[0]
        if state == "closed":
            self._record(now, ok)
        elif state == "half_open" and probe:
            if not ok:
                self._open(now)
            else:
                self._probe_successes += 1
                if self._probe_successes >= self._config.close_after:
                    self._close()
        # Open, or a non-probe outcome while half-open: a stale call, ignored.

    def _record(self, now: float, ok: bool) -> None:
        config, window = self._config, self._window
        window.add(now, _CALLS)
        if ok:
            self._consecutive = 0
        else:
            window.add(now, _FAILURES)
            self._consecutive += 1
            if self._consecutive >= config.failure_threshold:
                self._open(now)
                return
        if config.failure_ratio is not None:
            calls = window.total(now, _CALLS)
            if (
                calls >= config.min_throughput
                and window.total(now, _FAILURES) / calls >= config.failure_ratio
            ):
                self._open(now)

    def _open(self, now: float) -> None:
        self._state = "open"
        self._open_until = now + self._config.open_for
        self._leases.clear()
        self._probe_successes = 0

    def _close(self) -> None:
        self._state = "closed"
        self._open_until = -math.inf
        self._leases.clear()
        self._probe_successes = 0
        self._consecutive = 0
        self._window.clear()

    def quiet(self, now: float) -> bool:
        """Closed with no failure in a row: every call is let through, and a success
        changes nothing but the count of calls (see :meth:`count_successes`)."""
        return self.state(now) == "closed" and self._consecutive == 0

    def count_successes(self, since: float, now: float, amount: int) -> None:
        """``amount`` successes of calls made between ``since`` and ``now`` while the
        breaker was quiet, learned of at ``now`` (a shared store counts them outside):
        counted as calls if the breaker is still closed (a success does not undo
        failures counted since)."""
        if amount > 0 and self.state(now) == "closed":
            self._window.add_spread(since, now, amount, _CALLS)

    def holds_state(self, now: float) -> bool:
        """Does the breaker differ from a fresh one at ``now`` (not closed, failures
        counted)? One that does not can be dropped from a bounded table and made again
        when needed, with no change in what it decides."""
        return (
            self.state(now) != "closed"
            or self._consecutive > 0
            or self._window.total(now, _FAILURES) > 0
        )

    def to_state(self) -> dict[str, object]:
        """A JSON-able snapshot (for stores that keep this state outside the process)."""
        return {
            "s": self._state,
            "u": self._open_until,
            "c": self._consecutive,
            "w": self._window.to_state(),
            "l": list(self._leases),
            "p": self._probe_successes,
        }

    def load_state(self, state: dict[str, object]) -> None:
        try:
            if state["s"] not in ("closed", "open", "half_open"):
                raise ValueError
            open_until = float(state["u"])  # type: ignore[arg-type]
            consecutive = int(state["c"])  # type: ignore[call-overload]
            leases = [float(x) for x in state["l"]]  # type: ignore[attr-defined]
            probes = int(state["p"])  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError):
            return
        self._state = state["s"]
        self._open_until = open_until
        self._consecutive = consecutive
        self._leases = leases
        self._probe_successes = probes
        self._window.load_state(state.get("w"))

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self._state!r}, consecutive_failures={self._consecutive})"
