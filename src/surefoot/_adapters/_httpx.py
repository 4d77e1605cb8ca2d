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
request (which never carries surefoot's credentials: every attempt is a copy) and copying
its ``extensions``. The transport marks where the logical request started there, so a hop
to another origin is sent without credentials — neither the auth object's nor any
credential header it carries, the client's own ``headers`` included, whether or not an
auth object is set (:func:`~surefoot._core._origin.hop_rule`) — and a same-origin hop is
signed afresh.

An auth object used alone (``httpx.Client(auth=auth)``) runs the same flow with the
no-retry policy (:func:`sync_auth_flow`, :func:`async_auth_flow`): each attempt it asks
for is yielded to httpx. httpx itself strips only ``Authorization`` from a cross-origin
hop; under surefoot's transports, the hops of a request such an auth object signed run
the flow again with that auth object, so they get the same origin rule.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import Any, NamedTuple

import anyio
import httpx

from surefoot._adapters._auth import AuthBase, standalone_flow
from surefoot._adapters._deadline import AttemptTimedOut, read_within, socket_timeout_setter
from surefoot._core._clock import Clock, default_clock
from surefoot._core._effects import AuthStrategy, Send
from surefoot._core._history import FailureKind
from surefoot._core._origin import FIRST_HOP, Hop, Origin, StartedAt, hop_rule, origin_of
from surefoot._core._pipeline import Flow, FlowResult, RequestView, request_flow
from surefoot._core._policy import Failure, ResponseInfo, RetryPolicy
from surefoot._drivers import (
    Outcome,
    advance,
    advance_async,
    drive_async,
    drive_sync,
    finish,
    make_pacer,
)
from surefoot.events import Hook, LoggingHook
from surefoot.pacing._config import DEFAULT_PACING, PacingPolicy
from surefoot.pacing._pacer import Pacer

__all__ = [
    "AsyncTransport",
    "Transport",
    "async_auth_flow",
    "classify_httpx_error",
    "sync_auth_flow",
]

_ORIGIN_KEY = "surefoot.origin"
_CREDENTIALS_KEY = "surefoot.credentials"
_HISTORY_KEY = "surefoot.history"


class _Signed(NamedTuple):
    """What an auth object used alone marks on the request it signed (``extensions``,
    shared with the redirect hops httpx builds from it)."""

    origin: Origin
    auth: AuthBase
    signed_for: tuple[str, str]


def _copy(request: httpx.Request) -> httpx.Request:
    """A shallow copy (same URL, body stream and content): building a new httpx.Request
    would re-parse the URL and re-normalise every header."""
    copy = object.__new__(httpx.Request)
    copy.__dict__.update(request.__dict__)
    return copy


def _apply(request: httpx.Request, send: Send) -> None:
    for name in send.remove:
        request.headers.pop(name, None)
    request.headers.update(send.headers)


def _info(response: httpx.Response) -> ResponseInfo:
    return ResponseInfo(response.status_code, response.headers)


def _view(request: httpx.Request, hop: Hop, url: str | None = None) -> RequestView:
    replayable = isinstance(request.stream, httpx.ByteStream)
    body = request.read() if replayable else None
    return RequestView(method=request.method, url=str(request.url) if url is None else url,
                       headers=request.headers, body=body or None, replayable=replayable,
                       credentials_allowed=hop.credentials_allowed,
                       redirected_elsewhere=hop.elsewhere)


#: httpx's transport exceptions, by where the attempt failed (first match wins).
_HTTPX_FAILURES: tuple[tuple[tuple[type[Exception], ...], FailureKind], ...] = (
    ((httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError), FailureKind.CONNECT),
    ((httpx.PoolTimeout,), FailureKind.POOL_TIMEOUT),
    ((httpx.WriteTimeout,), FailureKind.WRITE_TIMEOUT),
    ((httpx.ReadTimeout,), FailureKind.READ_TIMEOUT),
    ((httpx.ReadError, httpx.WriteError), FailureKind.RESET),
)


def classify_httpx_error(exc: BaseException) -> FailureKind:
    """Map an httpx transport exception to where the attempt failed."""
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        truncated = "incomplete" in text or "complete message body" in text
        return FailureKind.TRUNCATED if truncated else FailureKind.RESET
    return next((kind for types, kind in _HTTPX_FAILURES if isinstance(exc, types)),
                FailureKind.OTHER)


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
        pacing: PacingPolicy | Pacer | None = DEFAULT_PACING,
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
            else frozenset(origin_of(u) for u in credential_origins)
        )
        self.buffer_limit = buffer_limit

    def _flow(self, request: httpx.Request) -> Flow:
        """The pipeline for ``request``: with the transport's auth, or, on a redirect hop of
        a request an auth object signed on its own, with that auth object."""
        auth, started_at, request = self._hop_auth(request)
        url = str(request.url)
        if started_at is None:
            start: StartedAt | None = request.extensions.get(_ORIGIN_KEY)
            if start is None:
                # httpx copies this into the redirect hops it builds from this request.
                request.extensions[_ORIGIN_KEY] = StartedAt(url)
            else:
                started_at = start.origin
        # Every request, with or without auth: a redirect hop to another origin carries no
        # credential (the first hop, unless credential_origins applies, parses nothing).
        hop = hop_rule(url, started_at=started_at,
                       allowed=None if auth is None else self.credential_origins)
        view = _view(request, hop, url)
        return request_flow(view, policy=self.retry, auth=auth, clock=self.clock,
                            hook=self.hook, rng=self.rng, pacer=self.pacer)

    def _hop_auth(
        self, request: httpx.Request
    ) -> tuple[AuthStrategy | None, Origin | None, httpx.Request]:
        """(auth, the origin its logical request started at, the request to run)."""
        marked: _Signed | None = request.extensions.get(_CREDENTIALS_KEY)
        if self.auth is not None or marked is None or marked.signed_for == (
            request.method, str(request.url)
        ):
            return self.auth, None, request
        # A hop httpx built from a request the auth object signed: without its credentials
        # (copied from that request), for the flow to attach this hop's, or none.
        hop = _copy(request)
        hop.headers = request.headers.copy()
        for name in marked.auth.credential_headers:
            hop.headers.pop(name, None)
        return marked.auth, marked.origin, hop

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
        attempt = _copy(request)
        attempt.extensions = extensions
        if effect.headers or effect.remove:
            attempt.headers = request.headers.copy()
            _apply(attempt, effect)
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
        inner, clock = self.transport, self.clock

        def attempt(effect: Send) -> Outcome:
            ends = None if effect.timeout is None else clock.monotonic() + effect.timeout
            try:
                response = inner.handle_request(self._attempt_request(request, effect))
                if self._wants_buffer(response):
                    # Read the raw (still encoded) body inside the attempt (and within its
                    # deadline), then hand httpx a response whose stream replays it.
                    stream = response.stream
                    assert isinstance(stream, httpx.SyncByteStream)
                    try:
                        if ends is None:
                            raw = b"".join(stream)
                        else:
                            chunks = iter(stream)
                            raw = read_within(
                                lambda: next(chunks, b""), ends=ends, clock=clock,
                                settimeout=_socket_setter(response),
                                timeout_errors=(httpx.ReadTimeout,),
                            )
                    finally:
                        stream.close()
                    response.stream = httpx.ByteStream(raw)
            except httpx.TransportError as exc:
                return Failure(classify_httpx_error(exc), type(exc).__name__), exc
            except AttemptTimedOut:
                late = httpx.ReadTimeout("the attempt's deadline passed while reading the body")
                return Failure(FailureKind.READ_TIMEOUT, "ReadTimeout"), late
            return _info(response), response

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

        async def send(effect: Send) -> httpx.Response:
            response = await inner.handle_async_request(self._attempt_request(request, effect))
            if self._wants_buffer(response):
                stream = response.stream
                assert isinstance(stream, httpx.AsyncByteStream)
                try:
                    raw = b"".join([chunk async for chunk in stream])
                finally:
                    await stream.aclose()
                response.stream = httpx.ByteStream(raw)
            return response

        async def attempt(effect: Send) -> Outcome:
            try:
                if effect.timeout is None:
                    response = await send(effect)
                else:
                    # The whole attempt (headers and buffered body) within the deadline.
                    with anyio.fail_after(max(effect.timeout, 0.001)):
                        response = await send(effect)
            except httpx.TransportError as exc:
                return Failure(classify_httpx_error(exc), type(exc).__name__), exc
            except TimeoutError:
                late = httpx.ReadTimeout("the attempt's deadline passed")
                return Failure(FailureKind.READ_TIMEOUT, "ReadTimeout"), late
            return _info(response), response

        native, result = await drive_async(
            self._flow(request), send=attempt, discard=_adiscard, clock=self.clock
        )
        return self._finish(native, result.history)

    async def aclose(self) -> None:
        await self.transport.aclose()


def _socket_setter(response: httpx.Response) -> Callable[[float], None] | None:
    """The timeout setter of the socket ``response`` is read from (HTTP/1.1 over
    httpcore), if it can be reached."""
    stream = response.extensions.get("network_stream")
    get = getattr(stream, "get_extra_info", None)
    return socket_timeout_setter(get("socket")) if callable(get) else None


def _discard(response: httpx.Response) -> None:
    response.close()


async def _adiscard(response: httpx.Response) -> None:
    await response.aclose()


# -- httpx.Client(auth=auth) ----------------------------------------------------------------


def _standalone(auth: AuthBase, request: httpx.Request) -> Flow:
    return standalone_flow(auth, _view(request, FIRST_HOP), request.headers.copy())


def _signed(auth: AuthBase, request: httpx.Request, send: Send) -> httpx.Request:
    """``request`` with this attempt's credentials, marked for surefoot's transports."""
    _apply(request, send)
    url = str(request.url)
    request.extensions[_CREDENTIALS_KEY] = _Signed(origin_of(url), auth, (request.method, url))
    return request


def _done(result: FlowResult, response: httpx.Response | None) -> None:
    """The flow's end: raise its error, or record its history on the response (the
    outermost flow's: the auth object's attempts, over any surefoot transport's)."""
    finish(result, response, None)
    if response is not None:
        response.extensions[_HISTORY_KEY] = result.history


def sync_auth_flow(
    auth: AuthBase, request: httpx.Request
) -> Generator[httpx.Request, httpx.Response, None]:
    """``auth.sync_auth_flow``: the pipeline with the no-retry policy, each attempt it asks
    for yielded to httpx."""
    flow, clock = _standalone(auth, request), auth.clock
    step, response = advance(flow, None, clock), None
    while isinstance(step, Send):
        response = yield _signed(auth, request, step)
        step = advance(flow, _info(response), clock)
    _done(step, response)


async def async_auth_flow(
    auth: AuthBase, request: httpx.Request
) -> AsyncGenerator[httpx.Request, httpx.Response]:
    """``auth.async_auth_flow``: :func:`sync_auth_flow` on the event loop (token work in
    worker threads)."""
    flow, clock = _standalone(auth, request), auth.clock
    step, response = await advance_async(flow, None, clock), None
    while isinstance(step, Send):
        response = yield _signed(auth, request, step)
        step = await advance_async(flow, _info(response), clock)
    _done(step, response)
