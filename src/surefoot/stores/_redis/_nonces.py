"""The verifier's nonce cache on Redis (see :mod:`surefoot.stores._nonces`).

One key per (key id, nonce): ``<prefix>{<sha256 of both>}:nonce``, written by one
``SET NX PX`` — a single-key command, so a Redis Cluster spreads nonces over its slots.
"""

from __future__ import annotations

import hashlib
import math

from surefoot.errors import StoreUnavailable
from surefoot.stores._failure import FailureMode
from surefoot.stores._nonces import _check_ttl, _LocalFallback
from surefoot.stores._redis._connection import RedisConnection

__all__ = ["RedisNonceCache"]


class RedisNonceCache:
    """Nonces as Redis keys with a TTL, shared by a fleet."""

    __slots__ = ("_fallback", "conn")

    def __init__(self, conn: RedisConnection, failure: FailureMode) -> None:
        self.conn = conn
        self._fallback = _LocalFallback(failure)

    def __repr__(self) -> str:
        return f"RedisNonceCache({self.conn!r}, on_failure={self._fallback.failure.mode!r})"

    @property
    def failure(self) -> FailureMode:
        return self._fallback.failure

    def key(self, key_id: str, nonce: str) -> str:
        """The Redis key of a pair."""
        raw_id = key_id.encode("utf-8", "surrogatepass")
        raw = len(raw_id).to_bytes(4, "big") + raw_id + nonce.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw).hexdigest()
        return self.conn.key(digest, "nonce")

    def add_if_absent(self, key_id: str, nonce: str, *, now: float, ttl: float) -> bool:
        _check_ttl(ttl)
        fallback = self._fallback
        if fallback.failure.fail_open and fallback.failure.skip_backend():
            return fallback.fallback(key_id, nonce, now, ttl)
        ttl_ms = max(1, math.ceil(ttl * 1000))
        try:
            reply = self.conn.command("set", self.key(key_id, nonce), b"1", nx=True, px=ttl_ms)
        except StoreUnavailable as exc:
            fallback.failure.failed(exc, "recording an HMAC nonce")
            return fallback.fallback(key_id, nonce, now, ttl)
        if not reply:
            fallback.failure.succeeded()
            return False
        return fallback.accepted_by_store(key_id, nonce, now, ttl)
