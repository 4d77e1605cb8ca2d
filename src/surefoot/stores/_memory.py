"""In-process state: the default store of every kind (tokens, nonces, pacing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from surefoot.oauth._token import Token
from surefoot.pacing._config import PacingPolicy
from surefoot.pacing._state import LocalPacerState

__all__ = ["MemoryNonceCache", "MemoryStore", "MemoryTokenStore"]


class MemoryTokenStore:
    """In-process store, with in-process leases (monotonic time).

    A deleted key keeps its version (a tombstone one past the deleted token's), so
    versions never go backwards (see :mod:`surefoot.stores._file` for the protocol).
    """

    __slots__ = ("_guard", "_leases", "_tokens", "_versions")

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        #: key -> version, for the keys that hold no token (deleted): their tombstones
        self._versions: dict[str, int] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._guard = threading.Lock()

    def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def load_versioned(self, key: str) -> tuple[Token | None, int]:
        with self._guard:
            return self._state(key)

    def _state(self, key: str) -> tuple[Token | None, int]:
        token = self._tokens.get(key)
        return token, token.version if token is not None else self._versions.get(key, 0)

    def save(self, key: str, token: Token, *, expected_version: int | None = None) -> bool:
        with self._guard:
            current = self._state(key)[1]
            if expected_version is None:
                version = max(token.version, current)  # never backwards
            elif current != expected_version:
                return False
            else:
                version = max(token.version, expected_version + 1)  # a fenced write bumps
            self._put(key, token, version)
            return True

    def delete(self, key: str) -> None:
        with self._guard:
            token, current = self._state(key)
            if token is not None:  # no token: nothing changes (deleting is idempotent)
                self._put(key, None, current + 1)

    def _put(self, key: str, token: Token | None, version: int) -> None:
        """Set the key's state: ``token`` (its version set to ``version``), or no token
        and a tombstone of ``version``. The caller holds the guard."""
        if token is None:
            self._tokens.pop(key, None)
            if version:
                self._versions[key] = version
            else:
                self._versions.pop(key, None)
            return
        if token.version != version:
            token = dataclasses.replace(token, version=version)
        self._tokens[key] = token
        self._versions.pop(key, None)

    def _mirror(self, key: str, token: Token | None, version: int) -> None:
        """Take the state another store reported for ``key`` (the fall-back copy a
        :class:`~surefoot.stores._failover.FailoverTokenStore` keeps)."""
        with self._guard:
            self._put(key, token, version)

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._guard:
            held = self._leases.get(key)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._leases[key] = (owner, now + ttl)
            return True

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._guard:
            held = self._leases.get(key)
            if held is None or held[0] != owner or held[1] <= now:
                return False
            self._leases[key] = (owner, now + ttl)
            return True

    def release_lease(self, key: str, owner: str) -> None:
        with self._guard:
            held = self._leases.get(key)
            if held is not None and held[0] == owner:
                del self._leases[key]

    @contextlib.contextmanager
    def lock(self, key: str, *, timeout: float | None) -> Iterator[None]:
        """Kept for compatibility: a no-op (a cache serialises its refreshes itself)."""
        yield

    def __repr__(self) -> str:
        # How many, not which: a key may be any string its caller chose (TokenCache(key=...)),
        # and no other store lists its keys either.
        return f"MemoryTokenStore(tokens={len(self._tokens)})"


@dataclass(slots=True)
class MemoryNonceCache:
    """In-process nonce cache, bounded: expired entries are dropped in insertion order."""

    max_entries: int = 1_000_000
    _seen: OrderedDict[tuple[str, str], float] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_if_absent(self, key_id: str, nonce: str, *, now: float, ttl: float) -> bool:
        with self._lock:
            seen = self._seen
            while seen:
                oldest_key, expires = next(iter(seen.items()))
                if expires > now and len(seen) < self.max_entries:
                    break
                del seen[oldest_key]
            pair = (key_id, nonce)
            expires_at = seen.get(pair)
            if expires_at is not None and expires_at > now:
                return False
            seen[pair] = now + ttl
            return True

    def __len__(self) -> int:
        return len(self._seen)


class MemoryStore:
    """In-process state (what every client uses when given no store)."""

    def __init__(self) -> None:
        self.tokens = MemoryTokenStore()
        self.nonces = MemoryNonceCache()

    def __repr__(self) -> str:
        return "MemoryStore()"

    def pacer_state(self, pacing: PacingPolicy, *, namespace: str = "default") -> LocalPacerState:
        return LocalPacerState(pacing)

    def close(self) -> None:
        pass
