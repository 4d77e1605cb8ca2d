"""``retry_after_cap`` bounds the wait for a paced slot too, not only a retry's wait.

A 429 with ``Retry-After: 300`` (above the cap of 120 s) fails fast, and the pacer holds
the partition for the 300 s the server asked. The next request must not then sleep
those 300 s in the pacing gate: it fails fast with the same ``RetryAfterTooLong`` the
retry path raises. The flow is driven by hand on a fake clock, with a real pacer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from surefoot import Pacer, PacingPolicy, RetryPolicy
from surefoot._core._effects import Send, Sleep
from surefoot._core._pipeline import FlowResult, RequestView, request_flow
from surefoot._core._policy import ResponseInfo
from surefoot.errors import DeadlineExceeded, RetryAfterTooLong
from surefoot.pacing import Quota
from surefoot.testing import FakeClock

T0 = 1_700_000_000.0
URL = "https://api.example.com/v1/items"
NO_DEADLINE = RetryPolicy(deadline=None, max_attempts=1)  # retry_after_cap: 120 s


@dataclasses.dataclass
class Run:
    result: FlowResult
    sleeps: list[float]
    sends: int


def call(
    pacer: Pacer,
    clock: FakeClock,
    responses: list[ResponseInfo],
    *,
    policy: RetryPolicy = NO_DEADLINE,
    while_asleep: Callable[[], None] | None = None,
) -> Run:
    """One logical request through the flow: every effect carried out as a driver would
    (the pacer's on the fake clock), each attempt answered from ``responses``;
    ``while_asleep`` runs after the first sleep (another caller's answer meanwhile)."""
    flow = request_flow(RequestView("GET", URL), policy=policy, auth=None, clock=clock,
                        hook=lambda event: None, rng=lambda: 0.5, pacer=pacer)
    script = list(responses)
    sleeps: list[float] = []
    sends = 0
    value: Any = None
    while True:
        try:
            effect = flow.send(value)
        except StopIteration as stop:
            return Run(stop.value, sleeps, sends)
        if isinstance(effect, Sleep):
            sleeps.append(effect.seconds)
            clock.sleep(effect.seconds)
            if while_asleep is not None and len(sleeps) == 1:
                while_asleep()
            value = None
        elif isinstance(effect, Send):
            sends += 1
            clock.advance(0.01)
            value = script.pop(0)
        else:
            value = effect.run(clock)


def throttled(**headers: str) -> ResponseInfo:
    return ResponseInfo(429, {k.replace("_", "-"): v for k, v in headers.items()})


OK = ResponseInfo(200, {})


def fresh() -> tuple[Pacer, FakeClock]:
    return Pacer(PacingPolicy(budget=None, adaptive=None)), FakeClock(start_wall=T0)


@pytest.mark.parametrize("retry_after", ["300", "3000"])
def test_the_call_after_a_retry_after_above_the_cap_fails_fast_too(retry_after):
    pacer, clock = fresh()
    first = call(pacer, clock, [throttled(Retry_After=retry_after)],
                 policy=NO_DEADLINE.replace(max_attempts=4))
    assert isinstance(first.result.error, RetryAfterTooLong)  # the retry path's rule...
    assert first.sleeps == []
    start = clock.monotonic()
    second = call(pacer, clock, [OK])  # ...and the same rule for the paced slot
    assert second.sleeps == []
    assert second.sends == 0
    assert clock.monotonic() == start
    error = second.result.error
    assert isinstance(error, RetryAfterTooLong)
    assert error.requested_wait == pytest.approx(float(retry_after), abs=0.1)
    assert "above the cap of 120 s" in str(error)
    assert error.history == ()


@pytest.mark.parametrize(
    "limit",
    [
        {},  # no rate known: the partition is held until the reset (max_pause, 1 h)
        {"X-RateLimit-Limit": "100"},  # 100 per ~28 h: held for one slot (1000 s)
    ],
)
def test_a_quota_reset_far_ahead_with_none_remaining_fails_fast(limit):
    pacer, clock = fresh()
    reset = str(int(T0) + 100_000)  # epoch seconds, ~28 h away
    first = call(pacer, clock, [ResponseInfo(200, {
        **limit, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset,
    })])
    assert first.result.error is None
    second = call(pacer, clock, [OK])
    assert second.sleeps == []
    assert second.sends == 0
    error = second.result.error
    assert isinstance(error, RetryAfterTooLong)
    assert error.requested_wait > 120


def test_a_hold_within_the_cap_is_still_waited():
    pacer, clock = fresh()
    call(pacer, clock, [throttled(Retry_After="100")])  # one attempt: the 429 returned
    second = call(pacer, clock, [OK])
    assert second.result.error is None
    assert second.sends == 1
    assert sum(second.sleeps) == pytest.approx(100.0, abs=0.1)


def test_no_cap_and_no_deadline_wait_as_long_as_the_server_says():
    pacer, clock = fresh()
    policy = NO_DEADLINE.replace(retry_after_cap=None)
    call(pacer, clock, [throttled(Retry_After="3000")], policy=policy)
    second = call(pacer, clock, [OK], policy=policy)
    assert second.result.error is None
    assert sum(second.sleeps) == pytest.approx(3000.0, abs=0.1)


def test_the_cap_bounds_the_whole_wait_for_a_slot_across_re_bookings():
    # A waiter within the cap whose slot is voided by a new hold while it sleeps books
    # again: 100 s waited plus 100 s more is 200 s for one slot, above the cap.
    pacer, clock = fresh()
    partition = pacer.partition_of(URL, {})
    call(pacer, clock, [throttled(Retry_After="100")])

    def another_callers_429() -> None:
        now = clock.monotonic()
        pacer.report(partition, throttled(Retry_After="100"), sent_at=now - 0.01, now=now,
                     wall_now=clock.wall(), probe=False)

    second = call(pacer, clock, [OK], while_asleep=another_callers_429)
    assert second.sleeps == [pytest.approx(100.0, abs=0.1)]
    assert second.sends == 0
    error = second.result.error
    assert isinstance(error, RetryAfterTooLong)
    assert error.requested_wait == pytest.approx(200.0, abs=0.1)


def test_the_deadline_still_applies_below_the_cap():
    pacer, clock = fresh()
    policy = RetryPolicy(deadline=10.0, max_attempts=1)
    call(pacer, clock, [throttled(Retry_After="60")], policy=policy)
    second = call(pacer, clock, [OK], policy=policy)
    assert isinstance(second.result.error, DeadlineExceeded)
    assert second.sleeps == []


def test_ordinary_pacing_within_the_cap_is_unchanged():
    pacer = Pacer(PacingPolicy(quotas=(Quota.per_second(10),), budget=None, adaptive=None))
    clock = FakeClock(start_wall=T0)
    runs = [call(pacer, clock, [OK], policy=NO_DEADLINE.replace(retry_after_cap=1.0))
            for _ in range(5)]
    assert all(run.result.error is None and run.sends == 1 for run in runs)
    assert sum(sum(run.sleeps) for run in runs) == pytest.approx(0.4 - 0.04, abs=1e-6)
