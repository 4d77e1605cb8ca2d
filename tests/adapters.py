"""A sync facade over every way of attaching surefoot, for the conformance suite.

``Api(kind, base_url, **client_kwargs)`` with ``kind`` one of :data:`KINDS` (surefoot's
clients, which run the pipeline in their transport or adapter):

* ``"requests"``    -- :class:`surefoot.Client` (requests);
* ``"httpx_sync"``  -- :class:`surefoot.httpx.Client`;
* ``"httpx_async"`` -- :class:`surefoot.httpx.AsyncClient`, driven on a private event loop
  (every call is ``loop.run_until_complete``), so tests are written once, synchronously;

or of :data:`AUTH_KINDS` (the auth object used alone, on the HTTP library's own client,
which runs the same pipeline with the no-retry policy; only ``auth``, ``timeout``,
``headers`` and ``transport`` of the client kwargs apply):

* ``"requests_auth"``    -- a plain ``requests.Session`` with ``session.auth = auth``;
* ``"httpx_sync_auth"``  -- ``httpx.Client(auth=auth, follow_redirects=True)`` over
  surefoot's ``Transport`` with no retries (what the README prescribes for following
  redirects with an auth object alone: httpx strips only ``Authorization`` itself);
* ``"httpx_async_auth"`` -- the same on ``httpx.AsyncClient``.

Responses are the native ones (``requests.Response`` / ``httpx.Response``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import requests

import surefoot
import surefoot.httpx

__all__ = ["ALL_KINDS", "AUTH_KINDS", "KINDS", "Api", "echoed_headers", "recording_transport"]

KINDS = ("requests", "httpx_sync", "httpx_async")
AUTH_KINDS = ("requests_auth", "httpx_sync_auth", "httpx_async_auth")
ALL_KINDS = KINDS + AUTH_KINDS


def _sync_chunks(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks


async def _async_chunks(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def echoed_headers(response: Any) -> set[str]:
    """Lower-cased names of the request headers a sandbox echo route saw."""
    return {k.lower() for k in response.json()["headers"]}


class _Recording(httpx.BaseTransport):
    def __init__(self, sent: list[httpx.Request]) -> None:
        self.sent = sent
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class _AsyncRecording(httpx.AsyncBaseTransport):
    def __init__(self, sent: list[httpx.Request]) -> None:
        self.sent = sent
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def recording_transport(kind: str, sent: list[Any]) -> dict[str, Any]:
    """Client kwargs recording every request put on the wire into ``sent`` (httpx kinds:
    an inner transport under surefoot's). For requests nothing is needed: its
    ``response.request`` already is the request of the last attempt, as sent; httpx always
    sets ``response.request`` to the request the caller made, before surefoot's copies."""
    if kind in ("httpx_sync", "httpx_sync_auth"):
        return {"transport": _Recording(sent)}
    if kind in ("httpx_async", "httpx_async_auth"):
        return {"transport": _AsyncRecording(sent)}
    return {}


class _Session:
    """A plain requests.Session with a base URL, ``session.auth`` the auth object."""

    def __init__(self, base_url: str, auth: Any, headers: Any, timeout: Any) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.session = requests.Session()
        self.session.auth = auth
        if headers:
            self.session.headers.update(headers)
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, urljoin(self.base_url, path.lstrip("/")), **kwargs)

    def close(self) -> None:
        self.session.close()


def _standalone(kind: str, base_url: str, kw: dict[str, Any]) -> Any:
    auth, timeout, headers = kw.get("auth"), kw.get("timeout", 30.0), kw.get("headers")
    if kind == "requests_auth":
        return _Session(base_url, auth, headers, timeout)
    no_retries = surefoot.RetryPolicy.no_retries()
    if kind == "httpx_sync_auth":
        transport = surefoot.httpx.Transport(kw.get("transport"), retry=no_retries)
        return httpx.Client(base_url=base_url, auth=auth, transport=transport,
                            follow_redirects=True, timeout=timeout, headers=headers)
    transport = surefoot.httpx.AsyncTransport(kw.get("transport"), retry=no_retries)
    return httpx.AsyncClient(base_url=base_url, auth=auth, transport=transport,
                             follow_redirects=True, timeout=timeout, headers=headers)


class Api:
    """One sync API over the three adapters; see the module docstring."""

    def __init__(self, kind: str, base_url: str, **client_kwargs: Any) -> None:
        if kind not in ALL_KINDS:
            raise ValueError(f"unknown adapter kind {kind!r}")
        self.kind = kind
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any
        if kind == "httpx_async_auth":
            self.loop = asyncio.new_event_loop()

            async def build_async() -> Any:
                return _standalone(kind, base_url, client_kwargs)

            self.client = self.loop.run_until_complete(build_async())
        elif kind in AUTH_KINDS:
            self.client = _standalone(kind, base_url, client_kwargs)
        elif kind == "requests":
            self.client = surefoot.Client(base_url, **client_kwargs)
        elif kind == "httpx_sync":
            self.client = surefoot.httpx.Client(base_url, **client_kwargs)
        else:
            self.loop = asyncio.new_event_loop()

            async def build() -> surefoot.httpx.AsyncClient:
                return surefoot.httpx.AsyncClient(base_url, **client_kwargs)

            self.client = self.loop.run_until_complete(build())

    def __repr__(self) -> str:
        return f"Api({self.kind!r}, {self.client!r})"

    @property
    def standalone(self) -> bool:
        """The auth object alone: no retries, no pacing, no deadline of surefoot's."""
        return self.kind in AUTH_KINDS

    @property
    def is_async(self) -> bool:
        return self.loop is not None

    # -- requests --------------------------------------------------------------------------

    def _kwargs(
        self,
        *,
        params: Any,
        headers: Any,
        json: Any,
        body: bytes | None,
        stream_body: list[bytes] | None,
        timeout: Any,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if params is not None:
            kwargs["params"] = params
        if headers is not None:
            kwargs["headers"] = headers
        if json is not None:
            kwargs["json"] = json
        if timeout is not None:
            kwargs["timeout"] = timeout
        if body is not None and stream_body is not None:
            raise ValueError("pass body or stream_body, not both")
        body_key = "data" if self.kind.startswith("requests") else "content"
        if body is not None:
            kwargs[body_key] = body
        elif stream_body is not None:
            kwargs[body_key] = (
                _async_chunks(stream_body) if self.is_async else _sync_chunks(stream_body)
            )
        return kwargs

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        headers: Any = None,
        json: Any = None,
        body: bytes | None = None,
        stream_body: list[bytes] | None = None,
        timeout: Any = None,
    ) -> Any:
        kwargs = self._kwargs(
            params=params,
            headers=headers,
            json=json,
            body=body,
            stream_body=stream_body,
            timeout=timeout,
        )
        if self.loop is not None:
            return self.loop.run_until_complete(self.client.request(method, path, **kwargs))
        return self.client.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the async kind's loop (for tests needing asyncio directly)."""
        if self.loop is None:
            raise TypeError(f"{self.kind} has no event loop")
        return self.loop.run_until_complete(coro)

    # -- concurrency -----------------------------------------------------------------------

    def concurrent(self, n: int, method: str, path: str, **kw: Any) -> list[int]:
        """``n`` requests at once; their status codes (in completion order for threads).

        Sync kinds: ``n`` threads released together by a barrier. Async kind:
        ``asyncio.gather`` of ``n`` tasks. The first exception, if any, is re-raised.
        """
        if self.loop is not None:
            loop = self.loop

            async def all_of() -> list[int]:
                async def one() -> int:
                    kwargs = self._kwargs(
                        params=kw.get("params"),
                        headers=kw.get("headers"),
                        json=kw.get("json"),
                        body=kw.get("body"),
                        stream_body=kw.get("stream_body"),
                        timeout=kw.get("timeout"),
                    )
                    response = await self.client.request(method, path, **kwargs)
                    return int(response.status_code)

                return list(await asyncio.gather(*(one() for _ in range(n))))

            return loop.run_until_complete(all_of())

        barrier = threading.Barrier(n)
        statuses: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker() -> None:
            try:
                barrier.wait(timeout=30)
                status = int(self.request(method, path, **kw).status_code)
            except BaseException as exc:  # re-raised in the caller's thread
                with lock:
                    errors.append(exc)
                return
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=worker) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return statuses

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        if self.loop is not None:
            loop = self.loop
            if loop.is_closed():
                return
            try:
                loop.run_until_complete(self.client.aclose())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()
        else:
            self.client.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
