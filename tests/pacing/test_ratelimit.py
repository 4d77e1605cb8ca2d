"""The GCRA limiter: reserve-and-wait, several quotas, pauses, learning, tightening."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surefoot import ConfigurationError
from surefoot.pacing import Quota, RateLimiter


def slots(limiter: RateLimiter, n: int, now: float = 0.0, key: str = "p") -> list[float]:
    return [limiter.reserve(key, now).at for _ in range(n)]


def test_evenly_spaced_without_burst():
    limiter = RateLimiter([Quota.per_second(10)])
    assert slots(limiter, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_burst_then_paced():
    limiter = RateLimiter([Quota.per_second(10, burst=3)])
    assert slots(limiter, 5) == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_idle_time_refills_only_up_to_burst():
    limiter = RateLimiter([Quota.per_second(10, burst=2)])
    slots(limiter, 2)
    assert slots(limiter, 3, now=100.0) == pytest.approx([100.0, 100.0, 100.1])


def test_several_quotas_take_the_strictest():
    # 10/s but only 3 per minute: the minute quota dominates after the first ones
    limiter = RateLimiter([Quota.per_second(10), Quota.per_minute(3, burst=3)])
    assert slots(limiter, 4) == pytest.approx([0.0, 0.1, 0.2, 20.0])


def test_partitions_are_independent():
    limiter = RateLimiter([Quota.per_second(1)])
    assert limiter.reserve("a", 0).at == 0
    assert limiter.reserve("b", 0).at == 0
    assert limiter.reserve("a", 0).at == 1


def test_pause_holds_the_partition_and_releases_paced():
    limiter = RateLimiter([Quota.per_second(10, burst=5)])
    before = limiter.reserve("p", 0.0)
    limiter.pause("p", until=2.0, now=0.0)
    assert not limiter.still_valid(before)
    after = [limiter.reserve("p", 0.5).at for _ in range(4)]
    assert after == pytest.approx([2.0, 2.1, 2.2, 2.3])  # paced, no burst of 5
    assert limiter.still_valid(limiter.reserve("p", 0.5))


def test_pause_applies_without_any_quota():
    limiter = RateLimiter()
    assert limiter.reserve("p", 0.0).at == 0.0
    limiter.pause("p", until=3.0, now=0.0)
    assert limiter.reserve("p", 1.0).at == 3.0


def test_an_earlier_pause_does_not_shorten_a_later_one():
    limiter = RateLimiter()
    limiter.pause("p", until=5.0, now=0.0)
    limiter.pause("p", until=2.0, now=0.0)
    assert limiter.reserve("p", 0.0).at == 5.0


def test_learned_quota_applies():
    limiter = RateLimiter()
    limiter.learn("p", Quota(limit=200, period=1.0), now=0.0)
    assert slots(limiter, 3) == pytest.approx([0.0, 0.005, 0.01])


def test_tighten_zero_remaining_waits_for_reset():
    limiter = RateLimiter([Quota.per_second(100)])
    limiter.tighten("p", remaining=0, reset_after=4.0, now=0.0)
    assert limiter.reserve("p", 0.0).at == 4.0


def test_remaining_above_zero_neither_spreads_nor_bursts():
    # "5 left for 10 s" is what a token bucket near empty says as well as a window: only
    # the rate spaces the slots (a remaining of 0 is what holds, see below).
    limiter = RateLimiter([Quota.per_second(100)])
    limiter.tighten("p", remaining=5, reset_after=10.0, now=0.0)
    assert slots(limiter, 3) == pytest.approx([0.0, 0.01, 0.02])


def test_none_remaining_holds_until_the_reset():
    limiter = RateLimiter([Quota.per_second(100)])
    limiter.tighten("p", remaining=0, reset_after=1.0, now=0.0)
    assert slots(limiter, 2) == pytest.approx([1.0, 1.01])
    assert slots(limiter, 2, now=5.0) == pytest.approx([5.0, 5.01])


def test_none_remaining_with_a_hold_holds_briefly_until_refusals_prove_it():
    limiter = RateLimiter([Quota.per_second(100)])
    limiter.tighten("p", remaining=0, reset_after=1.0, now=0.0, hold=0.01)
    assert limiter.reserve("p", 0.0).at == pytest.approx(0.01)  # the test request
    # It is refused: the next hold is 4 times longer, and so on up to the whole wait.
    limiter.pause("p", 1.02, 0.02, hold=0.01, sent_at=0.01)
    assert limiter.reserve("p", 0.02).at == pytest.approx(0.06)
    limiter.pause("p", 1.07, 0.07, hold=0.01, sent_at=0.06)
    assert limiter.reserve("p", 0.07).at == pytest.approx(0.23)
    limiter.pause("p", 1.24, 0.24, hold=0.01, sent_at=0.23)
    assert limiter.reserve("p", 0.24).at == pytest.approx(0.88)
    limiter.pause("p", 1.89, 0.89, hold=0.01, sent_at=0.88)
    assert limiter.reserve("p", 0.89).at == pytest.approx(1.89)


def test_a_refusal_long_after_the_hold_ended_is_a_new_refusal_not_proof():
    # A rate a little too high is refused every ~0.5 s while the stated wait is 1 s:
    # each of those refusals holds briefly; they do not add up to the whole wait.
    limiter = RateLimiter([Quota.per_second(100)])
    limiter.pause("p", 1.0, 0.0, hold=0.01, sent_at=0.0)
    assert limiter.reserve("p", 0.0).at == pytest.approx(0.01)
    limiter.pause("p", 1.5, 0.5, hold=0.01, sent_at=0.49)  # 0.48 s after the hold ended
    assert limiter.reserve("p", 0.5).at == pytest.approx(0.51)
    limiter.pause("p", 1.9, 0.9, hold=0.01, sent_at=0.89)
    assert limiter.reserve("p", 0.9).at == pytest.approx(0.91)
    # ...but a request sent right after a hold ended and refused does prove it short
    limiter.pause("p", 1.92, 0.92, hold=0.01, sent_at=0.911)
    assert limiter.reserve("p", 0.92).at == pytest.approx(0.96)


def test_a_refusal_of_a_request_sent_before_the_hold_proves_nothing():
    limiter = RateLimiter([Quota.per_second(100)])
    limiter.pause("p", 1.0, 0.0, hold=0.01, sent_at=0.0)
    assert limiter.reserve("p", 0.0).at == pytest.approx(0.01)
    limiter.pause("p", 1.0, 0.001, hold=0.01, sent_at=-0.001)  # in flight before
    assert limiter.reserve("p", 0.001).at == pytest.approx(0.02)  # the hold, then paced
    # once the stated wait is over, a refusal starts again from a short hold
    limiter.pause("p", 3.0, 2.0, hold=0.01, sent_at=1.99)
    assert limiter.reserve("p", 2.0).at == pytest.approx(2.01)


def test_tighten_never_loosens():
    limiter = RateLimiter([Quota.per_second(1)])
    first = slots(limiter, 3)
    limiter.tighten("p", remaining=1000, reset_after=1.0, now=0.0)
    assert limiter.reserve("p", 0.0).at >= first[-1] + 1.0 - 1e-9


def test_malformed_observations_are_ignored():
    limiter = RateLimiter([Quota.per_second(1)])
    limiter.tighten("p", remaining=-1, reset_after=5.0, now=0.0)
    limiter.tighten("p", remaining=1, reset_after=float("nan"), now=0.0)
    assert limiter.reserve("p", 0.0).at == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": -1}, {"limit": float("inf")}, {"limit": 1, "period": 0},
     {"limit": 1, "burst": 0}, {"limit": 1, "safety": 0}, {"limit": 1, "safety": 1.5}],
)
def test_quota_validation(kwargs):
    with pytest.raises(ConfigurationError):
        Quota(**kwargs)


def test_partitions_are_bounded():
    limiter = RateLimiter([Quota.per_second(1)], max_partitions=3)
    for key in "abcdef":
        limiter.reserve(key, 0.0)
    assert len(limiter._partitions) == 3


@given(
    rate=st.floats(0.1, 1000),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_slots_are_fifo_and_respect_the_rate(rate, burst, gaps):
    limiter = RateLimiter([Quota(limit=rate, burst=burst)])
    now = 0.0
    booked: list[float] = []
    for gap in gaps:
        now += gap
        slot = limiter.reserve("p", now).at
        assert slot >= now
        if booked:
            assert slot >= booked[-1]  # FIFO: never before an earlier booking
        booked.append(slot)
    # GCRA: any window of length L holds at most burst + L*rate slots
    interval = 1.0 / rate
    for i in range(len(booked)):
        for j in range(i, len(booked)):
            span = booked[j] - booked[i]
            assert (j - i + 1) <= burst + span / interval + 1e-6


def test_requests_sent_before_any_quota_was_known_count_against_the_learned_one():
    limiter = RateLimiter()
    assert [limiter.reserve("p", 0.0).at for _ in range(5)] == [0.0] * 5  # nothing known
    limiter.learn("p", Quota(limit=10, period=1.0), now=0.01)
    # the five unpaced ones spent 0.5 s worth of the quota already
    assert limiter.reserve("p", 0.01).at == pytest.approx(0.5)
    assert limiter.reserve("p", 0.01).at == pytest.approx(0.6)


def test_unpaced_sends_are_charged_for_one_period_of_the_learned_quota_at_most():
    """A blank partition (a shared state that lost it, say) let 400 requests through at
    once before the quota was stated: the server refused what was over its quota, and
    holds it against no one for longer than its period; the schedule is not pushed 4 s
    ahead (the lock-out bench/soak.py saw after a Redis restart)."""
    limiter = RateLimiter()
    for _ in range(400):
        limiter.reserve("p", 0.0)
    limiter.learn("p", Quota(limit=100, period=1.0), now=0.01)
    assert limiter.reserve("p", 0.01).at == pytest.approx(1.01)


def test_a_seeded_quota_paces_from_now_without_charging_and_ends_first_contact():
    limiter = RateLimiter(first_contact=True)
    for _ in range(5):  # the first goes alone: the others are told to ask again
        limiter.reserve("p", 0.0)
    limiter.seed("p", Quota(limit=10, period=1.0), 0.01)
    got = [limiter.reserve("p", 0.01) for _ in range(3)]
    assert not any(r.tentative for r in got)
    assert [r.at for r in got] == pytest.approx([0.01, 0.11, 0.21])
    assert limiter.learned("p", 0.5) == (Quota(limit=10, period=1.0), 1.0)
    assert limiter.learned("other", 0.5) is None


def test_a_schedule_continues_after_slots_handed_out_elsewhere():
    limiter = RateLimiter([Quota.per_second(10, burst=3)])
    limiter.reserve("p", 0.0)
    limiter.continue_after("p", 0.75, 0.0)  # e.g. the fallback's last slot
    assert slots(limiter, 2) == pytest.approx([0.85, 0.95])  # no burst over them
    limiter.continue_after("p", 0.1, 0.0)  # behind the schedule already: nothing
    assert slots(limiter, 1) == pytest.approx([1.05])


def test_release_speeds_up_but_never_slows_down():
    limiter = RateLimiter([Quota.per_second(1000)])
    limiter.pause("p", until=1.0, now=0.0, release_rate=10.0, recovery=1.0)
    assert limiter.recovering("p")
    limiter.speed_up_release("p", 20.0)
    limiter.speed_up_release("p", 5.0)  # ignored: only ever faster
    slots = [limiter.reserve("p", 0.5).at for _ in range(3)]
    assert slots == pytest.approx([1.0, 1.05, 1.1])


def test_an_adaptive_guess_does_not_charge_the_unpaced_sends():
    limiter = RateLimiter()
    for _ in range(5):
        limiter.reserve("p", 0.0)
    limiter.learn("p", Quota(limit=10, period=1.0), now=0.01, guess=True)
    assert limiter.reserve("p", 0.01).at == pytest.approx(0.01)


def test_429s_at_the_learned_rate_derate_it_once_per_round_and_it_recovers():
    limiter = RateLimiter()
    limiter.learn("p", Quota(limit=100.0), now=0.0)
    limiter.derate("p", 1.0, sent_at=0.9)
    limiter.derate("p", 1.001, sent_at=0.95)  # sent before the cut: no second cut
    assert limiter._partitions["p"].derated(1.0) == pytest.approx(0.95)
    got = [limiter.reserve("p", 2.0).at for _ in range(2)]
    assert got[1] - got[0] == pytest.approx(1 / (100 * (0.95 + 0.03)), rel=1e-3)
    # 5 s later: 99 % of the rate again (after a 429 at the whole rate, a margin)
    assert limiter._partitions["p"].derated(6.0) == pytest.approx(0.99)
    for i in range(100):  # never below the floor
        limiter.derate("p", 10.0 + i / 10, sent_at=10.0 + i / 10)
    assert limiter._partitions["p"].derated(19.9) == pytest.approx(0.5)


def test_refusals_of_slots_booked_before_a_cut_do_not_cut_again():
    # A fleet's queue of waiters holds a second of slots booked at the old rate: their
    # refusals, though sent after the cut, say nothing of the new rate.
    limiter = RateLimiter()
    limiter.learn("p", Quota(limit=100.0), now=0.0)
    booked = [limiter.reserve("p", 0.0).at for _ in range(100)]  # up to 0.99 s
    limiter.derate("p", 0.05, sent_at=0.04)
    limiter.derate("p", 0.5, sent_at=booked[60])  # booked before the cut
    assert limiter._partitions["p"].derated(0.5) == pytest.approx(0.95 + 0.03 * 0.45)
    later = limiter.reserve("p", 0.5).at  # booked after the cut: its refusal counts
    limiter.derate("p", later + 0.01, sent_at=later)
    assert limiter._partitions["p"].derate == pytest.approx(
        (0.95 + 0.03 * (later + 0.01 - 0.05)) * 0.95)


def test_refusals_after_a_late_send_do_not_derate():
    # A thread that woke up 0.3 s after its slot sent beside the ones on time: the
    # server may have seen them bunched, and a 429 then says nothing of its rate.
    limiter = RateLimiter()
    limiter.learn("p", Quota(limit=100.0), now=0.0)
    limiter.late("p", sent_at=1.0, late=0.3)
    limiter.derate("p", 1.2, sent_at=1.1)
    assert limiter._partitions["p"].derate == 1.0
    limiter.derate("p", 1.7, sent_at=1.6)  # sent after the grace: it counts
    assert limiter._partitions["p"].derate == pytest.approx(0.95)


def test_a_little_lateness_is_not_an_excuse():
    limiter = RateLimiter()
    limiter.learn("p", Quota(limit=10.0), now=0.0)
    limiter.late("p", sent_at=1.0, late=0.15)  # under 2 slots of 0.1 s
    limiter.derate("p", 1.2, sent_at=1.1)
    assert limiter._partitions["p"].derate == pytest.approx(0.95)


def test_lateness_survives_the_shared_state():
    limiter = RateLimiter()
    limiter.learn("p", Quota(limit=100.0), now=0.0)
    limiter.late("p", sent_at=1.0, late=0.3)
    copy = RateLimiter()
    copy.import_partition("p", limiter.export_partition("p"))
    copy.derate("p", 1.2, sent_at=1.1)
    assert copy._partitions["p"].derate == 1.0


# -- burst credit: the server's stated `remaining` ------------------------------------


def credited(rate: float = 10.0, **kwargs: float) -> RateLimiter:
    """A limiter that learned `rate`/s and has counted bookings since t=0."""
    kwargs.setdefault("burst_ahead", 120.0)
    limiter = RateLimiter(first_contact=True, **kwargs)
    limiter.learn("p", Quota.per_second(rate), 0.0)
    limiter.reserve("p", 0.0)  # the first request: books, and starts the log
    limiter.answered("p")
    return limiter


def test_stated_room_lets_requests_go_at_once_instead_of_at_their_slots():
    limiter = credited()
    # the first request (sent at 0, answered at 0.01) left 5: it and the margin of 1
    # are taken off
    limiter.observe("p", remaining=5, sent_at=0.0, now=0.01)
    assert slots(limiter, 4, now=0.01) == pytest.approx([0.01, 0.01, 0.01, 0.4])
    # the schedule was charged as if they had waited: the long-run rate is the quota's
    assert limiter.snapshot("p")["tat_learned"] == pytest.approx(0.5)


def test_without_room_stated_the_schedule_is_unchanged():
    limiter = credited()
    assert slots(limiter, 3, now=0.0) == pytest.approx([0.1, 0.2, 0.3])
    limiter.observe("p", remaining=1, sent_at=0.0, now=0.01)  # only what is booked
    assert slots(limiter, 1, now=0.01) == pytest.approx([0.4])


def test_requests_in_flight_and_waiters_spend_the_room():
    limiter = credited()
    waiting = slots(limiter, 3, now=0.0)  # booked at 0.1, 0.2, 0.3: they will go
    assert waiting == pytest.approx([0.1, 0.2, 0.3])
    limiter.observe("p", remaining=6, sent_at=0.0, now=0.01)
    # 6 left, less the first request, the 3 waiting and the margin: 1
    assert slots(limiter, 2, now=0.01) == pytest.approx([0.01, 0.5])


def test_bookings_after_the_reset_do_not_spend_this_windows_room():
    limiter = credited(rate=1.0)
    slots(limiter, 3, now=0.0)  # 1.0, 2.0, 3.0
    limiter.observe("p", remaining=4, reset_after=1.5, sent_at=0.0, now=0.01)
    # 4 - the first - the one at 1.0 (before the reset) - margin = 1: the ones at 2.0
    # and 3.0 fall in the next window
    assert slots(limiter, 2, now=0.01) == pytest.approx([0.01, 5.0])


def test_a_waiter_is_told_to_look_again_and_goes_when_room_is_stated():
    limiter = credited()
    limiter.observe("p", remaining=50, sent_at=0.0, now=0.0)  # a window's worth seen
    limiter.refused("p", sent_at=0.0)  # ... but void now
    waiter = limiter.reserve("p", 0.0)
    assert waiter.at == pytest.approx(0.1)
    assert waiter.recheck is not None
    assert 0.0 < waiter.recheck < waiter.at
    assert limiter.refresh(waiter, 0.02).at == pytest.approx(0.1)  # nothing new: wait
    limiter.observe("p", remaining=10, sent_at=0.01, now=0.02)
    now_go = limiter.refresh(waiter, 0.02)
    assert now_go.at == pytest.approx(0.02)
    assert limiter.still_valid(now_go)


def test_a_small_bucket_s_waiters_are_not_woken():
    # the server never stated more room than there are waiters: they sleep to their slot
    limiter = credited()
    limiter.observe("p", remaining=2, sent_at=0.0, now=0.0)
    slots(limiter, 5, now=0.0)
    assert limiter.reserve("p", 0.0).recheck is None


def test_a_429_voids_the_room_stated_before_it():
    limiter = credited()
    limiter.observe("p", remaining=5, sent_at=0.0, now=0.01)
    limiter.refused("p", sent_at=0.005)
    assert slots(limiter, 1, now=0.02) == pytest.approx([0.1])
    limiter.observe("p", remaining=5, sent_at=0.004, now=0.03)  # sent before the 429's
    assert slots(limiter, 1, now=0.03) == pytest.approx([0.2])
    limiter.observe("p", remaining=9, sent_at=0.03, now=0.04)  # sent after it
    assert limiter.reserve("p", 0.04).at == pytest.approx(0.04)


def test_a_pause_voids_the_room():
    limiter = credited()
    limiter.observe("p", remaining=5, sent_at=0.0, now=0.01)
    limiter.pause("p", until=1.0, now=0.01)
    assert slots(limiter, 2, now=0.02) == pytest.approx([1.0, 1.1])
    limiter.observe("p", remaining=5, sent_at=0.005, now=0.03)  # sent before the pause
    assert slots(limiter, 1, now=0.03) == pytest.approx([1.2])


def test_room_is_used_only_for_a_while_and_never_far_ahead():
    limiter = credited(burst_ahead=0.25)
    limiter.observe("p", remaining=100, sent_at=0.0, now=0.01)
    got = slots(limiter, 4, now=0.01)
    # ahead of the paced schedule by at most 0.25 s: slots 0.1 and 0.2 go now, 0.3 waits
    assert got[:2] == pytest.approx([0.01, 0.01])
    assert got[2] == pytest.approx(0.3)
    limiter = credited()
    limiter.observe("p", remaining=100, sent_at=0.0, now=0.01)
    assert limiter.reserve("p", 5.0).at == pytest.approx(5.0)  # expired: paced (idle)
    limiter.reserve("p", 5.0)
    assert limiter.reserve("p", 5.0).at == pytest.approx(5.2)


def test_negative_remaining_is_ignored():
    limiter = credited()
    limiter.observe("p", remaining=-3, sent_at=0.0, now=0.01)
    assert slots(limiter, 1, now=0.01) == pytest.approx([0.1])


@given(
    remaining=st.integers(min_value=0, max_value=200),
    waiting=st.integers(min_value=0, max_value=50),
    wanted=st.integers(min_value=1, max_value=300),
)
def test_credit_never_sends_more_at_once_than_the_room_left(remaining, waiting, wanted):
    limiter = credited(rate=1.0)
    slots(limiter, waiting, now=0.0)
    limiter.observe("p", remaining=remaining, sent_at=0.0, now=0.01)
    early = sum(1 for at in slots(limiter, wanted, now=0.01) if at <= 0.01)
    assert early <= max(remaining - 1 - waiting - 1, 0)


def test_the_margin_after_a_429_survives_the_shared_state():
    limiter = RateLimiter()
    limiter.learn("p", Quota(limit=100.0), now=0.0)
    limiter.derate("p", 1.0, sent_at=0.9)
    copy = RateLimiter()
    copy.import_partition("p", limiter.export_partition("p"))
    assert copy._partitions["p"].derated(100.0) == pytest.approx(0.99)
