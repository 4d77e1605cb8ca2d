"""The Redis store: state shared by a fleet, on one Redis server, a Redis Cluster, or the
primary Redis Sentinel names.

Every key is ``<prefix>{<tag>}:<name>`` (a Cluster hash tag per token, pacing
partition, retry budget and nonce) and every script touches one tag's keys: see
:mod:`surefoot.stores._redis._connection` for the layout, the URLs, the retries on a
Cluster and through Sentinel, scripts on failover and the durability a failover leaves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot.pacing._config import PacingPolicy
from surefoot.pacing._state import PacerState
from surefoot.stores._failure import FailureMode, OnFailure

if TYPE_CHECKING:
    import redis
    import redis.cluster


class RedisStore:
    """State shared by a fleet through one Redis server (or Cluster, or Sentinel).

    ``url`` (``redis://[:password@]host:port/db``, ``rediss://`` ...; a Cluster:
    ``redis+cluster://[user:password@]host:port[,host2:port2...]``, ``rediss+cluster://``;
    the primary Redis Sentinel names:
    ``redis+sentinel://[user:password@]host:port[,host2:port2...]/service_name[/db]``,
    ``rediss+sentinel://``, the Sentinels' addresses, port 26379 by default, the user and
    password the data nodes') or ``client`` (a ``redis.Redis``, e.g.
    ``redis.sentinel.Sentinel(...).master_for(...)``, or a
    ``redis.cluster.RedisCluster``). Through Sentinel the store follows the Sentinels'
    announcements of a new primary, and leaves the old one at once. ``prefix``
    starts every key (no braces in it). ``timeout`` bounds every call; a call made for a
    request whose deadline is near waits less (its share of what is left).
    ``wait_replicas``: token writes and refresh leases wait (``WAIT``, within the call's
    time) for that many replicas, so that a failover to one of them loses none of them.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | redis.cluster.RedisCluster | None = None,
        prefix: str = "surefoot:",
        timeout: float = 0.5,
        on_failure: OnFailure = "open",
        wait_replicas: int = 0,
    ) -> None:
        from surefoot.stores._redis._connection import RedisConnection
        from surefoot.stores._redis._nonces import RedisNonceCache
        from surefoot.stores._redis._tokens import RedisTokenStore

        self._conn = RedisConnection(
            url, client=client, prefix=prefix, timeout=timeout, wait_replicas=wait_replicas
        )
        self.failure = FailureMode(on_failure, "Redis store")
        # Through Sentinel: a new primary named, the store is tried again at once (not a
        # second after its last failure): the failure mode takes it as an answer, and a
        # call that then fails is part of the same outage.
        self._conn.on_switch = self.failure.succeeded
        self.tokens = RedisTokenStore(self._conn, self.failure)
        self.nonces = RedisNonceCache(self._conn, self.failure)

    def __repr__(self) -> str:
        return f"RedisStore({self._conn!r}, on_failure={self.failure.mode!r})"

    def pacer_state(self, pacing: PacingPolicy, *, namespace: str = "default") -> PacerState:
        from surefoot.stores._redis._pacing import RedisPacerState

        return RedisPacerState(self._conn, self.failure, pacing, namespace=namespace)

    def close(self) -> None:
        self._conn.close()
