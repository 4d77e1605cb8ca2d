"""Redis round trips per attempt (issue 16), counted by the server (``INFO commandstats``)
on a real Redis and a real Redis Cluster: one script call per attempt on the happy path
(pacing, breaker and the request's arrival in one), none for a cached token that is not
near expiry; what the answers showed rides on the next call.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import surefoot
from surefoot import BearerAuth, PacingPolicy
from surefoot.pacing import BreakerPolicy, Pacer, Quota
from surefoot.stores import RedisStore

#: The commands a client sends that carry the store's work: every operation of the
#: store is one script call (the commands a script runs are counted too, by name, in
#: ``commandstats``: they are not round trips), and a WAIT after a durable write.
_ROUND_TRIPS = {"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "script", "wait"}


@pytest.fixture(params=["redis", "redis-cluster"])
def server(request: Any) -> tuple[str, list[Any]]:
    """The store's URL and the servers that count its commands."""
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        return request.getfixturevalue("redis_url"), [redis_server]
    cluster = request.getfixturevalue("redis_cluster")
    return request.getfixturevalue("redis_cluster_url"), list(cluster.nodes)


def _work(nodes: list[Any]) -> int:
    """Round trips so far to the primaries (a replica runs its primary's writes)."""
    total = 0
    for node in nodes:
        if "role:master" not in node.command("INFO", "replication"):
            continue
        for line in node.command("INFO", "commandstats").splitlines():
            if not line.startswith("cmdstat_"):
                continue
            name, _, rest = line.partition(":")
            if name.removeprefix("cmdstat_").split("|")[0] not in _ROUND_TRIPS:
                continue
            total += int(rest.split("calls=")[1].split(",")[0])
    return total


def test_one_round_trip_per_attempt_and_none_for_a_cached_token(
    sandbox: Any, server: tuple[str, list[Any]]
) -> None:
    url, nodes = server
    store = RedisStore(url, prefix=f"rt{time.monotonic_ns()}:")
    pacer = Pacer(PacingPolicy(), store=store)
    auth = BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret", store=store
    )
    with surefoot.Client(sandbox.url, pacing=pacer, auth=auth) as api:
        for _ in range(5):  # the quota is learned from the headers, the token fetched
            assert api.get("/limited/rt", params={"dialect": "ietf"}).status_code == 200
            assert api.get("/protected").status_code == 200
        time.sleep(0.3)  # (the sandbox's 50/s: no 429 below)
        before = _work(nodes)
        n = 40
        # (spaced by more than the quota's interval: an attempt that waits for its slot
        # asks once more whether it stands, see the next test)
        for _ in range(n):
            assert api.get("/limited/rt", params={"dialect": "ietf"}).status_code == 200
            time.sleep(0.03)
        for _ in range(n):
            assert api.get("/protected").status_code == 200
            time.sleep(0.03)
        calls = _work(nodes) - before
    store.close()
    # One per attempt (2n attempts: the second partition is the same host), and a few
    # for the retry budget's deposits, added to the shared budget every few seconds.
    assert 2 * n <= calls <= 2 * n + 4, calls


def test_a_waiter_asks_whether_its_slot_stands_and_a_pause_elsewhere_voids_it(
    server: tuple[str, list[Any]],
) -> None:
    """A waiter woken at its slot asks once whether the slot stands, however recently
    the process saw the partition (the next waiter used to go unasked for FRESH
    seconds: a pause elsewhere in between restarted the schedule, and the fleet's
    waiters sent beside it, drawing more 429s, each a new pause: 27 % of 429s at
    R=150 over 100 processes); a quiet breaker still admits without a call."""
    from surefoot.pacing._config import Report

    url, nodes = server
    prefix = f"rt{time.monotonic_ns()}:"
    policy = PacingPolicy(quotas=(Quota.per_second(20),), budget=None,
                          breaker=BreakerPolicy())
    stores = [RedisStore(url, prefix=prefix) for _ in range(2)]
    pacer = Pacer(policy, store=stores[0])
    elsewhere = stores[1].pacer_state(policy)
    pacer.gate("p", arrival=True, now=time.monotonic())  # the first one loads the whole state
    reservation, admission = pacer.gate("p", arrival=True, now=time.monotonic())
    assert admission is not None  # a quiet breaker: admitted too
    assert admission.allowed
    before = _work(nodes)
    # What the pipeline does when the slot comes: does it stand? admitted?
    assert pacer.reserve("p", reservation, now=time.monotonic()) is reservation
    assert pacer.admit("p", now=time.monotonic()).allowed
    assert _work(nodes) == before + 1  # the one question, no call to admit
    # A pause elsewhere, moments after this process saw the partition: the slot is void.
    elsewhere.report("p", Report(None, False, pause=1.0), now=time.monotonic())
    asked = time.monotonic()
    again = pacer.reserve("p", reservation, now=asked)
    assert again is not reservation
    assert again.generation != reservation.generation
    assert again.at >= asked + 0.9  # after the pause
    for store in stores:
        store.close()


def test_a_slot_is_never_early_when_the_calls_before_it_took_time(redis_url, monkeypatch):
    """A gate that first asks the gate script (no schedule yet) and then loads the whole
    state books on Redis' clock at the load: moved onto the caller's clock, the slot is
    not before the load, however long the calls before it took (it was: a fleet's
    waiters sent early by that much, and a 4 x 16 fleet drew 12 % of 429s)."""
    from surefoot.stores._redis._connection import RedisConnection

    real_run = RedisConnection.run

    def slow(self, name, source, keys, args):
        if name == "pacing_gate":
            time.sleep(0.2)
        return real_run(self, name, source, keys, args)

    monkeypatch.setattr(RedisConnection, "run", slow)
    store = RedisStore(redis_url, prefix=f"rt{time.monotonic_ns()}:")
    state = store.pacer_state(PacingPolicy(quotas=(Quota.per_second(10),), budget=None))
    before = time.monotonic()
    reservation, _ = state.gate("p", arrival=True, now=before, adaptive=False)
    assert reservation.at >= before + 0.2 - 0.01
    store.close()


def test_a_shared_state_without_a_gate_is_told_when_each_call_starts():
    """Pacer.gate on a state without ``gate`` (SQLite) makes three calls: each is told
    the time it starts at, not the time the first one did."""
    from surefoot.pacing._gcra import Reservation

    seen = []

    class Slow:
        does_io = True

        def on_request(self, partition, *, now):
            seen.append(("on_request", now))
            time.sleep(0.1)

        def reserve(self, partition, previous, *, now, adaptive):
            seen.append(("reserve", now))
            return Reservation(partition, now, 1)

        def admit(self, partition, *, now):
            from surefoot.pacing._breaker import Admission

            seen.append(("admit", now))
            return Admission(allowed=True, state="closed", probe=False, retry_at=None)

        def try_retry(self, *, now):
            return True

        def report(self, partition, report, *, now):
            pass

    pacer = Pacer(PacingPolicy(breaker=BreakerPolicy()), state=Slow())
    pacer.gate("p", arrival=True, now=100.0)
    (_, first), (_, booked), (_, admitted) = seen
    assert first == 100.0
    assert booked >= 100.1
    assert admitted >= booked


def test_the_budget_deposits_of_a_process_reach_the_fleet_in_one_call(redis_url, monkeypatch):
    """Deposits counted in a process are added to the shared budget by one script call,
    and another process's retries are paid from them, one script call each (no
    compare-and-set: a fleet retrying at once does not contend)."""
    from surefoot.pacing import RetryBudgetPolicy
    from surefoot.pacing._config import Report
    from surefoot.stores._redis import _pacing

    monkeypatch.setattr(_pacing, "BUDGET_FLUSH", 0.0)
    prefix = f"rt{time.monotonic_ns()}:"
    policy = PacingPolicy(quotas=(Quota.per_second(1000),),
                          budget=RetryBudgetPolicy(ratio=0.5, min_retries_per_second=0.0))
    first = RedisStore(redis_url, prefix=prefix).pacer_state(policy)
    second = RedisStore(redis_url, prefix=prefix).pacer_state(policy)
    for _ in range(4):
        first.gate("p", arrival=True, now=time.monotonic(), adaptive=False)
    from surefoot.stores._redis._connection import RedisConnection

    calls = []
    real_run = RedisConnection.run

    def run(self, name, *rest):
        calls.append(name)
        return real_run(self, name, *rest)

    monkeypatch.setattr(RedisConnection, "run", run)
    first.report("p", Report(None, False, tighten=((5, 1.0),)), now=time.monotonic())
    assert "pacing_budget" in calls
    calls.clear()
    # 4 requests x 0.5 = 2 retries, spent by the other process
    assert second.try_retry(now=time.monotonic())
    assert second.try_retry(now=time.monotonic())
    assert not second.try_retry(now=time.monotonic())
    # one script call per spend, never a load and compare-and-set
    assert calls == ["pacing_budget"] * 3


def test_a_paced_release_is_booked_by_the_gate_and_renewed_by_one_caller(
    redis_url, monkeypatch
):
    """A paced release after a pause (its spacing may speed up with demand) stays on the
    one-call path: its schedule holds SCHEDULE_DRIFT seconds; the first gate call after
    that renews it (a whole load and write) while the others go on booking from it (a
    fleet of 100 processes all loaded the whole state at once, every 0.25 s)."""
    from surefoot.pacing._config import Report
    from surefoot.pacing._gcra import SCHEDULE_DRIFT
    from surefoot.stores._redis import _pacing
    from surefoot.stores._redis._connection import RedisConnection

    monkeypatch.setattr(_pacing, "_RENEW_LEASE", 1.0)  # (a loaded machine's calls are slow)
    prefix = f"rt{time.monotonic_ns()}:"
    policy = PacingPolicy(quotas=(Quota.per_second(50),), budget=None)
    stores = [RedisStore(redis_url, prefix=prefix) for _ in range(2)]
    first, second = (s.pacer_state(policy) for s in stores)
    for _ in range(20):  # some demand, for the release rate
        first.gate("p", arrival=True, now=time.monotonic(), adaptive=False)
    first.report("p", Report(None, False, pause=1.0), now=time.monotonic())
    conn = RedisConnection(redis_url)
    key = first._key("p")
    fields = {k.decode(): v.decode() for k, v in conn.client.hgetall(key).items()}
    assert fields["fx"]  # a paced release, in the gate's schedule
    assert "recovery," in fields["fq"]
    assert float(fields["fu"]) > 0

    calls: list[str] = []
    real_run = RedisConnection.run

    def run(self, name, *rest):
        calls.append(name)
        return real_run(self, name, *rest)

    monkeypatch.setattr(RedisConnection, "run", run)
    slots = [first.gate("p", arrival=True, now=time.monotonic(), adaptive=False)[0].at
             for _ in range(5)]
    assert calls == ["pacing_gate"] * 5  # booked by the script, release and all
    assert min(b - a for a, b in zip(slots, slots[1:], strict=False)) > 0.015
    time.sleep(SCHEDULE_DRIFT + 0.05)  # due for renewal
    calls.clear()
    # the first call after that holds the renewal's lease (here it does not go on
    # to renew: as if it were slow) ...
    assert second._gate_call("p", "new", arrival=False, now=time.monotonic(),
                             anchor=time.monotonic()) is None
    # ... and the others book from the schedule meanwhile
    first.gate("p", arrival=True, now=time.monotonic(), adaptive=False)
    assert calls == ["pacing_gate", "pacing_gate"]
    time.sleep(_pacing._RENEW_LEASE + 0.05)  # the lease ran out: the next one renews
    calls.clear()
    first.gate("p", arrival=True, now=time.monotonic(), adaptive=False)
    assert calls == ["pacing_gate", "pacing_load", "pacing_save", "pacing_gate"]
    calls.clear()
    second.gate("p", arrival=True, now=time.monotonic(), adaptive=False)
    assert calls == ["pacing_gate"]
    monkeypatch.setattr(RedisConnection, "run", real_run)
    renewed = {k.decode(): v.decode() for k, v in conn.client.hgetall(key).items()}
    assert "fl" not in renewed  # the lease ends with the renewal
    assert float(renewed["fu"]) > float(fields["fu"])
    conn.close()
    for s in stores:
        s.close()
