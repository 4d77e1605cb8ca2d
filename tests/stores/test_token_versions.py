"""Token versions never go backwards, and a corrupt stored token is loud, in every token
store (memory, file, SQLite, Redis).

A key's version survives a delete (a tombstone one past the deleted token's), a Redis
key expiry, a corrupt record and a removed token file, so a fenced write by a holder
that read the store before any of these is refused rather than accepted once the counter
would have restarted. ``load_versioned`` tells the version of a key with no token. A
record no token can be read from logs one warning naming the store and the key (never
the value), is no token, and the next fenced write goes past its version.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from surefoot.errors import StoreError
from surefoot.oauth import Token
from surefoot.stores import FileTokenStore, MemoryTokenStore, VersionedTokenStore
from surefoot.stores._failure import FailureMode
from surefoot.stores._protocols import load_versioned
from surefoot.stores._redis import _tokens as redis_tokens
from surefoot.stores._redis._connection import RedisConnection
from surefoot.stores._redis._tokens import TOKEN_VERSION_TTL, RedisTokenStore
from surefoot.stores._sqlite._connection import SQLiteConnection
from surefoot.stores._sqlite._tokens import SQLiteTokenStore

SECRET = "versions-secret-access-token"
KINDS = ("memory", "file", "sqlite", "redis", "redis-cluster")


#: Tokens are built at one instant, so equal arguments give equal tokens.
NOW = round(time.time())


def token(n: int, *, version: int = 0, expires_in: float = 3600.0) -> Token:
    now = NOW if expires_in >= 60 else time.time()
    return Token(
        access_token=f"{SECRET}-{n}",
        refresh_token=f"{SECRET}-refresh-{n}",
        expires_at=now + expires_in,
        obtained_at=now,
        version=version,
    )


class Backend:
    """Store handles on one backend; each ``handle()`` is like another process."""

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


def surefoot_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "surefoot" and r.levelno == logging.WARNING
    ]


# -- every store: the version survives a delete ------------------------------------------


def test_every_store_is_versioned(backend: Backend) -> None:
    assert isinstance(backend.handle(), VersionedTokenStore)


def test_a_delete_keeps_the_version_one_past_the_deleted_token(backend: Backend) -> None:
    store, other = backend.handle(), backend.handle()
    assert store.load_versioned("k") == (None, 0)
    assert store.save("k", token(1, version=3)) is True
    assert other.load_versioned("k") == (token(1, version=3), 3)
    store.delete("k")
    assert store.load("k") is None
    assert other.load_versioned("k") == (None, 4)
    store.delete("k")  # no token: nothing changes
    assert other.load_versioned("k") == (None, 4)
    # a holder that read version 3 (or nothing, at version 0) before the delete: refused
    assert other.save("k", token(2, version=4), expected_version=3) is False
    assert other.save("k", token(2, version=1), expected_version=0) is False
    assert store.load_versioned("k") == (None, 4)
    # one that read the tombstone writes past it
    assert other.save("k", token(3, version=5), expected_version=4) is True
    assert store.load_versioned("k") == (token(3, version=5), 5)


def test_a_stale_holder_is_refused_after_the_counter_would_have_restarted(
    backend: Backend,
) -> None:
    """The defect: A read v3; the token was deleted (version 0 again); B refreshed three
    times (v1, v2, v3); A's write expecting v3 was then accepted over B's token."""
    a, b = backend.handle(), backend.handle()
    assert a.save("k", token(0, version=3)) is True
    _, base = load_versioned(a, "k")
    assert base == 3
    b.delete("k")
    for n in (1, 2, 3):
        _, seen = load_versioned(b, "k")
        assert b.save("k", token(n, version=seen + 1), expected_version=seen) is True
    assert a.save("k", token(99, version=base + 1), expected_version=base) is False
    stored, version = load_versioned(a, "k")
    assert stored is not None
    assert stored.access_token == f"{SECRET}-3"
    assert version == 7  # 3, deleted: 4, then 5, 6, 7


def test_versions_never_go_backwards_on_an_unconditional_save(backend: Backend) -> None:
    store = backend.handle()
    assert store.save("k", token(1, version=5)) is True
    assert store.save("k", token(2, version=1)) is True  # unconditional, an older version
    assert store.load_versioned("k") == (token(2, version=5), 5)
    store.delete("k")
    assert store.save("k", token(3)) is True
    assert store.load_versioned("k") == (token(3, version=6), 6)


def test_a_fenced_save_always_bumps_the_version(backend: Backend) -> None:
    store = backend.handle()
    assert store.save("k", token(1, version=2)) is True
    # a caller that forgot to bump: the store does
    assert store.save("k", token(2, version=2), expected_version=2) is True
    assert store.load_versioned("k")[1] == 3
    assert store.save("k", token(3, version=9), expected_version=3) is True
    assert store.load_versioned("k")[1] == 9


def test_keys_are_versioned_apart(backend: Backend) -> None:
    store = backend.handle()
    store.save("a", token(1, version=7))
    store.delete("a")
    assert store.load_versioned("a") == (None, 8)
    assert store.load_versioned("b") == (None, 0)
    assert store.save("b", token(2, version=1), expected_version=0) is True


# -- the protocol's fallback, for a store of one's own -----------------------------------


class LegacyStore:
    """A store written before ``load_versioned``: only the six methods."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}

    def load(self, key: str) -> Token | None:
        return self.tokens.get(key)

    def save(self, key: str, tok: Token, *, expected_version: int | None = None) -> bool:
        current = self.tokens.get(key)
        if expected_version is not None and (current.version if current else 0) != (
            expected_version
        ):
            return False
        self.tokens[key] = tok
        return True

    def delete(self, key: str) -> None:
        self.tokens.pop(key, None)

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        return True

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        return True

    def release_lease(self, key: str, owner: str) -> None:
        pass


def test_load_versioned_falls_back_to_load_for_a_store_without_it() -> None:
    store = LegacyStore()
    assert not isinstance(store, VersionedTokenStore)
    assert load_versioned(store, "k") == (None, 0)
    store.save("k", token(1, version=4))
    assert load_versioned(store, "k") == (token(1, version=4), 4)


@pytest.mark.parametrize("answer", [None, (None,), ("x", 1), (None, -1), (None, True), [None, 1]])
def test_load_versioned_refuses_a_malformed_answer(answer: object) -> None:
    class Odd(LegacyStore):
        def load_versioned(self, key: str) -> object:
            return answer

    with pytest.raises(StoreError, match="load_versioned"):
        load_versioned(Odd(), "k")  # type: ignore[arg-type]


# -- Redis: an expired token key keeps its version ----------------------------------------


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def test_redis_token_expiry_keeps_the_version(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_tokens, "TOKEN_GRACE", 0)
    conn = RedisConnection(redis_url)
    store = RedisTokenStore(conn, FailureMode("closed", "redis token store"))
    raw = _redis_client(redis_url)
    try:
        # its key lives for the least a token key lives: 1 s
        assert store.save("k", token(1, version=3, expires_in=0.2)) is True
        token_ttl = raw.pttl(conn.key("k", "token"))
        version_ttl = raw.pttl(conn.key("k", "version"))
        assert 0 < token_ttl <= 1000
        assert TOKEN_VERSION_TTL * 1000 - 60_000 < version_ttl <= TOKEN_VERSION_TTL * 1000
        deadline = time.monotonic() + 5
        while raw.exists(conn.key("k", "token")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not raw.exists(conn.key("k", "token"))
        assert store.load("k") is None
        assert store.load_versioned("k") == (None, 3)
        # a holder that restarts the count after the expiry is refused ...
        assert store.save("k", token(2, version=1), expected_version=0) is False
        # ... one that expects the version the expired token left writes past it
        assert store.save("k", token(2, version=4), expected_version=3) is True
        assert store.load_versioned("k") == (token(2, version=4), 4)
    finally:
        raw.close()
        conn.close()


def test_redis_reads_a_token_an_older_surefoot_wrote(redis_url: str) -> None:
    """No version key (written before it existed): the hash's ``v`` is the version."""
    conn = RedisConnection(redis_url)
    store = RedisTokenStore(conn, FailureMode("closed", "redis token store"))
    raw = _redis_client(redis_url)
    try:
        old = token(1, version=5)
        raw.hset(conn.key("k", "token"),
                 mapping={"json": json.dumps(old.to_json()), "v": "5"})
        assert store.load_versioned("k") == (old, 5)
        assert store.save("k", token(2, version=5), expected_version=4) is False
        assert store.save("k", token(2, version=6), expected_version=5) is True
        assert raw.get(conn.key("k", "version")) == b"6"
    finally:
        raw.close()
        conn.close()


def test_redis_fail_open_falls_back_to_the_last_known_version(
    redis_url: str, closed_port: int
) -> None:
    store = RedisTokenStore(RedisConnection(redis_url), FailureMode("open", "redis token store"))
    store.save("k", token(1, version=2))
    store.delete("k")
    assert store.load_versioned("k") == (None, 3)
    store.conn.close()
    store.conn = RedisConnection(f"redis://127.0.0.1:{closed_port}", timeout=0.2)
    try:
        assert store.load_versioned("k") == (None, 3)  # the local copy: the tombstone
        assert store.save("k", token(2, version=4), expected_version=3) is True
        assert store.load_versioned("k") == (token(2, version=4), 4)
    finally:
        store.conn.close()


# -- corrupt records: SQLite and Redis -----------------------------------------------------

GARBAGE = [
    pytest.param("{not json at all " + SECRET, id="not-json"),
    pytest.param(json.dumps({"access_token": 5, "note": SECRET}), id="wrong-types"),
    pytest.param(json.dumps([SECRET]), id="not-an-object"),
    pytest.param("[" * 100_000 + "]" * 100_000, id="nested-too-deeply"),
]


def _check_corrupt_record(
    store: Any, caplog: pytest.LogCaptureFixture, version: int, name: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        for _ in range(3):  # a waiter polls: still one warning
            assert store.load("k") is None
            assert store.load_versioned("k") == (None, version)
    warnings = surefoot_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert name in warnings[0]
    assert "'k'" in warnings[0]
    assert "corrupt" in warnings[0]
    assert SECRET not in warnings[0]
    # fencing stays sound: the next write goes past the corrupt record's version
    assert store.save("k", token(2, version=1), expected_version=0) is (version == 0)
    if version:
        assert store.save("k", token(2, version=version + 1), expected_version=version)
    assert store.load_versioned("k") == (token(2, version=version + 1), version + 1)
    assert len(surefoot_warnings(caplog)) == 1


@pytest.mark.parametrize("garbage", GARBAGE)
def test_sqlite_corrupt_row_warns_once_and_is_fenced_past(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, garbage: str
) -> None:
    where = tmp_path / "tokens.db"
    conn = SQLiteConnection(where)
    store = SQLiteTokenStore(conn, FailureMode("closed", "sqlite token store"))
    try:
        assert store.save("k", token(1, version=4))
        with sqlite3.connect(where) as raw:
            raw.execute("UPDATE surefoot_tokens SET json = ? WHERE key = ?", (garbage, "k"))
        raw.close()
        _check_corrupt_record(store, caplog, 4, "SQLiteTokenStore")
    finally:
        conn.close()


def test_sqlite_corrupt_version_column_falls_back_to_the_tokens_version(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    where = tmp_path / "tokens.db"
    conn = SQLiteConnection(where)
    store = SQLiteTokenStore(conn, FailureMode("closed", "sqlite token store"))
    try:
        assert store.save("k", token(1, version=4))
        with sqlite3.connect(where) as raw:
            raw.execute("UPDATE surefoot_tokens SET version = 'x' WHERE key = 'k'")
        raw.close()
        with caplog.at_level(logging.WARNING, logger="surefoot"):
            assert store.load_versioned("k") == (token(1, version=4), 4)
            assert store.load_versioned("k") == (token(1, version=4), 4)
        assert len(surefoot_warnings(caplog)) == 1
        assert store.save("k", token(2, version=5), expected_version=4) is True
        assert store.load_versioned("k") == (token(2, version=5), 5)
    finally:
        conn.close()


def test_sqlite_tombstone_is_no_token_for_an_older_reader(tmp_path: Any) -> None:
    """The schema is unchanged; a deleted token's row keeps the version, ``json`` empty
    (what an older surefoot reads as no token)."""
    where = tmp_path / "tokens.db"
    conn = SQLiteConnection(where)
    store = SQLiteTokenStore(conn, FailureMode("closed", "sqlite token store"))
    try:
        store.save("k", token(1, version=2))
        store.delete("k")
        with sqlite3.connect(where) as raw:
            rows = raw.execute("SELECT key, json, version FROM surefoot_tokens").fetchall()
        raw.close()
        assert rows == [("k", "", 3)]
    finally:
        conn.close()


@pytest.mark.parametrize("garbage", GARBAGE)
def test_redis_corrupt_hash_warns_once_and_is_fenced_past(
    redis_url: str, caplog: pytest.LogCaptureFixture, garbage: str
) -> None:
    conn = RedisConnection(redis_url)
    store = RedisTokenStore(conn, FailureMode("closed", "redis token store"))
    raw = _redis_client(redis_url)
    try:
        assert store.save("k", token(1, version=4))
        raw.hset(conn.key("k", "token"), "json", garbage)
        _check_corrupt_record(store, caplog, 4, "RedisTokenStore")
    finally:
        raw.close()
        conn.close()


def test_redis_token_key_of_another_type_is_no_token(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = RedisConnection(redis_url)
    store = RedisTokenStore(conn, FailureMode("closed", "redis token store"))
    raw = _redis_client(redis_url)
    try:
        assert store.save("k", token(1, version=4))
        raw.delete(conn.key("k", "token"))
        raw.set(conn.key("k", "token"), SECRET)  # another program's string
        _check_corrupt_record(store, caplog, 4, "RedisTokenStore")
        assert raw.type(conn.key("k", "token")) == b"hash"
    finally:
        raw.close()
        conn.close()


def test_redis_garbage_version_fields_count_as_zero(redis_url: str) -> None:
    conn = RedisConnection(redis_url)
    store = RedisTokenStore(conn, FailureMode("closed", "redis token store"))
    raw = _redis_client(redis_url)
    try:
        assert store.save("k", token(1, version=4))
        raw.hset(conn.key("k", "token"), "v", "garbage")
        assert store.load_versioned("k") == (token(1, version=4), 4)  # the version key
        raw.set(conn.key("k", "version"), "-7")
        assert store.load_versioned("k") == (token(1, version=0), 0)
        assert store.save("k", token(2, version=1), expected_version=0) is True
        assert store.load_versioned("k") == (token(2, version=1), 1)
    finally:
        raw.close()
        conn.close()


# -- the file store: a removed or corrupt file, a corrupt entry ----------------------------


def test_file_removed_keeps_its_versions(tmp_path: Any) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save("k", token(1, version=6))
    store.save("j", token(2, version=2))
    path.unlink()  # someone removes the token file (not the lock file)
    again = FileTokenStore(path)
    assert again.load_versioned("k") == (None, 6)
    assert again.load_versioned("j") == (None, 2)
    assert again.save("k", token(3, version=1), expected_version=0) is False
    assert again.save("k", token(3, version=7), expected_version=6) is True
    assert store.load_versioned("k") == (token(3, version=7), 7)
    # the lock file names no key and holds no token
    lock = (tmp_path / "tokens.json.lock").read_text()
    assert '"k"' not in lock
    assert SECRET not in lock


def test_file_corrupt_file_keeps_its_versions(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save("k", token(1, version=6))
    path.write_bytes(b"{garbage " + SECRET.encode())
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        assert store.load_versioned("k") == (None, 6)
        assert store.load_versioned("k") == (None, 6)
    warnings = surefoot_warnings(caplog)
    assert len(warnings) == 1
    assert "corrupt" in warnings[0]
    assert SECRET not in warnings[0]
    assert store.save("k", token(2, version=7), expected_version=6) is True


@pytest.mark.parametrize(
    "entry",
    [{"access_token": 5, "version": 6}, SECRET, {"access_token": SECRET, "version": 6,
                                                 "expires_at": "soon"}],
    ids=["wrong-types", "a-string", "bad-expiry"],
)
def test_file_corrupt_entry_warns_once_naming_the_key(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, entry: object
) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save("ok", token(9, version=1))
    store.save("k", token(1, version=6))
    document = json.loads(path.read_text())
    document["tokens"]["k"] = entry
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        for _ in range(3):
            assert store.load_versioned("k") == (None, 6)
        assert store.load("ok") == token(9, version=1)
    warnings = surefoot_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0]
    assert "'k'" in warnings[0]
    assert "corrupt" in warnings[0]
    assert SECRET not in warnings[0]
    assert store.save("k", token(2, version=1), expected_version=0) is False
    assert store.save("k", token(2, version=7), expected_version=6) is True
    assert store.load_versioned("k") == (token(2, version=7), 7)


def test_file_tombstones_stay_out_of_the_tokens(tmp_path: Any) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save("k", token(1, version=2))
    store.delete("k")
    document = json.loads(path.read_text())
    assert document["tokens"] == {}
    assert document["versions"] == {"k": 3}
    store.save("k", token(2, version=4), expected_version=3)
    document = json.loads(path.read_text())
    assert set(document["tokens"]) == {"k"}
    assert "versions" not in document


def test_file_an_older_lock_file_is_fine(tmp_path: Any) -> None:
    """A lock file an older surefoot left (empty) or anything else in it: no versions
    known from it, no warning, and it is written over."""
    path = tmp_path / "tokens.json"
    lock = tmp_path / "tokens.json.lock"
    lock.write_bytes(b"\x00garbage")
    lock.chmod(0o600)
    store = FileTokenStore(path)
    assert store.load_versioned("k") == (None, 0)
    assert store.save("k", token(1, version=1), expected_version=0) is True
    path.unlink()
    assert store.load_versioned("k") == (None, 1)
