"""RetryBudget (retries as a fraction of recent traffic) and its WindowCounts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surefoot import ConfigurationError
from surefoot.pacing import RetryBudgetPolicy
from surefoot.pacing._budget import RetryBudget, WindowCounts

# --- WindowCounts ------------------------------------------------------------------


def test_window_counts_slide():
    w = WindowCounts(10.0, buckets=10)
    w.add(0.5)
    w.add(3.2, amount=2)
    assert w.total(3.3) == 3
    assert w.total(9.99) == 3
    assert w.total(10.0) == 2  # bucket [0, 1) left the window
    assert w.total(12.99) == 2
    assert w.total(13.0) == 0  # and [3, 4)


def test_window_counts_long_gap_clears():
    w = WindowCounts(1.0, buckets=4)
    for i in range(10):
        w.add(i * 0.1)
    assert w.total(0.95) == 10
    assert w.total(1e9) == 0
    w.add(1e9)
    assert w.total(1e9 + 0.1) == 1


def test_window_counts_series_and_clear():
    w = WindowCounts(2.0, buckets=2, series=2)
    w.add(0.0, 0)
    w.add(0.0, 1, 3)
    assert (w.total(0.5, 0), w.total(0.5, 1)) == (1, 3)
    w.clear()
    assert (w.total(0.5, 0), w.total(0.5, 1)) == (0, 0)


def test_window_counts_earlier_time_counts_in_newest_bucket():
    w = WindowCounts(10.0)
    w.add(5.0)
    w.add(1.0)  # the clock must not go backwards; if it does, nothing is lost
    assert w.total(5.0) == 2
    assert w.total(14.99) == 2
    assert w.total(15.0) == 0


def test_window_counts_span():
    w = WindowCounts(2.0, buckets=8)
    assert w.span(0.0) == pytest.approx(1.75)
    assert w.span(0.1) == pytest.approx(1.85)
    assert w.span(0.2499) == pytest.approx(1.9999)


@pytest.mark.parametrize(
    ("window", "buckets", "series"),
    [(0.0, 10, 1), (-1.0, 10, 1), (math.inf, 10, 1), (math.nan, 10, 1), (1.0, 0, 1), (1.0, 1, 0)],
)
def test_window_counts_validation(window: float, buckets: int, series: int):
    with pytest.raises(ConfigurationError):
        WindowCounts(window, buckets=buckets, series=series)


# --- configuration -----------------------------------------------------------------


def test_defaults():
    config = RetryBudgetPolicy()
    assert (config.ratio, config.min_retries_per_second, config.window) == (0.1, 1.0, 10.0)
    assert RetryBudget().config == config


@pytest.mark.parametrize(
    "changes",
    [
        {"ratio": -0.1},
        {"ratio": math.nan},
        {"ratio": math.inf},
        {"min_retries_per_second": -1.0},
        {"min_retries_per_second": math.inf},
        {"window": 0.0},
        {"window": -5.0},
        {"window": math.inf},
        {"window": math.nan},
    ],
)
def test_bad_config(changes: dict[str, float]):
    with pytest.raises(ConfigurationError):
        RetryBudgetPolicy(**changes)


def test_zero_budget_is_allowed_and_never_retries():
    budget = RetryBudget(RetryBudgetPolicy(ratio=0.0, min_retries_per_second=0.0))
    for i in range(100):
        budget.on_request(i * 0.01)
    assert not budget.try_spend(1.0)


# --- the rule ----------------------------------------------------------------------


def test_floor_lets_idle_clients_retry():
    budget = RetryBudget()  # 1 retry/s over 10 s: 10 retries with no traffic at all
    assert budget.available(0.0) == 10.0
    granted = sum(budget.try_spend(0.0) for _ in range(20))
    assert granted == 10
    assert budget.available(0.0) == 0.0


def test_available_is_fractional():
    budget = RetryBudget(RetryBudgetPolicy(ratio=0.1, min_retries_per_second=0.0))
    for _ in range(5):
        budget.on_request(0.0)
    assert budget.available(0.0) == pytest.approx(0.5)
    assert not budget.try_spend(0.0)
    for _ in range(5):
        budget.on_request(0.0)
    assert budget.try_spend(0.0)
    assert budget.available(0.0) == pytest.approx(0.0)


def test_float_ratios_are_not_short_changed():
    budget = RetryBudget(RetryBudgetPolicy(ratio=0.1, min_retries_per_second=0.0))
    for _ in range(30):  # 0.1 * 30 == 3.0000000000000004, but 0.1 * 3 sums may fall short
        budget.on_request(0.0)
    assert sum(budget.try_spend(0.0) for _ in range(5)) == 3


def test_steady_traffic_allows_about_ratio_retries():
    budget = RetryBudget(RetryBudgetPolicy(ratio=0.1, min_retries_per_second=0.0))
    granted_late = 0
    for i in range(3000):  # 100 requests/second for 30 s, every one wants a retry
        now = i * 0.01
        budget.on_request(now)
        ok = budget.try_spend(now)
        if now >= 10.0:
            granted_late += ok
    # 20 s x 100/s x 0.1
    assert granted_late == pytest.approx(200, rel=0.1)


def test_occasional_failures_are_all_retried():
    budget = RetryBudget(RetryBudgetPolicy(ratio=0.1, min_retries_per_second=0.0))
    refused = 0
    for i in range(3000):  # 100/s, 5 % failing: well under the 10 % budget
        now = i * 0.01
        budget.on_request(now)
        if i % 20 == 19:
            refused += not budget.try_spend(now)
    assert refused == 0


def test_storm_is_capped():
    budget = RetryBudget()  # ratio 0.1, floor 1/s, window 10 s
    requests = granted = 0
    for i in range(1000):  # 100 requests/second for 10 s, every attempt fails
        now = i * 0.01
        budget.on_request(now)
        requests += 1
        while budget.try_spend(now):  # every caller retries as much as allowed
            granted += 1
    assert granted <= 0.1 * requests + 1.0 * 10.0 + 1e-9
    assert granted >= 0.1 * requests  # and the budget was actually usable
    assert granted == 110


def test_long_storm_is_capped_per_window():
    budget = RetryBudget()
    granted = 0
    for i in range(6000):  # 100/s for 60 s, a retry wanted after each attempt
        now = i * 0.01
        budget.on_request(now)
        for _ in range(3):  # up to three retries per request
            granted += budget.try_spend(now)
    # ~ (0.1 x 100/s + 1/s) x 60 s = 660 (plus one window's worth of floor at most)
    assert 600 <= granted <= 660 + 10


def test_budget_recovers_over_time():
    budget = RetryBudget()
    while budget.try_spend(0.0):
        pass
    assert budget.available(0.0) < 1
    assert not budget.try_spend(5.0)
    assert not budget.try_spend(9.99)
    # the retries made at t=0 leave the window 10 s later
    assert budget.available(10.0) == 10.0
    assert budget.try_spend(10.0)


def test_old_traffic_stops_funding_retries():
    budget = RetryBudget(RetryBudgetPolicy(ratio=0.5, min_retries_per_second=0.0))
    for _ in range(100):
        budget.on_request(0.0)
    assert budget.available(5.0) == 50.0
    assert budget.available(10.0) == 0.0


def test_on_success_changes_nothing():
    budget = RetryBudget()
    budget.on_request(0.0)
    before = budget.available(0.0)
    budget.on_success(0.0)
    assert budget.available(0.0) == before


# --- property ----------------------------------------------------------------------


@settings(max_examples=200)
@given(
    st.floats(0.0, 2.0),
    st.floats(0.0, 5.0),
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 300)),  # (is a retry, step in 1/100 s)
        min_size=20,
        max_size=400,
    ),
)
def test_retries_never_exceed_the_rule(ratio: float, floor: float, steps):
    """Over any 9 s (0.9 x window) ending at a granted retry, the retries granted are at
    most floor x window + ratio x the first attempts of the 10 s before it."""
    config = RetryBudgetPolicy(ratio=ratio, min_retries_per_second=floor, window=10.0)
    budget = RetryBudget(config)
    requests: list[int] = []  # times in 1/100 s, exact
    retries: list[int] = []
    tick = 0
    for is_retry, step in steps:
        tick += step
        now = tick / 100
        if not is_retry:
            budget.on_request(now)
            requests.append(tick)
            continue
        if budget.try_spend(now):
            retries.append(tick)
            recent_retries = sum(1 for t in retries if t > tick - 900)
            recent_requests = sum(1 for t in requests if t > tick - 1000)
            assert recent_retries <= floor * 10.0 + ratio * recent_requests + 1e-6
        assert budget.available(now) <= floor * 10.0 + ratio * len(requests) + 1e-6
