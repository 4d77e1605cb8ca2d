"""Stores: where surefoot keeps state that several clients, processes or hosts share.

One object per backend serves every kind of shared state:

* ``store.pacer_state(policy)`` — the limiter's partitions (GCRA times, learned quota,
  pause), the adaptive rate and its epoch, the breakers, the demand counters and the
  retry budget (``Pacer(policy, store=store)`` calls it);
* ``store.tokens`` — the token cache's store (``TokenCache(source, store=store)``);
* ``store.nonces`` — the verifier's nonce cache (``HmacVerifier(keys, nonces=store)``).

Backends:

* :class:`MemoryStore` — in-process (the default everywhere; nothing to set up);
* :class:`SQLiteStore` — the processes of one host (WAL, ``BEGIN IMMEDIATE``, busy
  timeout; file mode 0600);
* :class:`RedisStore` — a fleet (Lua scripts by SHA, Redis ``TIME``, prefixed and
  expiring keys, Cluster hash tags).
* :class:`FileTokenStore` — a token alone, in a JSON file (atomic writes, mode 0600).

Every state change is one atomic operation on the backend. When the backend is down or
too slow, ``on_failure`` decides: ``"open"`` (the default) falls back to local state and
logs once, loudly; ``"closed"`` raises :class:`~surefoot.errors.StoreUnavailable`. Neither
hangs (Redis calls time out after ``timeout``; SQLite waits at most ``busy_timeout``), and
no ``redis`` or ``sqlite3`` exception reaches the caller.

The protocols (:class:`TokenStore`, :class:`NonceCache`, :class:`PacerState`) are what a
store of your own implements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot._lazy import attach

if TYPE_CHECKING:
    from surefoot.pacing._state import PacerState
    from surefoot.stores._failure import OnFailure
    from surefoot.stores._file import FileTokenStore
    from surefoot.stores._memory import MemoryNonceCache, MemoryStore, MemoryTokenStore
    from surefoot.stores._protocols import NonceCache, Store, TokenStore
    from surefoot.stores._redis import RedisStore
    from surefoot.stores._sqlite import SQLiteStore

__all__ = [
    "FileTokenStore",
    "MemoryNonceCache",
    "MemoryStore",
    "MemoryTokenStore",
    "NonceCache",
    "OnFailure",
    "PacerState",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "TokenStore",
]

if not TYPE_CHECKING:  # names are imported on first use
    __getattr__, __dir__ = attach(
        __name__,
        {
            "FileTokenStore": "surefoot.stores._file",
            "MemoryNonceCache": "surefoot.stores._memory",
            "MemoryStore": "surefoot.stores._memory",
            "MemoryTokenStore": "surefoot.stores._memory",
            "NonceCache": "surefoot.stores._protocols",
            "OnFailure": "surefoot.stores._failure",
            "PacerState": "surefoot.pacing._state",
            "RedisStore": "surefoot.stores._redis",
            "SQLiteStore": "surefoot.stores._sqlite",
            "Store": "surefoot.stores._protocols",
            "TokenStore": "surefoot.stores._protocols",
        },
    )
