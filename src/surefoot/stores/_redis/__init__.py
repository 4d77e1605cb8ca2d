"""The Redis store: state shared by a fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot.pacing._config import PacingPolicy
from surefoot.pacing._state import PacerState
from surefoot.stores._failure import FailureMode, OnFailure

if TYPE_CHECKING:
    import redis


class RedisStore:
    """State shared by a fleet through one Redis server (or Cluster).

    ``url`` (``redis://[:password@]host:port/db``, ``rediss://`` ...) or ``client`` (a
    ``redis.Redis``). ``prefix`` starts every key. ``timeout`` bounds every call; a call
    made for a request whose deadline is near waits less (its share of what is left).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        prefix: str = "surefoot:",
        timeout: float = 0.5,
        on_failure: OnFailure = "open",
    ) -> None:
        from surefoot.stores._redis._connection import RedisConnection
        from surefoot.stores._redis._nonces import RedisNonceCache
        from surefoot.stores._redis._tokens import RedisTokenStore

        self._conn = RedisConnection(url, client=client, prefix=prefix, timeout=timeout)
        self.failure = FailureMode(on_failure, "Redis store")
        self.tokens = RedisTokenStore(self._conn, self.failure)
        self.nonces = RedisNonceCache(self._conn, self.failure)

    def __repr__(self) -> str:
        return f"RedisStore({self._conn!r}, on_failure={self.failure.mode!r})"

    def pacer_state(self, pacing: PacingPolicy, *, namespace: str = "default") -> PacerState:
        from surefoot.stores._redis._pacing import RedisPacerState

        return RedisPacerState(self._conn, self.failure, pacing, namespace=namespace)

    def close(self) -> None:
        self._conn.close()
