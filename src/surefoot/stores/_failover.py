"""The part the SQLite and Redis token stores share: their failure mode.

Every operation goes to the backend. When it is unavailable (:class:`StoreUnavailable`),
the store's :class:`FailureMode` decides: fail closed raises it; fail open logs once,
loudly, and answers from a local :class:`MemoryTokenStore` instead (and skips the
backend for a second before trying it again).

The local store is kept as a copy of what this process last read from or wrote to the
backend, so a process that falls back keeps the token it already had; while the backend
is down, tokens refreshed here are kept locally (they are no longer shared).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from surefoot.oauth._token import Token
from surefoot.stores._failure import FailureMode
from surefoot.stores._memory import MemoryTokenStore

__all__ = ["FailoverTokenStore"]

T = TypeVar("T")


class FailoverTokenStore:
    """Base of the backend token stores: ``_b_*`` methods talk to the backend."""

    def __init__(self, failure: FailureMode) -> None:
        if not isinstance(failure, FailureMode):
            raise TypeError("failure must be a FailureMode")
        self.failure = failure
        self.local = MemoryTokenStore()

    # -- the backend's operations (subclasses) -------------------------------------------

    def _b_load(self, key: str) -> Token | None:
        raise NotImplementedError

    def _b_save(self, key: str, token: Token, expected_version: int | None) -> bool:
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

    def load(self, key: str) -> Token | None:
        def backend() -> Token | None:
            token = self._b_load(key)
            if token is not None:
                self.local.save(key, token)  # the copy a fall-back starts from
            return token

        return self._guarded("loading a token", backend, lambda: self.local.load(key))

    def save(self, key: str, token: Token, *, expected_version: int | None = None) -> bool:
        def backend() -> bool:
            written = self._b_save(key, token, expected_version)
            if written:
                self.local.save(key, token)
            return written

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
