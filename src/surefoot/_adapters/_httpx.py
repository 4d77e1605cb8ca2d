"""httpx integration: sync and async transports that drive the same pipeline.

``Transport`` wraps any ``httpx.BaseTransport`` (``httpx.HTTPTransport()`` by default) and
``AsyncTransport`` any ``httpx.AsyncBaseTransport``; every request through them runs the
whole per-attempt pipeline: auth re-applied per attempt, retry decisions, Retry-After, the
deadline, idempotency keys and the 401 refresh-and-replay. Responses stay
``httpx.Response``; their history is ``surefoot.history_of(response)``.

Bodies: a response whose ``Content-Length`` is at most ``buffer_limit`` bytes is read
inside the attempt, so a truncated body is an attempt failure that can be retried; larger
(or chunked) bodies stream through untouched. Request bodies that cannot be replayed
(generators) are sent once and never retried after sending.

Redirects: httpx follows them above the transport, building each hop from the original
request (which never carries surefoot's credentials: every attempt is a copy) and sharing
its ``extensions``. The transport marks the logical request's origin there, so a hop to
another origin is sent without credentials and a same-origin hop is signed afresh.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from surefoot._core._clock import Clock, default_clock
from surefoot._core._history import FailureKind
from surefoot._core._origin import Origin, origin_of
from surefoot._core._pipeline import AuthStrategy, RequestView, Send, request_flow
from surefoot._core._policy import Failure, ResponseInfo, RetryPolicy
from surefoot._drivers import drive_async, drive_sync, make_pacer
from surefoot.errors import SigningError
from surefoot.events import Event, EventKind, Hook, LoggingHook, redact_url

__all__ = ["AsyncTransport", "Transport", "classify_httpx_error"]

_ORIGIN_KEY = "surefoot.origin"
_CREDENTIALS_KEY = "surefoot.credentials"
_HISTORY_KEY = "surefoot.history"


def _origin(url: httpx.URL) -> Origin:
    return origin_of(str(url))


def classify_httpx_error(exc: BaseException) -> FailureKind:
    """Map an httpx transport exception to where the attempt failed."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError)):
        return FailureKind.CONNECT
    if isinstance(exc, httpx.PoolTimeout):
        return FailureKind.POOL_TIMEOUT
    if isinstance(exc, httpx.WriteTimeout):
        return FailureKind.WRITE_TIMEOUT
    if isinstance(exc, httpx.ReadTimeout):
        return FailureKind.READ_TIMEOUT
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        if "incomplete" in text or "complete message body" in text:
            return FailureKind.TRUNCATED
        return FailureKind.RESET
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return FailureKind.RESET
    return FailureKind.OTHER


class _Common:
    """What the sync and async transports share: their options, preparing a request and
    each attempt. ``transport`` is the inner transport (default: httpx's own)."""

    @staticmethod
    def _default_inner() -> Any:
        raise NotImplementedError

    def __init__(
        self,
        transport: Any = None,
        *,
        retry: RetryPolicy | None = None,
        auth: AuthStrategy | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
        credential_origins: Iterable[str] | None = None,
        buffer_limit: int = 1 << 20,
        pacing: Any = None,
    ) -> None:
        self.transport = transport if transport is not None else self._default_inner()
        self.retry = retry or RetryPolicy()
        self.pacer = make_pacer(pacing)
        self.auth = auth
        self.hook: Hook = hook or LoggingHook()
        self.clock: Clock = clock or default_clock
        self.rng = rng or random.random
        self.credential_origins = (
            None
            if credential_origins is None
            else frozenset(_origin(httpx.URL(u)) for u in credential_origins)
        )
        self.buffer_limit = buffer_limit

    def _guard(self, request: httpx.Request) -> httpx.Request:
        """Redirect hops of a request signed by surefoot's httpx ``Auth`` (which marks the
        credentials' origin, names and signer in ``extensions``, shared with the hops):
        credentials never go to another origin, and a same-origin hop is signed afresh."""
        marked = request.extensions.get(_CREDENTIALS_KEY)
        if marked is None:
            return request
        origin, names, auth, signed_for = marked
        if signed_for == (request.method, str(request.url)):
            return request  # the request the auth signed, not a hop
        headers = request.headers.copy()
        if origin == _origin(request.url):
            if getattr(auth, "token_cache", None) is not None:
                return request  # a bearer token stays valid on the same origin
            body = request.read() if isinstance(request.stream, httpx.ByteStream) else None
            headers.update(
                auth.attempt_headers(
                    request.method, str(request.url), body or None, None, self.clock.wall(),
                    headers,
                )
            )
        else:
            if not any(n in request.headers for n in names):
                return request
            for name in names:
                headers.pop(name, None)
            self.hook(Event(EventKind.CREDENTIALS_WITHHELD, request.method,
                            redact_url(str(request.url)), reason="redirected to another origin"))
        hop = object.__new__(httpx.Request)
        hop.__dict__.update(request.__dict__)
        hop.headers = headers
        return hop

    def _flow(self, request: httpx.Request) -> Any:
        auth = self.auth
        allowed = True
        if auth is not None:
            origin = _origin(request.url)
            started_at = request.extensions.get(_ORIGIN_KEY)
            if started_at is None:
                # httpx shares this dict with the redirect hops built from this request.
                request.extensions[_ORIGIN_KEY] = origin
            allowed = (started_at is None or started_at == origin) and (
                self.credential_origins is None or origin in self.credential_origins
            )
        stream = request.stream
        replayable = isinstance(stream, httpx.ByteStream)
        body = request.read() if replayable else None
        if auth is not None and allowed and not replayable and getattr(auth, "signs_body", False):
            raise SigningError("cannot sign a streaming request body; pass bytes")
        view = RequestView(
            method=request.method,
            url=str(request.url),
            headers=request.headers,
            body=body or None,
            replayable=replayable,
            credentials_allowed=allowed,
        )
        return request_flow(
            view,
            policy=self.retry,
            auth=auth,
            clock=self.clock,
            hook=self.hook,
            rng=self.rng,
            pacer=self.pacer,
        )

    @staticmethod
    def _attempt_request(request: httpx.Request, effect: Send) -> httpx.Request:
        extensions = request.extensions
        cap = effect.timeout
        if cap is not None:
            cap = max(cap, 0.001)
            timeout = dict(extensions.get("timeout") or {})
            for name in ("connect", "read", "write", "pool"):
                value = timeout.get(name)
                timeout[name] = cap if value is None else min(value, cap)
            extensions = {**extensions, "timeout": timeout}
        if not (effect.headers or effect.remove or cap is not None):
            return request
        # A shallow copy for this attempt (same URL, body stream and content); building a
        # new httpx.Request would re-parse the URL and re-normalise every header.
        attempt = object.__new__(httpx.Request)
        attempt.__dict__.update(request.__dict__)
        attempt.extensions = extensions
        if effect.headers or effect.remove:
            headers = request.headers.copy()
            for name in effect.remove:
                headers.pop(name, None)
            headers.update(effect.headers)
            attempt.headers = headers
        return attempt

    def _wants_buffer(self, response: httpx.Response) -> bool:
        length = response.headers.get("content-length")
        return (
            length is not None
            and length.isdigit()
            and int(length) <= self.buffer_limit
        )


    @staticmethod
    def _finish(response: httpx.Response, history: Any) -> httpx.Response:
        response.extensions[_HISTORY_KEY] = history
        return response


class Transport(_Common, httpx.BaseTransport):
    """A sync httpx transport running surefoot's pipeline around ``transport``.

    ``httpx.Client(transport=surefoot.httpx.Transport(retry=..., auth=...))``. The
    client's ``timeout`` is the per-attempt timeout, capped by what is left of the
    deadline.
    """

    transport: httpx.BaseTransport

    @staticmethod
    def _default_inner() -> Any:
        return httpx.HTTPTransport()

    def __repr__(self) -> str:
        return f"Transport(retry={self.retry!r}, auth={self.auth!r})"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        inner = self.transport
        request = self._guard(request)

        def attempt(effect: Send) -> tuple[ResponseInfo | Failure, Any]:
            try:
                response = inner.handle_request(self._attempt_request(request, effect))
                if self._wants_buffer(response):
                    # Read the raw (still encoded) body inside the attempt, then hand httpx
                    # a response whose stream replays it.
                    stream = response.stream
                    assert isinstance(stream, httpx.SyncByteStream)
                    try:
                        raw = b"".join(stream)
                    finally:
                        stream.close()
                    response.stream = httpx.ByteStream(raw)
            except httpx.TransportError as exc:
                return Failure(classify_httpx_error(exc), type(exc).__name__), exc
            return ResponseInfo(response.status_code, response.headers), response

        native, result = drive_sync(
            self._flow(request), send=attempt, discard=_discard, clock=self.clock
        )
        return self._finish(native, result.history)

    def close(self) -> None:
        self.transport.close()


class AsyncTransport(_Common, httpx.AsyncBaseTransport):
    """The async twin of :class:`Transport`, for ``httpx.AsyncClient``. It never blocks
    the event loop: waits are ``asyncio.sleep``, token work runs in worker threads."""

    transport: httpx.AsyncBaseTransport

    @staticmethod
    def _default_inner() -> Any:
        return httpx.AsyncHTTPTransport()

    def __repr__(self) -> str:
        return f"AsyncTransport(retry={self.retry!r}, auth={self.auth!r})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        inner = self.transport
        request = self._guard(request)

        async def attempt(effect: Send) -> tuple[ResponseInfo | Failure, Any]:
            try:
                response = await inner.handle_async_request(
                    self._attempt_request(request, effect)
                )
                if self._wants_buffer(response):
                    stream = response.stream
                    assert isinstance(stream, httpx.AsyncByteStream)
                    try:
                        raw = b"".join([chunk async for chunk in stream])
                    finally:
                        await stream.aclose()
                    response.stream = httpx.ByteStream(raw)
            except httpx.TransportError as exc:
                return Failure(classify_httpx_error(exc), type(exc).__name__), exc
            return ResponseInfo(response.status_code, response.headers), response

        native, result = await drive_async(
            self._flow(request), send=attempt, discard=_adiscard, clock=self.clock
        )
        return self._finish(native, result.history)

    async def aclose(self) -> None:
        await self.transport.aclose()


def _discard(response: httpx.Response) -> None:
    response.close()


async def _adiscard(response: httpx.Response) -> None:
    await response.aclose()
