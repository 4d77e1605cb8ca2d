"""In-process state: the default store of every kind (tokens, nonces, pacing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from surefoot.errors import ConfigurationError, StoreUnavailable
from surefoot.oauth._token import Token
from surefoot.pacing._config import PacingPolicy
from surefoot.pacing._state import LocalPacerState

__all__ = ["NONCE_MAX_ENTRIES", "MemoryNonceCache", "MemoryStore", "MemoryTokenStore"]


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


#: The pairs a :class:`MemoryNonceCache` holds at most, by default.
NONCE_MAX_ENTRIES = 1_000_000


def _pair_digest(key_id: str, nonce: str) -> bytes:
    """A fixed-size key for the pair: 16 bytes (BLAKE2b), whatever the lengths of the key
    id and the nonce (an RFC 9421 nonce may be kilobytes long). The key id's length is
    hashed first, so no two pairs share their input."""
    digest = hashlib.blake2b(digest_size=16, person=b"surefoot-nonce")
    key = key_id.encode("utf-8", "surrogatepass")
    digest.update(len(key).to_bytes(8, "big"))
    digest.update(key)
    digest.update(nonce.encode("utf-8", "surrogatepass"))
    return digest.digest()


@dataclass(slots=True)
class MemoryNonceCache:
    """In-process nonce cache, bounded in entries and in bytes.

    Each pair is kept as a 16-byte digest (about 180 bytes per entry in all, however long
    the key id and the nonce) until it expires; expired pairs are dropped oldest first
    (in the order they were recorded: every verifier records with one ``ttl``, so that is
    the order they expire in).

    **Full.** When ``max_entries`` pairs have not expired yet, a new one cannot be
    recorded without forgetting one that may still be replayed:

    * ``when_full="refuse"`` (default): the pair is not recorded and
      :class:`~surefoot.StoreUnavailable` is raised (the verifiers let it propagate, the
      middleware answers ``503`` with ``Retry-After``: the request may be fine, it could
      not be checked). Nothing that was accepted can be replayed; a flood of valid
      requests (it takes a valid key to reach the cache) is refused until entries expire.
    * ``when_full="evict"``: the oldest pair is forgotten to make room: always available,
      but a request whose pair was forgotten can be replayed until its own time window
      ends (what the fail-open fallback of the shared stores uses).

    The default bound, :data:`NONCE_MAX_ENTRIES` (10⁶ pairs, about 180 MB), holds the
    replay window of the HMAC verifier's default skew (300 s: pairs live 601 s) at 1,600
    verified requests per second.
    """

    max_entries: int = NONCE_MAX_ENTRIES
    when_full: Literal["refuse", "evict"] = "refuse"
    _seen: OrderedDict[bytes, float] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_entries, bool) or not isinstance(self.max_entries, int) or (
            self.max_entries < 1
        ):
            raise ConfigurationError("max_entries must be a positive number of pairs")
        if self.when_full not in ("refuse", "evict"):
            raise ConfigurationError("when_full must be 'refuse' or 'evict'")

    def add_if_absent(self, key_id: str, nonce: str, *, now: float, ttl: float) -> bool:
        pair = _pair_digest(key_id, nonce)
        with self._lock:
            seen = self._seen
            while seen:
                oldest, expires = next(iter(seen.items()))
                if expires > now:
                    break
                del seen[oldest]
            expires_at = seen.get(pair)
            if expires_at is not None and expires_at > now:
                return False
            if expires_at is None and len(seen) >= self.max_entries:
                if self.when_full == "refuse":
                    raise StoreUnavailable(
                        f"the nonce cache is full ({self.max_entries} pairs that have not "
                        "expired): refused rather than forget one that may be replayed")
                while len(seen) >= self.max_entries:
                    seen.popitem(last=False)
            seen[pair] = now + ttl
            seen.move_to_end(pair)
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
