"""What a store implements: the protocols users may implement themselves.

* :class:`TokenStore` — tokens fenced by version, and a refresh lease;
* :class:`NonceCache` — a verifier's record of the nonces it has seen;
* :class:`~surefoot.pacing.PacerState` — the pacer's partitions (in
  :mod:`surefoot.pacing._state`, next to its reference implementation).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from surefoot.oauth._token import Token

__all__ = ["NonceCache", "TokenStore", "stored_version"]


@runtime_checkable
class TokenStore(Protocol):
    """Keeps tokens by key, fenced by version, and hands out refresh leases.

    See the module documentation for the semantics. Stores backed by a shared service
    raise :class:`~surefoot.StoreUnavailable` when it is down and set to fail closed
    (fail open: they fall back to local state); nothing else but
    :class:`~surefoot.StoreError` comes out of them.
    """

    def load(self, key: str) -> Token | None: ...

    def save(self, key: str, token: Token, *, expected_version: int | None = None) -> bool:
        """Write ``token``; with ``expected_version``, only if the stored version (0 when
        none is stored) equals it. ``True`` if written."""
        ...

    def delete(self, key: str) -> None: ...

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Take (or, for the same owner, extend) the refresh lease for ``ttl`` seconds."""
        ...

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Extend the lease if ``owner`` still holds it; ``False`` if it expired or moved."""
        ...

    def release_lease(self, key: str, owner: str) -> None:
        """Drop the lease if ``owner`` still holds it (else do nothing)."""
        ...


def stored_version(token: Token | None) -> int:
    return token.version if token is not None else 0


@runtime_checkable
class NonceCache(Protocol):
    """Remembers (key id, nonce) pairs for ``ttl`` seconds."""

    def add_if_absent(self, key_id: str, nonce: str, *, now: float, ttl: float) -> bool:
        """Record the pair; False if it was already there (a replay)."""
        ...
