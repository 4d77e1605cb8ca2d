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
from surefoot.stores._redis._pacing import FRESH

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
        for _ in range(n):
            assert api.get("/limited/rt", params={"dialect": "ietf"}).status_code == 200
        for _ in range(n):
            assert api.get("/protected").status_code == 200
        calls = _work(nodes) - before
    store.close()
    # One per attempt (2n attempts: the second partition is the same host), and a few
    # for the retry budget's deposits, added to the shared budget every few seconds.
    assert 2 * n <= calls <= 2 * n + 4, calls


def test_a_waiter_woken_at_its_slot_needs_no_call_while_the_generation_is_fresh(
    server: tuple[str, list[Any]],
) -> None:
    url, nodes = server
    store = RedisStore(url, prefix=f"rt{time.monotonic_ns()}:")
    policy = PacingPolicy(quotas=(Quota.per_second(20),), budget=None,
                          breaker=BreakerPolicy())
    pacer = Pacer(policy, store=store)
    now = time.monotonic()
    pacer.gate("p", arrival=True, now=now)  # the first one loads the whole state
    reservation, admission = pacer.gate("p", arrival=True, now=time.monotonic())
    assert admission is not None  # a quiet breaker: admitted too
    assert admission.allowed
    before = _work(nodes)
    # What the pipeline does when the slot comes: is it still valid? admitted?
    assert pacer.reserve("p", reservation, now=time.monotonic()) is reservation
    assert pacer.admit("p", now=time.monotonic()).allowed
    assert _work(nodes) == before
    time.sleep(FRESH + 0.05)  # not seen for a while: one call to look
    assert pacer.reserve("p", reservation, now=time.monotonic()) is reservation
    assert _work(nodes) == before + 1
    store.close()
