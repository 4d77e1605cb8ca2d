"""RetryPolicy validation, backoff and the per-attempt decision."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surefoot import (
    ConfigurationError,
    DeadlineExceeded,
    FailureKind,
    RetriesExhausted,
    RetryPolicy,
    TransportError,
)
from surefoot._core._policy import (
    DEFAULT_RETRY_STATUSES,
    Decision,
    Failure,
    ResponseInfo,
    Verdict,
    backoff_delay,
    decide,
)
from surefoot.errors import NotRetryable, RetryAfterTooLong

WALL = 1_700_000_000.0


def half():
    return 0.5


def run(
    policy: RetryPolicy,
    outcome: ResponseInfo | Failure,
    *,
    attempt: int = 1,
    idempotent: bool = True,
    replayable: bool = True,
    elapsed: float = 0.0,
    rng=half,
) -> Decision:
    return decide(
        policy,
        outcome,
        attempt=attempt,
        idempotent=idempotent,
        replayable=replayable,
        elapsed=elapsed,
        wall_now=WALL,
        rng=rng,
    )


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -3},
        {"deadline": -1.0},
        {"deadline": 0},
        {"deadline": math.nan},
        {"backoff_initial": -0.1},
        {"backoff_max": -1.0},
        {"backoff_initial": 5.0, "backoff_max": 1.0},
        {"backoff_initial": math.nan},
        {"backoff_multiplier": 0.5},
        {"backoff_multiplier": math.nan},
        {"jitter": "bogus"},
        {"jitter": "FULL"},
        {"retry_after_cap": -1.0},
        {"idempotency_keys": "on"},
        {"on_exhausted": "ignore"},
        {"idempotency_header": ""},
        {"idempotency_header": "Idempotency Key"},
        {"idempotency_header": "X-Key:"},
        {"idempotency_header": "X-Key\r\nX-Evil"},
    ],
)
def test_invalid_configuration(kwargs):
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)


def test_configuration_error_is_value_error():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_valid_configurations():
    RetryPolicy()
    RetryPolicy(deadline=None, retry_after_cap=None)
    RetryPolicy(backoff_initial=0, backoff_max=0, jitter="none")
    RetryPolicy(max_attempts=1)
    assert RetryPolicy.no_retries().max_attempts == 1


def test_policy_is_frozen():
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 10  # type: ignore[misc]


def test_replace():
    policy = RetryPolicy()
    other = policy.replace(max_attempts=7, jitter="none")
    assert other.max_attempts == 7
    assert other.jitter == "none"
    assert policy.max_attempts == 4
    assert policy.jitter == "full"
    assert other.deadline == policy.deadline


def test_replace_validates():
    with pytest.raises(ConfigurationError):
        RetryPolicy().replace(max_attempts=0)


def test_collections_are_normalised():
    policy = RetryPolicy(retry_statuses={503}, idempotent_methods={"get", "Put"})
    assert policy.retry_statuses == frozenset({503})
    assert isinstance(policy.retry_statuses, frozenset)
    assert policy.idempotent_methods == frozenset({"GET", "PUT"})


def test_defaults():
    policy = RetryPolicy()
    assert policy.retry_statuses == frozenset({408, 429, 500, 502, 503, 504})
    assert DEFAULT_RETRY_STATUSES == policy.retry_statuses


# -- backoff --------------------------------------------------------------------------------

unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(
    initial=st.floats(min_value=0.0, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=1000.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    n=st.integers(min_value=1, max_value=2_000),
    r=unit,
)
def test_full_jitter_within_bounds(initial, extra, multiplier, n, r):
    policy = RetryPolicy(
        backoff_initial=initial, backoff_max=initial + extra, backoff_multiplier=multiplier
    )
    delay = backoff_delay(policy, n, lambda: r)
    assert math.isfinite(delay)
    assert delay >= 0
    assert delay <= policy.backoff_max
    try:
        cap = initial * multiplier ** (n - 1)
    except OverflowError:
        cap = math.inf
    assert delay <= min(policy.backoff_max, cap) * (1 + 1e-12)


@given(n=st.integers(min_value=1, max_value=100_000), r=unit)
def test_equal_and_none_jitter_never_above_max(n, r):
    for jitter in ("equal", "none"):
        policy = RetryPolicy(backoff_initial=0.5, backoff_max=30.0, jitter=jitter)
        delay = backoff_delay(policy, n, lambda: r)
        assert 0 <= delay <= 30.0
        cap = min(30.0, 0.5 * 2.0 ** min(n - 1, 1000))
        if jitter == "none":
            assert delay == cap
        else:
            assert cap / 2 <= delay <= cap


def test_backoff_exact_values():
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=30.0, jitter="none")
    assert [backoff_delay(policy, n, half) for n in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
    ]
    full = policy.replace(jitter="full")
    assert backoff_delay(full, 3, lambda: 0.25) == 0.5
    assert backoff_delay(full, 3, lambda: 0.0) == 0.0


@pytest.mark.parametrize("multiplier", [2.0, 2, 10.0, 1.5])
def test_backoff_no_overflow_for_huge_n(multiplier):
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=30.0, backoff_multiplier=multiplier)
    for n in (10_000, 10**6):
        delay = backoff_delay(policy, n, lambda: 0.999)
        assert 0 <= delay <= 30.0
        assert delay == pytest.approx(30.0 * 0.999)


# -- decide: responses ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_default_retry_statuses_are_retried_for_get(status):
    d = run(RetryPolicy(), ResponseInfo(status))
    assert d.verdict is Verdict.RETRY
    assert d.wait == 0.25  # full jitter: 0.5 * rng()
    assert d.error is None


@pytest.mark.parametrize("status", [200, 201, 204, 301, 400, 401, 403, 404, 409, 501])
def test_other_statuses_are_done(status):
    d = run(RetryPolicy(), ResponseInfo(status))
    assert d.verdict is Verdict.DONE
    assert d.error is None


def test_post_503_is_not_retried():
    d = run(RetryPolicy(), ResponseInfo(503), idempotent=False)
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is NotRetryable


def test_post_with_idempotency_key_is_retried():
    d = run(RetryPolicy(), ResponseInfo(503), idempotent=True)
    assert d.verdict is Verdict.RETRY


def test_should_retry_true_retries_400_and_post():
    info = ResponseInfo(400, {"X-Should-Retry": "true"})
    assert run(RetryPolicy(), info).verdict is Verdict.RETRY
    assert run(RetryPolicy(), info, idempotent=False).verdict is Verdict.RETRY
    stripe = ResponseInfo(409, {"Stripe-Should-Retry": " TRUE "})
    assert run(RetryPolicy(), stripe, idempotent=False).verdict is Verdict.RETRY


@pytest.mark.parametrize("header", ["x-should-retry", "X-Should-Retry", "Stripe-Should-Retry"])
def test_should_retry_false_stops_503(header):
    d = run(RetryPolicy(), ResponseInfo(503, {header: "false"}))
    assert d.verdict is Verdict.DONE


def test_should_retry_garbage_is_ignored():
    assert run(RetryPolicy(), ResponseInfo(503, {"x-should-retry": "maybe"})).verdict is (
        Verdict.RETRY
    )
    assert run(RetryPolicy(), ResponseInfo(400, {"x-should-retry": "1"})).verdict is Verdict.DONE


def test_custom_retry_statuses():
    policy = RetryPolicy(retry_statuses={418})
    assert run(policy, ResponseInfo(418)).verdict is Verdict.RETRY
    assert run(policy, ResponseInfo(503)).verdict is Verdict.DONE


# -- decide: transport failures -------------------------------------------------------------


@pytest.mark.parametrize("kind", [FailureKind.CONNECT, FailureKind.POOL_TIMEOUT])
def test_not_sent_failures_retried_even_for_post(kind):
    d = run(RetryPolicy(), Failure(kind), idempotent=False)
    assert d.verdict is Verdict.RETRY
    assert d.wait == 0.25


@pytest.mark.parametrize(
    "kind",
    [
        FailureKind.READ_TIMEOUT,
        FailureKind.RESET,
        FailureKind.TRUNCATED,
        FailureKind.WRITE_TIMEOUT,
    ],
)
def test_sent_failures_not_retried_for_post_without_key(kind):
    d = run(RetryPolicy(), Failure(kind), idempotent=False)
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is TransportError
    assert run(RetryPolicy(), Failure(kind), idempotent=True).verdict is Verdict.RETRY


def test_other_failure_never_retried():
    for idempotent in (True, False):
        d = run(RetryPolicy(), Failure(FailureKind.OTHER), idempotent=idempotent)
        assert d.verdict is Verdict.GIVE_UP
        assert d.error is TransportError


# -- decide: attempts -----------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_no_wait_after_final_attempt(max_attempts):
    policy = RetryPolicy(max_attempts=max_attempts)
    for attempt in range(1, max_attempts):
        assert run(policy, ResponseInfo(503), attempt=attempt).verdict is Verdict.RETRY
    for attempt in (max_attempts, max_attempts + 1):
        d = run(policy, ResponseInfo(503), attempt=attempt)
        assert d.verdict is Verdict.GIVE_UP
        assert d.error is RetriesExhausted
        assert d.wait == 0
        f = run(policy, Failure(FailureKind.CONNECT), attempt=attempt)
        assert f.verdict is Verdict.GIVE_UP
        assert f.error is TransportError
        assert f.wait == 0


# -- decide: Retry-After --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"Retry-After": "7", "retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "7", "retry-after-ms": "junk"}, 7.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"}, 20.0),  # WALL + 20 s
    ],
)
def test_retry_after_honoured_exactly(headers, wait):
    d = run(RetryPolicy(), ResponseInfo(503, headers))
    assert d.verdict is Verdict.RETRY
    assert d.wait == wait


def test_retry_after_ignored_when_disabled():
    d = run(RetryPolicy(respect_retry_after=False), ResponseInfo(503, {"Retry-After": "7"}))
    assert d.verdict is Verdict.RETRY
    assert d.wait == 0.25


def test_invalid_retry_after_falls_back_to_backoff():
    d = run(RetryPolicy(), ResponseInfo(429, {"Retry-After": "-5"}))
    assert d.verdict is Verdict.RETRY
    assert d.wait == 0.25


def test_retry_after_above_cap():
    d = run(RetryPolicy(retry_after_cap=120.0), ResponseInfo(429, {"Retry-After": "121"}))
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is RetryAfterTooLong
    assert d.requested_wait == 121.0
    ok = run(RetryPolicy(retry_after_cap=120.0, deadline=None),
             ResponseInfo(429, {"Retry-After": "120"}))
    assert ok.verdict is Verdict.RETRY
    assert ok.wait == 120.0


def test_retry_after_ms_above_cap():
    d = run(RetryPolicy(retry_after_cap=1.0), ResponseInfo(429, {"retry-after-ms": "1500"}))
    assert d.error is RetryAfterTooLong
    assert d.requested_wait == 1.5


def test_huge_retry_after_is_too_long_without_overflow():
    d = run(RetryPolicy(), ResponseInfo(503, {"Retry-After": "9999999999"}))
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is RetryAfterTooLong
    assert d.requested_wait == 9_999_999_999.0
    d = run(RetryPolicy(), ResponseInfo(503, {"Retry-After": "9" * 60}))
    assert d.error is RetryAfterTooLong
    assert d.requested_wait is not None
    assert math.isfinite(d.requested_wait)


def test_uncapped_huge_retry_after_hits_deadline():
    policy = RetryPolicy(retry_after_cap=None, deadline=60.0)
    d = run(policy, ResponseInfo(503, {"Retry-After": "9999999999"}))
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is DeadlineExceeded


def test_uncapped_without_deadline_waits():
    policy = RetryPolicy(retry_after_cap=None, deadline=None)
    d = run(policy, ResponseInfo(503, {"Retry-After": "3600"}))
    assert d.verdict is Verdict.RETRY
    assert d.wait == 3600.0


# -- decide: deadline -----------------------------------------------------------------------


def test_wait_overrunning_deadline_gives_up():
    policy = RetryPolicy(deadline=10.0)
    d = run(policy, ResponseInfo(503, {"Retry-After": "5"}), elapsed=6.0)
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is DeadlineExceeded
    d = run(policy, ResponseInfo(503, {"Retry-After": "5"}), elapsed=4.0)
    assert d.verdict is Verdict.RETRY
    assert d.wait == 5.0
    # landing exactly on the deadline leaves no time for the attempt
    d = run(policy, ResponseInfo(503, {"Retry-After": "5"}), elapsed=5.0)
    assert d.error is DeadlineExceeded


def test_deadline_with_backoff():
    policy = RetryPolicy(deadline=1.0, jitter="none", backoff_initial=0.5)
    assert run(policy, Failure(FailureKind.CONNECT), elapsed=0.4).verdict is Verdict.RETRY
    d = run(policy, Failure(FailureKind.CONNECT), elapsed=0.6)
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is DeadlineExceeded


@given(
    elapsed=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    deadline=st.one_of(st.none(), st.floats(min_value=1e-3, max_value=1e6)),
    attempt=st.integers(min_value=1, max_value=20),
    max_attempts=st.integers(min_value=1, max_value=10),
    status=st.sampled_from([200, 400, 408, 429, 500, 503]),
    retry_after=st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=10**14).map(str),
        st.sampled_from(["junk", "-1", "Mon, 03 Jun 2030 11:30:12 GMT"]),
    ),
    cap=st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
    kind=st.one_of(st.none(), st.sampled_from(list(FailureKind))),
    idempotent=st.booleans(),
    replayable=st.booleans(),
    r=unit,
)
def test_never_schedules_a_wait_crossing_the_deadline(
    elapsed, deadline, attempt, max_attempts, status, retry_after, cap, kind, idempotent,
    replayable, r,
):
    policy = RetryPolicy(max_attempts=max_attempts, deadline=deadline, retry_after_cap=cap)
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    outcome = Failure(kind) if kind is not None else ResponseInfo(status, headers)
    d = run(
        policy, outcome, attempt=attempt, idempotent=idempotent, replayable=replayable,
        elapsed=elapsed, rng=lambda: r,
    )
    assert isinstance(d.verdict, Verdict)
    if d.verdict is Verdict.RETRY:
        assert attempt < max_attempts
        assert math.isfinite(d.wait)
        assert d.wait >= 0
        if deadline is not None:
            assert elapsed + d.wait < deadline
        if cap is not None and retry_after is not None:
            assert d.wait <= max(cap, policy.backoff_max)
    elif d.verdict is Verdict.GIVE_UP:
        assert d.error is not None
    else:
        assert kind is None


# -- decide: non-replayable bodies ----------------------------------------------------------


def test_non_replayable_body_not_retried_after_sending():
    d = run(RetryPolicy(), ResponseInfo(503), replayable=False)
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is NotRetryable
    d = run(RetryPolicy(), Failure(FailureKind.READ_TIMEOUT), replayable=False)
    assert d.verdict is Verdict.GIVE_UP
    assert d.error is TransportError


def test_non_replayable_body_retried_when_nothing_was_sent():
    d = run(RetryPolicy(), Failure(FailureKind.CONNECT), replayable=False)
    assert d.verdict is Verdict.RETRY


def test_non_replayable_success_is_done():
    assert run(RetryPolicy(), ResponseInfo(200), replayable=False).verdict is Verdict.DONE


def test_response_info_header_lookup_case_insensitive():
    info = ResponseInfo(503, {"Retry-After": "3"})
    assert info.header("retry-after") == "3"
    assert info.header("RETRY-AFTER") == "3"
    assert info.header("x-missing") is None
