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
* :class:`RedisStore` — a fleet (compare-and-set Lua scripts by SHA, Redis ``TIME``, prefixed and
  expiring keys, Cluster hash tags).
* :class:`FileTokenStore` — a token alone, in a JSON file (atomic writes, mode 0600).

Every state change is one atomic operation on the backend. When the backend is down or
too slow, ``on_failure`` decides: ``"open"`` (the default) falls back to local state and
logs once, loudly; ``"closed"`` raises :class:`~surefoot.errors.StoreUnavailable`. Neither
hangs (Redis calls time out after ``timeout``; SQLite waits at most ``busy_timeout``), and
no ``redis`` or ``sqlite3`` exception reaches the caller.

The protocols (:class:`TokenStore`, :class:`NonceCache`, :class:`PacerState`) are what a
store of your own implements; a token store that can tell the version of a key whose
token was deleted or expired also implements :class:`VersionedTokenStore`
(``load_versioned``), as every store here does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot._lazy import attach

if TYPE_CHECKING:
    from surefoot.pacing._state import PacerState as PacerState
    from surefoot.stores._failure import OnFailure as OnFailure
    from surefoot.stores._file import FileTokenStore as FileTokenStore
    from surefoot.stores._memory import MemoryNonceCache as MemoryNonceCache
    from surefoot.stores._memory import MemoryStore as MemoryStore
    from surefoot.stores._memory import MemoryTokenStore as MemoryTokenStore
    from surefoot.stores._protocols import NonceCache as NonceCache
    from surefoot.stores._protocols import Store as Store
    from surefoot.stores._protocols import TokenStore as TokenStore
    from surefoot.stores._protocols import VersionedTokenStore as VersionedTokenStore
    from surefoot.stores._redis import RedisStore as RedisStore
    from surefoot.stores._sqlite import SQLiteStore as SQLiteStore
else:  # names are imported on first use
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
