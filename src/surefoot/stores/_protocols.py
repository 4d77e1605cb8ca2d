"""What a store implements: the protocols users may implement themselves.

* :class:`TokenStore` — tokens fenced by version, and a refresh lease;
* :class:`NonceCache` — a verifier's record of the nonces it has seen;
* :class:`~surefoot.pacing.PacerState` — the pacer's partitions (in
  :mod:`surefoot.pacing._state`, next to its reference implementation);
* :class:`Store` — one backend serving all three (``MemoryStore``, ``SQLiteStore``,
  ``RedisStore``): what ``Pacer(store=)``, ``TokenCache(store=)`` and the verifiers'
  ``nonces=`` accept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from surefoot.errors import StoreError
from surefoot.oauth._token import Token

if TYPE_CHECKING:
    from surefoot.pacing._config import PacingPolicy
    from surefoot.pacing._state import PacerState

__all__ = [
    "NonceCache",
    "Store",
    "TokenStore",
    "VersionedTokenStore",
    "load_versioned",
    "stored_version",
]


@runtime_checkable
class TokenStore(Protocol):
    """Keeps tokens by key, fenced by version, and hands out refresh leases.

    See :mod:`surefoot.stores._file` for the semantics. A key's version never goes
    backwards: a store that keeps it while the key holds no token (deleted, expired or
    corrupt) tells it through ``load_versioned`` (:class:`VersionedTokenStore`), so the
    next fenced save expects the right one. Every store of surefoot does; a store of
    your own without it still works (the version is read off the token, 0 when there is
    none). Stores backed by a shared service
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


@runtime_checkable
class VersionedTokenStore(TokenStore, Protocol):
    """A :class:`TokenStore` that keeps each key's version when it holds no token."""

    def load_versioned(self, key: str) -> tuple[Token | None, int]:
        """The token (``None``: none, or a corrupt one) and the key's version: what a
        fenced ``save`` must expect. A token's ``version`` is that version; with no token
        it is the version of the key's tombstone (the deleted, expired or corrupt token
        left it behind, one past a deleted one), 0 for a key never written."""
        ...


def stored_version(token: Token | None) -> int:
    return token.version if token is not None else 0


def load_versioned(store: TokenStore, key: str) -> tuple[Token | None, int]:
    """``store.load_versioned(key)`` if the store has it; otherwise (a store written
    before it existed) the token and its version, 0 when there is none."""
    method = getattr(store, "load_versioned", None)
    if method is None:
        token = store.load(key)
        return token, stored_version(token)
    result = method(key)
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and (result[0] is None or isinstance(result[0], Token))
        and isinstance(result[1], int)
        and not isinstance(result[1], bool)
        and result[1] >= 0
    ):
        return result[0], result[1]
    raise StoreError(
        f"{type(store).__name__}.load_versioned returned {type(result).__name__}, "
        "expected (Token | None, int >= 0)"
    )


@runtime_checkable
class NonceCache(Protocol):
    """Remembers (key id, nonce) pairs for ``ttl`` seconds."""

    def add_if_absent(self, key_id: str, nonce: str, *, now: float, ttl: float) -> bool:
        """Record the pair; False if it was already there (a replay)."""
        ...


@runtime_checkable
class Store(Protocol):
    """A backend for every kind of shared state: ``tokens`` (a :class:`TokenStore`),
    ``nonces`` (a :class:`NonceCache`) and ``pacer_state(policy)`` (a
    :class:`~surefoot.pacing.PacerState` for ``namespace``)."""

    @property
    def tokens(self) -> TokenStore: ...

    @property
    def nonces(self) -> NonceCache: ...

    def pacer_state(self, pacing: PacingPolicy, *, namespace: str = "default") -> PacerState:
        ...

    def close(self) -> None: ...
