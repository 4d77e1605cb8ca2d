"""The token cache over versioned stores: a refresh writes past a deleted, expired or
corrupt token (never restarting the count), and a refresher that read the store before a
delete cannot overwrite the tokens written after it, however many there were."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from surefoot.oauth import Token, TokenCache
from surefoot.stores import FileTokenStore, MemoryTokenStore
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis import _tokens as redis_tokens
from surefoot.stores._redis._connection import RedisConnection
from surefoot.stores._redis._tokens import RedisTokenStore
from surefoot.stores._sqlite._connection import SQLiteConnection
from surefoot.stores._sqlite._tokens import SQLiteTokenStore
from surefoot.testing import FakeClock

KEY = "default"
SECRET = "cache-versions-secret"


def expired(version: int) -> Token:
    return Token(access_token="expired-token", expires_at=time.time() - 60,
                 obtained_at=time.time() - 3660, version=version)


def fresh(version: int, name: str = "seeded") -> Token:
    return Token(access_token=name, expires_at=time.time() + 3600,
                 obtained_at=time.time(), version=version)


class Backend:
    def __init__(self, kind: str, tmp_path: Any, redis_url: str | None) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.memory = MemoryTokenStore()
        self.connections: list[Any] = []

    def handle(self) -> Any:
        if self.kind == "memory":
            return self.memory
        if self.kind == "file":
            return FileTokenStore(self.tmp_path / "tokens.json")
        failure = FailureMode("closed", f"{self.kind} token store")
        if self.kind == "sqlite":
            conn = SQLiteConnection(self.tmp_path / "state.db", busy_timeout=2.0)
            self.connections.append(conn)
            return SQLiteTokenStore(conn, failure)
        assert self.redis_url is not None
        rconn = RedisConnection(self.redis_url, timeout=0.5)
        self.connections.append(rconn)
        return RedisTokenStore(rconn, failure)

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def _backend(request: pytest.FixtureRequest, tmp_path: Any) -> Backend:
    url = (
        request.getfixturevalue(
            "redis_cluster_url" if request.param == "redis-cluster" else "redis_url"
        )
        if request.param.startswith("redis")
        else None
    )
    return Backend(request.param, tmp_path, url)


@pytest.fixture(params=["memory", "file", "sqlite", "redis", "redis-cluster"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    b = _backend(request, tmp_path)
    yield b
    b.close()


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def expiring_backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    """Backends whose refresh lease expires (a file's flock lease does not)."""
    b = _backend(request, tmp_path)
    yield b
    b.close()


class Source:
    """A token function: ``<prefix>-1``, ``<prefix>-2`` ..., optionally held at ``gate``."""

    def __init__(self, prefix: str, gate: threading.Event | None = None) -> None:
        self.prefix = prefix
        self.gate = gate
        self.calls = 0
        self.started = threading.Event()

    def __call__(self) -> dict[str, object]:
        self.calls += 1
        n = self.calls
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        return {"access_token": f"{self.prefix}-{n}", "expires_in": 3600}


class _NoRenewal:
    """A store whose lease renewals do nothing (its holder is paused): the lease runs out."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def load(self, key: str) -> Token | None:
        return self.inner.load(key)  # type: ignore[no-any-return]

    def load_versioned(self, key: str) -> tuple[Token | None, int]:
        return self.inner.load_versioned(key)  # type: ignore[no-any-return]

    def save(self, key: str, token: Token, *, expected_version: int | None = None) -> bool:
        return self.inner.save(key, token, expected_version=expected_version)  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        return self.inner.try_lease(key, owner, ttl)  # type: ignore[no-any-return]

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        return True

    def release_lease(self, key: str, owner: str) -> None:
        self.inner.release_lease(key, owner)


def quiet(event: object) -> None:
    pass


def test_a_stale_refresher_cannot_overwrite_tokens_written_after_a_delete(
    expiring_backend: Backend,
) -> None:
    """A reads version 3 and stalls past its lease; the token is deleted (another
    process's ``clear()``); B refreshes three times. Versions restarting at 0 made A's
    write, expecting 3, land on B's third token. Now A is fenced off and adopts B's."""
    backend = expiring_backend
    backend.handle().save(KEY, expired(3))
    gate = threading.Event()
    slow = Source("a", gate)
    events: list[Any] = []
    a = TokenCache(slow, store=_NoRenewal(backend.handle()), key=KEY, hook=events.append,
                   lease_ttl=0.2)
    result: list[Token] = []
    holder = threading.Thread(target=lambda: result.append(a.get()))
    holder.start()
    try:
        assert slow.started.wait(5)  # A has read version 3 and is fetching
        TokenCache(Source("c"), store=backend.handle(), key=KEY, hook=quiet).clear()
        time.sleep(0.3)  # A's lease has run out
        clock = FakeClock(start_wall=time.time())
        b_source = Source("b")
        b = TokenCache(b_source, store=backend.handle(), key=KEY, hook=quiet, clock=clock)
        for n in (1, 2, 3):
            assert b.get(deadline=clock.monotonic() + 5).access_token == f"b-{n}"
            if n < 3:
                clock.advance(3600)  # B's token expires: B refreshes again
    finally:
        gate.set()
        holder.join(10)
    assert result
    assert result[0].access_token == "b-3"
    assert a.refreshes == 0
    assert any("newer token was stored" in e.reason for e in events)
    stored, version = backend.handle().load_versioned(KEY)
    assert stored is not None
    assert stored.access_token == "b-3"
    assert version == 7  # 3, deleted: 4, then B's 5, 6, 7


def test_refresh_after_clear_writes_past_the_tombstone(backend: Backend) -> None:
    backend.handle().save(KEY, fresh(5))
    events: list[Any] = []
    cache = TokenCache(Source("new"), store=backend.handle(), key=KEY, hook=events.append)
    assert cache.get().access_token == "seeded"
    cache.clear()
    assert backend.handle().load(KEY) is None
    other = TokenCache(Source("other"), store=backend.handle(), key=KEY, hook=events.append)
    token = other.get()
    assert token.access_token == "other-1"
    assert token.version == 7  # 5, cleared: 6, then 7 (not 1: the count never restarts)
    assert other.refreshes == 1
    stored = backend.handle().load(KEY)
    assert stored is not None
    assert (stored.access_token, stored.version) == ("other-1", 7)
    assert not any("not stored" in e.reason for e in events)


def test_refresh_after_a_redis_key_expiry_writes_past_its_version(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_tokens, "TOKEN_GRACE", 0)
    conn = RedisConnection(redis_url)
    store = RedisTokenStore(conn, FailureMode("closed", "redis token store"))
    try:
        short = Token(access_token="short", expires_at=time.time() + 0.3,
                      obtained_at=time.time(), version=4)
        assert store.save(KEY, short) is True
        deadline = time.monotonic() + 5
        while store.load(KEY) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.load(KEY) is None  # the key expired (its version did not)
        events: list[Any] = []
        cache = TokenCache(Source("new"), store=store, key=KEY, hook=events.append)
        token = cache.get()
        assert (token.access_token, token.version) == ("new-1", 5)
        assert store.load_versioned(KEY) == (token, 5)
        assert not any("not stored" in e.reason for e in events)
    finally:
        conn.close()


def _corrupt_sqlite(tmp_path: Any) -> tuple[Any, Callable[[], None]]:
    where = tmp_path / "state.db"
    conn = SQLiteConnection(where)
    store = SQLiteTokenStore(conn, FailureMode("closed", "sqlite token store"))
    store.save(KEY, expired(4))
    with sqlite3.connect(where) as raw:
        raw.execute("UPDATE surefoot_tokens SET json = ?", ('{"access_token": "' + SECRET,))
    raw.close()
    return store, conn.close


def _corrupt_redis(redis_url: str) -> tuple[Any, Callable[[], None]]:
    import redis

    conn = RedisConnection(redis_url)
    store = RedisTokenStore(conn, FailureMode("closed", "redis token store"))
    store.save(KEY, expired(4))
    raw = redis.Redis.from_url(redis_url)
    raw.hset(conn.key(KEY, "token"), "json", '{"access_token": 7, "x": "' + SECRET + '"}')
    raw.close()
    return store, conn.close


def _corrupt_file(tmp_path: Any) -> tuple[Any, Callable[[], None]]:
    import json

    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save(KEY, expired(4))
    document = json.loads(path.read_text())
    document["tokens"][KEY] = {"access_token": SECRET, "expires_at": "soon", "version": 4}
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return store, lambda: None


@pytest.mark.parametrize("kind", ["sqlite", "redis", "file"])
def test_refresh_over_a_corrupt_record_stores_the_new_token(
    kind: str, tmp_path: Any, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    """Before: the corrupt record read as no token, version 0, so both fenced writes of
    the new token were refused (``not stored (kept losing the race)``), silently."""
    if kind == "sqlite":
        store, close = _corrupt_sqlite(tmp_path)
    elif kind == "redis":
        store, close = _corrupt_redis(request.getfixturevalue("redis_url"))
    else:
        store, close = _corrupt_file(tmp_path)
    try:
        events: list[Any] = []
        cache = TokenCache(Source("new"), store=store, key=KEY, hook=events.append)
        with caplog.at_level(logging.WARNING, logger="surefoot"):
            token = cache.get()
        assert (token.access_token, token.version) == ("new-1", 5)
        stored = store.load(KEY)
        assert stored is not None
        assert (stored.access_token, stored.version) == ("new-1", 5)
        assert not any("not stored" in e.reason for e in events)
        warnings = [r.getMessage() for r in caplog.records
                    if r.name == "surefoot" and r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "corrupt" in warnings[0]
        assert repr(KEY) in warnings[0]
        assert SECRET not in warnings[0]
    finally:
        close()


class LegacyStore:
    """A user's store written before ``load_versioned`` existed."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.lock = threading.Lock()

    def load(self, key: str) -> Token | None:
        return self.tokens.get(key)

    def save(self, key: str, token: Token, *, expected_version: int | None = None) -> bool:
        with self.lock:
            current = self.tokens.get(key)
            if expected_version is not None and (
                (current.version if current is not None else 0) != expected_version
            ):
                return False
            self.tokens[key] = token
            return True

    def delete(self, key: str) -> None:
        self.tokens.pop(key, None)

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        return True

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        return True

    def release_lease(self, key: str, owner: str) -> None:
        pass


def test_a_store_without_load_versioned_still_works() -> None:
    store = LegacyStore()
    store.save(KEY, expired(2))
    clock = FakeClock(start_wall=time.time())
    cache = TokenCache(Source("legacy"), store=store, key=KEY, hook=quiet, clock=clock)
    token = cache.get()
    assert (token.access_token, token.version) == ("legacy-1", 3)
    clock.advance(3600)
    assert cache.get().version == 4
    cache.clear()
    clock.advance(3600)
    assert cache.get().version == 1  # its own count restarts: the store keeps none
    assert store.tokens[KEY].access_token == "legacy-3"
