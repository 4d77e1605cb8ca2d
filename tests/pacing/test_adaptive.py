"""AdaptiveRate: CUBIC decrease and recovery in requests/second, floor, ceiling, growth cap."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surefoot import ConfigurationError
from surefoot.pacing import AdaptivePolicy
from surefoot.pacing._adaptive import AdaptiveRate


def busy(ar: AdaptiveRate, start: float, end: float, per_second: float) -> float:
    """Send at ``per_second`` from ``start`` to ``end``; returns the end."""
    step = 1.0 / per_second
    n = int(round((end - start) / step))
    for i in range(n):
        now = start + i * step
        ar.on_send(now)
    return start + n * step


def cubic(w_max: float, c: float, k: float, t: float) -> float:
    return w_max + c * w_max * (t - k) ** 3  # c is relative to w_max


# --- configuration -----------------------------------------------------------------


def test_defaults():
    config = AdaptivePolicy()
    assert (config.initial_rate, config.floor, config.ceiling) == (10.0, 0.5, None)
    assert (config.beta, config.c, config.max_growth) == (0.7, 0.4, 2.0)
    ar = AdaptiveRate(None, 100.0)
    assert ar.rate == 10.0
    assert ar.w_max == 10.0


@pytest.mark.parametrize(
    "changes",
    [
        {"floor": 0.0},
        {"floor": -1.0},
        {"floor": 20.0},  # above initial_rate
        {"ceiling": 5.0},  # below initial_rate
        {"beta": 0.0},
        {"beta": 1.0},
        {"beta": 1.5},
        {"c": 0.0},
        {"c": -0.4},
        {"max_growth": 0.5},
        {"initial_rate": math.inf},
        {"initial_rate": math.nan},
        {"ceiling": math.inf},
        {"c": math.nan},
    ],
)
def test_bad_config(changes: dict[str, float]):
    with pytest.raises(ConfigurationError):
        AdaptivePolicy(**changes)


def test_ceiling_equal_to_initial_is_fine():
    AdaptivePolicy(initial_rate=5.0, floor=5.0, ceiling=5.0)


# --- decrease ----------------------------------------------------------------------


def test_concurrent_throttles_cut_once():
    ar = AdaptiveRate(AdaptivePolicy(), 0.0)
    sent = [0.0, 0.01, 0.02, 0.03, 0.04]  # five requests in flight
    results = [ar.on_throttle(s, 1.0 + i * 0.01) for i, s in enumerate(sent)]
    assert results == [True, False, False, False, False]
    assert ar.rate == pytest.approx(7.0)
    assert ar.w_max == 10.0


def test_throttle_for_request_sent_after_cut_counts():
    ar = AdaptiveRate(AdaptivePolicy(), 0.0)
    assert ar.on_throttle(0.0, 1.0)
    assert ar.on_throttle(1.0, 1.5)  # sent at the cut instant: at the new rate
    assert ar.rate == pytest.approx(10 * 0.7 * 0.7)
    assert ar.w_max == pytest.approx(7.0)
    assert not ar.on_throttle(1.2, 1.6)  # sent before the second cut (1.5)
    assert ar.rate == pytest.approx(4.9)


def test_floor():
    config = AdaptivePolicy(initial_rate=10.0, floor=2.0)
    ar = AdaptiveRate(config, 0.0)
    for i in range(20):
        ar.on_throttle(float(i), float(i))
        assert ar.rate >= 2.0
    assert ar.rate == 2.0
    # cut from the floor: w_max is the floor, the curve starts there (K = 0)
    assert ar.w_max == 2.0
    ar.on_send(19.5)
    ar.on_success(19.5)
    assert ar.rate >= 2.0


def test_floored_cut_recovers_from_the_floor():
    config = AdaptivePolicy(initial_rate=4.0, floor=3.5, beta=0.5)
    ar = AdaptiveRate(config, 0.0)
    ar.on_throttle(0.0, 0.0)
    assert ar.rate == 3.5  # beta * 4 = 2 is below the floor
    # RFC 9438's K keeps W(0) at the actual rate: no jump, no dip.
    ar.on_success(0.0)
    assert ar.rate == 3.5
    ar.on_success(0.1)
    k = ((4.0 - 3.5) / (0.4 * 4.0)) ** (1 / 3)
    assert ar.rate == pytest.approx(cubic(4.0, 0.4, k, 0.1))


# --- recovery ----------------------------------------------------------------------


def test_recovery_follows_the_cubic_curve():
    config = AdaptivePolicy()  # w_max 10, beta 0.7, c 0.4
    ar = AdaptiveRate(config, 0.0)
    busy(ar, 0.0, 3.0, 100.0)  # measured ~100/s: the growth cap (200/s) stays out of the way
    assert ar.on_throttle(3.0, 3.0)
    w_max = ar.w_max  # what slow start had reached
    k = (0.3 / 0.4) ** (1 / 3)  # scale-free: K does not depend on w_max
    samples = []
    t = 0.0
    while t <= 6.0:
        now = 3.0 + t
        for _ in range(math.ceil(ar.rate * 0.05 * 1.5) + 1):  # keep the growth cap away
            ar.on_send(now)
        ar.on_success(now)
        assert ar.rate == pytest.approx(cubic(w_max, 0.4, k, t))
        samples.append((t, ar.rate))
        t = round(t + 0.05, 10)
    # starts at beta * w_max, reaches w_max at t = K
    assert samples[0][1] == pytest.approx(0.7 * w_max)
    at_k = min(samples, key=lambda s: abs(s[0] - k))
    assert at_k[1] == pytest.approx(w_max, rel=0.01)
    # increasing throughout; concave before K (increments shrink), convex after (grow)
    rates = [r for _, r in samples]
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert all(s >= 0 for s in steps)
    times = [s[0] for s in samples]
    before = [s for t, s in zip(times, steps) if t + 0.05 < k]
    after = [s for t, s in zip(times, steps) if t > k]
    assert all(b <= a + 1e-12 for a, b in zip(before, before[1:]))
    assert all(b >= a - 1e-12 for a, b in zip(after, after[1:]))
    # and it probes well beyond w_max
    assert rates[-1] > 2 * w_max


def test_success_never_lowers_the_rate_under_load():
    ar = AdaptiveRate(AdaptivePolicy(), 0.0)
    busy(ar, 0.0, 2.0, 50.0)
    ar.on_throttle(2.0, 2.0)
    last = ar.rate
    for i in range(200):
        now = 2.0 + i * 0.02
        ar.on_send(now)
        ar.on_success(now)
        assert ar.rate >= last * 0.99  # only the growth cap's measurement noise
        last = ar.rate


def test_ceiling():
    config = AdaptivePolicy(initial_rate=10.0, ceiling=12.0)
    ar = AdaptiveRate(config, 0.0)
    for i in range(1000):
        now = i * 0.01
        ar.on_send(now)
        ar.on_success(now)
        assert ar.rate <= 12.0
    assert ar.rate == 12.0


# --- growth cap --------------------------------------------------------------------


def test_growth_is_capped_at_twice_the_measured_send_rate():
    ar = AdaptiveRate(AdaptivePolicy(initial_rate=10.0), 0.0)
    # The cubic curve alone would allow 10 + 0.4 * 30**3 = 10810/s after 30 s.
    for i in range(600):  # 20 requests/second for 30 s
        now = i * 0.05
        ar.on_send(now)
        ar.on_success(now)
        assert ar.rate <= max(10.0, 2.0 * ar.measured_rate(now)) + 1e-9
    assert ar.measured_rate(30.0) == pytest.approx(20.0, rel=0.15)
    assert 35.0 <= ar.rate <= 2 * 20.0 * 1.15


def test_low_traffic_does_not_grow_the_rate():
    ar = AdaptiveRate(AdaptivePolicy(initial_rate=10.0), 0.0)
    for i in range(60):  # 1 request/second for a minute
        ar.on_send(float(i))
        ar.on_success(float(i) + 0.1)
    assert ar.rate == 10.0


def test_no_burst_after_idle():
    ar = AdaptiveRate(AdaptivePolicy(initial_rate=10.0), 0.0)
    end = busy(ar, 0.0, 10.0, 100.0)
    for i in range(100):
        ar.on_success(end - 1 + i * 0.01)
    assert ar.rate > 150.0
    # a minute of silence: the 150+/s rate was never tested since, back to initial_rate
    ar.on_send(end + 60.0)
    assert ar.rate == 10.0


def test_max_growth_is_configurable():
    ar = AdaptiveRate(AdaptivePolicy(initial_rate=1.0, floor=0.5, max_growth=1.5), 0.0)
    for i in range(400):
        now = i * 0.05  # 20/s for 20 s
        ar.on_send(now)
        ar.on_success(now)
        assert ar.rate <= max(1.0, 1.5 * ar.measured_rate(now)) + 1e-9
    assert ar.rate > 25.0


def test_paced_sender_ramps_up_by_doubling():
    # A sender that always has work goes as fast as the rate allows: the cap does not
    # hold it back, it only bounds each step to max_growth x what was sent.
    ar = AdaptiveRate(AdaptivePolicy(initial_rate=10.0, c=100.0), 0.0)
    now = 0.0
    while now < 10.0 and ar.rate <= 500.0:
        ar.on_send(now)
        ar.on_success(now)
        now += 1.0 / ar.rate
    assert ar.rate > 500.0


def test_converges_near_an_unstated_capacity():
    capacity = 50.0
    ar = AdaptiveRate(AdaptivePolicy(initial_rate=10.0), 0.0)
    now, sent, throttles = 0.0, 0, 0
    while now < 120.0:
        ar.on_send(now)
        if ar.rate > capacity:
            throttles += ar.on_throttle(now, now)
        else:
            ar.on_success(now)
        if now >= 60.0:
            sent += 1
        now += 1.0 / ar.rate
    average = sent / 60.0
    assert 0.6 * capacity <= average <= 1.05 * capacity
    assert throttles > 0


# --- property ----------------------------------------------------------------------

configs = st.builds(
    lambda floor, extra, span, beta, c, growth, capped: AdaptivePolicy(
        floor=floor,
        initial_rate=floor + extra,
        ceiling=floor + extra + span if capped else None,
        beta=beta,
        c=c,
        max_growth=growth,
    ),
    st.floats(0.01, 100.0),
    st.floats(0.0, 100.0),
    st.floats(0.0, 1000.0),
    st.floats(0.01, 0.99),
    st.floats(0.001, 100.0),
    st.floats(1.0, 10.0),
    st.booleans(),
)

events = st.lists(
    st.tuples(
        st.sampled_from(["send", "success", "throttle"]),
        st.one_of(st.just(0.0), st.floats(0.0, 0.2), st.floats(0.0, 1e6)),  # time step
        st.one_of(st.floats(0.0, 1.0), st.floats(0.0, 1e3)),  # throttled request's age
    ),
    min_size=10,
    max_size=200,
)


@settings(max_examples=300)
@given(configs, st.floats(-1e6, 1e9), events)
def test_rate_stays_in_bounds(config: AdaptivePolicy, start: float, steps):
    ar = AdaptiveRate(config, start)
    ceiling = config.ceiling if config.ceiling is not None else math.inf
    now = start
    for kind, dt, lag in steps:
        now += dt
        if kind == "send":
            ar.on_send(now)
        elif kind == "success":
            ar.on_success(now)
        else:
            ar.on_throttle(now - lag, now)
        assert math.isfinite(ar.rate)
        assert config.floor <= ar.rate <= ceiling
        assert config.floor <= ar.w_max
