"""The Redis store on a real Redis Cluster (3 primaries, a replica each): URLs, every
store operation in one slot per script, scripts after a flush, retries, durability
(``WAIT``), and a manual failover in the middle of a run.

The conformance suites (tokens, nonces, pacing, the fleet tests) run on the Cluster too:
they take ``redis-cluster`` as one of their kinds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from surefoot.errors import ConfigurationError, StoreError, StoreUnavailable
from surefoot.oauth import Token, TokenCache
from surefoot.pacing import Quota
from surefoot.pacing._breaker import BreakerPolicy
from surefoot.pacing._budget import RetryBudgetPolicy
from surefoot.pacing._config import PacingPolicy, Report
from surefoot.stores import RedisStore
from surefoot.stores._redis import _connection
from surefoot.stores._redis._connection import RedisConnection

redis = pytest.importorskip("redis")
from redis.cluster import RedisCluster, key_slot  # noqa: E402


def quiet(event: object) -> None:
    pass


def _slot(key: str) -> int:
    return int(key_slot(key.encode()))


def _token(name: str, *, version: int = 1, expires_in: float = 3600.0) -> Token:
    now = time.time()
    return Token(access_token=name, expires_at=now + expires_in, obtained_at=now,
                 version=version)


# -- URLs and configuration (no server) ------------------------------------------------


def test_cluster_url_is_parsed_lazily_and_shown_without_its_password() -> None:
    store = RedisStore("redis+cluster://user:s3cret@127.0.0.1:7000,[::1]:7001,localhost")
    try:
        conn = store._conn
        assert conn.cluster
        assert conn._client is None  # nothing connected yet
        shown = repr(store)
        assert "cluster 127.0.0.1:7000,::1:7001,localhost:6379" in shown
        assert "s3cret" not in shown
    finally:
        store.close()
    tls = RedisConnection("rediss+cluster://127.0.0.1:7000/0")
    assert tls.cluster
    tls.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:7000/1",  # a Cluster has db 0 only
        "redis+cluster://127.0.0.1:7000?ssl=true",
        "redis+cluster://127.0.0.1:notaport",
        "redis+cluster://127.0.0.1:70000",
        "redis+cluster://",
        "redis+cluster://,",
    ],
)
def test_bad_cluster_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore(url)


@pytest.mark.parametrize("prefix", ["app{x}:", "a{}b:", "weird}"])
def test_a_prefix_with_braces_is_refused(prefix: str) -> None:
    # it would decide the hash tag of every key ("{}" would even split a token's keys
    # over several slots)
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore("redis://127.0.0.1:1/0", prefix=prefix)


@given(st.text(alphabet="ab{}()%7BD", max_size=8), st.text(alphabet="ab{}()%7BD", max_size=8))
@example("a{b}", "a(b)")
@example("{", "%7B")
def test_distinct_tags_are_distinct_keys_in_one_slot_each(a: str, b: str) -> None:
    """A tag's braces are escaped, injectively ("a{b}" and "a(b)" once shared a key),
    and leave exactly one hash tag: the key's whole tag."""
    from surefoot.stores._redis._connection import RedisConnection

    conn = RedisConnection("redis://127.0.0.1:1/0", prefix="p:")
    key_a, key_b = conn.key(a, "pacing"), conn.key(b, "pacing")
    assert (key_a == key_b) == (a == b)
    for key in (key_a, key_b):
        assert key.count("{") == 1
        assert key.count("}") == 1
        assert key.startswith("p:{")
        assert key.endswith("}:pacing")


def test_a_client_of_another_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis.Redis"):
        RedisStore(client=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="wait_replicas"):
        RedisStore("redis://127.0.0.1:1/0", wait_replicas=-1)


def test_unreachable_cluster_is_store_unavailable_fast(closed_port: int) -> None:
    store = RedisStore(f"redis+cluster://127.0.0.1:{closed_port}", on_failure="closed",
                       timeout=0.3)
    try:
        for call in (
            lambda: store.tokens.load("k"),
            lambda: store.nonces.add_if_absent("k", "n", now=time.time(), ttl=10),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                call()
            assert time.monotonic() - started < 2.0
            assert info.value.__cause__ is None
            assert "redis" not in type(info.value).__module__
    finally:
        store.close()


def test_cluster_retries_only_what_did_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    exceptions = redis.exceptions
    monkeypatch.setattr(_connection, "BACKOFF_BASE", 0.001)

    def failing(errors: list[BaseException]) -> Any:
        calls = []

        def function() -> str:
            calls.append(1)
            if errors:
                raise errors.pop(0)
            return "ok"

        return function, calls

    far = time.monotonic() + 10
    # CLUSTERDOWN, TRYAGAIN, a refused connection: not run, so sent again
    function, calls = failing([
        exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        exceptions.TryAgainError("TRYAGAIN"),
        exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1. Refused."),
    ])
    assert _connection._with_cluster_retries(function, far) == "ok"
    assert len(calls) == 4
    # a read that timed out may have been applied: never sent again
    function, calls = failing([exceptions.TimeoutError("Timeout reading from socket")])
    with pytest.raises(exceptions.TimeoutError):
        _connection._with_cluster_retries(function, far)
    assert len(calls) == 1
    # at most CLUSTER_ATTEMPTS attempts, and none past the call's wait
    function, calls = failing([exceptions.ClusterDownError("CLUSTERDOWN")] * 10)
    with pytest.raises(exceptions.ClusterDownError):
        _connection._with_cluster_retries(function, far)
    assert len(calls) == _connection.CLUSTER_ATTEMPTS
    function, calls = failing([exceptions.ClusterDownError("CLUSTERDOWN")] * 10)
    with pytest.raises(exceptions.ClusterDownError):
        _connection._with_cluster_retries(function, time.monotonic())
    assert len(calls) == 1


# -- every store operation on a real Cluster -------------------------------------------


@pytest.fixture
def script_slots(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """The slots of the keys of every script call (one set per call)."""
    seen: list[set[int]] = []
    real_script = RedisConnection._script
    real_wait = RedisConnection._script_and_wait

    def script(self: RedisConnection, sha: str, source: str, keys: list[str],
               args: list[Any]) -> Any:
        seen.append({_slot(k) for k in keys})
        return real_script(self, sha, source, keys, args)

    def script_and_wait(self: RedisConnection, sha: str, source: str, keys: list[str],
                        args: list[Any], wait_ms: int) -> Any:
        seen.append({_slot(k) for k in keys})
        return real_wait(self, sha, source, keys, args, wait_ms)

    monkeypatch.setattr(RedisConnection, "_script", script)
    monkeypatch.setattr(RedisConnection, "_script_and_wait", script_and_wait)
    return seen


def _primary_ports(cluster: Any, keys: list[str]) -> set[int]:
    client = RedisCluster.from_url(cluster.url.replace("redis+cluster", "redis").split(",")[0])
    try:
        return {client.get_node_from_key(k).port for k in keys}
    finally:
        client.close()


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_every_store_operation_runs_on_the_cluster_one_slot_per_script(
    redis_cluster: Any, redis_cluster_url: str, script_slots: list[set[int]],
    wait_replicas: int,
) -> None:
    store = RedisStore(redis_cluster_url, on_failure="closed", wait_replicas=wait_replicas)
    other = RedisStore(redis_cluster_url, on_failure="closed")
    try:
        # tokens: keys spread over every primary (and a key with braces in it)
        token_keys = [f"client-{i}" for i in range(12)] + ["odd{key}", "}{"]
        for i, key in enumerate(token_keys):
            assert store.tokens.load_versioned(key) == (None, 0)
            assert store.tokens.save(key, _token(f"t{i}"), expected_version=0)
            assert other.tokens.load(key).access_token == f"t{i}"
            assert not other.tokens.save(key, _token("late"), expected_version=0)
            assert store.tokens.try_lease(key, "me", 5.0)
            assert not other.tokens.try_lease(key, "you", 5.0)
            assert store.tokens.renew_lease(key, "me", 5.0)
            store.tokens.release_lease(key, "me")
            assert other.tokens.try_lease(key, "you", 5.0)
            store.tokens.delete(key)
            assert other.tokens.load_versioned(key) == (None, 2)
        # nonces
        for i in range(12):
            assert store.nonces.add_if_absent("kid", f"n{i}", now=time.time(), ttl=30)
            assert not other.nonces.add_if_absent("kid", f"n{i}", now=time.time(), ttl=30)
        # pacing: every operation, on partitions of several namespaces
        pacing = PacingPolicy(quotas=(Quota.per_second(1000),), budget=RetryBudgetPolicy(),
                              breaker=BreakerPolicy())
        for namespace in ("n1", "n2", "n3", "n4"):
            state = store.pacer_state(pacing, namespace=namespace)
            for partition in ("a", "b{c}", "d"):
                now = time.monotonic()
                got = state.reserve(partition, None, now=now, adaptive=True)
                state.release(partition, got, now=now)
                assert state.admit(partition, now=now).allowed
                state.on_request(partition, now=now)
                state.try_retry(now=now)
                state.report(partition, Report(True, False, throttled=False), now=now)
                assert state.snapshot(partition) is not None
            assert state.snapshot(None) is not None
    finally:
        store.close()
        other.close()
    assert script_slots, "no script ran"
    assert all(len(slots) == 1 for slots in script_slots)
    assert len(set().union(*script_slots)) > 20
    keys = [store._conn.key(k, "token") for k in token_keys]
    assert len(_primary_ports(redis_cluster, keys)) == 3  # every primary was used


def test_keys_of_two_tags_in_one_script_are_refused(redis_cluster_url: str) -> None:
    conn = RedisConnection(redis_cluster_url)
    try:
        keys = [conn.key("a", "x"), conn.key("b", "x")]
        assert _slot(keys[0]) != _slot(keys[1])
        with pytest.raises(StoreError) as info:
            conn.run("two_tags", "return 1", keys, [])
        assert not isinstance(info.value, StoreUnavailable)
    finally:
        conn.close()


def test_scripts_run_again_after_every_node_forgot_them(
    redis_cluster: Any, redis_cluster_url: str
) -> None:
    store = RedisStore(redis_cluster_url, on_failure="closed")
    try:
        state = store.pacer_state(PacingPolicy(quotas=(Quota.per_second(10),)))
        state.reserve("p", None, now=time.monotonic(), adaptive=False)
        assert store.tokens.save("k", _token("a"))
        for node in redis_cluster.nodes:  # as after restarts, or a failover
            assert node.command("SCRIPT", "FLUSH").startswith("+OK")
        state.reserve("p", None, now=time.monotonic(), adaptive=False)
        assert store.tokens.load("k").access_token == "a"
        assert store.tokens.save("k", _token("b", version=2), expected_version=1)
    finally:
        store.close()


def test_an_already_built_cluster_client_is_used_as_it_is(redis_cluster_url: str) -> None:
    first = redis_cluster_url.removeprefix("redis+cluster://").split(",")[0]
    client = RedisCluster.from_url(f"redis://{first}")
    store = RedisStore(client=client, on_failure="closed")
    try:
        assert store.tokens.save("k", _token("built"))
        assert RedisStore(redis_cluster_url).tokens.load("k").access_token == "built"
        assert "cluster" in repr(store)
    finally:
        store.close()


def test_durable_writes_wait_for_a_replica_on_the_cluster(
    redis_cluster: Any, redis_cluster_url: str
) -> None:
    store = RedisStore(redis_cluster_url, on_failure="closed", wait_replicas=1)
    try:
        key = "durable"
        primary = redis_cluster.primary_of_slot(_slot(store._conn.key(key, "token")))

        def waits() -> int:
            stats = primary.command("INFO", "commandstats")
            for line in stats.splitlines():
                if line.startswith("cmdstat_wait:"):
                    return int(line.split("calls=")[1].split(",")[0])
            return 0

        assert store.tokens.save(key, _token("first"))  # the scripts are loaded now
        assert store.tokens.try_lease(key, "me", 5.0)
        before = waits()
        assert before >= 2
        assert store.tokens.save(key, _token("kept", version=2), expected_version=1)
        assert store.tokens.try_lease(key, "me", 5.0)
        assert store.tokens.renew_lease(key, "me", 5.0)  # these do not wait
        store.tokens.release_lease(key, "me")
        assert store.tokens.load(key).access_token == "kept"
        assert waits() == before + 2
        # the replica has it (WAIT returned once it had acknowledged it)
        replica = redis_cluster.replicas_of(primary)[0]
        with redis.Redis(port=replica.port) as raw:
            raw.execute_command("READONLY")
            assert b"kept" in raw.hget(store._conn.key(key, "token"), "json")
    finally:
        store.close()


def test_durable_writes_without_replicas_wait_no_longer_than_the_call(redis_url: str) -> None:
    store = RedisStore(redis_url, on_failure="closed", wait_replicas=1, timeout=0.4)
    try:
        started = time.monotonic()
        assert store.tokens.save("k", _token("alone"))  # no replica: WAIT runs out
        took = time.monotonic() - started
        assert 0.09 <= took < 0.4
        assert store.tokens.load("k").access_token == "alone"
    finally:
        store.close()


# -- a failover in the middle of a run -------------------------------------------------


class _Source:
    """A token function shared by the fleet's caches: counts fetches, and is slow (the
    failover happens while the one refresh holds the lease)."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.calls = 0
        self.lock = threading.Lock()
        self.started = threading.Event()

    def __call__(self) -> dict[str, object]:
        with self.lock:
            self.calls += 1
            n = self.calls
        self.started.set()
        time.sleep(self.hold)
        return {"access_token": f"fetched-{n}", "expires_in": 3600}


def test_failover_mid_run_loses_no_token_duplicates_no_refresh_and_pacing_resumes(
    redis_cluster: Any, redis_cluster_url: str
) -> None:
    """Six "processes" (a store each) refresh one expired token while a seventh paces
    requests; the primary that holds both is failed over (``CLUSTER FAILOVER`` on its
    replica) while the refresh is in flight. No store call fails, exactly one token is
    fetched, the tokens written before the failover are read after it, and pacing goes
    on within a second, on the state it had (no burst)."""
    url = redis_cluster_url
    probe = RedisConnection(url)
    token_key = "fleet-token"
    namespace = uuid.uuid4().hex[:8]
    primary = redis_cluster.primary_of_slot(_slot(probe.key(token_key, "token")))
    client = RedisCluster(host="127.0.0.1", port=primary.port)

    def on_primary(names: Any) -> str:
        return next(n for n in names if client.get_node_from_key(n[1]).port == primary.port)[0]

    # a pacing partition and another token on the same primary
    partition = on_primary((f"p{i}", probe.key(f"{namespace}:p{i}", "pacing"))
                           for i in range(10_000))
    kept_key = on_primary((f"kept-{i}", probe.key(f"kept-{i}", "token")) for i in range(10_000))
    client.close()
    probe.close()

    stores = [RedisStore(url, on_failure="closed", wait_replicas=1) for _ in range(7)]
    source = _Source(hold=0.6)
    try:
        kept = _token("written-before", version=7)
        assert stores[0].tokens.save(kept_key, kept)
        expired = Token(access_token="expired", expires_at=time.time() - 60,
                        obtained_at=time.time() - 3660, version=3)
        assert stores[0].tokens.save(token_key, expired)

        # pacing: 20 per second, fail closed (any failed call is an error here)
        pacing = PacingPolicy(quotas=(Quota.per_second(20),), budget=None)
        state = stores[6].pacer_state(pacing, namespace=namespace)
        paced: list[tuple[float, float]] = []  # (answered at, slot)
        pacing_errors: list[str] = []
        stop = threading.Event()

        def pace() -> None:
            # ten slots at a time, the schedule kept ~0.25 s ahead: a state lost in the
            # failover would hand out a slot already given (a step back of ~0.5 s)
            while not stop.is_set():
                for _ in range(10):
                    try:
                        got = state.reserve(partition, None, now=time.monotonic(),
                                            adaptive=False)
                    except Exception as exc:  # noqa: BLE001 - recorded, asserted below
                        pacing_errors.append(f"{type(exc).__name__}: {exc}")
                        time.sleep(0.01)
                        continue
                    paced.append((time.monotonic(), got.at))
                time.sleep(max(0.0, paced[-1][1] - 0.25 - time.monotonic()) if paced else 0.01)

        seen: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(6)

        def refresh(store: RedisStore) -> None:
            cache = TokenCache(source, store=store, key=token_key, hook=quiet)
            try:
                barrier.wait(10)
                token = cache.get(deadline=time.monotonic() + 20)
                with lock:
                    seen.append(token.access_token)
            except Exception as exc:  # noqa: BLE001 - recorded, asserted below
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

        pacer = threading.Thread(target=pace)
        pacer.start()
        time.sleep(0.5)  # pacing under way
        threads = [threading.Thread(target=refresh, args=(s,)) for s in stores[:6]]
        for t in threads:
            t.start()
        assert source.started.wait(10)  # the one refresh holds the lease now
        promoted_at = time.monotonic()
        new_primary = redis_cluster.failover(primary)
        promoted = time.monotonic()
        for t in threads:
            t.join(30)
        time.sleep(1.0)  # pacing after the failover
        stop.set()
        pacer.join(10)
    finally:
        for store in stores:
            store.close()

    assert new_primary is not primary
    assert errors == []
    assert source.calls == 1  # one expiry, one fetch, across the six
    assert Counter(seen) == {"fetched-1": 6}
    after = RedisStore(url, on_failure="closed")
    try:
        assert after.tokens.load(kept_key) == kept  # written before, read after
        stored = after.tokens.load(token_key)
        assert stored is not None
        assert (stored.access_token, stored.version) == ("fetched-1", 4)
    finally:
        after.close()

    assert pacing_errors == []
    before = [at for answered, at in paced if answered < promoted_at]
    resumed = [answered for answered, _ in paced if answered > promoted]
    assert before
    assert resumed
    assert resumed[0] - promoted < 1.0  # pacing resumes within a second
    # no stall of a second or more beyond the failover itself (the old primary pauses
    # its clients from CLUSTER FAILOVER until the replica takes over: on a loaded
    # machine that alone can take over a second, and it is not surefoot's to shorten)
    for (a, _), (b, _) in zip(paced, paced[1:], strict=False):
        in_failover = max(0.0, min(b, promoted) - max(a, promoted_at))
        assert b - a - in_failover < 1.0, (a - promoted_at, b - promoted_at)
    # one schedule through the failover: slots 50 ms apart in the order given (each
    # moved onto this host's clock, so a store call's latency jitters it), none given
    # twice, no step back
    slots = [at for _, at in paced]
    steps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(steps) > 0.015
    assert sorted(steps)[len(steps) // 2] == pytest.approx(0.05, abs=0.003)
