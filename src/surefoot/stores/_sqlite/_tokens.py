"""Tokens in SQLite, shared by the processes of one host.

Two tables: ``surefoot_tokens(key, json, version)`` and
``surefoot_token_leases(key, owner, expires_at)`` (``expires_at`` is wall-clock Unix
time: every process is on the same host, so on the same clock). Every change is one
``BEGIN IMMEDIATE`` transaction, so reading the version (or the lease) and writing are
one step; reads need no transaction (WAL).

The ``version`` column is the key's version (the fence); a token's ``version`` is read
from it. A deleted token leaves its row behind as a tombstone: ``json`` empty, the
version one past the deleted token's, so versions never go backwards (an older surefoot
reads the empty ``json`` as no token, and fences on the same column). A row whose
``json`` holds no token (not JSON, not a token) is logged once and is no token; its
version still counts. The schema is unchanged: databases of older versions are read
as they are.

See :mod:`surefoot.stores._file` for the protocol, and :class:`FailoverTokenStore` for what
happens when the database cannot be used.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
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
#: The ``json`` of a tombstone: the row of a deleted token, kept for its version.
_TOMBSTONE = ""
#: The largest version taken as one (an integer a float holds exactly).
_MAX_VERSION = 2**53


class SQLiteTokenStore(FailoverTokenStore):
    """Tokens and refresh leases in one SQLite database (one host, many processes)."""

    def __init__(self, conn: SQLiteConnection, failure: FailureMode) -> None:
        super().__init__(failure)
        self.conn = conn
        conn.add_schema(*_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteTokenStore({self.conn!r}, on_failure={self.failure.mode!r})"

    def _b_load(self, key: str) -> tuple[Token | None, int]:
        rows = self.conn.read("SELECT json, version FROM surefoot_tokens WHERE key = ?", (key,))
        if not rows:
            return None, 0
        token, version, flaw = _read_row(rows[0])
        if flaw is not None:
            self._corrupt(key, rows[0], flaw)
        return token, version

    def _b_save(self, key: str, token: Token, expected_version: int | None) -> int | None:
        with self.conn.transaction() as db:
            current = _stored_version(db, key)
            if expected_version is None:
                version = max(token.version, current)  # never backwards
            elif current != expected_version:
                return None
            else:
                version = max(token.version, expected_version + 1)  # a fenced write bumps
            stored = token if token.version == version else _with_version(token, version)
            db.execute(
                "INSERT OR REPLACE INTO surefoot_tokens (key, json, version) VALUES (?, ?, ?)",
                (key, json.dumps(stored.to_json(), separators=(",", ":")), version),
            )
        return version

    def _b_delete(self, key: str) -> None:
        with self.conn.transaction() as db:
            row = db.execute(
                "SELECT json, version FROM surefoot_tokens WHERE key = ?", (key,)
            ).fetchone()
            if row is None or row[0] == _TOMBSTONE:
                return  # no token (never written, or deleted): nothing changes
            _, version, _ = _read_row(row)
            db.execute(
                "UPDATE surefoot_tokens SET json = ?, version = ? WHERE key = ?",
                (_TOMBSTONE, version + 1, key),
            )

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


def _stored_version(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT json, version FROM surefoot_tokens WHERE key = ?", (key,)).fetchone()
    return 0 if row is None else _read_row(row)[1]


def _read_row(row: tuple[object, ...]) -> tuple[Token | None, int, str | None]:
    """A row's token (``None``: a tombstone or corrupt), its version, and what is wrong
    with it (``None``: nothing; never the value). The version is the ``version``
    column; if that is not a non-negative integer, the one in ``json``, else 0."""
    document, column = row[0], row[1]
    token: Token | None = None
    flaw: str | None = None
    if document == _TOMBSTONE:
        pass
    elif not isinstance(document, str):
        flaw = f"json is {type(document).__name__}, not text"
    else:
        try:
            data = json.loads(document)
        except (ValueError, RecursionError):  # not JSON, nested too deeply ...
            flaw = "json is not JSON"
        else:
            token = Token.from_json(data)
            if token is None:
                flaw = "json is not a token"
    version = _as_version(column)
    if version is None:
        flaw = flaw or f"version is {type(column).__name__}, not a non-negative integer"
        version = token.version if token is not None else 0
    elif token is not None and token.version != version:
        token = _with_version(token, version)
    return token, version, flaw


def _as_version(value: object) -> int | None:
    """``value`` as a version: a non-negative integer (an integral float too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= _MAX_VERSION else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return _as_version(int(value))
    return None


def _with_version(token: Token, version: int) -> Token:
    return dataclasses.replace(token, version=version)


def _as_float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
