"""The Redis connection shared by the Redis store's parts.

Scripts are registered once (``SCRIPT LOAD`` on first use) and called by SHA
(``EVALSHA``), with redis-py's fallback to loading them again after ``NOSCRIPT`` (a
restarted or flushed server). Every redis-py exception is translated here: callers see
:class:`~surefoot.StoreUnavailable` (down, slow, loading, read-only) or
:class:`~surefoot.StoreError` (anything else), never a raw ``redis`` exception.

Keys are ``<prefix>{<partition>}:<name>``: the braces are a Redis Cluster hash tag, so
all the keys of one partition (or one token) live in one slot and one script may touch
them together.

Every call waits at most ``timeout`` (the client's socket timeouts), or less when a
request's deadline is near (:func:`~surefoot.stores._deadline.wait_for`). redis-py has
no per-call timeout that also covers connecting (and the handshake of a new
connection), so such a call is made from a small pool of worker threads and waited for
that long: if it has not answered by then, the caller goes on (the call is
:class:`~surefoot.StoreUnavailable` to it) and the call itself ends, in the worker, at
the client's own timeout. Like any call that times out, it may still have been applied.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

from surefoot._extras import require
from surefoot.errors import ConfigurationError, StoreError, StoreUnavailable
from surefoot.stores._deadline import wait_for

__all__ = ["RedisConnection"]

#: Worker threads for calls cut short by a deadline (per connection): calls to a server
#: that answers take a millisecond; to one that does not, the client's timeout at most.
_WORKERS = 8


def _redis() -> Any:
    return require("redis", extra="redis", what="the Redis store")


class RedisConnection:
    """A redis-py client with short timeouts, no hidden retries, and error translation."""

    __slots__ = ("_lock", "_scripts", "_workers", "client", "prefix", "timeout")

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "surefoot:",
        timeout: float = 0.5,
    ) -> None:
        redis = _redis()
        if (url is None) == (client is None):
            raise ConfigurationError("give the Redis store either url= or client=")
        if not timeout > 0:
            raise ConfigurationError("timeout must be positive")
        if client is None:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # No silent retries: a dead server costs one timeout, and the store's
                # failure mode (open or closed) decides what happens next.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
            )
        self.client = client
        self.prefix = prefix
        self.timeout = timeout
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: (process id, pool) for the calls cut short by a deadline, made on first use.
        self._workers: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None

    def __repr__(self) -> str:
        # The URL may hold a password: show only where it points.
        kwargs = getattr(getattr(self.client, "connection_pool", None), "connection_kwargs", {})
        where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return f"RedisConnection({where}, prefix={self.prefix!r})"

    def key(self, tag: str, name: str) -> str:
        """``<prefix>{<tag>}:<name>`` — one Cluster slot per tag."""
        safe = tag.replace("{", "(").replace("}", ")")
        return f"{self.prefix}{{{safe}}}:{name}"

    def run(self, name: str, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by SHA (loading it on ``NOSCRIPT``)."""
        script = self._scripts.get(name)
        if script is None:
            with self._lock:
                script = self._scripts.get(name)
                if script is None:
                    script = self._scripts[name] = self.client.register_script(source)
        return self.call(script, keys=list(keys), args=list(args))

    def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``function`` (a client method or a script), translating errors; within
        ``timeout``, or what a request's deadline leaves of it."""
        redis = _redis()
        exceptions = redis.exceptions
        wait = wait_for(self.timeout)
        try:
            if wait >= self.timeout:
                return function(*args, **kwargs)  # the client's timeouts bound it
            return self._call_within(wait, function, args, kwargs)
        except (
            exceptions.ConnectionError,
            exceptions.TimeoutError,
            exceptions.BusyLoadingError,
            exceptions.ReadOnlyError,
            exceptions.ClusterDownError,
            OSError,
        ) as exc:
            raise StoreUnavailable(f"Redis is unavailable: {type(exc).__name__}") from None
        except exceptions.RedisError as exc:
            # A script error or a wrong type: a bug or a foreign key under our prefix.
            raise StoreError(f"Redis error: {type(exc).__name__}: {_short(exc)}") from None

    def _call_within(
        self, wait: float, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``function(*args, **kwargs)`` in a worker thread, waited for ``wait`` seconds."""
        future = self._pool().submit(function, *args, **kwargs)
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

    def close(self) -> None:
        workers, self._workers = self._workers, None
        if workers is not None and workers[0] == os.getpid():
            workers[1].shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):  # closing a broken connection
            self.client.close()


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
