"""Stores: where surefoot keeps state that several clients, processes or hosts share.

One object per backend serves every kind of shared state:

* ``store.pacer_state(pacing)`` — the limiter's partitions (GCRA times, learned quota,
  pause), the adaptive rate and its epoch, the breakers, the demand counters and the
  retry budget (``Pacer(pacing, store=store)`` calls it);
* ``store.tokens`` — the token cache's store (``TokenCache(source, store=store)``);
* ``store.nonces`` — the verifier's nonce cache (``HmacVerifier(keys, nonces=store)``).

Backends:

* :class:`MemoryStore` — in-process (the default everywhere; nothing to set up);
* :class:`SQLiteStore` — the processes of one host (WAL, ``BEGIN IMMEDIATE``, busy
  timeout; file mode 0600);
* :class:`RedisStore` — a fleet (Lua scripts by SHA, Redis ``TIME``, prefixed and
  expiring keys, Cluster hash tags).

Every state change is one atomic operation on the backend. When the backend is down or
too slow, ``on_failure`` decides: ``"open"`` (the default) falls back to local state and
logs once, loudly; ``"closed"`` raises :class:`~surefoot.StoreUnavailable`. Neither hangs
(Redis calls time out after ``timeout``; SQLite waits at most ``busy_timeout``), and no
``redis`` or ``sqlite3`` exception reaches the caller.
"""

from __future__ import annotations

import os
from typing import Any

from surefoot.pacing._pacer import LocalPacerState, Pacing
from surefoot.signing._hmac import MemoryNonceCache
from surefoot.stores._failure import FailureMode, OnFailure
from surefoot.stores._tokens import MemoryTokenStore

__all__ = ["MemoryStore", "RedisStore", "SQLiteStore"]


class MemoryStore:
    """In-process state (what every client uses when given no store)."""

    def __init__(self) -> None:
        self.tokens = MemoryTokenStore()
        self.nonces = MemoryNonceCache()

    def __repr__(self) -> str:
        return "MemoryStore()"

    def pacer_state(self, pacing: Pacing, *, namespace: str = "default") -> LocalPacerState:
        return LocalPacerState(pacing)

    def close(self) -> None:
        pass


class SQLiteStore:
    """State shared by the processes of one host, in one SQLite database file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        on_failure: OnFailure = "open",
    ) -> None:
        from surefoot.stores._nonces import SQLiteNonceCache
        from surefoot.stores._sqlite._connection import SQLiteConnection
        from surefoot.stores._sqlite._tokens import SQLiteTokenStore

        self.failure = FailureMode(on_failure, f"SQLite store {os.fspath(path)}")
        self._conn = SQLiteConnection(path, busy_timeout=busy_timeout)
        self.tokens = SQLiteTokenStore(self._conn, self.failure)
        self.nonces = SQLiteNonceCache(self._conn, self.failure)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self._conn.path)!r}, on_failure={self.failure.mode!r})"

    def pacer_state(self, pacing: Pacing, *, namespace: str = "default") -> Any:
        from surefoot.stores._sqlite._pacing import SQLitePacerState

        return SQLitePacerState(self._conn, self.failure, pacing, namespace=namespace)

    def close(self) -> None:
        self._conn.close()


class RedisStore:
    """State shared by a fleet through one Redis server (or Cluster).

    ``url`` (``redis://[:password@]host:port/db``, ``rediss://`` ...) or ``client`` (a
    ``redis.Redis``). ``prefix`` starts every key. ``timeout`` bounds every call.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "surefoot:",
        timeout: float = 0.5,
        on_failure: OnFailure = "open",
    ) -> None:
        from surefoot.stores._nonces import RedisNonceCache
        from surefoot.stores._redis._connection import RedisConnection
        from surefoot.stores._redis._tokens import RedisTokenStore

        self._conn = RedisConnection(url, client=client, prefix=prefix, timeout=timeout)
        self.failure = FailureMode(on_failure, "Redis store")
        self.tokens = RedisTokenStore(self._conn, self.failure)
        self.nonces = RedisNonceCache(self._conn, self.failure)

    def __repr__(self) -> str:
        return f"RedisStore({self._conn!r}, on_failure={self.failure.mode!r})"

    def pacer_state(self, pacing: Pacing, *, namespace: str = "default") -> Any:
        from surefoot.stores._redis._pacing import RedisPacerState

        return RedisPacerState(self._conn, self.failure, pacing, namespace=namespace)

    def close(self) -> None:
        self._conn.close()
