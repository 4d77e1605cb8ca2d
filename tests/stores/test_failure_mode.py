"""FailureMode: one "FAILING OPEN" and one "available again" per outage, however the
backend flaps while it comes back; the backend skipped for RETRY_BACKEND_AFTER after
every failure."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest

from surefoot import PacingPolicy
from surefoot.errors import StoreUnavailable
from surefoot.pacing import Quota
from surefoot.stores import RedisStore, _failure
from surefoot.stores._failure import RETRY_BACKEND_AFTER, FailureMode


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(mode: FailureMode, clock: Clock, at: float) -> None:
    clock.now = at
    mode.failed(StoreUnavailable("down"), "reserve")


def ok(mode: FailureMode, clock: Clock, at: float) -> None:
    clock.now = at
    mode.succeeded()


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The INFO-and-above records, as "open" and "back"."""
    kinds = []
    for record in caplog.records:
        message = record.getMessage()
        if record.levelno < logging.INFO:
            continue
        kinds.append("open" if "FAILING OPEN" in message
                     else "back" if "available again" in message else message)
    return kinds


@pytest.fixture
def mode(caplog: pytest.LogCaptureFixture) -> tuple[FailureMode, Clock]:
    caplog.set_level(logging.DEBUG, logger="surefoot")
    clock = Clock()
    return FailureMode("open", "Test store", clock=clock), clock


def test_a_backend_flapping_as_it_comes_back_is_one_outage(mode, caplog):
    failure, clock = mode
    t = clock.now
    fail(failure, clock, t)
    fail(failure, clock, t + 1.2)  # still down
    # back, then failing and answering in turn (a restarted Redis' stale connections)
    for step in range(6):
        ok(failure, clock, t + 3.0 + step)
        fail(failure, clock, t + 3.1 + step)
    assert logged(caplog) == ["open", "back"]
    # after it has answered _failure.HEALTHY_FOR seconds without a failure, the outage is over
    end = t + 10.0
    ok(failure, clock, end)
    ok(failure, clock, end + _failure.HEALTHY_FOR)
    assert logged(caplog) == ["open", "back"]
    fail(failure, clock, end + _failure.HEALTHY_FOR + 1.0)  # a new outage
    ok(failure, clock, end + _failure.HEALTHY_FOR + 3.0)
    assert logged(caplog) == ["open", "back", "open", "back"]


def test_a_new_failure_after_a_long_healthy_spell_is_a_new_outage_without_a_success_at_its_end(
    mode, caplog
):
    failure, clock = mode
    fail(failure, clock, 1000.0)
    ok(failure, clock, 1002.0)
    # no call for a while (nothing closed the outage), then a failure
    fail(failure, clock, 1002.0 + _failure.HEALTHY_FOR + 0.5)
    assert logged(caplog) == ["open", "back", "open"]


def test_failing_again_for_good_after_available_again_is_logged(mode, caplog):
    """Said to be back, it fails again and answers nothing for _failure.HEALTHY_FOR seconds: the
    last word is not left at "available again"."""
    failure, clock = mode
    fail(failure, clock, 1000.0)
    ok(failure, clock, 1001.5)
    fail(failure, clock, 1001.6)  # a flap: part of the outage
    for k in range(1, 8):
        fail(failure, clock, 1001.6 + k * 1.1)
    assert logged(caplog) == ["open", "back", "open"]


def test_the_backend_is_skipped_for_a_while_after_every_failure(mode):
    failure, clock = mode
    assert not failure.skip_backend()
    fail(failure, clock, 1000.0)
    clock.now = 1000.0 + RETRY_BACKEND_AFTER - 0.01
    assert failure.skip_backend()
    clock.now = 1000.0 + RETRY_BACKEND_AFTER
    assert not failure.skip_backend()
    ok(failure, clock, clock.now)
    fail(failure, clock, clock.now + 0.1)  # a flap: skipped again all the same
    assert failure.skip_backend()


def test_guard_runs_the_local_operation_while_skipping(mode):
    failure, clock = mode
    calls = []

    def backend() -> str:
        calls.append("backend")
        raise StoreUnavailable("down")

    assert failure.guard("op", backend, lambda: "local") == "local"
    assert failure.guard("op", backend, lambda: "local") == "local"
    assert calls == ["backend"]  # the second was not tried
    clock.now += RETRY_BACKEND_AFTER
    assert failure.guard("op", lambda: "backend", lambda: "local") == "backend"


def test_one_call_tries_a_down_backend_again_while_the_others_go_on_locally(mode):
    """A locked SQLite file makes a call wait its whole busy timeout: when the time
    comes to try the backend again, one call does, not every thread at once."""
    failure, clock = mode
    fail(failure, clock, 1000.0)
    clock.now = 1000.0 + RETRY_BACKEND_AFTER
    during = []

    def probe() -> str:
        during.append(failure.guard("op", lambda: "backend", lambda: "local"))
        clock.now += RETRY_BACKEND_AFTER  # still no answer a while later: one more try
        during.append(failure.guard("op", lambda: "backend", lambda: "local"))
        return "backend"

    assert failure.guard("op", probe, lambda: "local") == "backend"
    assert during == ["local", "backend"]
    # it answered: every call goes to the backend again
    assert failure.guard("op", lambda: "backend", lambda: "local") == "backend"


def test_fail_closed_raises_and_logs_nothing(caplog):
    failure = FailureMode("closed", "Test store")
    with pytest.raises(StoreUnavailable):
        failure.failed(StoreUnavailable("down"), "reserve")
    assert not caplog.records


# -- a real Redis, flapping as it comes back ------------------------------------------------


def test_redis_flapping_after_a_restart_logs_one_outage(
    redis_server: Any, redis_url: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis is killed, restarted, and for a while one call in three fails (stale pooled
    connections, calls cut short by their deadline on a loaded host): one "FAILING
    OPEN" and one "available again" all the same."""
    from surefoot.stores._redis._connection import RedisConnection

    monkeypatch.setattr(_failure, "RETRY_BACKEND_AFTER", 0.02)
    store = RedisStore(redis_url, on_failure="open", timeout=0.3)
    state = store.pacer_state(PacingPolicy(quotas=(Quota.per_second(1000),), budget=None),
                              namespace=uuid.uuid4().hex)

    def reserve_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            state.reserve("p", None, now=time.monotonic(), adaptive=False)
            time.sleep(0.005)

    reserve_for(0.1)
    real_run = RedisConnection.run
    calls = iter(range(1_000_000))

    def flapping(self: Any, *args: Any) -> Any:
        if next(calls) % 3 == 2:
            raise StoreUnavailable("Redis is unavailable: ConnectionError")
        return real_run(self, *args)

    with caplog.at_level(logging.INFO, logger="surefoot"):
        redis_server.kill()
        reserve_for(0.2)
        redis_server.start()
        monkeypatch.setattr(RedisConnection, "run", flapping)
        reserve_for(0.5)
        monkeypatch.setattr(RedisConnection, "run", real_run)
        reserve_for(0.2)
    assert logged(caplog) == ["open", "back"]
    store.close()


def test_a_busy_call_alone_goes_local_and_the_store_is_not_taken_for_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """StoreBusy (queued behind the process's other calls on a key): the backend
    answers, so failing open only that call runs on local state, with nothing logged
    above DEBUG; the next call goes to the backend
    (a fleet whose processes each took Redis for down for a second at once paced
    unshared together: 31 % of 429s at R=150 over 100 processes). Failing closed, it
    is raised."""
    from surefoot.stores._failure import StoreBusy

    caplog.set_level(logging.DEBUG, logger="surefoot")
    clock = Clock()
    mode = FailureMode("open", "Redis store", clock=clock)

    def busy() -> str:
        raise StoreBusy("queued too long")

    assert mode.guard("gate", busy, lambda: "local") == "local"
    assert not mode.skip_backend()
    assert mode.guard("gate", lambda: "backend", lambda: "local") == "backend"
    assert logged(caplog) == []
    closed = FailureMode("closed", "Redis store", clock=clock)
    with pytest.raises(StoreUnavailable, match="queued too long"):
        closed.guard("gate", busy, lambda: "local")
