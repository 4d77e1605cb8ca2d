"""Tokens in SQLite, shared by the processes of one host.

Two tables: ``surefoot_tokens(key, json, version)`` and
``surefoot_token_leases(key, owner, expires_at)`` (``expires_at`` is wall-clock Unix
time: every process is on the same host, so on the same clock). Every change is one
``BEGIN IMMEDIATE`` transaction, so reading the version (or the lease) and writing are
one step; reads need no transaction (WAL).

See :mod:`surefoot.stores._file` for the protocol, and :class:`FailoverTokenStore` for what
happens when the database cannot be used.
"""

from __future__ import annotations

import json
import time

from surefoot.oauth._token import Token
from surefoot.stores._failover import FailoverTokenStore
from surefoot.stores._failure import FailureMode
from surefoot.stores._sqlite._connection import SQLiteConnection

__all__ = ["SQLiteTokenStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS surefoot_tokens ("
    " key TEXT PRIMARY KEY, json TEXT NOT NULL, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS surefoot_token_leases ("
    " key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)",
)


class SQLiteTokenStore(FailoverTokenStore):
    """Tokens and refresh leases in one SQLite database (one host, many processes)."""

    def __init__(self, conn: SQLiteConnection, failure: FailureMode) -> None:
        super().__init__(failure)
        self.conn = conn
        conn.add_schema(*_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteTokenStore({self.conn!r}, on_failure={self.failure.mode!r})"

    def _b_load(self, key: str) -> Token | None:
        rows = self.conn.read("SELECT json FROM surefoot_tokens WHERE key = ?", (key,))
        if not rows or not isinstance(rows[0][0], str):
            return None
        try:
            data = json.loads(rows[0][0])
        except (ValueError, TypeError, RecursionError):  # garbage: no token
            return None
        return Token.from_json(data)

    def _b_save(self, key: str, token: Token, expected_version: int | None) -> bool:
        document = json.dumps(token.to_json(), separators=(",", ":"))
        with self.conn.transaction() as db:
            if expected_version is not None:
                row = db.execute(
                    "SELECT version FROM surefoot_tokens WHERE key = ?", (key,)
                ).fetchone()
                stored = int(row[0]) if row is not None else 0
                if stored != expected_version:
                    return False
            db.execute(
                "INSERT OR REPLACE INTO surefoot_tokens (key, json, version) VALUES (?, ?, ?)",
                (key, document, token.version),
            )
        return True

    def _b_delete(self, key: str) -> None:
        with self.conn.transaction() as db:
            db.execute("DELETE FROM surefoot_tokens WHERE key = ?", (key,))

    def _b_try_lease(self, key: str, owner: str, ttl: float) -> bool:
        # A read first (no write lock): waiters polling a held lease cost no transaction.
        rows = self.conn.read(
            "SELECT owner, expires_at FROM surefoot_token_leases WHERE key = ?", (key,)
        )
        if rows and rows[0][0] != owner and _as_float(rows[0][1]) > time.time():
            return False
        with self.conn.transaction() as db:
            now = time.time()
            row = db.execute(
                "SELECT owner, expires_at FROM surefoot_token_leases WHERE key = ?", (key,)
            ).fetchone()
            if row is not None and row[0] != owner and _as_float(row[1]) > now:
                return False
            db.execute(
                "INSERT OR REPLACE INTO surefoot_token_leases (key, owner, expires_at)"
                " VALUES (?, ?, ?)",
                (key, owner, now + ttl),
            )
        return True

    def _b_renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        with self.conn.transaction() as db:
            now = time.time()
            cursor = db.execute(
                "UPDATE surefoot_token_leases SET expires_at = ?"
                " WHERE key = ? AND owner = ? AND expires_at > ?",
                (now + ttl, key, owner, now),
            )
            return cursor.rowcount == 1

    def _b_release_lease(self, key: str, owner: str) -> None:
        with self.conn.transaction() as db:
            db.execute(
                "DELETE FROM surefoot_token_leases WHERE key = ? AND owner = ?", (key, owner)
            )


def _as_float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
