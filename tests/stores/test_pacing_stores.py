"""Pacing state on every store: one conformance suite over memory, SQLite and Redis.

The shared backends keep their own clock (Unix time for SQLite, Redis ``TIME``), so
these cases run in real time with short intervals and generous tolerances; the exact
arithmetic is covered on the pure core in test_ratelimit.py / test_pacer.py.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import uuid

import pytest

from surefoot import Pacer, PacingPolicy
from surefoot.errors import StoreUnavailable
from surefoot.pacing import AdaptivePolicy, BreakerPolicy, Quota, RetryBudgetPolicy
from surefoot.pacing._config import Report
from surefoot.stores import MemoryStore, RedisStore, SQLiteStore

TOL = 0.04  # seconds of scheduling slack on a loaded 2-core machine


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def store_factory(request, tmp_path):
    """Makes pacer states of one backend; every state of a test shares one namespace."""
    namespace = uuid.uuid4().hex
    made = []

    if request.param.startswith("redis"):
        url = request.getfixturevalue(
            "redis_cluster_url" if request.param == "redis-cluster" else "redis_url"
        )

    def make(pacing: PacingPolicy, **options):
        if request.param == "memory":
            store = MemoryStore()
        elif request.param == "sqlite":
            store = SQLiteStore(tmp_path / "state.db", **options)
        else:
            store = RedisStore(url, **options)
            # a Cluster client is made (slot map read) on first use: not what is measured
            store._conn.client  # noqa: B018
        made.append(store)
        return store.pacer_state(pacing, namespace=namespace)

    make.kind = request.param
    yield make
    for store in made:
        store.close()


def delays(state, n, *, adaptive=False, partition="p"):
    """Slots of ``n`` reservations, in seconds after the first call started (each call
    passes its own clock reading, as the pipeline does)."""
    start = time.monotonic()
    return [
        state.reserve(partition, None, now=time.monotonic(), adaptive=adaptive).at - start
        for _ in range(n)
    ]


def test_reserve_books_fifo_slots_at_the_quota(store_factory):
    state = store_factory(PacingPolicy(quotas=(Quota.per_second(10, burst=2),), budget=None))
    got = delays(state, 5)
    assert got == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3], abs=TOL)


def test_partitions_are_independent(store_factory):
    state = store_factory(PacingPolicy(quotas=(Quota.per_second(10),), budget=None))
    # Open the store first: its schema setup is not what is measured (it took 95 ms once
    # on a loaded machine, where the first slot came out 0.095 s "late").
    state.reserve("warm-up", None, now=time.monotonic(), adaptive=False)
    assert delays(state, 2, partition="a") == pytest.approx([0.0, 0.1], abs=TOL)
    assert delays(state, 1, partition="b") == pytest.approx([0.0], abs=TOL)


def test_pause_holds_the_partition_and_voids_earlier_reservations(store_factory):
    state = store_factory(PacingPolicy(quotas=(Quota.per_second(100),), budget=None))
    before = state.reserve("p", None, now=time.monotonic(), adaptive=False)
    reported = time.monotonic()
    state.report("p", Report(None, False, pause=0.5), now=reported)
    returned = time.monotonic()
    again = state.reserve("p", before, now=time.monotonic(), adaptive=False)
    assert again is not before
    assert again.generation != before.generation
    assert reported + 0.5 - TOL <= again.at <= returned + 0.5 + TOL
    # a still-valid reservation is handed back as it is
    assert state.reserve("p", again, now=time.monotonic(), adaptive=False) == again


def test_backlog_after_a_pause_is_released_at_a_multiple_of_demand(store_factory):
    state = store_factory(
        PacingPolicy(quotas=(Quota.per_second(1000),), budget=None, release_factor=2.0)
    )
    now = time.monotonic()
    for _ in range(10):  # 10 requests over ~0.5 s observed: demand ~20/s
        state.on_request("p", now=now)
    time.sleep(0.5)
    state.report("p", Report(None, False, pause=0.2), now=time.monotonic())
    got = delays(state, 4)
    gaps = [b - a for a, b in zip(got, got[1:])]
    assert min(gaps) == pytest.approx(1 / 40, rel=0.3)  # 2 x 20/s, not 1000/s


def test_learned_quota_and_remaining_zero(store_factory):
    state = store_factory(PacingPolicy(budget=None))
    now = time.monotonic()
    state.report("p", Report(None, False, learned=(Quota(limit=20.0),)), now=now)
    got = delays(state, 3)
    assert [b - a for a, b in zip(got, got[1:])] == pytest.approx([0.05, 0.05], abs=TOL)
    state.report("q", Report(None, False, tighten=((0, 0.4),)), now=time.monotonic())
    assert delays(state, 1, partition="q") == pytest.approx([0.4], abs=TOL)


def test_sends_before_the_quota_was_known_count_against_it(store_factory):
    state = store_factory(PacingPolicy(budget=None))
    state.report("p", Report(None, False), now=time.monotonic())  # answered, no quota
    assert delays(state, 5) == pytest.approx([0.0] * 5, abs=TOL)  # nothing known yet
    start = time.monotonic()
    state.report("p", Report(None, False, learned=(Quota(limit=20.0),)), now=start)
    (slot,) = delays(state, 1)
    assert slot == pytest.approx(5 * 0.05, abs=TOL)  # five already spent 0.25 s of it


def test_retry_budget_is_shared_and_refuses_when_spent(store_factory):
    pacing = PacingPolicy(budget=RetryBudgetPolicy(ratio=0.5, min_retries_per_second=0.0))
    first, second = store_factory(pacing), store_factory(pacing)
    now = time.monotonic()
    for _ in range(4):
        first.on_request("p", now=now)
    # 4 requests x 0.5 = 2 retries, wherever they are spent
    assert first.try_retry(now=now)
    assert second.try_retry(now=now) is (store_factory.kind != "memory")
    if store_factory.kind == "memory":
        return  # two MemoryStores are two separate processes' worth of state
    assert not first.try_retry(now=now)


def test_breaker_opens_half_opens_and_closes(store_factory):
    pacing = PacingPolicy(
        budget=None,
        breaker=BreakerPolicy(failure_threshold=3, failure_ratio=None, open_for=0.3),
    )
    state = store_factory(pacing)
    for _ in range(3):
        assert state.admit("p", now=time.monotonic()).allowed
        reported = time.monotonic()
        state.report("p", Report(False, False), now=reported)
    returned = time.monotonic()
    refused = state.admit("p", now=time.monotonic())
    assert not refused.allowed
    assert refused.state == "open"
    assert reported + 0.3 - TOL <= refused.retry_at <= returned + 0.3 + TOL
    time.sleep(0.32)
    probe = state.admit("p", now=time.monotonic())
    assert probe.allowed
    assert probe.probe
    assert probe.state == "half_open"
    other = state.admit("p", now=time.monotonic())
    assert not other.allowed  # one probe at a time
    state.report("p", Report(True, True), now=time.monotonic())
    assert state.admit("p", now=time.monotonic()).state == "closed"


def test_adaptive_rate_cuts_once_for_concurrent_throttles(store_factory):
    pacing = PacingPolicy(
        learn=False, budget=None, adaptive=AdaptivePolicy(initial_rate=100.0, beta=0.5)
    )
    state = store_factory(pacing)
    gaps = {}
    for partition, throttles in (("one", 1), ("five", 5)):
        now = time.monotonic()
        state.report(partition, Report(None, False, throttled=False, age=0.0), now=now)
        delays(state, 3, partition=partition, adaptive=True)
        time.sleep(0.02)
        for _ in range(throttles):  # 429s for requests sent before the (first) cut
            state.report(partition, Report(None, False, throttled=True, age=0.01),
                         now=time.monotonic())
        got = delays(state, 4, partition=partition, adaptive=True)
        gaps[partition] = min(b - a for a, b in zip(got, got[1:]))
    assert gaps["five"] == pytest.approx(gaps["one"], rel=0.15)  # cut once, not five times


def test_no_adaptive_pacing_before_the_first_throttle(store_factory):
    state = store_factory(PacingPolicy(learn=False, budget=None))
    now = time.monotonic()
    for _ in range(20):
        state.report("p", Report(None, False, throttled=False, age=0.0), now=now)
    assert delays(state, 20, adaptive=True) == pytest.approx([0.0] * 20, abs=TOL)


# -- several processes -------------------------------------------------------------------


def _reserve_worker(kind, where, namespace, barrier, results):
    store = SQLiteStore(where) if kind == "sqlite" else RedisStore(where)
    state = store.pacer_state(PacingPolicy(quotas=(Quota.per_second(100),), budget=None),
                              namespace=namespace)
    barrier.wait()
    # this process's monotonic clock, mapped once onto the wall clock all processes share
    wall_minus_mono = time.time() - time.monotonic()
    slots = []
    for _ in range(40):
        at = state.reserve("p", None, now=time.monotonic(), adaptive=False).at
        slots.append(at + wall_minus_mono)
    results.put(slots)


@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis-cluster"])
def test_four_processes_share_one_quota(kind, tmp_path, request):
    where = str(tmp_path / "state.db") if kind == "sqlite" else request.getfixturevalue(
        "redis_cluster_url" if kind == "redis-cluster" else "redis_url"
    )
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    namespace = uuid.uuid4().hex
    procs = [
        ctx.Process(target=_reserve_worker, args=(kind, where, namespace, barrier, results))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    slots = sorted(s for _ in procs for s in results.get(timeout=60))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(slots) == 160
    # one schedule for all four: 160 slots 10 ms apart (1.6 s), not 4 x 40 in 0.4 s
    assert slots[-1] - slots[0] == pytest.approx(1.59, abs=0.1)
    gaps = sorted(b - a for a, b in zip(slots, slots[1:]))
    # (each slot is converted to this host's clock: a store call's latency is counted in)
    assert gaps[len(gaps) // 2] == pytest.approx(0.01, abs=0.001)
    assert gaps[len(gaps) // 20] > 0.007


# -- failure behaviour -------------------------------------------------------------------


def test_redis_down_fail_closed_raises_fast(redis_server, redis_url):
    store = RedisStore(redis_url, on_failure="closed", timeout=0.3)
    state = store.pacer_state(PacingPolicy(quotas=(Quota.per_second(10),)))
    delays(state, 1)
    redis_server.kill()
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        delays(state, 1)
    assert time.monotonic() - start < 1.0
    assert "redis" not in type(info.value).__module__
    with pytest.raises(StoreUnavailable):
        state.on_request("p", now=time.monotonic())


def test_redis_down_fail_open_uses_local_state_and_logs_once(redis_server, redis_url, caplog):
    store = RedisStore(redis_url, on_failure="open", timeout=0.3)
    state = store.pacer_state(PacingPolicy(quotas=(Quota.per_second(10),)))
    delays(state, 1)
    redis_server.kill()
    with caplog.at_level(logging.ERROR, logger="surefoot"):
        start = time.monotonic()
        got = delays(state, 3)
        assert time.monotonic() - start < 1.0
    assert got == pytest.approx([0.0, 0.1, 0.2], abs=TOL)  # paced locally meanwhile
    loud = [r for r in caplog.records if "FAILING OPEN" in r.getMessage()]
    assert len(loud) == 1
    redis_server.start()
    time.sleep(1.1)  # the backend is tried again after a second
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        delays(state, 1)
    assert any("available again" in r.getMessage() for r in caplog.records)


def test_chaos_redis_killed_mid_run(redis_server, redis_url):
    """Eight threads pace through Redis; the server dies and comes back mid-run. Every
    call returns (no hang, no raw redis exception) and pacing goes on."""
    import threading

    store = RedisStore(redis_url, on_failure="open", timeout=0.2)
    pacer = Pacer(PacingPolicy(quotas=(Quota.per_second(200),)), store=store)
    errors: list[BaseException] = []
    done = []
    stop = time.monotonic() + 2.5

    def worker():
        try:
            while time.monotonic() < stop:
                now = time.monotonic()
                pacer.on_request("p", now=now)
                slot = pacer.reserve("p", now=now)
                time.sleep(max(slot.at - time.monotonic(), 0))
                done.append(time.monotonic())
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.7)
    redis_server.kill()
    time.sleep(0.8)
    redis_server.start()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert errors == []
    assert len(done) > 100
    # after the restart the fleet state is back in Redis
    import redis

    assert redis.Redis.from_url(redis_url).keys("surefoot:*")


# -- Redis specifics ---------------------------------------------------------------------


def test_redis_hosts_with_skewed_clocks_share_one_schedule(redis_url):
    """Two hosts whose clocks disagree by 50 s: the operations run on Redis TIME and the
    slots are moved onto each caller's clock, so they interleave at the quota on both
    hosts' real timelines."""
    pacing = PacingPolicy(quotas=(Quota.per_second(20),), budget=None)
    namespace = uuid.uuid4().hex
    a = RedisStore(redis_url).pacer_state(pacing, namespace=namespace)
    b = RedisStore(redis_url).pacer_state(pacing, namespace=namespace)
    skew = {a: 0.0, b: 50.0}
    real = []
    for state in (a, b, a, b, a, b):
        local_now = time.monotonic() + skew[state]
        slot = state.reserve("p", None, now=local_now, adaptive=False).at
        real.append(slot - skew[state])  # back on one timeline
    gaps = [y - x for x, y in zip(real, real[1:])]
    assert gaps == pytest.approx([0.05] * 5, abs=0.01)


def test_redis_script_is_reloaded_after_noscript(redis_url):
    import redis

    state = RedisStore(redis_url).pacer_state(PacingPolicy(quotas=(Quota.per_second(10),)),
                                               namespace=uuid.uuid4().hex)
    assert delays(state, 1) == pytest.approx([0.0], abs=TOL)
    redis.Redis.from_url(redis_url).script_flush()  # as after a restart or failover
    assert delays(state, 1) == pytest.approx([0.1], abs=TOL)


def test_redis_keys_are_prefixed_hash_tagged_and_expire(redis_url):
    import redis

    store = RedisStore(redis_url, prefix="myapp:")
    state = store.pacer_state(PacingPolicy(quotas=(Quota.per_second(10),)), namespace="ns")
    state.on_request("api.example.com", now=time.monotonic())
    delays(state, 1, partition="api.example.com")
    # (the budget's deposits are counted in the process until a retry or a while)
    client = redis.Redis.from_url(redis_url)
    assert sorted(k.decode() for k in client.keys("*")) == ["myapp:{ns:api.example.com}:pacing"]
    assert state.try_retry(now=time.monotonic())
    keys = sorted(k.decode() for k in client.keys("*"))
    assert keys == ["myapp:{ns:api.example.com}:pacing", "myapp:{ns}:budget"]
    for key in keys:
        assert 0 < client.pttl(key) <= 2 * 3600 * 1000


# -- Redis: compare-and-set over the Python engine ----------------------------------------


def _redis_states(redis_url, pacing, n=2, **options):
    """``n`` states on one namespace, each through its own connection (as processes)."""
    namespace = uuid.uuid4().hex
    stores = [RedisStore(redis_url, **options) for _ in range(n)]
    return [s.pacer_state(pacing, namespace=namespace) for s in stores], stores


def test_redis_interleaved_writers_conflict_and_retry(redis_url, monkeypatch):
    """``a`` loads, ``b`` writes, then ``a``'s compare-and-set fails: ``a`` books again
    on ``b``'s state. No lost update: the slots are a quota apart."""
    from surefoot.stores._redis._connection import RedisConnection

    (a, b), _ = _redis_states(redis_url, PacingPolicy(quotas=(Quota.per_second(10),), budget=None))
    real_run = RedisConnection.run
    saves = []

    def run(self, name, source, keys, args):
        if name == "pacing_save" and self is a._conn:
            saves.append(keys[0])
            if len(saves) == 1:  # between a's load and a's save
                interleaved.append(b.reserve("p", None, now=time.monotonic(), adaptive=False))
        return real_run(self, name, source, keys, args)

    interleaved = []
    monkeypatch.setattr(RedisConnection, "run", run)
    got = a.reserve("p", None, now=time.monotonic(), adaptive=False)
    # A conflict; the reload shows the gates' schedule that b wrote, so a books its slot
    # through the gate script (a whole load never books while the gates may).
    assert len(saves) == 1
    (other,) = interleaved
    assert got.at - other.at == pytest.approx(0.1, abs=TOL)


def test_redis_many_threads_two_connections_no_lost_update(redis_url):
    """Two connections (two processes' worth) x 8 threads book 48 slots on one partition:
    all distinct and a quota apart, whatever the interleaving of their CAS steps."""
    import threading

    states, _ = _redis_states(
        redis_url, PacingPolicy(quotas=(Quota.per_second(10),), budget=None)
    )
    slots = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def worker(state):
        barrier.wait()
        for _ in range(3):
            at = state.reserve("p", None, now=time.monotonic(), adaptive=False).at
            with lock:
                slots.append(at)

    threads = [threading.Thread(target=worker, args=(s,)) for s in states for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    slots.sort()
    assert len(slots) == 48
    gaps = [y - x for x, y in zip(slots, slots[1:])]
    assert gaps == pytest.approx([0.1] * 47, abs=TOL)


def _always_conflicting(monkeypatch, attempts=5):
    """Every save finds the version bumped by someone else."""
    import redis

    from surefoot.stores._redis import _pacing
    from surefoot.stores._redis._connection import RedisConnection

    monkeypatch.setattr(_pacing, "MAX_ATTEMPTS", attempts)
    real_run = RedisConnection.run
    saves = []

    def run(self, name, source, keys, args):
        if name == "pacing_save":
            saves.append(keys[0])
            redis.Redis(connection_pool=self.client.connection_pool).hincrby(keys[0], "v", 1)
        return real_run(self, name, source, keys, args)

    monkeypatch.setattr(RedisConnection, "run", run)
    return saves


def test_redis_conflicts_without_end_fail_closed(redis_url, monkeypatch):
    (state,), _ = _redis_states(
        redis_url, PacingPolicy(quotas=(Quota.per_second(10),), budget=None), n=1,
        on_failure="closed",
    )
    saves = _always_conflicting(monkeypatch)
    with pytest.raises(StoreUnavailable, match="compare-and-set"):
        state.reserve("p", None, now=time.monotonic(), adaptive=False)
    assert len(saves) == 5


def test_redis_conflicts_without_end_fail_open_to_local_state(redis_url, monkeypatch, caplog):
    (state,), _ = _redis_states(
        redis_url, PacingPolicy(quotas=(Quota.per_second(10),), budget=None), n=1,
        on_failure="open",
    )
    saves = _always_conflicting(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="surefoot"):
        got = delays(state, 3)
    assert got == pytest.approx([0.0, 0.1, 0.2], abs=TOL)  # the local state paced them
    assert len(saves) == 5  # then the store was left alone for a while
    assert any("FAILING OPEN" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "blob",
    [
        "not json {",
        "[1, 2, 3]",
        '{"lim": [1, 2], "ada": 3, "brk": "x", "arr": [1, "y"], "snd": [null, 5]}',
        '{"lim": {"t": {"a": "b"}, "g": "x"}}',
    ],
)
def test_redis_corrupt_state_gives_a_fresh_partition(redis_url, blob):
    import redis

    pacing = PacingPolicy(
        quotas=(Quota.per_second(10),),
        breaker=BreakerPolicy(failure_threshold=3, failure_ratio=None),
        budget=RetryBudgetPolicy(ratio=0.5, min_retries_per_second=0.0),
    )
    (state,), _ = _redis_states(redis_url, pacing, n=1, on_failure="closed")
    client = redis.Redis.from_url(redis_url)
    client.hset(state._key("p"), mapping={"s": blob, "v": 7})
    client.hset(state._budget_key(), mapping={"s": blob, "v": 3})
    assert delays(state, 2) == pytest.approx([0.0, 0.1], abs=TOL)
    assert state.admit("p", now=time.monotonic()).allowed
    state.on_request("p", now=time.monotonic())
    state.on_request("p", now=time.monotonic())
    assert state.try_retry(now=time.monotonic())
    assert not state.try_retry(now=time.monotonic())
    assert isinstance(state.snapshot("p"), dict)  # written back whole
    assert int(client.hget(state._key("p"), "v")) > 7


def test_redis_unchanged_state_is_not_written_but_kept_alive(redis_url):
    import redis

    (state,), _ = _redis_states(redis_url, PacingPolicy(quotas=(Quota.per_second(10),)), n=1)
    delays(state, 1)
    client = redis.Redis.from_url(redis_url)
    key = state._key("p")
    # (a report the gates cannot carry: a "remaining" that is not 0, which changes
    # nothing but the first answer's end of first contact)
    report = Report(None, False, tighten=((5, 1.0),))
    state.report("p", report, now=time.monotonic())
    version = client.hget(key, "v")
    client.pexpire(key, 60_000)
    state.report("p", report, now=time.monotonic())  # nothing to change
    assert client.hget(key, "v") == version
    assert client.pttl(key) > 3600 * 1000
