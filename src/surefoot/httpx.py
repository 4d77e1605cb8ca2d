"""surefoot on httpx: transports and convenience clients, sync and async.

::

    from surefoot.httpx import AsyncClient, Client, AsyncTransport, Transport

    with Client("https://api.example.com", auth=auth, retry=policy) as api:
        api.get("/v1/items")                       # an httpx.Response

    async with AsyncClient("https://api.example.com", auth=auth) as api:
        await api.get("/v1/items")

    httpx.Client(transport=Transport(retry=policy, auth=auth))   # your own client

The clients have the same names, options and behaviour as :class:`surefoot.Client` (on
requests): a base URL, ``get/post/put/patch/delete/request``, credentials only for the base
URL's origin, redirects followed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from surefoot._extras import missing

try:
    import httpx
except ImportError as exc:
    raise missing(exc, "httpx", extra="httpx", what="surefoot.httpx") from None

from surefoot._adapters._client import BaseUrl, RevokesOnClose, SyncVerbs
from surefoot._adapters._client import passed as _passed
from surefoot._adapters._httpx import AsyncTransport, Transport, classify_httpx_error
from surefoot._core._clock import Clock
from surefoot._core._effects import AuthStrategy
from surefoot._core._policy import RetryPolicy
from surefoot.events import Hook
from surefoot.pacing._config import DEFAULT_PACING, PacingPolicy
from surefoot.pacing._pacer import Pacer

__all__ = ["AsyncClient", "AsyncTransport", "Client", "Transport", "classify_httpx_error"]


class Client(BaseUrl, RevokesOnClose, SyncVerbs[httpx.Response]):
    """Sync convenience client on ``httpx.Client`` with :class:`Transport`.

    kwargs of ``request`` and the verbs are httpx's (``params``, ``headers``, ``json``,
    ``content``, ``data`` ...). ``transport`` is the inner transport (default
    ``httpx.HTTPTransport()``).

    ``pacing``: as for :class:`surefoot.Client` — paced by default; ``None``: off.
    """

    _transport_type: Any = Transport
    _http_type: Any = httpx.Client
    transport: Transport
    http: httpx.Client

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthStrategy | tuple[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = 30.0,
        headers: Mapping[str, str] | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        pacing: PacingPolicy | Pacer | None = DEFAULT_PACING,
    ) -> None:
        self._set_base_url(base_url)
        self.transport = self._transport_type(
            transport,
            retry=retry,
            auth=auth,
            hook=hook,
            clock=clock,
            rng=rng,
            credential_origins=[self.base_url],
            pacing=pacing,
        )
        self.http = self._http_type(
            transport=self.transport, timeout=timeout, headers=headers, follow_redirects=True
        )

    def __repr__(self) -> str:
        return f"surefoot.httpx.Client({self._shown_base_url!r}, transport={self.transport!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client; with an auth built with ``revoke_on_close=True``, revoke
        its token too (once, best-effort: a failure is logged, not raised)."""
        try:
            self.http.close()
        finally:
            self._revoke_on_close(self.transport.auth)

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        # the caller's keyword arguments are httpx's own, passed through as they are
        return self.http.request(method.upper(), self.url_for(path), **_passed(kwargs))


class AsyncClient(BaseUrl, RevokesOnClose):
    """Async convenience client on ``httpx.AsyncClient`` with :class:`AsyncTransport`;
    the same options as :class:`Client` (``transport``: an async inner transport)."""

    _transport_type: Any = AsyncTransport
    _http_type: Any = httpx.AsyncClient
    transport: AsyncTransport
    http: httpx.AsyncClient

    __init__ = Client.__init__

    def __repr__(self) -> str:
        return f"surefoot.httpx.AsyncClient({self._shown_base_url!r}, transport={self.transport!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """As :meth:`Client.close`; the revocation runs in a worker thread."""
        try:
            await self.http.aclose()
        finally:
            await self._arevoke_on_close(self.transport.auth)

    async def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return await self.http.request(method.upper(), self.url_for(path), **_passed(kwargs))

    async def get(self, path: str, **kwargs: object) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: object) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: object) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: object) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: object) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)
