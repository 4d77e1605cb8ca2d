"""The schedule a shared store books from by itself (``RateLimiter.schedule``), and what
is taken back in (``booked_elsewhere``, ``LocalPacerState.take_in``, ``add_spread``).

The Redis gate script books with the formula that ``schedule`` documents; ``_book``
below is that formula in Python (the script's, line for line), checked against
``RateLimiter.reserve`` on the same state: a store booking by itself hands out the
slots the limiter would have.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surefoot.pacing._breaker import BreakerPolicy, CircuitBreaker
from surefoot.pacing._budget import WindowCounts
from surefoot.pacing._config import PacingPolicy
from surefoot.pacing._gcra import SCHEDULE_DRIFT, Quota, RateLimiter
from surefoot.pacing._state import Elsewhere, LocalPacerState


def _book(schedule, tats: dict[str, float], now: float) -> float:
    """The gate script's booking (stores/_redis/_pacing.py, ``_GATE``)."""
    _generation, earliest, quotas, _until, recovery = schedule
    slot = max(now, earliest)
    counted = []
    for name, interval, tau in quotas:
        tat = tats.get(name, now)
        if name == "recovery" and recovery is not None:
            until, hard = recovery
            if not (now < hard and (now < until or tat > now)):
                continue
        counted.append((name, interval, tat))
        slot = max(slot, tat - tau)
    for name, interval, tat in counted:
        tats[name] = max(tat, slot) + interval
    return slot


quotas = st.lists(
    st.builds(
        Quota,
        limit=st.floats(0.5, 500.0),
        period=st.sampled_from([1.0, 10.0, 60.0]),
        burst=st.integers(1, 20),
    ),
    min_size=0,
    max_size=2,
)


@settings(max_examples=200, deadline=None)
@given(
    configured=quotas,
    learned=st.one_of(st.none(), st.builds(Quota, limit=st.floats(1.0, 2000.0),
                                           burst=st.integers(1, 30))),
    pause=st.floats(0.0, 2.0),
    release=st.one_of(st.none(), st.tuples(st.floats(0.5, 200.0), st.floats(0.0, 3.0))),
    gaps=st.lists(st.floats(0.0, 0.2), min_size=1, max_size=60),
)
def test_booking_from_the_schedule_is_what_reserve_books(
    configured, learned, pause, release, gaps
):
    """Also during a paced release after a pause (``release``: its rate and how long
    it lasts at least): the schedule holds SCHEDULE_DRIFT seconds, in which the release
    is not sped up (``RateLimiter.reserve`` itself never speeds it up: the pacer state
    does, and ``shared_schedule`` does so before it hands the schedule out)."""

    def limiter() -> RateLimiter:
        lim = RateLimiter(configured, first_contact=True)
        lim.reserve("p", 100.0)  # first contact ...
        lim.answered("p")  # ... over
        if learned is not None:
            lim.learn("p", learned, 100.0)
        if release is not None:
            lim.pause("p", 100.0 + pause, 100.0, release_rate=release[0],
                      recovery=release[1])
        elif pause:
            lim.pause("p", 100.0 + pause, 100.0)
        return lim

    here, there = limiter(), limiter()
    schedule = there.schedule("p", 100.0)
    assert schedule is not None
    tats = dict(there.export_partition("p")["t"])  # type: ignore[index, arg-type]
    now = 100.0
    unpaced = 0
    for gap in gaps:
        now += gap
        expected = here.reserve("p", now).at
        assert _book(schedule, tats, now) == pytest.approx(expected, abs=1e-9)
        unpaced += not schedule[2]
    # a paced release's schedule is renewed that often (nothing is derated here)
    assert (schedule[3] == 100.0 + SCHEDULE_DRIFT) == (schedule[4] is not None)
    if release is not None and 100.0 + pause + release[1] > 100.0:
        assert schedule[4] is not None
    # Taken back in, the two limiters agree on what comes next.
    there.booked_elsewhere("p", tats, unpaced=unpaced, unpaced_since=100.0)
    now += 0.01
    assert there.reserve("p", now).at == pytest.approx(here.reserve("p", now).at, abs=1e-9)


def test_no_schedule_while_booking_needs_the_limiter():
    lim = RateLimiter((), first_contact=True)
    assert lim.schedule("p", 0.0) is None  # unknown
    lim.reserve("p", 0.0)
    assert lim.schedule("p", 0.0) is None  # first contact under way
    lim.answered("p")
    assert lim.schedule("p", 0.0) == (
        lim.export_partition("p")["g"], 0.0, (), math.inf, None
    )
    lim.learn("p", Quota(limit=10.0), 0.0)
    lim.derate("p", 1.0, sent_at=1.0)
    # a derated rate recovers with time: its schedule holds a short while
    derated = lim.schedule("p", 1.0)
    assert derated is not None
    assert derated[3] == 1.0 + SCHEDULE_DRIFT
    assert derated[2][0][1] == pytest.approx(1 / (10.0 * 0.95))
    other = RateLimiter((Quota(limit=10.0),), first_contact=True)
    other.reserve("p", 0.0)
    assert other.schedule("p", 0.0) is not None  # configured: no first contact
    other.pause("p", 5.0, 1.0, release_rate=2.0, recovery=1.0)
    released = other.schedule("p", 1.0)  # a paced release: renewed now and then
    assert released is not None
    assert released[3] == 1.0 + SCHEDULE_DRIFT
    assert released[4] == (6.0, 5.0 + 120.0)  # (MAX_RECOVERY)
    assert ("recovery", 0.5, 0.0) in released[2]
    generation, earliest, _, _, recovery = other.schedule("p", 200.0)  # type: ignore[misc]
    assert recovery is None  # over
    assert earliest == 5.0
    assert generation == other.export_partition("p")["g"]


def test_booked_elsewhere_only_moves_times_forward():
    lim = RateLimiter((Quota(limit=10.0),))
    lim.reserve("p", 0.0)
    (name,) = lim.export_partition("p")["t"]  # type: ignore[misc]
    lim.booked_elsewhere("p", {name: 5.0})
    lim.booked_elsewhere("p", {name: 1.0, "junk": math.nan})
    assert lim.export_partition("p")["t"] == {name: 5.0}


def test_window_counts_spread_keeps_the_total_and_drops_what_fell_out():
    counts = WindowCounts(10.0, buckets=10)
    counts.add_spread(100.0, 104.0, 40)
    assert counts.total(104.0) == 40
    assert counts.total(112.5) == 10  # (bucket 103 only is left in the window)
    later = WindowCounts(10.0, buckets=10)
    later.add_spread(0.0, 100.0, 100)  # only what the ring holds at 100 s counts:
    assert later.total(100.0) == 9  # its buckets from 91 s on
    instant = WindowCounts(10.0, buckets=10)
    instant.add_spread(5.0, 5.0, 7)
    assert instant.total(5.0) == 7
    instant.add_spread(6.0, 5.0, 3)  # (since after now: counted now)
    assert instant.total(6.0) == 10


@given(since=st.floats(0.0, 50.0), span=st.floats(0.0, 30.0), amount=st.integers(0, 10_000))
def test_window_counts_spread_never_counts_more_than_it_is_given(since, span, amount):
    counts = WindowCounts(5.0, buckets=10)
    counts.add_spread(since, since + span, amount)
    total = counts.total(since + span)
    assert 0 <= total <= amount
    if span <= 4.5:  # all of it in the window
        assert total == amount


def test_take_in_counts_demand_sends_and_successes_as_if_done_here():
    pacing = PacingPolicy(quotas=(Quota(limit=50.0),), breaker=BreakerPolicy())
    state = LocalPacerState(pacing)
    state.gate("p", arrival=True, now=0.0, adaptive=False)
    state.report("p", _ok(), now=0.0)
    state.take_in(
        "p", Elsewhere({}, arrivals=20, sends=20, successes=20, late_until=3.0),
        since=0.0, now=1.0,
    )
    assert state.recent_sends("p", now=1.0) == 21
    assert state._release_rate("p", 1.0) == pytest.approx(21 * pacing.release_factor, rel=0.2)
    breaker: CircuitBreaker = state._breakers["p"]
    assert breaker.quiet(1.0)
    assert state.export_partition("p")["lim"]["d"][3] == 3.0  # type: ignore[index]


def test_a_quiet_breaker_counts_successes_only_while_closed():
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2))
    assert breaker.quiet(0.0)
    breaker.on_result(0.0, ok=False)
    assert not breaker.quiet(0.0)  # a failure in a row
    breaker.on_result(0.1, ok=False)
    assert breaker.state(0.1) == "open"
    breaker.count_successes(0.0, 0.2, 50)  # open: successes of before change nothing
    assert breaker.state(0.2) == "open"


def _ok():
    from surefoot.pacing._config import Report

    return Report(True, False)
