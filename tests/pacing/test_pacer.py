"""The pacer: what it learns from responses and how that shapes the next slots. Pure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surefoot import ConfigurationError, FailureKind, Pacer, PacingPolicy
from surefoot._core._policy import Failure, ResponseInfo
from surefoot.pacing import AdaptivePolicy, BreakerPolicy, Quota, RetryBudgetPolicy
from surefoot.pacing._pacer import _Refill
from surefoot.pacing._state import LocalPacerState

WALL = 1_800_000_000.0


def ok(headers: dict[str, str] | None = None, status: int = 200) -> ResponseInfo:
    return ResponseInfo(status, headers or {})


def report(pacer: Pacer, outcome, now: float, partition: str = "p") -> None:
    pacer.report(partition, outcome, sent_at=now, now=now, wall_now=WALL + now, probe=False)


def slots(pacer: Pacer, n: int, now: float, partition: str = "p") -> list[float]:
    return [pacer.reserve(partition, now=now).at for _ in range(n)]


def test_learns_the_ietf_policy():
    pacer = Pacer(PacingPolicy(safety=1.0))
    report(pacer, ok({"RateLimit-Policy": '"default";q=100;w=10',
                      "RateLimit": '"default";r=100;t=10'}), 0.0)
    assert slots(pacer, 3, 0.0) == pytest.approx([0.0, 0.1, 0.2])


def test_infers_the_window_from_reset_jumps():
    pacer = Pacer(PacingPolicy(safety=1.0))
    github = {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "50",
              "x-ratelimit-resource": "core"}
    report(pacer, ok({**github, "x-ratelimit-reset": str(int(WALL) + 1)}), 0.0)
    # not known yet: guessed from the reset, at least a second (50 per second)
    assert pacer.limiter.snapshot("p")["learned_rate"] == pytest.approx(50.0)
    report(pacer, ok({**github, "x-ratelimit-reset": str(int(WALL) + 61)}), 1.0)
    assert pacer.limiter.snapshot("p")["learned_rate"] == pytest.approx(50 / 60)


def test_a_window_never_stated_is_at_least_the_longest_reset_seen():
    pacer = Pacer(PacingPolicy(safety=1.0))
    x = {"x-ratelimit-limit": "600", "x-ratelimit-remaining": "500"}
    report(pacer, ok({**x, "x-ratelimit-reset": "30"}), 0.0)  # seen late in its window
    assert pacer.limiter.snapshot("p")["learned_rate"] == pytest.approx(20.0)
    report(pacer, ok({**x, "x-ratelimit-reset": "59.5"}), 1.0)  # the next one corrects it
    assert pacer.limiter.snapshot("p")["learned_rate"] == pytest.approx(10.0)
    report(pacer, ok({**x, "x-ratelimit-reset": "5"}), 2.0)  # shorter ones change nothing
    assert pacer.limiter.snapshot("p")["learned_rate"] == pytest.approx(10.0)


def openai(limit: int, remaining: int, reset: str) -> ResponseInfo:
    return ok({"x-ratelimit-limit-requests": str(limit),
               "x-ratelimit-remaining-requests": str(remaining),
               "x-ratelimit-reset-requests": reset})


def test_openai_limits_without_a_window_are_not_guessed():
    # x-ratelimit-limit-requests is per minute or per day; reset-requests is the time
    # until the bucket is full again, not a window: one answer says nothing of the rate.
    pacer = Pacer(PacingPolicy(safety=1.0))
    report(pacer, openai(200, 199, "300ms"), 0.0)
    assert "learned_rate" not in pacer.limiter.snapshot("p")


@pytest.mark.parametrize("exact", [True, False])
def test_openai_refill_times_reveal_a_buckets_rate(exact):
    # A bucket of 10 refilling at 200/s (stated limit 200: per second or per minute,
    # nobody says), drained by a burst: its refill time grows 5 ms per token missing,
    # with or without the fraction of a token it holds.
    pacer = Pacer(PacingPolicy(safety=1.0))
    for i, remaining in enumerate([9, 8, 7, 6, 5, 4, 3, 2, 1, 0] * 3):
        held = 0.0 if exact else (0.37 * i) % 1.0
        reset = (10 - remaining - held) / 200
        report(pacer, openai(200, remaining, f"{round(reset * 1000)}ms"), i * 0.001)
    assert pacer.limiter.snapshot("p")["learned_rate"] == pytest.approx(200, rel=0.06)


def test_openai_style_headers_over_a_fixed_window_are_not_read_as_a_rate():
    # A window of 200 per second whose reset is the time to its end: the later in the
    # window, the more is spent and the shorter the reset. No bucket refills like that.
    pacer = Pacer(PacingPolicy(safety=1.0))
    for used in range(1, 40):
        t = used * 0.02
        report(pacer, openai(200, 200 - used, f"{round((1 - t) * 1000)}ms"), t)
    assert "learned_rate" not in pacer.limiter.snapshot("p")


def test_an_idle_openai_client_learns_nothing():
    # Every answer from a full bucket: one token missing, always the same refill time.
    pacer = Pacer(PacingPolicy(safety=1.0))
    for i in range(20):
        report(pacer, openai(10_000, 9_999, "6ms"), float(i))
    assert "learned_rate" not in pacer.limiter.snapshot("p")


def test_retry_after_pauses_the_partition_and_wins():
    pacer = Pacer(PacingPolicy(budget=None))
    report(pacer, ok({"retry-after": "3"}, 503), 0.0)
    assert pacer.reserve("p", now=0.5).at == pytest.approx(3.0)
    assert pacer.reserve("other", now=0.5).at == 0.5  # other partitions are not held


def test_a_429_costs_at_most_what_the_quota_says():
    # The quota says a slot comes back every 10 ms: an (early) 429 with a Retry-After
    # rounded up to a whole second holds the partition for 10 ms. Each refusal of the
    # request sent after a hold makes the next hold 4 times longer, up to the second.
    pacer = Pacer(PacingPolicy(budget=None, safety=1.0))
    policy = {"RateLimit-Policy": '"d";q=100;w=1'}
    report(pacer, ok(policy), 0.0)
    sent, holds = 0.0, []
    for _ in range(5):
        now = sent + 0.001
        pacer.report("p", ok({"retry-after": "1", **policy}, 429), sent_at=sent, now=now,
                     wall_now=WALL, probe=False)
        slot = pacer.reserve("p", now=now).at
        holds.append(round(slot - now, 6))
        sent = slot
    assert holds == pytest.approx([0.01, 0.04, 0.16, 0.64, 1.0])


def test_refusals_of_requests_in_flight_before_a_hold_ended_do_not_lengthen_it():
    pacer = Pacer(PacingPolicy(budget=None, safety=1.0))
    policy = {"RateLimit-Policy": '"d";q=100;w=1'}
    report(pacer, ok(policy), 0.0)
    for i in range(10):  # ten requests sent together, all refused
        pacer.report("p", ok({"retry-after": "1", **policy}, 429), sent_at=0.0,
                     now=0.001 + i * 1e-4, wall_now=WALL, probe=False)
    assert pacer.reserve("p", now=0.002).at == pytest.approx(0.011)


def test_pause_is_bounded_by_max_pause():
    pacer = Pacer(PacingPolicy(max_pause=10.0, adaptive=None))
    report(pacer, ok({"retry-after": "999999"}, 429), 0.0)
    assert pacer.reserve("p", now=0.0).at == pytest.approx(10.0)


def test_remaining_zero_waits_for_the_reset():
    pacer = Pacer(PacingPolicy())
    report(pacer, ok({"x-ratelimit-limit-requests": "10",
                      "x-ratelimit-remaining-requests": "0",
                      "x-ratelimit-reset-requests": "7s"}), 0.0)
    assert pacer.reserve("p", now=0.0).at == pytest.approx(7.0)


def test_remaining_zero_with_a_rate_holds_one_slot_then_tests():
    # 10 per (at least) 7 s: one slot is 0.7 s; the request sent
    # then is the test of whether the server refills before the reset it stated.
    pacer = Pacer(PacingPolicy())
    report(pacer, ok({"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0",
                      "x-ratelimit-reset": "7"}), 0.0)
    assert pacer.reserve("p", now=0.0).at == pytest.approx(0.7)


def test_adaptive_rate_cuts_once_for_concurrent_throttles():
    pacer = Pacer(PacingPolicy(adaptive=AdaptivePolicy(initial_rate=100), learn=False, budget=None))
    slots(pacer, 10, 0.0)
    for _ in range(5):  # five 429s for requests sent at the same time
        pacer.report("p", ok(status=429), sent_at=0.0, now=0.1, wall_now=WALL, probe=False)
    assert pacer.state._adaptive["p"].rate == pytest.approx(70.0, rel=0.05)  # 100 × 0.7, once


def test_a_throttle_without_retry_after_rebooks_the_queue_at_the_cut_rate():
    # 100 requests/s learned adaptively, 20 waiters booked up to 0.2 s ahead: a 429
    # without Retry-After cuts the rate, and the waiters are booked again at the new
    # rate rather than each being sent (and refused) at the old one.
    pacer = Pacer(PacingPolicy(budget=None))
    pacer.report("p", ok(status=429), sent_at=0.0, now=0.01, wall_now=WALL, probe=False)
    queue = [pacer.reserve("p", now=0.02) for _ in range(20)]
    pacer.report("p", ok(status=429), sent_at=0.05, now=0.06, wall_now=WALL, probe=False)
    rate = pacer.state._adaptive["p"].rate
    rebooked = [pacer.reserve("p", r, now=0.07).at for r in queue]
    assert rebooked != [r.at for r in queue]
    assert rebooked[0] == pytest.approx(0.06 + 1 / rate, rel=0.01)
    gaps = [b - a for a, b in zip(rebooked, rebooked[1:])]
    assert min(gaps) == pytest.approx(1 / rate, rel=0.01)


def test_budget_and_breaker_through_the_pacer():
    pacer = Pacer(PacingPolicy(budget=RetryBudgetPolicy(ratio=0.0, min_retries_per_second=0.1),
                         breaker=BreakerPolicy(failure_threshold=2, failure_ratio=None,
                                               open_for=5.0)))
    pacer.on_request("p", now=0.0)
    assert pacer.try_retry(0.0) is True
    assert pacer.try_retry(0.0) is False
    assert pacer.admit("p", now=0.0).allowed
    report(pacer, Failure(FailureKind.CONNECT), 0.0)
    report(pacer, ok(status=503), 0.1)
    refused = pacer.admit("p", now=0.2)
    assert not refused.allowed
    assert refused.retry_at == pytest.approx(5.1)


@pytest.mark.parametrize(
    ("how", "headers", "expected"),
    [
        ("host", {}, "api.example.com:8443"),
        ("origin", {}, "https://api.example.com:8443"),
        # the key's digest, never the key itself (partitions end up in logs and store keys)
        ("api_key", {"x-api-key": "k1"}, "api.example.com:8443|key:6ab9f1eb8f7d3388"),
        ("api_key", {}, "api.example.com:8443"),
    ],
)
def test_partitions(how, headers, expected):
    pacer = Pacer(PacingPolicy(partition_by=how))
    assert pacer.partition_of("https://API.example.com:8443/x?y=1", headers) == expected


def test_custom_partition_function():
    pacer = Pacer(PacingPolicy(partition_by=lambda url, headers: "everything"))
    assert pacer.partition_of("https://a/", {}) == "everything"


@pytest.mark.parametrize("kwargs", [{"safety": 0}, {"safety": 2}, {"max_pause": 0},
                                    {"partition_by": "nonsense"}])
def test_pacing_validation(kwargs):
    with pytest.raises(ConfigurationError):
        PacingPolicy(**kwargs)


def test_configured_quotas_apply_with_learning_on():
    pacer = Pacer(PacingPolicy(quotas=(Quota.per_second(2),)))
    assert slots(pacer, 3, 0.0) == pytest.approx([0.0, 0.5, 1.0])


def test_backlog_after_a_pause_is_released_at_a_multiple_of_demand():
    pacer = Pacer(PacingPolicy(budget=None, release_factor=1.5))
    report(pacer, ok({"RateLimit-Policy": '"d";q=1000;w=1'}), 0.0)  # a fast quota
    for i in range(50):  # demand: 10 requests/s over the last 5 s
        pacer.on_request("p", now=i * 0.1)
    report(pacer, ok({"retry-after": "2"}, 503), 5.0)  # an outage begins
    backlog = slots(pacer, 30, 5.5)
    assert backlog[0] == pytest.approx(7.0)
    gaps = [b - a for a, b in zip(backlog, backlog[1:])]
    assert min(gaps) == pytest.approx(1 / 15, rel=0.01)  # 1.5 × 10/s, not 1000/s
    # after the recovery period the quota alone applies again
    later = slots(pacer, 2, 30.0)
    assert later[1] - later[0] == pytest.approx(1 / 990, rel=0.01)


def test_recovery_lasts_until_the_backlog_is_released():
    # A long backlog (100 waiters at 15/s = 6.7 s) outlives the 2 s pause: arrivals after
    # the pause queue behind it at the release spacing, not beside it at the full quota.
    pacer = Pacer(PacingPolicy(budget=None, release_factor=1.5))
    report(pacer, ok({"RateLimit-Policy": '"d";q=1000;w=1'}), 0.0)
    for i in range(50):
        pacer.on_request("p", now=i * 0.1)
    report(pacer, ok({"retry-after": "2"}, 503), 5.0)
    backlog = slots(pacer, 100, 5.5)
    assert backlog[-1] == pytest.approx(7.0 + 99 / 15, rel=0.01)
    newcomer = slots(pacer, 1, 10.0)[0]  # after until + recovery (= 9 s)
    assert newcomer == pytest.approx(backlog[-1] + 1 / 15, rel=0.01)
    # once the schedule has caught up with the clock, the quota alone applies again
    later = slots(pacer, 2, 20.0)
    assert later[1] - later[0] == pytest.approx(1 / 990, rel=0.01)


def test_release_factor_must_let_a_backlog_drain():
    with pytest.raises(ConfigurationError, match="greater than 1"):
        PacingPolicy(release_factor=1.0)


def test_release_rate_of_a_young_partition_is_its_real_demand():
    # 100 requests/s for only 2 s, then an outage: demand is 100/s, not 200/5 = 40/s
    pacer = Pacer(PacingPolicy(budget=None, release_factor=1.5))
    report(pacer, ok({"RateLimit-Policy": '"d";q=1000;w=1'}), 0.0)
    for i in range(200):
        pacer.on_request("p", now=i * 0.01)
    report(pacer, ok({"retry-after": "2"}, 503), 2.0)
    backlog = slots(pacer, 10, 2.1)
    gaps = [b - a for a, b in zip(backlog, backlog[1:])]
    assert min(gaps) == pytest.approx(1 / 150, rel=0.05)


def test_release_follows_demand_measured_during_the_recovery():
    # A closed loop that had just started when the pause came: its demand looked small.
    pacer = Pacer(PacingPolicy(budget=None, release_factor=1.5))
    report(pacer, ok({"RateLimit-Policy": '"d";q=1000;w=1'}), 0.0)
    for i in range(10):
        pacer.on_request("p", now=i * 0.01)  # 100/s over 0.1 s
    report(pacer, ok({"retry-after": "1"}, 503), 0.1)
    first = slots(pacer, 2, 0.2)
    assert first[1] - first[0] == pytest.approx(1 / 150, rel=0.05)
    for i in range(400):  # now 400 requests/s arrive
        pacer.on_request("p", now=0.2 + i * 0.0025)
    later = slots(pacer, 2, 1.2)
    assert later[1] - later[0] == pytest.approx(1 / (1.5 * 410 / 1.2), rel=0.1)


def test_waiters_rebooking_through_an_outage_are_not_demand():
    # 10 requests/s arrive; through a 5 s outage (a 1 s Retry-After each time) the 50
    # waiters re-book after every pause. Re-bookings are the same sends, not new
    # demand: the release after the outage stays at 1.5 x 10/s, not 1.5 x 50/s or more.
    pacer = Pacer(PacingPolicy(budget=None, release_factor=1.5))
    report(pacer, ok({"RateLimit-Policy": '"d";q=1000;w=1'}), 0.0)
    waiting = []
    for i in range(100):
        now = i * 0.1
        pacer.on_request("p", now=now)
        if now >= 5.0:
            waiting.append(pacer.reserve("p", now=now))
        if i >= 50 and i % 10 == 0:
            report(pacer, ok({"retry-after": "1"}, 503), now)
            waiting = [pacer.reserve("p", r, now=now) for r in waiting]
    backlog = [pacer.reserve("p", r, now=10.0).at for r in waiting]
    gaps = sorted(b - a for a, b in zip(backlog, backlog[1:]))
    assert gaps[0] == pytest.approx(1 / 15, rel=0.1)


def test_stated_room_is_used_at_once_and_charged_to_the_schedule():
    pacer = Pacer(PacingPolicy(safety=1.0, burst_ahead=120.0))
    first = pacer.reserve("p", now=0.0)  # first contact: it goes alone
    assert first.at == 0.0
    headers = {"RateLimit-Policy": '"default";q=10;w=1', "RateLimit": '"default";r=5;t=1'}
    pacer.report("p", ok(headers), sent_at=0.0, now=0.01, wall_now=WALL, probe=False)
    # 5 left: less a margin of 1 and the answered request itself (counted, to be safe)
    assert slots(pacer, 4, 0.01) == pytest.approx([0.01, 0.01, 0.01, 0.4])


def test_a_shared_state_does_not_use_stated_room(tmp_path):
    from surefoot.stores import SQLiteStore

    store = SQLiteStore(tmp_path / "s.db")
    pacer = Pacer(PacingPolicy(safety=1.0, burst_ahead=120.0), store=store)
    first = pacer.reserve("p", now=0.0).at  # the store's clock: about now
    headers = {"RateLimit-Policy": '"default";q=10;w=1', "RateLimit": '"default";r=5;t=1'}
    pacer.report("p", ok(headers), sent_at=0.0, now=0.01, wall_now=WALL, probe=False)
    # another process's bookings are not in this one's count: paced
    a, b = (pacer.reserve("p", now=0.01).at for _ in range(2))
    assert a - first > 0.05
    assert b - a == pytest.approx(0.1, abs=0.01)


def test_burst_ahead_is_off_by_default_and_keeps_the_paced_schedule():
    pacer = Pacer(PacingPolicy(safety=1.0))
    pacer.reserve("p", now=0.0)
    headers = {"RateLimit-Policy": '"default";q=10;w=1', "RateLimit": '"default";r=5;t=1'}
    pacer.report("p", ok(headers), sent_at=0.0, now=0.01, wall_now=WALL, probe=False)
    assert slots(pacer, 2, 0.01) == pytest.approx([0.1, 0.2])
    with pytest.raises(ConfigurationError, match="burst_ahead"):
        PacingPolicy(burst_ahead=-1.0)


def test_a_late_send_excuses_the_429s_around_it_and_is_told_sparingly():
    # Stated 100/s: a 429 of a request sent on time derates; one sent beside a send
    # that went 0.3 s after its slot does not. Late sends are told to the state once
    # per 10 ms of sends (a shared state costs a round trip per report).
    told: list[float] = []

    class Counting(LocalPacerState):
        def report(self, partition, report, *, now):
            if report.late:
                told.append(report.late)
            super().report(partition, report, now=now)

    policy = {"RateLimit-Policy": '"d";q=100;w=1'}
    pacer = Pacer(PacingPolicy(budget=None, safety=1.0),
                  state=Counting(PacingPolicy(budget=None, safety=1.0)))
    report(pacer, ok(policy), 0.0)
    for i in range(5):
        pacer.report("p", ok(policy), sent_at=1.0 + i * 0.001, now=1.01, wall_now=WALL,
                     probe=False, late=0.3)
    assert told == [0.3]
    pacer.report("p", ok(policy, 429), sent_at=1.1, now=1.11, wall_now=WALL, probe=False)
    assert pacer.limiter._partitions["p"].derate == 1.0
    pacer.report("p", ok(policy, 429), sent_at=2.0, now=2.01, wall_now=WALL, probe=False)
    assert pacer.limiter._partitions["p"].derate == pytest.approx(0.95)


@given(st.lists(st.tuples(st.integers(0, 10**15), st.integers(0, 10**15),
                          st.floats(0, 1e9, allow_nan=False, allow_infinity=False)),
                max_size=80))
def test_refill_rates_are_total(answers):
    # Any answers at all: a positive finite rate or none, never an error.
    refill = _Refill()
    for limit, remaining, reset in answers:
        rate = refill.add(limit, remaining, reset)
        assert rate is None or (math.isfinite(rate) and rate > 0)


# -- what a shared state's fallback mirrors (see stores/_pacing_fallback.py) ----------------


def test_the_state_shows_a_stated_quota_and_the_sends_not_an_adaptive_guess():
    """A shared state mirrors the learned quota and the fleet's sends of every partition
    it loads, for its fallback: a server-stated quota (and its derated share), never
    the adaptive rate's guess (which would pace a partition put back after a loss at a
    fixed rate, with no adaptive rate left to raise it)."""
    pacer = Pacer(PacingPolicy(budget=None))
    state = pacer.state
    assert isinstance(state, LocalPacerState)
    report(pacer, ok({"RateLimit-Policy": '"q";q=50;w=1'}), 0.0)
    assert state.learned("p", now=0.0) == (Quota(limit=50.0, safety=pacer.pacing.safety), 1.0)
    assert state.recent_sends("p", now=0.0) is None
    slots(pacer, 3, 0.0)
    assert state.recent_sends("p", now=0.5) == 3
    report(pacer, ok(status=429), 0.1, partition="guess")  # no quota stated: adaptive
    slots(pacer, 1, 0.2, partition="guess")
    assert state.limiter.learned("guess", 0.2) is not None
    assert state.learned("guess", now=0.2) is None


def test_a_seeded_quota_is_used_at_once_and_the_fallback_goes_on_after_shared_slots():
    state = LocalPacerState(PacingPolicy(budget=None))
    state.seed("p", Quota(limit=10.0), now=0.0, after=0.45)
    got = [state.reserve("p", None, now=0.0, adaptive=False).at for _ in range(2)]
    assert got == pytest.approx([0.55, 0.65])
