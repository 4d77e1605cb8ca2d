"""A local HTTP API for resilience testing: a better httpbin, on the standard library.

::

    from surefoot.sandbox import Sandbox

    with Sandbox(rate=5, burst=5) as sandbox:
        requests.get(sandbox.url + "/limited/x")   # quota, faults, OAuth2, HMAC, orders ...
        sandbox.stats()["429s"]

Routes: ``/get``, ``/headers``, ``/status/{code}``, ``/anything``, ``/delay/{s}``,
``/redirect-to``, ``/limited/*``, ``/flaky/*``, ``/oauth/token``, ``/protected``,
``/signed/*`` (HMAC), ``/signed-rfc9421/*`` (RFC 9421), ``/orders``, ``/stats``,
``/admin/{reset,outage,revoke-tokens}``.

The ``/limited`` quota (rate, burst) is per partition, set by ``quota_partition``
(``--quota-partition``): ``"credential"`` (default: per API key or bearer client, else
one ``"anonymous"`` quota), ``"global"`` (one quota for every request: a fleet of
processes is one client) or ``"client"`` (one quota per ``X-Client-Id`` header: each
process its own client). ``stats()["clients"]`` counts ``{"ok": n, "429s": m}`` per
``X-Client-Id`` (else per credential), for per-client fairness. An API key is shown as
its fingerprint, ``key:`` and 16 hex digits of its SHA-256 (as a
:class:`~surefoot.Pacer` names its ``api_key`` partitions), never as itself.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

from surefoot.sandbox._app import SandboxApp, SandboxConfig
from surefoot.sandbox._redis_server import RedisServer, RedisServerNotFound
from surefoot.sandbox._server import SandboxHTTPServer

__all__ = [
    "RedisServer",
    "RedisServerNotFound",
    "Sandbox",
    "SandboxApp",
    "SandboxConfig",
    "serve",
]


class Sandbox:
    """The sandbox server on a background thread. Use as a context manager.

    ``Sandbox(config, host=..., port=...)``; keyword ``options`` override fields of
    ``config`` (``Sandbox(rate=2, burst=1)``). Port 0 (the default) picks a free port.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: object,
    ) -> None:
        config = config or SandboxConfig()
        if options:
            config = dataclasses.replace(config, **cast("dict[str, Any]", options))
        self.config = config
        self.host = host
        self._requested_port = port
        self.app = SandboxApp(config)
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"Sandbox({where})"

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread. Idempotent."""
        with self._lock:
            if self._server is not None:
                return self
            self.app.stopping.clear()
            server = SandboxHTTPServer(
                (self.host, self._requested_port), self.app, verbose=self.config.verbose
            )
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"surefoot-sandbox-{server.server_port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, wake sleeping requests. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        self.app.close()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return self._server.server_port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def stats(self) -> dict[str, object]:
        """The counters, read from the application directly (same shape as ``GET /stats``)."""
        return self.app.stats()

    def reset(self) -> None:
        """Clear all counters and state (same as ``POST /admin/reset``)."""
        self.app.reset()


def serve(
    config: SandboxConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], object] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve in the foreground until ``stop`` is set (or KeyboardInterrupt).

    ``on_ready`` is called with the base URL once the server accepts connections. Set
    ``stop`` from another thread, not from a signal handler (raise KeyboardInterrupt there).
    """
    stop = stop or threading.Event()
    with Sandbox(config, host=host, port=port) as sandbox:
        if on_ready is not None:
            on_ready(sandbox.url)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
