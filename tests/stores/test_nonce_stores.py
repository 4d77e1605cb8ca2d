"""The HMAC verifier's nonce cache on every store: memory, SQLite and a real Redis."""

from __future__ import annotations

import logging
import multiprocessing
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from surefoot import SignatureError
from surefoot.errors import ConfigurationError, ReplayedNonce, StoreUnavailable
from surefoot.signing import HmacSigner, HmacVerifier, HttpRequest, SignedRequest
from surefoot.stores import MemoryNonceCache, _failure
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis._connection import RedisConnection
from surefoot.stores._redis._nonces import RedisNonceCache
from surefoot.stores._sqlite._connection import SQLiteConnection
from surefoot.stores._sqlite._nonces import SQLiteNonceCache

TTL = 60.0
Factory = Callable[[], Any]


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def new_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """A factory of caches that share one store (as the processes of a fleet would);
    for memory, the one in-process cache."""
    kind = request.param
    if kind == "memory":
        cache = MemoryNonceCache()
        yield lambda: cache
        return
    if kind == "sqlite":
        path = tmp_path / "nonces.db"
        sqlite_conns: list[SQLiteConnection] = []

        def make_sqlite() -> SQLiteNonceCache:
            conn = SQLiteConnection(path)
            sqlite_conns.append(conn)
            return SQLiteNonceCache(conn, FailureMode("closed", "SQLite nonce store"))

        yield make_sqlite
        for sconn in sqlite_conns:
            sconn.close()
        return
    url = request.getfixturevalue("redis_cluster_url" if kind == "redis-cluster" else "redis_url")
    redis_conns: list[RedisConnection] = []

    def make_redis() -> RedisNonceCache:
        conn = RedisConnection(url)
        redis_conns.append(conn)
        return RedisNonceCache(conn, FailureMode("closed", "Redis nonce store"))

    yield make_redis
    for rconn in redis_conns:
        rconn.close()


# -- conformance: every store ------------------------------------------------------------


def test_first_use_accepted_replay_rejected(new_cache: Factory) -> None:
    cache = new_cache()
    now = time.time()
    assert cache.add_if_absent("key-1", "n1", now=now, ttl=TTL) is True
    assert cache.add_if_absent("key-1", "n1", now=now + 1, ttl=TTL) is False
    assert cache.add_if_absent("key-1", "n1", now=now + 2, ttl=TTL) is False
    # another instance on the same store sees it too
    assert new_cache().add_if_absent("key-1", "n1", now=now + 3, ttl=TTL) is False


def test_key_ids_and_nonces_are_independent(new_cache: Factory) -> None:
    cache = new_cache()
    now = time.time()
    assert cache.add_if_absent("key-1", "n1", now=now, ttl=TTL)
    assert cache.add_if_absent("key-2", "n1", now=now, ttl=TTL)
    assert cache.add_if_absent("key-1", "n2", now=now, ttl=TTL)
    # no ambiguity between the parts of the pair
    assert cache.add_if_absent("key-1n", "1", now=now, ttl=TTL)
    assert cache.add_if_absent("key-{1}", "n1", now=now, ttl=TTL)
    assert not cache.add_if_absent("key-2", "n1", now=now, ttl=TTL)


def test_expiry_after_ttl(new_cache: Factory) -> None:
    cache = new_cache()
    ttl = 0.2
    now = time.time()
    assert cache.add_if_absent("k", "short", now=now, ttl=ttl)
    assert cache.add_if_absent("k", "long", now=now, ttl=TTL)
    assert not cache.add_if_absent("k", "short", now=time.time(), ttl=ttl)
    time.sleep(ttl + 0.05)  # real time: Redis expires keys on its own clock
    later = time.time()
    assert cache.add_if_absent("k", "short", now=later, ttl=ttl) is True
    assert cache.add_if_absent("k", "short", now=later, ttl=ttl) is False
    assert cache.add_if_absent("k", "long", now=later, ttl=TTL) is False


def test_concurrent_threads_exactly_one_wins(new_cache: Factory) -> None:
    cache = new_cache()
    nonces = [f"nonce-{i}" for i in range(25)]
    barrier = threading.Barrier(8)
    wins: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait(5)
            for nonce in nonces:
                if cache.add_if_absent("key", nonce, now=time.time(), ttl=TTL):
                    with lock:
                        wins[nonce] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert wins == dict.fromkeys(nonces, 1)


def test_ttl_must_be_positive(tmp_path: Path) -> None:
    cache = SQLiteNonceCache(SQLiteConnection(tmp_path / "n.db"), FailureMode("closed", "s"))
    for ttl in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError):
            cache.add_if_absent("k", "n", now=0.0, ttl=ttl)


# -- SQLite specifics ----------------------------------------------------------------------


def test_sqlite_purges_expired_rows_in_bounded_batches(tmp_path: Path) -> None:
    conn = SQLiteConnection(tmp_path / "n.db")
    cache = SQLiteNonceCache(
        conn, FailureMode("closed", "s"), purge_every=5, purge_batch=3
    )
    for i in range(20):
        assert cache.add_if_absent("k", f"old-{i}", now=100.0, ttl=1.0)
    # 4 purges ran at now=100: nothing had expired yet
    assert len(cache) == 20
    for i in range(5):
        assert cache.add_if_absent("k", f"new-{i}", now=1000.0, ttl=1.0)
    # one purge: at most purge_batch expired rows, the live ones untouched
    assert len(cache) == 20 + 5 - 3
    assert not cache.add_if_absent("k", "new-0", now=1000.5, ttl=1.0)
    assert cache.add_if_absent("k", "old-0", now=1000.5, ttl=1.0)  # expired, taken over


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_sqlite_locked_fail_closed_raises(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    cache = SQLiteNonceCache(
        SQLiteConnection(path, busy_timeout=0.1), FailureMode("closed", "SQLite nonce store")
    )
    assert cache.add_if_absent("k", "n0", now=time.time(), ttl=TTL)
    holder = _hold_write_lock(path)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            cache.add_if_absent("k", "n1", now=time.time(), ttl=TTL)
        assert time.monotonic() - started < 1.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cache.add_if_absent("k", "n1", now=time.time(), ttl=TTL)  # not recorded before


def test_sqlite_locked_fail_open_uses_a_local_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "n.db"
    cache = SQLiteNonceCache(
        SQLiteConnection(path, busy_timeout=0.1), FailureMode("open", "SQLite nonce store")
    )
    holder = _hold_write_lock(path)
    try:
        with caplog.at_level(logging.ERROR, logger="surefoot"):
            assert cache.add_if_absent("k", "n1", now=time.time(), ttl=TTL)
            assert not cache.add_if_absent("k", "n1", now=time.time(), ttl=TTL)
            assert cache.add_if_absent("k", "n2", now=time.time(), ttl=TTL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    failing_open = [r for r in caplog.records if "FAILING OPEN" in r.getMessage()]
    assert len(failing_open) == 1


# -- Redis specifics -----------------------------------------------------------------------


def test_redis_key_has_a_ttl_and_a_hash_tag(redis_url: str) -> None:
    conn = RedisConnection(redis_url, prefix="test:")
    cache = RedisNonceCache(conn, FailureMode("closed", "r"))
    assert cache.add_if_absent("key-1", "n1", now=0.0, ttl=TTL)  # `now` is ignored
    key = cache.key("key-1", "n1")
    assert key.startswith("test:{")
    assert key.endswith("}:nonce")
    assert key != cache.key("key-1", "n2") != cache.key("key-2", "n1")
    assert 59_000 < conn.client.pttl(key) <= 60_000
    conn.close()


@pytest.fixture
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fail-open store tries its backend again after 50 ms instead of 1 s."""
    monkeypatch.setattr(_failure, "RETRY_BACKEND_AFTER", 0.05)


def test_redis_killed_fail_open_uses_a_local_cache_then_recovers(
    redis_url: str, redis_server: Any, caplog: pytest.LogCaptureFixture, fast_retry: None
) -> None:
    conn = RedisConnection(redis_url)
    cache = RedisNonceCache(conn, FailureMode("open", "Redis nonce store"))
    assert cache.add_if_absent("k", "before", now=time.time(), ttl=TTL)
    redis_server.kill()
    with caplog.at_level(logging.ERROR, logger="surefoot"):
        started = time.monotonic()
        assert cache.add_if_absent("k", "during", now=time.time(), ttl=TTL)
        assert not cache.add_if_absent("k", "during", now=time.time(), ttl=TTL)
        time.sleep(0.06)  # past RETRY_BACKEND_AFTER: the dead backend is tried again
        assert cache.add_if_absent("k", "during-2", now=time.time(), ttl=TTL)
        assert time.monotonic() - started < 1.0
    failing_open = [r for r in caplog.records if "FAILING OPEN" in r.getMessage()]
    assert len(failing_open) == 1  # once, loudly

    redis_server.start()  # back, empty (no persistence)
    time.sleep(0.06)
    # accepted locally during the outage: still a replay here, though Redis forgot nothing
    # about it (it never knew)
    assert not cache.add_if_absent("k", "during", now=time.time(), ttl=TTL)
    assert cache.add_if_absent("k", "after", now=time.time(), ttl=TTL)
    assert conn.client.exists(cache.key("k", "after")) == 1  # recorded in Redis again
    conn.close()


def test_redis_killed_fail_closed_raises_fast(redis_url: str, redis_server: Any) -> None:
    conn = RedisConnection(redis_url)
    cache = RedisNonceCache(conn, FailureMode("closed", "Redis nonce store"))
    assert cache.add_if_absent("k", "before", now=time.time(), ttl=TTL)
    redis_server.kill()
    for nonce in ("n1", "n2"):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            cache.add_if_absent("k", nonce, now=time.time(), ttl=TTL)
        assert time.monotonic() - started < 1.0
        assert info.value.__cause__ is None  # no raw redis exception chained
    conn.close()


def test_hmac_verifier_end_to_end_with_redis(redis_url: str, redis_server: Any) -> None:
    secret = "end-to-end-secret"
    conns = [RedisConnection(redis_url), RedisConnection(redis_url)]
    # two servers of a fleet sharing one nonce store
    verifiers = [
        HmacVerifier(
            {"key-1": secret},
            nonces=RedisNonceCache(conn, FailureMode("closed", "Redis nonce store")),
        )
        for conn in conns
    ]
    signer = HmacSigner("key-1", secret)
    url = "https://api.example.com/v1/pay?x=1"
    headers = signer.sign(HttpRequest("POST", url, {}, b"{}"))
    assert verifiers[0].verify(SignedRequest.of("POST", url, headers, b"{}")).key_id == "key-1"
    for verifier in verifiers:  # replayed to the same server, then to another one
        with pytest.raises(ReplayedNonce):
            verifier.verify(SignedRequest.of("POST", url, headers, b"{}"))
    fresh = signer.sign(HttpRequest("POST", url, {}, b"{}"))
    assert verifiers[1].verify(SignedRequest.of("POST", url, fresh, b"{}")).key_id == "key-1"

    # fail-closed with Redis down: a typed StoreUnavailable, not a SignatureError
    redis_server.kill()
    again = signer.sign(HttpRequest("POST", url, {}, b"{}"))
    with pytest.raises(StoreUnavailable) as info:
        verifiers[0].verify(SignedRequest.of("POST", url, again, b"{}"))
    assert not isinstance(info.value, SignatureError)
    for conn in conns:
        conn.close()


# -- many processes ------------------------------------------------------------------------


def _mp_worker(
    kind: str, target: str, nonces: list[str], seed: int, barrier: Any, results: Any
) -> None:
    cache: Any
    if kind == "sqlite":
        cache = SQLiteNonceCache(SQLiteConnection(target), FailureMode("closed", "s"))
    else:
        cache = RedisNonceCache(RedisConnection(target), FailureMode("closed", "r"))
    order = list(nonces)
    random.Random(seed).shuffle(order)
    accepted: list[str] = []
    try:
        barrier.wait(30)
        for nonce in order:
            if cache.add_if_absent("key", nonce, now=time.time(), ttl=TTL):
                accepted.append(nonce)
        results.put((seed, accepted, None))
    except BaseException as exc:
        results.put((seed, accepted, repr(exc)))


@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis-cluster"])
def test_four_processes_accept_each_nonce_exactly_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if kind == "sqlite":
        target = str(tmp_path / "nonces.db")
    else:
        target = request.getfixturevalue(
            "redis_cluster_url" if kind == "redis-cluster" else "redis_url"
        )
    nonces = [f"{i:032x}" for i in range(300)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_mp_worker, args=(kind, target, nonces, seed, barrier, results))
        for seed in range(4)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():  # pragma: no cover - only on a hang
                process.kill()
    assert [error for _, _, error in outcomes] == [None] * 4
    total = Counter(nonce for _, accepted, _ in outcomes for nonce in accepted)
    assert total == dict.fromkeys(nonces, 1)
