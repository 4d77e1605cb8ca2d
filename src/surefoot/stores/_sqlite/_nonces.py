"""The verifier's nonce cache on SQLite (see :mod:`surefoot.stores._nonces`).
"""

from __future__ import annotations

import threading

from surefoot.errors import ConfigurationError, StoreUnavailable
from surefoot.stores._failure import FailureMode
from surefoot.stores._nonces import _check_ttl, _LocalFallback
from surefoot.stores._sqlite._connection import SQLiteConnection

__all__ = ["SQLiteNonceCache"]

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
