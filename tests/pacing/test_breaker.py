"""CircuitBreaker: consecutive and ratio trips, open -> half-open by time, probes, leases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surefoot import ConfigurationError
from surefoot.pacing import BreakerPolicy
from surefoot.pacing._breaker import Admission, CircuitBreaker

CONSECUTIVE_ONLY = BreakerPolicy(failure_ratio=None)
RATIO_ONLY = BreakerPolicy(failure_threshold=1000)


def fail(breaker: CircuitBreaker, now: float, n: int = 1) -> None:
    for _ in range(n):
        assert breaker.allow(now).allowed
        breaker.on_result(now, False, False)


def succeed(breaker: CircuitBreaker, now: float, n: int = 1) -> None:
    for _ in range(n):
        assert breaker.allow(now).allowed
        breaker.on_result(now, True, False)


def opened(config: BreakerPolicy | None = None, at: float = 0.0) -> CircuitBreaker:
    breaker = CircuitBreaker(config or BreakerPolicy())
    fail(breaker, at, breaker.config.failure_threshold)
    assert breaker.state(at) == "open"
    return breaker


# --- configuration -----------------------------------------------------------------


def test_defaults():
    config = BreakerPolicy()
    assert config.failure_threshold == 5
    assert config.failure_ratio == 0.5
    assert (config.window, config.min_throughput, config.open_for) == (10.0, 10, 5.0)
    assert (config.half_open_probes, config.close_after) == (1, 1)
    assert CircuitBreaker().config == config


@pytest.mark.parametrize(
    "changes",
    [
        {"failure_threshold": 0},
        {"failure_threshold": 2.5},
        {"failure_threshold": True},
        {"failure_ratio": 0.0},
        {"failure_ratio": 1.5},
        {"failure_ratio": math.nan},
        {"window": 0.0},
        {"window": math.inf},
        {"min_throughput": 0},
        {"open_for": 0.0},
        {"open_for": -1.0},
        {"open_for": math.nan},
        {"half_open_probes": 0},
        {"close_after": 0},
    ],
)
def test_bad_config(changes: dict[str, object]):
    with pytest.raises(ConfigurationError):
        BreakerPolicy(**changes)  # type: ignore[arg-type]


def test_admission_is_frozen():
    admission = CircuitBreaker().allow(0.0)
    assert admission == Admission(allowed=True, state="closed", probe=False, retry_at=None)
    with pytest.raises(AttributeError):
        admission.allowed = False  # type: ignore[misc]


# --- closed -> open ----------------------------------------------------------------


def test_opens_after_consecutive_failures():
    breaker = CircuitBreaker(CONSECUTIVE_ONLY)
    fail(breaker, 0.0, 4)
    assert breaker.state(0.0) == "closed"
    fail(breaker, 0.1)
    assert breaker.state(0.1) == "open"
    admission = breaker.allow(0.2)
    assert admission == Admission(allowed=False, state="open", probe=False, retry_at=5.1)


def test_a_success_resets_the_consecutive_count():
    breaker = CircuitBreaker(CONSECUTIVE_ONLY)
    for i in range(10):
        fail(breaker, i, 4)
        succeed(breaker, i)
    assert breaker.state(10.0) == "closed"


def test_ratio_opens_only_with_enough_throughput():
    breaker = CircuitBreaker(RATIO_ONLY)  # ratio 0.5, min_throughput 10
    for i in range(4):
        fail(breaker, i * 0.1)
        succeed(breaker, i * 0.1)
    fail(breaker, 0.9)  # 5 of 9 fail: over the ratio, under the throughput
    assert breaker.state(0.9) == "closed"
    succeed(breaker, 1.0)  # 5 of 10: the ratio is reached with enough calls
    assert breaker.state(1.0) == "open"


def test_ratio_below_threshold_stays_closed():
    breaker = CircuitBreaker(RATIO_ONLY)
    for i in range(100):  # 40 % failures, never 50 % of any prefix of 10 calls or more
        if i % 5 >= 3:
            fail(breaker, i * 0.05)
        else:
            succeed(breaker, i * 0.05)
    assert breaker.state(5.0) == "closed"


def test_ratio_counts_only_the_window():
    breaker = CircuitBreaker(RATIO_ONLY)  # window 10 s
    succeed(breaker, 0.0, 9)
    fail(breaker, 0.0, 8)  # 8 of 17: closed
    assert breaker.state(0.0) == "closed"
    # 10 s later the old calls are gone: 2 failures of 2 calls is under min_throughput
    fail(breaker, 10.0, 2)
    assert breaker.state(10.0) == "closed"
    succeed(breaker, 10.0, 8)
    assert breaker.state(10.0) == "closed"  # 2 of 10


def test_ratio_off():
    breaker = CircuitBreaker(BreakerPolicy(failure_ratio=None, failure_threshold=3))
    for i in range(50):
        fail(breaker, i, 2)
        succeed(breaker, i)
    assert breaker.state(50.0) == "closed"


# --- open -> half-open -> closed / open ----------------------------------------------


def test_open_refuses_until_open_for_then_half_opens():
    breaker = opened(at=100.0)
    for now in (100.0, 102.0, 104.999):
        admission = breaker.allow(now)
        assert not admission.allowed
        assert admission.state == "open"
        assert admission.retry_at == 105.0
    assert breaker.state(105.0) == "half_open"


@pytest.mark.parametrize("probes", [1, 2, 3])
def test_half_open_allows_exactly_the_probes(probes: int):
    breaker = opened(BreakerPolicy(half_open_probes=probes, close_after=probes + 1))
    admissions = [breaker.allow(5.0) for _ in range(probes)]
    assert all(a.allowed and a.probe and a.state == "half_open" for a in admissions)
    refused = breaker.allow(5.5)
    assert refused == Admission(allowed=False, state="half_open", probe=False, retry_at=10.0)
    # a probe's outcome frees its slot
    breaker.on_result(6.0, True, True)
    again = breaker.allow(6.0)
    assert again.allowed
    assert again.probe


def test_probe_failure_reopens():
    breaker = opened()
    probe = breaker.allow(5.0)
    assert probe.probe
    breaker.on_result(6.0, False, True)
    assert breaker.state(6.0) == "open"
    admission = breaker.allow(6.0)
    assert not admission.allowed
    assert admission.retry_at == 11.0
    assert breaker.state(11.0) == "half_open"


def test_probe_success_closes_and_resets_counters():
    breaker = opened()
    assert breaker.allow(5.0).probe
    breaker.on_result(5.2, True, True)
    assert breaker.state(5.2) == "closed"
    assert breaker.allow(5.3) == Admission(True, "closed", False, None)
    fail(breaker, 5.3, 4)  # a fresh count: four failures do not reopen it
    assert breaker.state(5.3) == "closed"
    fail(breaker, 5.3)
    assert breaker.state(5.3) == "open"


def test_close_after_several_probe_successes():
    breaker = opened(BreakerPolicy(half_open_probes=1, close_after=3))
    for i in range(2):
        assert breaker.allow(5.0 + i).probe
        breaker.on_result(5.5 + i, True, True)
        assert breaker.state(5.5 + i) == "half_open"
    assert breaker.allow(8.0).probe
    breaker.on_result(8.0, True, True)
    assert breaker.state(8.0) == "closed"


def test_stale_outcomes_are_ignored():
    breaker = CircuitBreaker(CONSECUTIVE_ONLY)
    in_flight = [breaker.allow(0.0) for _ in range(3)]
    assert all(a.allowed and not a.probe for a in in_flight)
    fail(breaker, 0.5, 5)
    assert breaker.state(0.5) == "open"
    # the three calls admitted while closed end now: they say nothing about the present
    breaker.on_result(1.0, True, False)
    assert breaker.state(1.0) == "open"
    probe = breaker.allow(5.5)
    assert probe.probe
    breaker.on_result(5.6, False, False)  # still a pre-open call: ignored while half-open
    breaker.on_result(5.6, True, False)
    assert breaker.state(5.6) == "half_open"
    assert not breaker.allow(5.6).allowed  # the probe still holds its slot
    breaker.on_result(5.7, True, True)
    assert breaker.state(5.7) == "closed"


def test_lost_probe_frees_its_slot_after_open_for():
    breaker = opened()
    assert breaker.allow(5.0).probe  # never reported
    refused = breaker.allow(7.0)
    assert not refused.allowed
    assert refused.retry_at == 10.0
    assert not breaker.allow(9.99).allowed
    second = breaker.allow(10.0)
    assert second.allowed
    assert second.probe


def test_late_probe_result_after_closing_counts_as_closed_outcome():
    breaker = opened(BreakerPolicy(half_open_probes=2, failure_ratio=None))
    first = breaker.allow(5.0)
    second = breaker.allow(5.0)
    assert first.probe
    assert second.probe
    breaker.on_result(5.1, True, True)
    assert breaker.state(5.1) == "closed"
    breaker.on_result(5.2, False, True)  # the other probe, late: an ordinary failure
    assert breaker.state(5.2) == "closed"
    fail(breaker, 5.3, 4)
    assert breaker.state(5.3) == "open"  # 1 + 4 consecutive failures


# --- property ----------------------------------------------------------------------

configs = st.builds(
    BreakerPolicy,
    failure_threshold=st.integers(1, 6),
    failure_ratio=st.one_of(st.none(), st.floats(0.05, 1.0)),
    window=st.floats(0.5, 20.0),
    min_throughput=st.integers(1, 12),
    open_for=st.floats(0.01, 10.0),
    half_open_probes=st.integers(1, 3),
    close_after=st.integers(1, 3),
)

events = st.lists(
    st.tuples(
        st.sampled_from(["allow", "allow", "ok", "fail", "fail"]),
        st.one_of(st.just(0.0), st.floats(0.0, 0.5), st.floats(0.0, 5.0)),  # time step
        st.integers(0, 10),  # which outstanding admission an outcome belongs to
    ),
    min_size=20,
    max_size=300,
)


@settings(max_examples=300)
@given(configs, st.floats(-1e6, 1e6), events)
def test_random_events_keep_the_breaker_consistent(config: BreakerPolicy, start: float, steps):
    breaker = CircuitBreaker(config)
    outstanding: list[Admission] = []
    now = start
    for kind, dt, pick in steps:
        now += dt
        if kind == "allow":
            admission = breaker.allow(now)
            assert admission.state in ("closed", "open", "half_open")
            if admission.allowed:
                assert admission.retry_at is None
                assert admission.probe == (admission.state == "half_open")
                outstanding.append(admission)
            else:
                assert admission.state != "closed"
                assert not admission.probe
                assert admission.retry_at is not None
                assert admission.retry_at > now
                assert admission.retry_at <= now + config.open_for
        elif outstanding:
            admission = outstanding.pop(pick % len(outstanding))
            breaker.on_result(now, kind == "ok", admission.probe)
        state = breaker.state(now)
        assert state in ("closed", "open", "half_open")
        assert len(breaker._leases) <= config.half_open_probes
        assert breaker._probe_successes < config.close_after
        assert 0 <= breaker._consecutive
        if state == "closed":
            assert breaker._consecutive < config.failure_threshold
        if state == "open":
            assert breaker._open_until > now
