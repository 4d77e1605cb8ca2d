"""httpx integration: sync and async transports that drive the same pipeline.

``Transport`` wraps any ``httpx.BaseTransport`` (``httpx.HTTPTransport()`` by default) and
``AsyncTransport`` any ``httpx.AsyncBaseTransport``; every request through them runs the
whole per-attempt pipeline: auth re-applied per attempt, retry decisions, Retry-After, the
deadline, idempotency keys and the 401 refresh-and-replay. Responses stay
``httpx.Response``; their history is ``surefoot.history_of(response)``.

Bodies: a response whose ``Content-Length`` is at most ``buffer_limit`` bytes is read
inside the attempt, so a truncated body is an attempt failure that can be retried; larger
(or chunked) bodies stream through untouched.

The whole attempt within its time (connect, headers and a buffered body; see
:mod:`surefoot._adapters._deadline`): the async transport runs it in one cancel scope;
the sync transport shrinks every socket operation's timeout to what is left of the
attempt (the network backend of httpx's own ``HTTPTransport`` is wrapped for that: a
server trickling its status line and headers cannot hold the attempt past its end).
Request bodies that cannot be replayed (generators) are sent once and never retried
after sending.

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

import asyncio
import random
import sys
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
)
from contextvars import ContextVar
from typing import Any, NamedTuple

import anyio
import httpcore
import httpx

from surefoot._adapters._auth import AuthBase, standalone_flow
from surefoot._adapters._deadline import (
    ASYNC_LATENESS,
    SYNC_LATENESS,
    AttemptTimedOut,
    Lateness,
    Reserve,
    read_within,
    reserve,
    socket_timeout_setter,
)
from surefoot._adapters._options import check_auth, check_hook, check_retry
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
from surefoot.events import Hook
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

    @staticmethod
    def _adopt(transport: Any) -> bool:
        """Prepare the inner transport (the sync one bounds its socket operations);
        ``True``: every socket operation of an attempt is bounded by what is left of it."""
        return False

    def __init__(
        self,
        transport: Any = None,
        *,
        retry: RetryPolicy | None = None,
        auth: AuthStrategy | tuple[str, str] | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
        credential_origins: Iterable[str] | None = None,
        buffer_limit: int = 1 << 20,
        pacing: PacingPolicy | Pacer | None = DEFAULT_PACING,
    ) -> None:
        self.transport = transport if transport is not None else self._default_inner()
        self._bounded = self._adopt(self.transport)
        self.retry = check_retry(retry)
        self.pacer = make_pacer(pacing)
        self.auth = check_auth(auth)
        self.hook: Hook = check_hook(hook)
        self.clock: Clock = clock or default_clock
        self.rng = rng or random.random
        self.credential_origins = (
            None
            if credential_origins is None
            else frozenset(origin_of(u) for u in credential_origins)
        )
        self.buffer_limit = buffer_limit

    def _flow(self, request: httpx.Request, clock: Clock) -> Flow:
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
        return request_flow(view, policy=self.retry, auth=auth, clock=clock,
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

    def _reserve(self, lateness: Lateness) -> Reserve | None:
        """The logical request's :class:`Reserve` (``None``: attempts end on time)."""
        return reserve(self.clock, lateness, self.retry.deadline)

    @staticmethod
    def _attempt_request(
        request: httpx.Request, effect: Send, cap: float | None
    ) -> httpx.Request:
        extensions = request.extensions
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

    @staticmethod
    def _adopt(transport: Any) -> bool:
        return _bound_operations(transport)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        inner = self.transport
        spare = self._reserve(SYNC_LATENESS)
        clock: Clock = self.clock if spare is None else spare

        def send(effect: Send, cap: float | None) -> Outcome:
            ends = None if cap is None else clock.monotonic() + cap
            try:
                response = inner.handle_request(self._attempt_request(request, effect, cap))
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
                                # (each receive bounded already: _BoundedStream)
                                settimeout=(
                                    None if self._bounded else _socket_setter(response)
                                ),
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

        def attempt(effect: Send) -> Outcome:
            cap = effect.timeout if spare is None else spare.cap(effect.timeout)
            if cap is None:
                return send(effect, None)
            # every socket operation of the attempt within its time (_BoundedStream)
            due = time.monotonic() + cap
            token = _ATTEMPT_ENDS.set(due)
            try:
                outcome = send(effect, cap)
            finally:
                _ATTEMPT_ENDS.reset(token)
            _ended(outcome, due, SYNC_LATENESS, spare)
            return outcome

        native, result = drive_sync(
            self._flow(request, clock), send=attempt, discard=_discard, clock=clock
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
        spare = self._reserve(ASYNC_LATENESS)
        clock: Clock = self.clock if spare is None else spare
        attempt_timeout = self.retry.attempt_timeout

        async def send(effect: Send, cap: float | None) -> httpx.Response:
            response = await inner.handle_async_request(
                self._attempt_request(request, effect, cap))
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
            cap = effect.timeout if spare is None else spare.cap(effect.timeout)
            if cap is None:
                due = None
                work = send(effect, None)
            else:
                # The whole attempt (connect, headers and buffered body) in one scope; the
                # last one (cut to what is left of the deadline) in a task of its own.
                due = time.monotonic() + cap
                last = (spare is not None and spare.cut) or (
                    attempt_timeout is not None and effect.timeout is not None
                    and effect.timeout < attempt_timeout)
                work = (_within_detached if last else _within)(
                    send(effect, cap), max(cap, 0.001))
            try:
                response = await work
            except httpx.TransportError as exc:
                outcome: Outcome = Failure(classify_httpx_error(exc), type(exc).__name__), exc
            except TimeoutError:
                late = httpx.ReadTimeout("the attempt's deadline passed")
                outcome = Failure(FailureKind.READ_TIMEOUT, "ReadTimeout"), late
            else:
                return _info(response), response
            if due is not None:
                _ended(outcome, due, ASYNC_LATENESS, spare)
            return outcome

        native, result = await drive_async(
            self._flow(request, clock), send=attempt, discard=_adiscard, clock=clock
        )
        return self._finish(native, result.history)

    async def aclose(self) -> None:
        await self.transport.aclose()


#: Failures that mean the attempt's time ran out (its lateness is noted).
_OUT_OF_TIME = frozenset({FailureKind.READ_TIMEOUT, FailureKind.WRITE_TIMEOUT,
                          FailureKind.CONNECT, FailureKind.POOL_TIMEOUT})


# -- the async attempt's scope ------------------------------------------------------------

if sys.version_info >= (3, 11):

    async def _within(work: Awaitable[httpx.Response], seconds: float) -> httpx.Response:
        """``await work`` within ``seconds``, or ``TimeoutError``: on asyncio,
        ``asyncio.timeout`` (a third of anyio's cost per attempt, and no cancellation
        redelivered on every loop iteration while httpcore cleans up); elsewhere (trio),
        anyio's scope."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio
            return await _within_anyio(work, seconds)
        async with asyncio.timeout(seconds):
            return await work

else:  # pragma: no cover - Python 3.10

    async def _within(work: Awaitable[httpx.Response], seconds: float) -> httpx.Response:
        return await _within_anyio(work, seconds)


async def _within_anyio(work: Awaitable[httpx.Response], seconds: float) -> httpx.Response:
    with anyio.fail_after(seconds):
        return await work


#: The attempts given up at their deadline whose tasks are still cleaning up.
_CLEANING: set[asyncio.Task[Any]] = set()


async def _within_detached(
    work: Coroutine[Any, Any, httpx.Response], seconds: float
) -> httpx.Response:
    """:func:`_within` for an attempt whose end is the request's deadline: on asyncio, the
    attempt runs in a task of its own, and at its end the call goes on at once (one loop
    iteration) while that task is cancelled and cleans up behind it (httpcore closes the
    connection over three or four more iterations: each one long on a busy loop). It
    costs two iterations more when the attempt ends in time (its task's start and end),
    so only the last attempt, the one most likely to run out of time, runs this way."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        return await _within_anyio(work, seconds)
    child = loop.create_task(work)
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    child.add_done_callback(wake)
    timer = loop.call_later(seconds, wake)
    try:
        await waiter
    except BaseException:  # cancelled from outside: the attempt with it
        child.cancel()
        _clean_up(child)
        raise
    finally:
        timer.cancel()
        child.remove_done_callback(wake)
    if child.done():
        return child.result()
    child.cancel()
    _clean_up(child)
    raise TimeoutError


def _clean_up(child: asyncio.Task[httpx.Response]) -> None:
    """Keep ``child`` until it is done; then close a response it got after all."""
    if child.done():
        _cleaned(child)
        return
    _CLEANING.add(child)
    child.add_done_callback(_cleaned)


def _cleaned(child: asyncio.Task[httpx.Response]) -> None:
    _CLEANING.discard(child)
    if child.cancelled() or child.exception() is not None:
        return
    response = child.result()  # it ended in time after all, too late to be used
    closing = child.get_loop().create_task(response.aclose())
    _CLEANING.add(closing)
    closing.add_done_callback(_CLEANING.discard)


def _ended(outcome: Outcome, due: float, lateness: Lateness, spare: Reserve | None) -> None:
    """After an attempt that had until ``due`` (``time.monotonic()``): if it ran out of
    time, note how late it ended, and spend its margin."""
    info = outcome[0]
    if isinstance(info, Failure) and info.kind in _OUT_OF_TIME:
        now = time.monotonic()
        if now >= due - Lateness.SLACK:
            lateness.note(now, due)
            if spare is not None:
                spare.spend()


# -- the sync attempt's socket operations ---------------------------------------------------

#: The end of the sync attempt in progress in this context (``time.monotonic()``).
_ATTEMPT_ENDS: ContextVar[float | None] = ContextVar("surefoot_attempt_ends", default=None)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """A socket operation's timeout, shrunk to what is left of the attempt in progress
    (``error`` if nothing is)."""
    ends = _ATTEMPT_ENDS.get()
    if ends is None:
        return timeout
    left = ends - time.monotonic()
    if left <= 0.0:
        raise error("the attempt's deadline passed")
    return left if timeout is None or left < timeout else timeout


class _BoundedStream(httpcore.NetworkStream):
    """httpcore's sync network stream, each operation within the attempt's time."""

    __slots__ = ("_stream",)

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._stream.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """httpcore's sync network backend, its streams within the attempt's time."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._backend.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address,
            socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        return _BoundedStream(self._backend.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound_operations(transport: object) -> bool:
    """Wrap the network backend of httpx's own ``HTTPTransport`` (its httpcore pool's):
    every socket operation made inside a surefoot attempt is then bounded by what is left
    of it (``True``). Any other inner transport is left as it is (each operation bounded
    by the attempt's timeout, the body by ``read_within``)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, _BoundedBackend):
        return True
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _BoundedBackend(backend)  # type: ignore[union-attr]
        return True
    return False


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
