"""The part the SQLite and Redis token stores share: their failure mode.

Every operation goes to the backend. When it is unavailable (:class:`StoreUnavailable`),
the store's :class:`FailureMode` decides: fail closed raises it; fail open logs once,
loudly, and answers from a local :class:`MemoryTokenStore` instead (and skips the
backend for a second before trying it again).

The local store is kept as a copy of what this process last read from or wrote to the
backend (the token, or the version of a key that holds none), so a process that falls
back keeps the token it already had; while the backend is down, tokens refreshed here
are kept locally (they are no longer shared).

A stored record no token can be read from (not JSON, not a token: another program's
data, a bad write) is logged once per record, as a warning naming the store and the key
(never the value), and is no token; its version still counts, so the next fenced write
goes past it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import TypeVar

from surefoot._log import logger
from surefoot.oauth._token import Token
from surefoot.stores._failure import FailureMode
from surefoot.stores._memory import MemoryTokenStore

__all__ = ["FailoverTokenStore"]

T = TypeVar("T")
#: How many corrupt records a store remembers having warned about (then it forgets them).
_WARNED_MAX = 1024


class FailoverTokenStore:
    """Base of the backend token stores: ``_b_*`` methods talk to the backend."""

    def __init__(self, failure: FailureMode) -> None:
        if not isinstance(failure, FailureMode):
            raise TypeError("failure must be a FailureMode")
        self.failure = failure
        self.local = MemoryTokenStore()
        self._warned: set[tuple[str, str]] = set()
        self._warned_lock = threading.Lock()

    # -- the backend's operations (subclasses) -------------------------------------------

    def _b_load(self, key: str) -> tuple[Token | None, int]:
        """The token (``None``: none or corrupt) and the key's version."""
        raise NotImplementedError

    def _b_save(self, key: str, token: Token, expected_version: int | None) -> int | None:
        """The version written (``max(token.version, expected_version + 1)`` fenced,
        ``max(token.version, current)`` not), or ``None``: fenced off."""
        raise NotImplementedError

    def _b_delete(self, key: str) -> None:
        raise NotImplementedError

    def _b_try_lease(self, key: str, owner: str, ttl: float) -> bool:
        raise NotImplementedError

    def _b_renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        raise NotImplementedError

    def _b_release_lease(self, key: str, owner: str) -> None:
        raise NotImplementedError

    # -- the protocol ------------------------------------------------------------------

    def _guarded(self, what: str, backend: Callable[[], T], local: Callable[[], T]) -> T:
        return self.failure.guard(what, backend, local)

    def _corrupt(self, key: str, raw: object, reason: str) -> None:
        """Log (once per record) that the record stored under ``key`` holds no token.
        ``raw`` identifies the record (only its hash is kept); it is never logged."""
        digest = hashlib.sha256(repr(raw).encode("utf-8", "backslashreplace")).hexdigest()
        with self._warned_lock:
            if (key, digest) in self._warned:
                return
            if len(self._warned) >= _WARNED_MAX:
                self._warned.clear()
            self._warned.add((key, digest))
        logger.warning(
            "surefoot: %r: the token stored under key %r is corrupt (%s); treating it as "
            "absent (a new token will be written over it)",
            self,
            key,
            reason,
        )

    def load(self, key: str) -> Token | None:
        return self.load_versioned(key)[0]

    def load_versioned(self, key: str) -> tuple[Token | None, int]:
        def backend() -> tuple[Token | None, int]:
            token, version = self._b_load(key)
            self.local._mirror(key, token, version)  # the copy a fall-back starts from
            return token, version

        return self._guarded(
            "loading a token", backend, lambda: self.local.load_versioned(key)
        )

    def save(self, key: str, token: Token, *, expected_version: int | None = None) -> bool:
        def backend() -> bool:
            version = self._b_save(key, token, expected_version)
            if version is None:
                return False
            self.local._mirror(key, token, version)
            return True

        # Locally the version check is moot: this process is on its own meanwhile.
        return self._guarded(
            "saving a token", backend, lambda: self.local.save(key, token)
        )

    def delete(self, key: str) -> None:
        self.local.delete(key)
        self._guarded("deleting a token", lambda: self._b_delete(key), lambda: None)

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        return self._guarded(
            "taking a refresh lease",
            lambda: self._b_try_lease(key, owner, ttl),
            lambda: self.local.try_lease(key, owner, ttl),
        )

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        # Fallen back: the lease (if any) is now a local one.
        return self._guarded(
            "renewing a refresh lease",
            lambda: self._b_renew_lease(key, owner, ttl),
            lambda: self.local.try_lease(key, owner, ttl),
        )

    def release_lease(self, key: str, owner: str) -> None:
        self.local.release_lease(key, owner)
        self._guarded(
            "releasing a refresh lease", lambda: self._b_release_lease(key, owner), lambda: None
        )
