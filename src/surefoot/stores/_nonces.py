"""The HMAC verifier's nonce cache on SQLite (one host) and on Redis (a fleet).

Both implement :class:`~surefoot.signing._hmac.NonceCache`: ``add_if_absent(key_id,
nonce, *, now, ttl)`` records the pair and returns False if it was already recorded
and has not expired (a replay). Each call is one atomic operation on the store:

* SQLite: one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` in a
  ``BEGIN IMMEDIATE`` transaction; the row counts as absent once ``expires_at <= now``,
  with ``now`` the verifier's clock (all processes of one host share it). Every
  ``purge_every`` calls (per process), the same transaction also deletes at most
  ``purge_batch`` expired rows, so the table stays bounded and no call does unbounded
  work.
* Redis: ``SET <key> 1 NX PX <ttl>``, one command. Only the TTL matters (it runs on the
  Redis server's clock); ``now`` is ignored. The key is
  ``<prefix>{<sha256(key id, nonce)>}:nonce``: fixed length, whatever the key id holds,
  and spread over the Cluster slots.

When the store fails (:class:`~surefoot.StoreUnavailable`: Redis down or slow, the
SQLite database locked past its busy timeout):

* fail-open (``FailureMode("open", ...)``): the pair is checked against, and recorded
  in, a local :class:`~surefoot.MemoryNonceCache`, and the failure is logged once,
  loudly. Replays are then caught only within this process. For ``ttl`` seconds after
  the last local record, pairs the store accepts are also checked locally, so a nonce
  first accepted during the outage is still rejected here after the store is back.
* fail-closed (``FailureMode("closed", ...)``): ``add_if_absent`` raises
  :class:`~surefoot.StoreUnavailable`. :meth:`HmacVerifier.verify
  <surefoot.HmacVerifier.verify>` lets it propagate: it is a
  :class:`~surefoot.StoreError`, **not** a :class:`~surefoot.SignatureError`, so a
  server that catches only ``SignatureError`` does not mistake it for a bad request;
  answer it with a 503 (the request was not accepted, and its nonce was not recorded,
  so the client may retry it).

Other store errors (:class:`~surefoot.StoreError`: a corrupt database, a foreign value
under the key prefix) always propagate.

A Redis or SQLite store that loses its data (a restarted Redis without persistence, a
deleted database file) forgets the nonces it held: replays within the window become
possible again for the pairs it forgot.
"""

from __future__ import annotations

import hashlib
import math
import threading
from typing import Any

from surefoot.errors import ConfigurationError, StoreUnavailable
from surefoot.signing._hmac import MemoryNonceCache
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis._connection import RedisConnection
from surefoot.stores._sqlite._connection import SQLiteConnection

__all__ = ["RedisNonceCache", "SQLiteNonceCache"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS surefoot_nonces ("
    " key_id TEXT NOT NULL,"
    " nonce TEXT NOT NULL,"
    " expires_at REAL NOT NULL,"
    " PRIMARY KEY (key_id, nonce))",
    "CREATE INDEX IF NOT EXISTS surefoot_nonces_expires ON surefoot_nonces (expires_at)",
)
# Inserts the pair, or takes over an expired row; changes no row if the pair is live.
_UPSERT = (
    "INSERT INTO surefoot_nonces (key_id, nonce, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE surefoot_nonces.expires_at <= ?"
)
# Bounded: at most `limit` expired rows, oldest first (through the expires_at index).
_PURGE = (
    "DELETE FROM surefoot_nonces WHERE rowid IN (SELECT rowid FROM surefoot_nonces "
    "WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"
)
_COUNT = "SELECT COUNT(*) FROM surefoot_nonces"

#: Entries of the local cache used while failing open.
LOCAL_MAX_ENTRIES = 100_000


def _check_ttl(ttl: float) -> None:
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ConfigurationError("ttl must be a positive number of seconds")


class _LocalFallback:
    """The fail-open half shared by both stores."""

    __slots__ = ("_lock", "_used_until", "failure", "local")

    def __init__(self, failure: FailureMode) -> None:
        self.failure = failure
        self.local = MemoryNonceCache(max_entries=LOCAL_MAX_ENTRIES)
        self._used_until = -math.inf
        self._lock = threading.Lock()

    def fallback(self, key_id: str, nonce: str, now: float, ttl: float) -> bool:
        with self._lock:
            self._used_until = max(self._used_until, now + ttl)
        return self.local.add_if_absent(key_id, nonce, now=now, ttl=ttl)

    def accepted_by_store(self, key_id: str, nonce: str, now: float, ttl: float) -> bool:
        """The store accepted the pair: still a replay if accepted locally in an outage."""
        self.failure.succeeded()
        if now >= self._used_until:
            return True
        return self.local.add_if_absent(key_id, nonce, now=now, ttl=ttl)


class SQLiteNonceCache:
    """Nonces in a SQLite table, shared by the processes of one host."""

    __slots__ = ("_calls", "_fallback", "_lock", "conn", "purge_batch", "purge_every")

    def __init__(
        self,
        conn: SQLiteConnection,
        failure: FailureMode,
        *,
        purge_every: int = 128,
        purge_batch: int = 512,
    ) -> None:
        if purge_every < 1 or purge_batch < 1:
            raise ConfigurationError("purge_every and purge_batch must be at least 1")
        self.conn = conn
        self.purge_every = purge_every
        self.purge_batch = purge_batch
        self._fallback = _LocalFallback(failure)
        self._calls = 0
        self._lock = threading.Lock()
        conn.add_schema(*_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteNonceCache({self.conn!r}, on_failure={self._fallback.failure.mode!r})"

    @property
    def failure(self) -> FailureMode:
        return self._fallback.failure

    def add_if_absent(self, key_id: str, nonce: str, *, now: float, ttl: float) -> bool:
        _check_ttl(ttl)
        fallback = self._fallback
        if fallback.failure.fail_open and fallback.failure.skip_backend():
            return fallback.fallback(key_id, nonce, now, ttl)
        with self._lock:
            self._calls += 1
            purge = self._calls % self.purge_every == 0
        try:
            with self.conn.transaction() as db:
                added = db.execute(_UPSERT, (key_id, nonce, now + ttl, now)).rowcount == 1
                if purge:
                    db.execute(_PURGE, (now, self.purge_batch))
        except StoreUnavailable as exc:
            fallback.failure.failed(exc, "recording an HMAC nonce")
            return fallback.fallback(key_id, nonce, now, ttl)
        if not added:
            fallback.failure.succeeded()
            return False
        return fallback.accepted_by_store(key_id, nonce, now, ttl)

    def __len__(self) -> int:
        """Rows in the table, expired ones included (for tests and monitoring)."""
        count = self.conn.read(_COUNT)[0][0]
        assert isinstance(count, int)
        return count


class RedisNonceCache:
    """Nonces as Redis keys with a TTL, shared by a fleet."""

    __slots__ = ("_fallback", "conn")

    def __init__(self, conn: RedisConnection, failure: FailureMode) -> None:
        self.conn = conn
        self._fallback = _LocalFallback(failure)

    def __repr__(self) -> str:
        return f"RedisNonceCache({self.conn!r}, on_failure={self._fallback.failure.mode!r})"

    @property
    def failure(self) -> FailureMode:
        return self._fallback.failure

    def key(self, key_id: str, nonce: str) -> str:
        """The Redis key of a pair."""
        raw_id = key_id.encode("utf-8", "surrogatepass")
        raw = len(raw_id).to_bytes(4, "big") + raw_id + nonce.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw).hexdigest()
        return self.conn.key(digest, "nonce")

    def add_if_absent(self, key_id: str, nonce: str, *, now: float, ttl: float) -> bool:
        _check_ttl(ttl)
        fallback = self._fallback
        if fallback.failure.fail_open and fallback.failure.skip_backend():
            return fallback.fallback(key_id, nonce, now, ttl)
        ttl_ms = max(1, math.ceil(ttl * 1000))
        client: Any = self.conn.client
        try:
            reply = self.conn.call(client.set, self.key(key_id, nonce), b"1", nx=True, px=ttl_ms)
        except StoreUnavailable as exc:
            fallback.failure.failed(exc, "recording an HMAC nonce")
            return fallback.fallback(key_id, nonce, now, ttl)
        if not reply:
            fallback.failure.succeeded()
            return False
        return fallback.accepted_by_store(key_id, nonce, now, ttl)
