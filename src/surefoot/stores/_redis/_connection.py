"""The Redis connection shared by the Redis store's parts: one server, a Cluster, or the
primary Redis Sentinel names.

Where: a URL — ``redis://`` / ``rediss://`` (one server, as redis-py reads it),
``redis+cluster://[user:password@]host:port[,host2:port2...]`` / ``rediss+cluster://``
(a Redis Cluster; the nodes listed are where discovery starts, any one is enough),
``redis+sentinel://[user:password@]host:port[,host2:port2...]/service_name[/db]`` /
``rediss+sentinel://`` (the Sentinels, port 26379 by default, asked in turn where the
primary of ``service_name`` is; the user and password are the data nodes', TLS is for
both; Sentinels that require a password of their own: build the client, below) — or an
already-built ``redis.Redis`` (``Sentinel(...).master_for(...)`` included) /
``redis.cluster.RedisCluster`` (its own timeouts and retries are then the caller's). A
Cluster or Sentinel client built from a URL is made on first use (redis-py's Cluster
client connects at construction): a Cluster that cannot be reached is then
:class:`~surefoot.StoreUnavailable` to that call, like a dead server, not an error at
``RedisStore(...)``.

Keys are ``<prefix>{<tag>}:<name>``: the braces are a Redis Cluster hash tag, so all
the keys of one tag — one token (token, version, lease), one pacing partition, one
retry budget, one nonce — live in one slot, and every script touches the keys of one
tag only: no ``CROSSSLOT`` is possible. The store uses no pipelines, transactions or
``WATCH``: a script is its only multi-key operation. A prefix may hold no braces (a
``{...}`` in it would be the hash tag of every key; a ``{}`` would make keys of one
tag hash apart). The key layout is the one surefoot has used since its Redis store
began, for one server and a Cluster alike: old and new clients share state.

Scripts are called by SHA (``EVALSHA``); on ``NOSCRIPT`` (a restarted or flushed
server, a Cluster node that has not run it yet, a replica just promoted: scripts are a
per-node cache, never replicated) the call is made again with ``EVAL`` and the source,
routed by its keys like any call, which also caches the script on that node. No
``SCRIPT LOAD`` to every primary (which would fail while one of them is down).

Errors: every redis-py exception is translated here: callers see
:class:`~surefoot.StoreUnavailable` (down, slow, loading, read-only, refusing writes
without its replicas (``NOREPLICAS``), Cluster down or unreachable, no primary named by
the Sentinels) or :class:`~surefoot.StoreError` (anything else), never a raw ``redis``
exception.

Retries: none on one server (a dead server costs one timeout; the store's failure mode
decides what happens next). On a Cluster, redis-py follows ``MOVED`` and ``ASK``
redirections itself (up to 16 per call, ``TRYAGAIN`` included) and refreshes its slot
map; its own retry of connection errors and timeouts is off (a command that timed out
may have been applied: sending it again could apply a write twice). Through Sentinel,
redis-py asks the Sentinels where the primary is whenever it opens a connection. On a
Cluster and through Sentinel, this connection retries, within the call's wait (below),
only what certainly did not run: ``CLUSTERDOWN`` / ``MASTERDOWN`` / an uncovered slot /
no primary named by the Sentinels (a failover in progress), a read-only node (a primary
turned replica), a loading one, ``NOREPLICAS``, and a connection that could not be
opened (a dead node, before its replica is promoted) — at most
:data:`CLUSTER_ATTEMPTS` attempts, spaced by a jittered exponential backoff
(:data:`BACKOFF_BASE` doubling, up to :data:`BACKOFF_CAP`), and never past the call's
wait.

Sentinel's failovers: redis-py asks the Sentinels only when it opens a connection, and a
primary replaced by ``SENTINEL FAILOVER`` stays a primary (its clients' writes accepted,
then thrown away) until the Sentinels make it a replica of the new one, some ten seconds
later. So a connection through Sentinel follows their ``+switch-master`` announcements
(:class:`_SentinelWatcher`, a thread): the pool leaves the old primary as soon as one is
made, and the store's failure mode tries the new one at once (not a second after its
last failure). What the old primary accepted after its replica was promoted and before
the Sentinels announced it (up to about a second: they wait for the replica's next
``INFO``) is lost: Sentinel's failovers are not coordinated, unlike ``CLUSTER
FAILOVER``. Redis's own mitigation is ``min-replicas-to-write``: a primary left with
fewer replicas refuses writes (``NOREPLICAS``, retried here), which narrows that window
at the price of writes while replicas are missing.

Durability (``wait_replicas``): Redis replicates asynchronously, so a write the primary
acknowledged may be lost if the primary crashes before a replica has it and that replica
is promoted. With ``wait_replicas=N`` the writes that carry a token's identity (a token
saved or deleted, a refresh lease taken) are followed by ``WAIT N`` on the same
connection, for a quarter of the call's wait: a write acknowledged by N replicas
survives a failover to one of them (Redis Cluster and Sentinel promote the most
up-to-date replica). If fewer acknowledge in time, or the ``WAIT`` fails (its primary
turned replica in a failover), the write still stands (logged at debug level): it is
then as durable as asynchronous replication makes it — except through Sentinel when the
Sentinels now name another primary: the write went to a replaced one (whose writes are
thrown away), so it is made again, once, on the new one. Pacing state and nonces never
wait: losing a few milliseconds of pacing state paces a little early once; a nonce
written just before a crash could be replayed once. A ``CLUSTER FAILOVER`` loses
nothing: the replica catches up before it takes over (a ``SENTINEL FAILOVER``: see
above).

Every call waits at most ``timeout`` (the client's socket timeouts; through Sentinel, a
new connection first asks the Sentinels, each within its share of ``timeout``), or less
when a request's deadline is near (:func:`~surefoot.stores._deadline.wait_for`). redis-py has
no per-call timeout that also covers connecting (and the handshake of a new
connection), so such a call is made from a small pool of worker threads and waited for
that long: if it has not answered by then, the caller goes on (the call is
:class:`~surefoot.StoreUnavailable` to it) and the call itself ends, in the worker, at
the client's own timeout. Like any call that times out, it may still have been applied.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from surefoot._extras import require
from surefoot._log import logger
from surefoot.errors import ConfigurationError, StoreError, StoreUnavailable
from surefoot.stores._deadline import wait_for

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "CLUSTER_ATTEMPTS", "RedisConnection"]

#: Worker threads for calls cut short by a deadline (per connection): calls to a server
#: that answers take a millisecond; to one that does not, the client's timeout at most.
_WORKERS = 8
#: Attempts of one call on a Cluster, for errors that prove the command did not run.
CLUSTER_ATTEMPTS = 4
#: The first retry's backoff (seconds, jittered: half to all of it), doubling each time.
BACKOFF_BASE = 0.025
#: The longest backoff between two attempts (seconds).
BACKOFF_CAP = 0.2
#: Through Sentinel: ask the Sentinels where the primary is at least this often (seconds),
#: besides following their announcements (one missed while not listening).
SENTINEL_RECHECK = 5.0
#: Through Sentinel: after an announced switch, how long the Sentinels are asked until
#: the one asked first names the new primary too (seconds).
SENTINEL_FOLLOW = 2.0
#: How often a Cluster client built here may refresh its slot map after errors.
_TOPOLOGY_REFRESH_MIN_INTERVAL = 0.05

_CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
_SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}


def _redis() -> Any:
    return require("redis", extra="redis", what="the Redis store")


class RedisConnection:
    """A redis-py client (one server or a Cluster) with short timeouts, no hidden
    retries, and error translation."""

    __slots__ = (
        "_client",
        "_factory",
        "_lock",
        "_nodes",
        "_shas",
        "_watcher",
        "_workers",
        "cluster",
        "on_switch",
        "prefix",
        "sentinel",
        "timeout",
        "wait_replicas",
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "surefoot:",
        timeout: float = 0.5,
        wait_replicas: int = 0,
    ) -> None:
        redis = _redis()
        if (url is None) == (client is None):
            raise ConfigurationError("give the Redis store either url= or client=")
        if not timeout > 0:
            raise ConfigurationError("timeout must be positive")
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or (
            wait_replicas < 0
        ):
            raise ConfigurationError("wait_replicas must be a non-negative integer")
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                "the Redis key prefix may not contain '{' or '}': the store puts a Redis "
                "Cluster hash tag after it"
            )
        self.prefix = prefix
        self.timeout = timeout
        self.wait_replicas = wait_replicas
        self._client: Any = None
        self._factory: Callable[[], Any] | None = None
        self._nodes = ""
        self._shas: dict[str, str] = {}
        self._lock = threading.Lock()
        #: (process id, pool) for the calls cut short by a deadline, made on first use.
        self._workers: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
        #: Follows the Sentinels' switches (through Sentinel only), made on first use.
        self._watcher: _SentinelWatcher | None = None
        #: Through Sentinel: called (from the watcher's thread) when the Sentinels name a
        #: new primary; the store's failure mode then tries it at once.
        self.on_switch: Callable[[], None] | None = None
        self.sentinel = False
        from redis.cluster import RedisCluster
        from redis.sentinel import SentinelConnectionPool

        if client is not None:
            if not isinstance(client, redis.Redis | RedisCluster):
                raise ConfigurationError(
                    "client= must be a redis.Redis or a redis.cluster.RedisCluster, "
                    f"not {type(client).__name__}"
                )
            self.cluster = isinstance(client, RedisCluster)
            # Sentinel(...).master_for(...): a client whose pool asks the Sentinels
            self.sentinel = isinstance(
                getattr(client, "connection_pool", None), SentinelConnectionPool
            )
            self._client = client
            return
        if not isinstance(url, str):
            raise ConfigurationError("url= must be a string")
        scheme = url.partition("://")[0].lower()
        if scheme in _CLUSTER_SCHEMES:
            self.cluster = True
            self._factory, self._nodes = _cluster_factory(
                url, _CLUSTER_SCHEMES[scheme], timeout
            )
            return
        self.cluster = False
        if scheme in _SENTINEL_SCHEMES:
            self.sentinel = True
            self._factory, self._nodes = _sentinel_factory(
                url, _SENTINEL_SCHEMES[scheme], timeout
            )
            return
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # No silent retries: a dead server costs one timeout, and the store's
                # failure mode (open or closed) decides what happens next.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ConfigurationError(f"not a Redis URL: {_short(exc)}") from None

    @property
    def client(self) -> Any:
        """The redis-py client (a Cluster client is made here on first use;
        :class:`~surefoot.StoreUnavailable` if no node of it answers)."""
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    factory = self._factory
                    assert factory is not None
                    client = self._client = _translated(factory)
        return client

    def __repr__(self) -> str:
        # The URL may hold a password: show only where it points.
        if self.cluster:
            where = self._nodes or _cluster_nodes(self._client)
            return f"RedisConnection(cluster {where}, prefix={self.prefix!r})"
        if self.sentinel:
            where = self._nodes or _sentinel_nodes(self._client)
            return f"RedisConnection(sentinel {where}, prefix={self.prefix!r})"
        kwargs = getattr(getattr(self._client, "connection_pool", None), "connection_kwargs", {})
        where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return f"RedisConnection({where}, prefix={self.prefix!r})"

    def key(self, tag: str, name: str) -> str:
        """``<prefix>{<tag>}:<name>`` — one Cluster slot per tag. Braces in the tag are
        escaped (as ``%7B`` and ``%7D``, and ``%`` as ``%25``), so that distinct tags
        stay distinct keys."""
        safe = tag.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
        return f"{self.prefix}{{{safe}}}:{name}"

    def run(self, name: str, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by SHA (again with ``EVAL`` and its source on
        ``NOSCRIPT``). All ``keys`` must share one hash tag."""
        return self.call(self._script, self._sha(name, source), source, list(keys), list(args))

    def run_durable(
        self, name: str, source: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """:meth:`run` for a write that should survive a failover: ``WAIT`` for
        ``wait_replicas`` replicas after it (if any), within the call's wait."""
        if not self.wait_replicas:
            return self.run(name, source, keys, args)
        # a quarter of the call's wait: the server ends a WAIT at its next tick (up to
        # 100 ms late at the default hz), within the client's socket timeout
        wait_ms = max(1, int(wait_for(self.timeout) * 250))
        return self.call(
            self._script_and_wait, self._sha(name, source), source, list(keys), list(args),
            wait_ms,
        )

    def _sha(self, name: str, source: str) -> str:
        sha = self._shas.get(name)
        if sha is None:
            sha = self._shas[name] = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324
        return sha

    def command(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A client method by name (``"set"``, ...), like :meth:`call`."""
        return self.call(lambda: getattr(self.client, name)(*args, **kwargs))

    def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``function`` (a client method or a script), translating errors; within
        ``timeout``, or what a request's deadline leaves of it (on a Cluster, with the
        retries described in the module's docstring)."""
        wait = wait_for(self.timeout)
        give_up = time.monotonic() + wait
        if self.sentinel:
            self._watch()
        if self.cluster or self.sentinel:
            args = (function, give_up, *args)
            function = _with_cluster_retries
        if wait >= self.timeout:
            return _translated(function, *args, **kwargs)  # the client's timeouts bound it
        return self._call_within(wait, function, args, kwargs)

    # -- scripts ---------------------------------------------------------------------

    def _script(self, sha: str, source: str, keys: list[str], args: list[Any]) -> Any:
        exceptions = _redis().exceptions
        client = self.client
        try:
            return client.evalsha(sha, len(keys), *keys, *args)
        except exceptions.NoScriptError:
            # Not in this node's script cache (restarted, flushed, just promoted):
            # EVAL runs it and caches it there, routed by the keys like EVALSHA.
            return client.eval(source, len(keys), *keys, *args)

    def _script_and_wait(
        self, sha: str, source: str, keys: list[str], args: list[Any], wait_ms: int
    ) -> Any:
        """The script (``EVAL``: these writes are few, and no ``NOSCRIPT`` round), then
        ``WAIT`` on the same connection (the node that owns the keys' slot, on a
        Cluster)."""
        exceptions = _redis().exceptions
        client = self.client
        if self.sentinel:
            return self._sentinel_script_and_wait(client, source, keys, args, wait_ms)
        node_client = client
        if self.cluster:
            node_client = client.get_redis_connection(client.get_node_from_key(keys[0]))
        pipe = node_client.pipeline(transaction=False)
        pipe.eval(source, len(keys), *keys, *args)
        pipe.execute_command("WAIT", self.wait_replicas, wait_ms)
        result, acked = pipe.execute(raise_on_error=False)
        if isinstance(result, exceptions.AskError):  # MOVED too: the slot moved
            # Not run: once more through the client, which follows redirections and
            # patches its slot map (the next durable write goes to the new owner); this
            # one goes without WAIT.
            logger.debug("surefoot: Redis slot moved; a durable write went without WAIT")
            return self._script(sha, source, keys, args)
        if isinstance(result, BaseException):
            raise result
        # The write stands whatever WAIT says: fewer replicas in time, or an error (its
        # primary turned replica in a failover: "UNBLOCKED ... master -> replica")
        # leaves it as durable as asynchronous replication makes it.
        self._acknowledged(acked, wait_ms)
        return result

    def _sentinel_script_and_wait(
        self, client: Any, source: str, keys: list[str], args: list[Any], wait_ms: int,
        *, again: bool = True,
    ) -> Any:
        """Through Sentinel: the script, then ``WAIT``, on one connection held for both
        (two round trips, so that it is known which one an error answers — redis-py makes
        one error of a ``READONLY`` answer to the script, not run, and of an
        ``UNBLOCKED`` answer to ``WAIT``, after it ran — and which primary took the
        write). If too few replicas acknowledge it and the Sentinels now name another
        primary, the write went to one that was replaced (a connection opened before the
        switch), whose writes are thrown away when the Sentinels make it a replica of the
        new one: it is made again, once, on the new one. (Safe if the new one had it
        after all: its owner takes a lease again, a fenced save is refused and the caller
        reads the token it wrote, a deletion changes nothing.)"""
        redis = _redis()
        held = redis.Redis(connection_pool=client.connection_pool, single_connection_client=True)
        try:
            result = held.eval(source, len(keys), *keys, *args)
            where = (held.connection.host, held.connection.port)
            try:
                acked: Any = held.execute_command("WAIT", self.wait_replicas, wait_ms)
            except redis.exceptions.RedisError as exc:  # the write stands: see below
                acked = exc
        finally:
            held.close()
        if self._acknowledged(acked, wait_ms) or not again:
            return result
        try:
            named = client.connection_pool.get_master_address()
        except redis.exceptions.RedisError:  # none named now: nothing to compare with
            return result
        if named is None or tuple(named) == where:
            return result
        logger.debug("surefoot: a Redis write went to a replaced primary; made again on the "
                     "new one")
        return self._sentinel_script_and_wait(client, source, keys, args, wait_ms, again=False)

    def _acknowledged(self, acked: Any, wait_ms: int) -> bool:
        """``WAIT``'s answer: enough replicas have the write (else that is logged)."""
        if isinstance(acked, int) and acked >= self.wait_replicas:
            return True
        logger.debug(
            "surefoot: a Redis write was not acknowledged by %d replicas in %d ms: %s",
            self.wait_replicas, wait_ms,
            _short(acked) if isinstance(acked, BaseException) else acked,
        )
        return False

    # -- waiting ---------------------------------------------------------------------

    def _call_within(
        self, wait: float, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``function(*args, **kwargs)`` in a worker thread, waited for ``wait`` seconds."""
        future = self._pool().submit(_translated, function, *args, **kwargs)
        try:
            return future.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            future.cancel()  # not started yet (the workers are stuck): never started
            raise StoreUnavailable(
                f"Redis is unavailable: no answer within {wait:.3f} s "
                "(what the request's deadline leaves)"
            ) from None

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        workers = self._workers
        if workers is None or workers[0] != os.getpid():  # threads do not survive fork
            with self._lock:
                workers = self._workers
                if workers is None or workers[0] != os.getpid():
                    workers = self._workers = (
                        os.getpid(),
                        concurrent.futures.ThreadPoolExecutor(
                            _WORKERS, thread_name_prefix="surefoot-redis"
                        ),
                    )
        return workers[1]

    def _watch(self) -> None:
        """Through Sentinel: make sure this process follows the Sentinels' switches."""
        watcher = self._watcher
        if watcher is not None and watcher.pid == os.getpid():
            return
        client = self.client
        with self._lock:
            watcher = self._watcher
            if watcher is None or watcher.pid != os.getpid():  # threads do not survive fork
                self._watcher = _SentinelWatcher(client.connection_pool, self.on_switch)

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        workers, self._workers = self._workers, None
        if workers is not None and workers[0] == os.getpid():
            workers[1].shutdown(wait=False, cancel_futures=True)
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                client.close()
            if self.sentinel and self._factory is not None:  # the Sentinels' clients: ours
                for sentinel in getattr(client.connection_pool.sentinel_manager, "sentinels", ()):
                    with contextlib.suppress(Exception):
                        sentinel.close()


# -- errors and retries ----------------------------------------------------------------


#: redis-py's errors that mean "unavailable", by name: some are missing from the older
#: releases ``redis>=5`` admits (``RedisClusterUnreachableError`` came with 8.2, which
#: needs Python 3.11), and those are left out
_UNAVAILABLE = ("ConnectionError", "TimeoutError", "ReadOnlyError", "ClusterDownError",
                "TryAgainError", "SlotNotCoveredError", "RedisClusterUnreachableError")


@functools.lru_cache(maxsize=1)
def _unavailable(exceptions: Any) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [OSError]
    for name in _UNAVAILABLE:
        error = getattr(exceptions, name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


def _translated(function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``, with redis-py's exceptions translated."""
    exceptions = _redis().exceptions
    try:
        return function(*args, **kwargs)
    except StoreError:
        raise
    except _unavailable(exceptions) as exc:
        raise StoreUnavailable(f"Redis is unavailable: {type(exc).__name__}") from None
    except exceptions.ClusterCrossSlotError as exc:  # a bug: keys of two hash tags
        raise StoreError(f"Redis error: CROSSSLOT: {_short(exc)}") from None
    except exceptions.RedisClusterException as exc:
        # Not a RedisError: "cannot be connected" (no startup node answers) and the
        # like at the first use of a Cluster, or a cluster misconfiguration.
        text = _short(exc)
        if "connect" in text.lower() or "reach" in text.lower():
            raise StoreUnavailable(f"Redis Cluster is unavailable: {text}") from None
        raise StoreError(f"Redis Cluster error: {type(exc).__name__}: {text}") from None
    except exceptions.RedisError as exc:
        if _no_replicas(exc):  # a primary set to refuse writes without its replicas
            raise StoreUnavailable("Redis is unavailable: NOREPLICAS") from None
        # A script error or a wrong type: a bug or a foreign key under our prefix.
        raise StoreError(f"Redis error: {type(exc).__name__}: {_short(exc)}") from None


#: What redis-py's Sentinel-managed connection raises (and disconnects) when the primary
#: it was connected to answers READONLY (or UNBLOCKED to a blocking command): it turned
#: replica in a failover; the next connection asks the Sentinels again.
_DEMOTED = "The previous master is now a slave"


def _demoted(exc: BaseException) -> bool:
    return str(exc).startswith(_DEMOTED)


def _no_replicas(exc: BaseException) -> bool:
    """``NOREPLICAS``: a primary with ``min-replicas-to-write`` refused a write (not run)."""
    return str(exc).startswith("NOREPLICAS")


def _not_run(exc: BaseException) -> bool:
    """The error proves the command did not run (so sending it again is safe)."""
    exceptions = _redis().exceptions
    from redis.sentinel import MasterNotFoundError

    if isinstance(
        exc,
        exceptions.ClusterDownError  # CLUSTERDOWN, MASTERDOWN
        | exceptions.TryAgainError
        | exceptions.SlotNotCoveredError
        | exceptions.ReadOnlyError
        | exceptions.BusyLoadingError
        # no Sentinel names a primary (a failover in progress): nothing was sent
        | MasterNotFoundError,
    ):
        return True
    if isinstance(exc, exceptions.ResponseError):
        return _no_replicas(exc)
    if isinstance(exc, exceptions.ConnectionError | exceptions.TimeoutError):
        # redis-py's wording for a connection that could not be opened (nothing sent),
        # and what its Sentinel-managed connection makes of a READONLY answer (the
        # command refused; of an UNBLOCKED one too, but only a blocking command meets
        # that: WAIT, which _sentinel_script_and_wait sends on its own)
        text = str(exc)
        return (
            " connecting to " in text
            or text.startswith("Timeout connecting")
            or _demoted(exc)
        )
    return False


def _with_cluster_retries(function: Any, give_up: float, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``, again after an error that proves it did not run,
    up to :data:`CLUSTER_ATTEMPTS` attempts, never starting one after ``give_up`` (on a
    Cluster and through Sentinel)."""
    attempt = 1
    while True:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if attempt >= CLUSTER_ATTEMPTS or not _not_run(exc):
                raise
            delay = min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_CAP)
            delay *= random.uniform(0.5, 1.0)  # jitter
            if time.monotonic() + delay >= give_up:
                raise
            logger.debug("surefoot: Redis call retried after %s", type(exc).__name__)
            time.sleep(delay)
            attempt += 1


# -- Cluster and Sentinel URLs ---------------------------------------------------------


def _parse_hosts(
    url: str, what: str, default_port: int
) -> tuple[str | None, str | None, list[tuple[str, int]], str]:
    """The user name, password, ``host:port`` list and path of a URL that names several
    hosts (``redis+cluster://``, ``redis+sentinel://``); ``what`` names it in errors."""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    netloc, _, query_in_netloc = netloc.partition("?")
    if query or query_in_netloc:
        raise ConfigurationError(f"a {scheme.lower()}:// URL takes no query string")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
        if not sep:  # redis://secret@host: a password alone
            username, password = None, unquote(user) or None
    nodes: list[tuple[str, int]] = []
    for raw in netloc.split(","):
        part = raw.strip()
        if not part:
            continue
        if part.startswith("["):  # [IPv6]:port
            host, _, port_text = part[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ConfigurationError(f"not a port in the {what} URL: {port_text!r}") from None
        if not host or not 0 < port < 65536:
            raise ConfigurationError(f"not a host:port in the {what} URL: {part!r}")
        nodes.append((host, port))
    if not nodes:
        raise ConfigurationError(f"a {scheme.lower()}:// URL needs at least one host:port")
    return username, password, nodes, path


def _cluster_factory(url: str, ssl: bool, timeout: float) -> tuple[Callable[[], Any], str]:
    """A function that builds the Cluster client of ``url``, and its nodes (for repr)."""
    username, password, nodes, path = _parse_hosts(url, "Redis Cluster", 6379)
    if path not in ("", "0"):
        raise ConfigurationError("a Redis Cluster has only database 0 (the URL's path)")

    def build() -> Any:
        from redis.backoff import NoBackoff
        from redis.cluster import ClusterNode, RedisCluster
        from redis.retry import Retry

        return RedisCluster(
            startup_nodes=[
                ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in nodes
            ],
            username=username,
            password=password,
            ssl=ssl,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            # redis-py follows MOVED / ASK / TRYAGAIN itself; a timed-out command is
            # never sent again (see the module's docstring for what is retried).
            retry=Retry(NoBackoff(), 0),
            topology_refresh_min_interval=_TOPOLOGY_REFRESH_MIN_INTERVAL,
        )

    return build, ",".join(f"{host}:{port}" for host, port in nodes)


def _cluster_nodes(client: Any) -> str:
    try:
        return ",".join(node.name for node in client.get_primaries())
    except Exception:  # only for repr
        return "?"


def _sentinel_factory(url: str, ssl: bool, timeout: float) -> tuple[Callable[[], Any], str]:
    """A function that builds the client of ``url`` (the primary the Sentinels name),
    and where it points (for repr)."""
    username, password, sentinels, path = _parse_hosts(url, "Redis Sentinel", 26379)
    service_text, _, db_text = path.partition("/")
    service = unquote(service_text)
    if not service:
        raise ConfigurationError(
            "a redis+sentinel:// URL names the service after the hosts: "
            "redis+sentinel://host:26379/mymaster"
        )
    db_text = db_text.rstrip("/")
    if not (db_text.isdigit() or db_text == ""):
        raise ConfigurationError(f"not a database number in the Redis Sentinel URL: {db_text!r}")
    db = int(db_text or 0)

    def build() -> Any:
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        from redis.sentinel import Sentinel

        tls: dict[str, Any] = {"ssl": True} if ssl else {}
        # Asking the Sentinels: each at most once per discovery (redis-py goes on to the
        # next one itself), within its share of the store's timeout, so that a discovery
        # past Sentinels that do not answer takes one timeout at most.
        share = timeout / len(sentinels)
        manager = Sentinel(sentinels, sentinel_kwargs={
            "socket_timeout": share, "socket_connect_timeout": share,
            "retry": Retry(NoBackoff(), 0), **tls,
        })
        return manager.master_for(
            service,
            username=username,
            password=password,
            db=db,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            # no silent retries (see the module's docstring for what is retried)
            retry=Retry(NoBackoff(), 0),
            **tls,
        )

    hosts = ",".join(f"{host}:{port}" for host, port in sentinels)
    return build, f"{hosts}/{service}"


def _sentinel_nodes(client: Any) -> str:
    try:
        pool = client.connection_pool
        hosts = ",".join(
            "{host}:{port}".format_map(sentinel.connection_pool.connection_kwargs)
            for sentinel in pool.sentinel_manager.sentinels
        )
        return f"{hosts}/{pool.service_name}"
    except Exception:  # only for repr
        return "?"


class _SentinelWatcher:
    """Follows the Sentinels' ``+switch-master`` announcements for one service (their
    pub/sub, one Sentinel at a time) and points the client's pool at the new primary at
    once: redis-py asks the Sentinels only when it opens a connection, and a primary that
    a ``SENTINEL FAILOVER`` replaced stays a primary, taking the writes of the
    connections still open to it (which its demotion then throws away), until the
    Sentinels make it a replica of the new one, some ten seconds later. A new primary
    named, the pool drops its idle connections to the old one, and the others as they
    come back to it. Every :data:`SENTINEL_RECHECK` seconds without an announcement, and
    whenever it listens to another Sentinel, it asks anyway (one may have been missed).
    A daemon thread; it ends with :meth:`stop`, or once the client is gone."""

    __slots__ = ("_manager", "_on_switch", "_pool", "_service", "_stop", "pid", "thread")

    def __init__(self, pool: Any, on_switch: Callable[[], None] | None = None) -> None:
        self.pid = os.getpid()
        self._on_switch = on_switch
        self._pool = weakref.ref(pool)
        self._manager = pool.sentinel_manager
        self._service = pool.service_name
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="surefoot-sentinel", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        turn = failures = 0
        while not self._stop.is_set() and self._pool() is not None:
            sentinels = list(self._manager.sentinels)
            pubsub = sentinels[turn % len(sentinels)].pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe("+switch-master")
                self._follow(None)
                failures = 0
                asked = time.monotonic()
                while not self._stop.is_set() and self._pool() is not None:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        announced = _switched_to(message.get("data"), self._service)
                        if announced is not None:
                            logger.debug("surefoot: Sentinel switched the primary: %s:%s",
                                         *announced)
                            self._follow(announced)
                            asked = time.monotonic()
                    if time.monotonic() - asked >= SENTINEL_RECHECK:
                        self._follow(None)
                        asked = time.monotonic()
            except Exception as exc:  # that Sentinel is down: listen to the next one
                logger.debug("surefoot: Sentinel subscription lost: %s", _short(exc))
                turn += 1
                failures += 1
                self._stop.wait(min(0.05 * 2 ** min(failures, 5), 1.0))
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _follow(self, announced: tuple[str, int] | None) -> None:
        """Ask the Sentinels where the primary is (redis-py's pool then leaves the old
        one); after an announcement, until they name the announced primary (the one asked
        first may learn of it a moment after the one that announced it), for at most
        :data:`SENTINEL_FOLLOW` seconds. A new primary named: ``on_switch()``."""
        give_up = time.monotonic() + SENTINEL_FOLLOW
        while not self._stop.is_set():
            pool = self._pool()
            if pool is None:
                return
            known = pool.master_address
            try:
                address = pool.get_master_address()
            except Exception:  # none named now (a failover under way): calls will see
                address = None
            del pool
            if address is not None and known is not None and address != known:
                if self._on_switch is not None:
                    try:
                        self._on_switch()
                    except Exception:  # pragma: no cover - a bug; the watcher goes on
                        logger.exception("surefoot: on_switch failed")
                return
            if announced is None or address == announced or time.monotonic() >= give_up:
                return
            self._stop.wait(0.02)


def _switched_to(data: object, service: str) -> tuple[str, int] | None:
    """The new primary of a ``+switch-master`` message (``<name> <old ip> <old port>
    <new ip> <new port>``) about ``service``."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
    words = text.split()
    if len(words) != 5 or words[0] != service or not words[4].isdigit():
        return None
    return words[3], int(words[4])


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
