"""Tokens across a fleet: one store-conformance suite (memory, file, SQLite, Redis), the
fencing step, cross-process single flight against the real sandbox, and the failure modes
with a real redis-server killed or paused in the middle."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from surefoot import DeadlineExceeded
from surefoot.errors import StoreError, StoreUnavailable
from surefoot.events import EventKind
from surefoot.oauth import ClientCredentials, Token, TokenCache
from surefoot.stores import FileTokenStore, MemoryTokenStore
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis._connection import RedisConnection
from surefoot.stores._redis._tokens import RedisTokenStore
from surefoot.stores._sqlite._connection import SQLiteConnection
from surefoot.stores._sqlite._tokens import SQLiteTokenStore
from surefoot.testing import FakeClock

ACCESS = "fleet-access-token-secret"
REFRESH = "fleet-refresh-token-secret"
CLIENT_SECRET = "demo-secret"
KINDS = ("memory", "file", "sqlite", "redis", "redis-cluster")


def make_token(n: int = 1, *, version: int = 0, expires_in: float = 3600.0, **kw: Any) -> Token:
    now = time.time()
    return Token(
        access_token=f"{ACCESS}-{n}",
        refresh_token=f"{REFRESH}-{n}",
        expires_at=now + expires_in,
        obtained_at=now,
        version=version,
        **kw,
    )


def expired_token(version: int = 0) -> Token:
    return Token(
        access_token="expired-token",
        expires_at=time.time() - 60,
        obtained_at=time.time() - 3660,
        version=version,
    )


# -- store factories ---------------------------------------------------------------------


class Backend:
    """Makes store handles on one shared backend: each ``handle()`` is like another process
    (memory: the same object, as it cannot be shared)."""

    def __init__(self, kind: str, tmp_path: Any, redis_url: str | None) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self._memory = MemoryTokenStore()
        self.connections: list[Any] = []

    @property
    def expiring_leases(self) -> bool:
        return self.kind != "file"

    @property
    def shared(self) -> bool:
        return self.kind != "memory"

    def handle(self, on_failure: str = "closed") -> Any:
        if self.kind == "memory":
            return self._memory
        if self.kind == "file":
            return FileTokenStore(self.tmp_path / "tokens.json")
        failure = FailureMode(on_failure, f"{self.kind} token store")  # type: ignore[arg-type]
        if self.kind == "sqlite":
            conn = SQLiteConnection(self.tmp_path / "state.db", busy_timeout=2.0)
            self.connections.append(conn)
            return SQLiteTokenStore(conn, failure)
        assert self.redis_url is not None
        rconn = RedisConnection(self.redis_url, timeout=0.3)
        self.connections.append(rconn)
        return RedisTokenStore(rconn, failure)

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    url = (
        request.getfixturevalue(
            "redis_cluster_url" if request.param == "redis-cluster" else "redis_url"
        )
        if request.param.startswith("redis")
        else None
    )
    b = Backend(request.param, tmp_path, url)
    yield b
    b.close()


# -- conformance: tokens -----------------------------------------------------------------


def test_load_missing_and_roundtrip(backend: Backend) -> None:
    store = backend.handle()
    assert store.load("k") is None
    token = make_token(1, version=3, scope="read write")
    assert store.save("k", token) is True
    assert store.load("k") == token
    assert backend.handle().load("k") == token  # another process sees it
    untimed = Token(access_token="no-expiry", version=1)
    assert store.save("other", untimed) is True
    assert store.load("other") == untimed
    assert store.load("k") == token


def test_save_is_a_compare_and_set_on_the_version(backend: Backend) -> None:
    store, other = backend.handle(), backend.handle()
    # nothing stored counts as version 0
    assert store.save("k", make_token(9, version=1), expected_version=5) is False
    assert store.load("k") is None
    assert store.save("k", make_token(1, version=1), expected_version=0) is True
    # a second writer that read version 0 too loses, and changes nothing
    assert other.save("k", make_token(2, version=1), expected_version=0) is False
    stored = other.load("k")
    assert stored is not None
    assert stored.access_token == f"{ACCESS}-1"
    assert stored.refresh_token == f"{REFRESH}-1"
    assert other.save("k", make_token(3, version=2), expected_version=1) is True
    stored = store.load("k")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token, stored.version) == (
        f"{ACCESS}-3",
        f"{REFRESH}-3",
        2,
    )
    # unconditional save still works
    assert store.save("k", make_token(4, version=7)) is True
    assert store.load("k").version == 7


def test_delete(backend: Backend) -> None:
    store = backend.handle()
    store.save("a", make_token(1))
    store.save("b", make_token(2))
    store.delete("a")
    store.delete("a")
    store.delete("never")
    assert store.load("a") is None
    assert backend.handle().load("b") is not None
    # after a delete the key keeps its version, one past the deleted token's: a writer
    # that read the deleted token (or nothing, before it) is fenced off
    assert store.load_versioned("a") == (None, 1)
    assert backend.handle().load_versioned("a") == (None, 1)
    assert store.save("a", make_token(3, version=1), expected_version=0) is False
    assert store.save("a", make_token(3, version=2), expected_version=1) is True
    assert store.load("a").version == 2
    assert store.load_versioned("never") == (None, 0)


def test_repr_has_no_secret(backend: Backend) -> None:
    store = backend.handle()
    store.save("k", make_token(1))
    assert ACCESS not in repr(store)
    assert REFRESH not in repr(store)


# -- conformance: leases -----------------------------------------------------------------


def test_lease_is_exclusive_and_reentrant_for_its_owner(backend: Backend) -> None:
    store = backend.handle()
    assert store.try_lease("k", "alice", 5.0) is True
    assert store.try_lease("k", "alice", 5.0) is True  # the holder may ask again
    assert store.try_lease("k", "bob", 5.0) is False
    if backend.shared:
        assert backend.handle().try_lease("k", "carol", 5.0) is False
    store.release_lease("k", "alice")
    assert store.try_lease("k", "bob", 5.0) is True
    store.release_lease("k", "bob")


def test_lease_renew_and_release_by_owner_only(backend: Backend) -> None:
    store = backend.handle()
    assert store.renew_lease("k", "alice", 5.0) is False  # nobody holds it
    assert store.try_lease("k", "alice", 5.0) is True
    assert store.renew_lease("k", "alice", 5.0) is True
    assert store.renew_lease("k", "bob", 5.0) is False
    store.release_lease("k", "bob")  # not the owner: no effect
    assert store.try_lease("k", "bob", 5.0) is False
    store.release_lease("k", "alice")
    store.release_lease("k", "alice")  # twice is harmless
    assert store.renew_lease("k", "alice", 5.0) is False
    assert store.try_lease("k", "bob", 5.0) is True
    store.release_lease("k", "bob")


def test_lease_expires(backend: Backend) -> None:
    if not backend.expiring_leases:
        pytest.skip("a flock lease does not expire; it ends with its process (tested below)")
    store = backend.handle()
    assert store.try_lease("k", "alice", 0.2) is True
    assert store.try_lease("k", "bob", 0.2) is False
    time.sleep(0.3)
    assert store.renew_lease("k", "alice", 5.0) is False  # expired: renewal refused
    assert store.try_lease("k", "bob", 5.0) is True
    assert store.renew_lease("k", "alice", 5.0) is False
    store.release_lease("k", "alice")  # the old holder cannot drop the new lease
    assert store.try_lease("k", "carol", 5.0) is False
    # renewal keeps a lease alive past its first ttl
    assert store.try_lease("j", "alice", 0.5) is True
    for _ in range(3):
        time.sleep(0.2)
        assert store.renew_lease("j", "alice", 0.5) is True
    assert store.try_lease("j", "bob", 0.5) is False


def test_leases_of_different_keys_are_independent(backend: Backend) -> None:
    if backend.kind == "file":
        pytest.skip("one flock per token file: one refresh at a time per file")
    store = backend.handle()
    assert store.try_lease("a", "alice", 5.0) is True
    assert store.try_lease("b", "bob", 5.0) is True


def test_fencing_holder_whose_lease_expired_cannot_overwrite(backend: Backend) -> None:
    if not backend.expiring_leases:
        pytest.skip("a flock lease does not expire")
    a, b = backend.handle(), backend.handle()
    a.save("k", expired_token(version=4))
    assert a.try_lease("k", "alice", 0.2) is True
    base = a.load("k").version
    time.sleep(0.3)  # alice stalls (GC pause, slow token endpoint) and loses her lease
    assert b.try_lease("k", "bob", 5.0) is True
    assert b.load("k").version == base
    assert b.save("k", make_token(2, version=base + 1), expected_version=base) is True
    b.release_lease("k", "bob")
    # alice wakes up and tries to write her (older) token and refresh token: refused
    assert a.save("k", make_token(1, version=base + 1), expected_version=base) is False
    stored = a.load("k")
    assert stored.access_token == f"{ACCESS}-2"
    assert stored.refresh_token == f"{REFRESH}-2"


_HOLD_FLOCK = """
import sys
from surefoot.stores import FileTokenStore
store = FileTokenStore(sys.argv[1])
assert store.try_lease("k", "child", 1.0)
print("held", flush=True)
sys.stdin.readline()
# exits without releasing
"""


def test_file_lease_ends_with_its_process(tmp_path: Any) -> None:
    path = tmp_path / "tokens.json"
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_FLOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        store = FileTokenStore(path)
        assert store.try_lease("k", "parent", 1.0) is False
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(10) == 0
        assert store.try_lease("k", "parent", 1.0) is True
        # the holder's writes go through; another handle's write waits for the lease
        assert store.save("k", make_token(1, version=1), expected_version=0) is True
        store.release_lease("k", "parent")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)


# -- the token cache over each store -------------------------------------------------------


class Source:
    def __init__(self, delay: float = 0.0, prefix: str = "tok") -> None:
        self.delay = delay
        self.prefix = prefix
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.started = threading.Event()
        self.before_return: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, object]:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            n = self.calls
        self.started.set()
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.before_return is not None:
                self.before_return()
            return {
                "access_token": f"{self.prefix}-{n}",
                "refresh_token": f"{self.prefix}-refresh-{n}",
                "expires_in": 3600,
            }
        finally:
            with self._lock:
                self.running -= 1


def quiet(event: object) -> None:
    pass


def test_caches_in_separate_processes_refresh_once(backend: Backend) -> None:
    """Several caches (as in several processes) over one store, 8 threads each."""
    backend.handle().save("default", expired_token(version=2))
    source = Source(delay=0.1)
    caches = [TokenCache(source, store=backend.handle(), hook=quiet) for _ in range(4)]
    results: list[Token] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(32)

    def call(cache: TokenCache) -> None:
        try:
            barrier.wait(10)
            results.append(cache.get(deadline=time.monotonic() + 10))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in caches for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert source.calls == 1
    assert source.max_running == 1
    assert {r.access_token for r in results} == {"tok-1"}
    stored = backend.handle().load("default")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token, stored.version) == (
        "tok-1",
        "tok-refresh-1",
        3,
    )


def test_holder_skips_refresh_when_another_worker_already_did_it(backend: Backend) -> None:
    store = backend.handle()
    store.save("default", expired_token(version=1))
    source = Source()
    cache = TokenCache(source, store=store, hook=quiet)
    cache.peek()  # has the expired token in memory

    real_try_lease = store.try_lease

    def try_lease_after_another_refresh(key: str, owner: str, ttl: float) -> bool:
        # Between our read and our lease, another worker refreshed and released.
        backend.handle().save(key, make_token(7, version=2), expected_version=1)
        return real_try_lease(key, owner, ttl)

    wrapped = _Wrapped(store, try_lease=try_lease_after_another_refresh)
    cache.store = wrapped
    token = cache.get()
    assert token.access_token == f"{ACCESS}-7"
    assert source.calls == 0


class _Wrapped:
    """A store delegating to another, with some methods replaced."""

    def __init__(self, inner: Any, **replace: Callable[..., Any]) -> None:
        self.inner = inner
        self.replace = replace

    def __getattr__(self, name: str) -> Any:
        return self.replace.get(name) or getattr(self.inner, name)

    def load(self, key: str) -> Token | None:
        return self.__getattr__("load")(key)  # type: ignore[no-any-return]

    def save(self, key: str, token: Token, *, expected_version: int | None = None) -> bool:
        return self.__getattr__("save")(key, token, expected_version=expected_version)  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        self.__getattr__("delete")(key)

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        return self.__getattr__("try_lease")(key, owner, ttl)  # type: ignore[no-any-return]

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        return self.__getattr__("renew_lease")(key, owner, ttl)  # type: ignore[no-any-return]

    def release_lease(self, key: str, owner: str) -> None:
        self.__getattr__("release_lease")(key, owner)


def test_cache_fenced_off_adopts_the_newer_token(backend: Backend) -> None:
    """A cache whose lease expired during a slow fetch does not overwrite the token (and
    rotated refresh token) another worker stored meanwhile; it adopts that one."""
    if not backend.expiring_leases:
        pytest.skip("a flock lease does not expire")
    backend.handle().save("default", expired_token(version=5))
    slow = Source(delay=1.5, prefix="slow")
    # The slow holder's lease is never renewed (as if its process were paused).
    slow_store = _Wrapped(backend.handle(), renew_lease=lambda *a: True)
    events: list[Any] = []
    slow_cache = TokenCache(slow, store=slow_store, hook=events.append, lease_ttl=0.2)
    fast = Source(prefix="fast")
    fast_cache = TokenCache(fast, store=backend.handle(), hook=quiet, lease_ttl=5.0)

    result: list[Token] = []
    holder = threading.Thread(target=lambda: result.append(slow_cache.get()))
    holder.start()
    assert slow.started.wait(5)
    time.sleep(0.3)  # the slow holder's lease has run out
    fast_token = fast_cache.get(deadline=time.monotonic() + 5)
    assert fast_token.access_token == "fast-1"
    holder.join(5)
    assert slow.calls == 1
    assert fast.calls == 1
    assert result[0].access_token == "fast-1"
    stored = backend.handle().load("default")
    assert (stored.access_token, stored.refresh_token, stored.version) == (
        "fast-1",
        "fast-refresh-1",
        6,
    )
    assert any("newer token was stored" in e.reason for e in events)
    assert slow_cache.refreshes == 0


def test_waiter_gives_up_at_its_deadline(backend: Backend) -> None:
    backend.handle().save("default", expired_token())
    holder = backend.handle()
    assert holder.try_lease("default", "someone-else", 30.0)
    source = Source()
    cache = TokenCache(source, store=backend.handle(),
                       hook=quiet)
    t = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        cache.get(deadline=time.monotonic() + 0.3)
    assert 0.25 < time.monotonic() - t < 1.5
    assert source.calls == 0
    # a token in its refresh window is used meanwhile instead of waiting
    now = time.time()
    soon = Token(access_token="soon", expires_at=now + 30, obtained_at=now - 3570, version=1)
    holder.save("default", soon)  # (a file store writes only under the lease)
    cache2 = TokenCache(source, store=backend.handle(),
                        hook=quiet)
    t = time.monotonic()
    assert cache2.get(deadline=time.monotonic() + 5).access_token == "soon"
    assert time.monotonic() - t < 0.5
    assert source.calls == 0
    holder.release_lease("default", "someone-else")


def test_waiter_takes_over_when_the_holder_dies(backend: Backend) -> None:
    if not backend.expiring_leases:
        pytest.skip("a flock lease ends with its process (see test_file_lease_ends_...)")
    store = backend.handle()
    store.save("default", expired_token())
    assert store.try_lease("default", "crashed-holder", 0.3)
    source = Source()
    cache = TokenCache(source, store=backend.handle(),
                       hook=quiet)
    assert cache.get(deadline=time.monotonic() + 5).access_token == "tok-1"
    assert source.calls == 1


def test_lease_is_renewed_during_a_slow_fetch(backend: Backend) -> None:
    if not backend.expiring_leases:
        pytest.skip("a flock lease does not expire")
    backend.handle().save("default", expired_token())
    slow = Source(delay=1.5)
    cache = TokenCache(slow, store=backend.handle(), hook=quiet, lease_ttl=0.6)
    other = Source()
    other_cache = TokenCache(other, store=backend.handle(), hook=quiet)
    t = threading.Thread(target=cache.get)
    t.start()
    assert slow.started.wait(5)
    # Well past the lease's ttl, the other worker still waits for the renewed lease.
    token = other_cache.get(deadline=time.monotonic() + 5)
    t.join(5)
    assert token.access_token == "tok-1"
    assert other.calls == 0
    assert slow.calls == 1


# -- many processes against the real sandbox -------------------------------------------------


def _store_from_spec(spec: tuple[str, str]) -> Any:
    kind, where = spec
    failure = FailureMode("closed", f"{kind} token store")
    if kind == "sqlite":
        return SQLiteTokenStore(SQLiteConnection(where), failure)
    return RedisTokenStore(RedisConnection(where), failure)


def _fleet_worker(spec: tuple[str, str], token_url: str, threads: int, barrier: Any,
                  results: Any) -> None:
    grant = ClientCredentials(token_url=token_url, client_id="demo-client",
                              client_secret=CLIENT_SECRET)
    cache = TokenCache(grant, store=_store_from_spec(spec), hook=quiet)
    cache.peek()  # loaded the expired token before the storm
    seen: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def call() -> None:
        try:
            start.wait(30)
            token = cache.get(deadline=time.monotonic() + 30)
            with lock:
                seen.append(token.access_token)
        except BaseException as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=call) for _ in range(threads)]
    barrier.wait(60)
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    results.put((os.getpid(), seen, errors))


@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis-cluster"])
def test_four_processes_sixteen_threads_one_token_request(
    kind: str, sandbox: Any, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    if kind.startswith("redis"):
        spec = ("redis", request.getfixturevalue(
            "redis_cluster_url" if kind == "redis-cluster" else "redis_url"
        ))
    else:
        spec = ("sqlite", str(tmp_path / "state.db"))
    seed = _store_from_spec(spec)
    seed.save("client_credentials:demo-client@" + sandbox.url + "/oauth/token",
              expired_token(version=3))
    before = sandbox.stats()["tokens_issued"]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_fleet_worker,
                    args=(spec, sandbox.url + "/oauth/token", 16, barrier, results))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    errors = [e for _, _, errs in outcomes for e in errs]
    assert errors == []
    tokens = [t for _, seen, _ in outcomes for t in seen]
    assert len(tokens) == 64
    assert len(set(tokens)) == 1
    assert sandbox.stats()["tokens_issued"] - before == 1
    stored = seed.load("client_credentials:demo-client@" + sandbox.url + "/oauth/token")
    assert stored is not None
    assert stored.access_token == tokens[0]
    assert stored.version == 4


# -- failure modes: Redis killed or paused mid-run -------------------------------------------


def _no_redis_exception(exc: BaseException) -> None:
    assert type(exc).__module__.startswith("surefoot"), type(exc)
    assert exc.__cause__ is None or type(exc.__cause__).__module__.startswith("surefoot")


@pytest.fixture
def redis_server_url(redis_server: Any, redis_url: str) -> tuple[Any, str]:
    return redis_server, redis_url


def redis_store(url: str, mode: str) -> RedisTokenStore:
    return RedisTokenStore(RedisConnection(url, timeout=0.3),
                           FailureMode(mode, "Redis token store"))  # type: ignore[arg-type]


def test_fail_open_keeps_the_token_and_refreshes_locally(
    redis_server_url: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, url = redis_server_url
    clock = FakeClock(start_wall=time.time())
    source = Source()
    events: list[Any] = []
    cache = TokenCache(source, store=redis_store(url, "open"), clock=clock, hook=events.append)
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        first = cache.get()
        assert first.access_token == "tok-1"
        server.kill()
        # the token already obtained keeps being served
        for _ in range(5):
            assert cache.get() is first
        # expired: refreshed locally, without hanging, without a raw redis exception
        clock.advance(3600)
        t = time.monotonic()
        second = cache.get(deadline=clock.monotonic() + 5)
        assert time.monotonic() - t < 1.5
        assert second.access_token == "tok-2"
        assert second.version == 2
        clock.advance(3600)
        assert cache.get().access_token == "tok-3"
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(loud) == 1
    assert "FAILING OPEN" in loud[0].getMessage()
    for record in caplog.records:
        assert "tok-" not in record.getMessage()
    # Redis back: after the retry interval the token is shared again
    server.start()
    time.sleep(1.1)
    clock.advance(3600)
    fourth = cache.get(deadline=clock.monotonic() + 5)
    assert fourth.access_token == "tok-4"
    shared = redis_store(url, "closed").load(cache.key)
    assert shared is not None
    assert shared.access_token == "tok-4"


def test_fail_open_redis_dies_during_the_refresh(redis_server_url: tuple[Any, str]) -> None:
    server, url = redis_server_url
    store = redis_store(url, "open")
    store.save("default", expired_token(version=1))
    source = Source()
    source.before_return = server.kill  # Redis dies while the token request runs
    cache = TokenCache(source, store=store, hook=quiet)
    token = cache.get(deadline=time.monotonic() + 5)
    assert token.access_token == "tok-1"  # not lost although it could not be shared
    assert cache.get() is token
    assert source.calls == 1


def test_fail_closed_raises_store_unavailable_quickly(redis_server_url: tuple[Any, str]) -> None:
    server, url = redis_server_url
    clock = FakeClock(start_wall=time.time())
    source = Source()
    cache = TokenCache(source, store=redis_store(url, "closed"), clock=clock, hook=quiet)
    first = cache.get()
    server.kill()
    assert cache.get() is first  # a valid token needs no store
    clock.advance(3600)
    for _ in range(3):
        t = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            cache.get(deadline=clock.monotonic() + 10)
        assert time.monotonic() - t < 1.0
        _no_redis_exception(info.value)
    assert source.calls == 1
    # a fresh cache (new process) cannot even load: typed error too
    with pytest.raises(StoreUnavailable):
        TokenCache(source, store=redis_store(url, "closed"), hook=quiet).get()


def test_fail_closed_keeps_a_token_obtained_before_redis_died(
    redis_server_url: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, url = redis_server_url
    store = redis_store(url, "closed")
    store.save("default", expired_token(version=1))
    source = Source()
    source.before_return = server.kill
    cache = TokenCache(source, store=store, hook=quiet)
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        token = cache.get(deadline=time.monotonic() + 5)
    assert token.access_token == "tok-1"
    assert cache.get() is token
    assert any("could not be stored" in r.getMessage() for r in caplog.records)
    assert all("tok-1" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_slow_redis(redis_server_url: tuple[Any, str], mode: str) -> None:
    """Redis answers nothing for 2 s (CLIENT PAUSE): the store's timeout, not a hang."""
    import redis

    _, url = redis_server_url
    store = redis_store(url, mode)
    store.save("default", expired_token(version=1))
    source = Source()
    cache = TokenCache(source, store=store, hook=quiet)
    admin = redis.Redis.from_url(url)
    try:
        admin.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        t = time.monotonic()
        if mode == "closed":
            with pytest.raises(StoreUnavailable) as info:
                cache.get(deadline=time.monotonic() + 10)
            _no_redis_exception(info.value)
        else:
            assert cache.get(deadline=time.monotonic() + 10).access_token == "tok-1"
        assert time.monotonic() - t < 1.5
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_sqlite_locked_database(tmp_path: Any, mode: str) -> None:
    """Another process holds the SQLite write lock past the busy timeout."""
    import sqlite3

    conn = SQLiteConnection(tmp_path / "state.db", busy_timeout=0.2)
    store = SQLiteTokenStore(conn, FailureMode(mode, "SQLite token store"))  # type: ignore[arg-type]
    store.save("default", expired_token(version=1))
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        source = Source()
        cache = TokenCache(source, store=store, hook=quiet)
        t = time.monotonic()
        if mode == "closed":
            with pytest.raises(StoreUnavailable) as info:
                cache.get(deadline=time.monotonic() + 10)
            _no_redis_exception(info.value)
            assert source.calls == 0
        else:
            assert cache.get(deadline=time.monotonic() + 10).access_token == "tok-1"
        assert time.monotonic() - t < 1.5
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        conn.close()


def test_store_errors_are_typed(tmp_path: Any) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    store = SQLiteTokenStore(SQLiteConnection(path), FailureMode("closed", "SQLite"))
    with pytest.raises(StoreError):
        store.load("k")


def test_no_secret_in_events_logs_or_reprs(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.handle().save("default", expired_token())
    events: list[Any] = []
    cache = TokenCache(Source(prefix="very-secret-value"), store=backend.handle(),
                       hook=events.append)
    with caplog.at_level(logging.DEBUG, logger="surefoot"):
        token = cache.get()
    assert token.access_token == "very-secret-value-1"
    texts = [e.message() for e in events] + [r.getMessage() for r in caplog.records]
    texts += [repr(cache), repr(cache.store), repr(token)]
    assert EventKind.TOKEN_REFRESHED in [e.kind for e in events]
    for text in texts:
        assert "very-secret-value" not in text


def test_a_store_without_leases_is_refused() -> None:
    from surefoot import ConfigurationError

    class OldStore:
        def load(self, key: str) -> Token | None:
            return None

        def save(self, key: str, token: Token) -> None:
            pass

        def delete(self, key: str) -> None:
            pass

    with pytest.raises(ConfigurationError):
        TokenCache(lambda: "t", store=OldStore())  # type: ignore[arg-type]


def test_cache_takes_the_token_part_of_a_shared_store(tmp_path: Any) -> None:
    class Shared:  # like SQLiteStore / RedisStore: one object, a part per kind of state
        def __init__(self) -> None:
            self.tokens = SQLiteTokenStore(SQLiteConnection(tmp_path / "s.db"),
                                           FailureMode("closed", "SQLite"))

    shared = Shared()
    cache = TokenCache(lambda: "t", store=shared)
    assert cache.store is shared.tokens
    assert cache.get().access_token == "t"
    assert shared.tokens.load("default").access_token == "t"


# -- a stored value no parser can take -----------------------------------------------------

_DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_stored_token_is_no_token_in_sqlite(tmp_path):
    import sqlite3

    where = str(tmp_path / "tokens.db")
    store = SQLiteTokenStore(SQLiteConnection(where), FailureMode("closed", "sqlite token store"))
    assert store.save("k", Token("tok", expires_at=time.time() + 60))
    with sqlite3.connect(where) as raw:
        raw.execute("UPDATE surefoot_tokens SET json = ? WHERE key = ?", (_DEEP, "k"))
    assert store.load("k") is None


def test_deeply_nested_stored_token_is_no_token_in_redis(redis_url):
    import redis

    conn = RedisConnection(redis_url)
    store = RedisTokenStore(conn, FailureMode("closed", "redis token store"))
    assert store.save("k", Token("tok", expires_at=time.time() + 60))
    redis.Redis.from_url(redis_url).hset(conn.key("k", "token"), "json", _DEEP)
    assert store.load("k") is None
