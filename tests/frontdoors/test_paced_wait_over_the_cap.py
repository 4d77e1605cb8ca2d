"""``retry_after_cap`` bounds the pacing wait on every client (requests, httpx sync,
httpx async), against the sandbox: after a 429 whose ``Retry-After`` is above the cap
(which fails fast), the next request to the held host fails fast too, with the same
typed error, instead of sleeping out the server's hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import surefoot
from adapters import KINDS, Api
from surefoot import PacingPolicy, RetryPolicy
from surefoot.errors import RetryAfterTooLong

#: No deadline: only the cap (120 s by default) stands between a caller and the hold.
NO_DEADLINE = RetryPolicy(deadline=None, max_attempts=3, backoff_initial=0.01,
                          backoff_max=0.05)


def quiet(event: surefoot.Event) -> None:
    return None


@pytest.fixture(params=KINDS)
def make_api(request: pytest.FixtureRequest, sandbox: Any) -> Iterator[Callable[..., Api]]:
    """``make(retry=...)``: a client of this test's kind on the sandbox, pacing without a
    retry budget or adaptive rate (only the server's holds pace it); closed afterwards."""
    made: list[Api] = []

    def make(retry: RetryPolicy = NO_DEADLINE) -> Api:
        client = Api(str(request.param), sandbox.url, hook=quiet, retry=retry,
                     pacing=PacingPolicy(budget=None, adaptive=None))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.mark.parametrize("retry_after", ["300", "3000"])
def test_the_request_after_a_retry_after_above_the_cap_does_not_wait_out_the_hold(
    make_api, sandbox, no_wait, retry_after
):
    api = make_api()
    with pytest.raises(RetryAfterTooLong) as first:
        api.get("/status/429", params={"retry_after": retry_after})
    assert first.value.requested_wait == float(retry_after)
    with pytest.raises(RetryAfterTooLong) as second:
        api.get("/get")  # same host: held by the pacer for `retry_after` seconds
    assert no_wait.slept == []
    assert second.value.requested_wait == pytest.approx(float(retry_after), abs=1.0)
    assert second.value.history == ()
    assert "/get" not in sandbox.stats()["endpoints"]  # never sent


def test_a_retry_after_within_the_cap_still_holds_the_next_request(make_api, no_wait):
    api = make_api(NO_DEADLINE.replace(max_attempts=1))
    assert api.get("/status/429", params={"retry_after": "100"}).status_code == 429
    assert no_wait.slept == []
    assert api.get("/get").status_code == 200
    assert sum(no_wait.slept) == pytest.approx(100.0, abs=1.0)


def test_callers_that_give_up_waiting_do_not_lock_the_host_out():
    """Callers that refuse their slot (over the cap) give it back: found by bench/soak.py,
    where each refusal pushed the schedule one more slot ahead, so a busy client locked
    itself out for minutes (a lone call 1 s later was told to wait 163 s)."""
    import threading
    import time

    from surefoot.sandbox import Sandbox

    policy = RetryPolicy(retry_after_cap=0.5, deadline=5.0, on_exhausted="raise")
    with Sandbox(rate=10, burst=1) as sb, surefoot.Client(sb.url, retry=policy,
                                                          hook=quiet) as api:
        api.get("/limited/warm")  # the quota (10/s) is learned from its headers
        stop = time.monotonic() + 1.5
        refused = [0]

        def hammer() -> None:
            while time.monotonic() < stop:
                try:
                    api.get("/limited/x")
                except RetryAfterTooLong:
                    refused[0] += 1

        threads = [threading.Thread(target=hammer) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert refused[0] > 50  # they did refuse their slots
        # (A 429 near the end may hold the host for its whole-second Retry-After; without
        # the slots given back, the schedule was 15-160 s ahead here.)
        time.sleep(1.5)
        assert api.get("/limited/lone").status_code == 200


def test_a_released_slot_goes_back_to_the_schedule():
    from surefoot.pacing._gcra import Quota, RateLimiter

    limiter = RateLimiter([Quota.per_second(10)])
    slots = [limiter.reserve("p", 0.0) for _ in range(5)]
    assert [s.at for s in slots] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    for held in slots[2:]:
        limiter.release(held, now=0.05)  # three callers give up
    assert limiter.reserve("p", 0.05).at == pytest.approx(0.2)  # not 0.5
    # a slot whose time has come gives nothing back
    limiter.release(slots[0], now=0.05)
    assert limiter.reserve("p", 0.05).at == pytest.approx(0.3)
