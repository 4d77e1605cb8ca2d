"""requests integration: a transport adapter that drives the pipeline, and the auth
objects' standalone hook — both run :func:`~surefoot._core._pipeline.request_flow`.

``SurefootAdapter`` is mounted on a plain :class:`requests.Session`; every request
through it runs the whole per-attempt pipeline (auth re-applied per attempt, retry
decisions, Retry-After, the deadline, idempotency keys, 401 refresh-and-replay).
Responses stay :class:`requests.Response`; their attempt history is
``surefoot.history_of(response)``.

``session.auth = auth`` (:func:`attach_auth`) runs the same flow with the no-retry
policy: requests calls the auth once, before sending; the flow's first attempt is
applied to the request then, and the response hook feeds it each response (a 401 is
refreshed and replayed through the same connection).

Redirects: requests follows them *after* the adapter returns (and after the response
hooks ran), copying the request it just sent. The adapter never puts credentials on that
request (each attempt is a copy) and marks it with the origin the logical request started
at, so every hop runs the pipeline again: credentials are attached afresh on the same
origin and withheld from any other, with every credential header the hop carries
(:func:`~surefoot._core._origin.hop_rule`), whether or not an auth object is set.
The standalone hook prepares the next hop the same way, on the request requests copies.

The whole attempt within its time (:mod:`surefoot._adapters._deadline`): the socket
timeouts bound each receive, the body is read by ``read_within``, and the status line and
headers (read inside ``http.client``, one receive per line) are bounded by the process's
watchdog: the adapter's connection pools tell the attempt which connection it got, and
the watchdog shuts that socket down if the attempt runs past its end.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urljoin

import requests
import requests.adapters
import requests.exceptions as rexc
import urllib3
import urllib3.exceptions as u3exc

from surefoot._adapters._auth import AuthBase, standalone_flow
from surefoot._adapters._deadline import (
    SYNC_LATENESS,
    AttemptTimedOut,
    Lateness,
    Watch,
    read_within,
    reserve,
    socket_timeout_setter,
    watchdog,
)
from surefoot._adapters._options import check_auth, check_hook, check_retry
from surefoot._core._clock import Clock, default_clock
from surefoot._core._effects import AuthStrategy, Send
from surefoot._core._history import FailureKind
from surefoot._core._origin import FIRST_HOP, Hop, Origin, StartedAt, hop_rule, origin_of
from surefoot._core._pipeline import Flow, FlowResult, RequestView, request_flow
from surefoot._core._policy import Failure, ResponseInfo, RetryPolicy
from surefoot._drivers import Outcome, advance, drive_sync, finish, make_pacer
from surefoot.events import Hook
from surefoot.pacing._config import DEFAULT_PACING, PacingPolicy
from surefoot.pacing._pacer import Pacer

__all__ = ["SurefootAdapter", "attach_auth", "classify_requests_error"]


class _OriginMarker(StartedAt):
    """A no-op response hook recording where a logical request started.

    requests copies a prepared request for each redirect hop and shares its hooks, so the
    marker travels with the hops; the adapter compares each hop's origin to it.
    """

    __slots__ = ()

    def __call__(self, response: object, *args: object, **kwargs: object) -> None:
        return None


def _started_at(request: requests.PreparedRequest) -> Origin | None:
    """The origin the logical request started at (``None``: this is its first hop, which
    is marked now; its origin is parsed only if a redirect hop asks)."""
    if request.hooks is None:
        request.hooks = {"response": []}
    hooks = request.hooks.setdefault("response", [])
    for hook in hooks:
        if isinstance(hook, _OriginMarker):
            return hook.origin
    hooks.append(_OriginMarker(request.url or ""))
    return None


def _view(request: requests.PreparedRequest, hop: Hop) -> tuple[RequestView, int | None]:
    """The core's view of ``request``, and the position to rewind a file body to before
    each attempt."""
    body, replayable, position = _body_of(request)
    view = RequestView(
        method=request.method or "GET",
        url=request.url or "",
        headers=request.headers,
        body=body,
        replayable=replayable,
        credentials_allowed=hop.credentials_allowed,
        redirected_elsewhere=hop.elsewhere,
    )
    return view, position


def _info(response: requests.Response) -> ResponseInfo:
    return ResponseInfo(response.status_code, response.headers)


def _apply(request: requests.PreparedRequest, send: Send) -> None:
    for name in send.remove:
        request.headers.pop(name, None)
    request.headers.update(send.headers)


def _body_of(request: requests.PreparedRequest) -> tuple[bytes | None, bool, int | None]:
    """(bytes to sign, replayable, file position to rewind to)."""
    body: Any = request.body
    if body is None:
        return None, True, None
    if isinstance(body, bytes):
        return body, True, None
    if isinstance(body, str):
        # http.client sends str bodies as ISO-8859-1; sign exactly those bytes.
        return body.encode("iso-8859-1"), True, None
    if hasattr(body, "seek") and hasattr(body, "tell") and hasattr(body, "read"):
        try:
            position = body.tell()
            data = body.read()
            body.seek(position)
        except (OSError, io.UnsupportedOperation):
            return None, False, None
        raw = data.encode("iso-8859-1") if isinstance(data, str) else bytes(data)
        return raw, True, position
    return None, False, None


#: requests' exceptions, by where the attempt failed (first match wins; SSLError is a
#: ConnectionError, and not retryable).
_REQUESTS_FAILURES: tuple[tuple[tuple[type[Exception], ...], FailureKind], ...] = (
    ((rexc.ConnectTimeout, rexc.ProxyError), FailureKind.CONNECT),
    ((rexc.SSLError,), FailureKind.OTHER),
    ((rexc.ReadTimeout,), FailureKind.READ_TIMEOUT),
    ((rexc.ChunkedEncodingError,), FailureKind.TRUNCATED),
)
#: what a requests ConnectionError wraps (urllib3's exception), by where it failed
_URLLIB3_FAILURES: tuple[tuple[tuple[type[Exception], ...], FailureKind], ...] = (
    ((u3exc.NewConnectionError, u3exc.ConnectTimeoutError), FailureKind.CONNECT),
    ((u3exc.ReadTimeoutError,), FailureKind.READ_TIMEOUT),
    ((u3exc.EmptyPoolError,), FailureKind.POOL_TIMEOUT),
)


def classify_requests_error(exc: BaseException) -> FailureKind:
    """Map a requests/urllib3 exception to where the attempt failed."""
    for types, kind in _REQUESTS_FAILURES:
        if isinstance(exc, types):
            return kind
    if not isinstance(exc, rexc.ConnectionError):
        return FailureKind.OTHER
    inner: object = exc.args[0] if exc.args else None
    if isinstance(inner, u3exc.MaxRetryError):
        inner = inner.reason
    if isinstance(inner, u3exc.ProtocolError):
        detail = inner.args[1] if len(inner.args) > 1 else None
        truncated = isinstance(detail, u3exc.IncompleteRead) or "IncompleteRead" in repr(inner)
        return FailureKind.TRUNCATED if truncated else FailureKind.RESET
    return next((kind for types, kind in _URLLIB3_FAILURES if isinstance(inner, types)),
                FailureKind.RESET)


#: requests' ``timeout=``: seconds, or (connect, read)
Timeout = float | tuple[float, float] | tuple[float, None] | None


def _cap_timeout(user: Timeout, cap: float | None) -> Timeout:
    """The attempt's timeout for requests: the user's, each part capped by ``cap`` (the
    attempt's time as a whole is bounded by the watchdog). A urllib3 ``Timeout`` of the
    user's is left as it is."""
    if cap is None:
        return user
    cap = max(cap, 0.001)
    if user is None:
        return cap
    if isinstance(user, tuple):
        connect, read = user
        return (cap if connect is None else min(connect, cap),
                cap if read is None else min(read, cap))
    try:
        return min(float(user), cap)
    except (TypeError, ValueError):  # not a number (a urllib3 Timeout): left as it is
        return user


def _attempt_copy(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A copy for one attempt: its own headers; body, cookies and hooks shared (the
    adapter never changes them, unlike ``PreparedRequest.copy`` it copies no cookie jar)."""
    copy = requests.PreparedRequest()
    copy.method = request.method
    copy.url = request.url
    copy.headers = request.headers.copy()
    copy._cookies = request._cookies  # type: ignore[attr-defined]
    copy.body = request.body
    copy.hooks = request.hooks
    copy._body_position = request._body_position  # type: ignore[attr-defined]
    return copy


def _response_socket(response: requests.Response) -> object:
    """The socket ``response`` is read from: its connection's, or, once ``http.client``
    closed the connection (a ``Connection: close`` answer hands its socket over to the
    response), the one under the response's file."""
    raw = response.raw
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is None:
        reader = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock


def _read_body(response: requests.Response, ends: float, clock: Clock,
               watch: Watch | None) -> None:
    """``response.content``, read by :func:`read_within` (the clock checked after each
    receive; the socket given to the attempt's ``watch``, or without one its timeout
    shrunk to what is left before each receive); urllib3's errors become the ones
    requests raises for a body."""
    raw = response.raw
    sock = _response_socket(response)
    if watch is not None:
        # The body's socket, also once the connection let go of it: the watchdog shuts
        # it down at the attempt's end, so each receive needs no timeout of its own.
        watch.attach_socket(sock)
        setter = None
    else:
        setter = socket_timeout_setter(sock)
    try:
        body = read_within(
            lambda: raw.read1(_CHUNK, decode_content=True),
            ends=ends, clock=clock, settimeout=setter,
            timeout_errors=(u3exc.ReadTimeoutError,),
        )
    except u3exc.ProtocolError as exc:
        raise rexc.ChunkedEncodingError(exc) from exc
    except u3exc.DecodeError as exc:
        raise rexc.ContentDecodingError(exc) from exc
    except u3exc.ReadTimeoutError as exc:
        raise rexc.ConnectionError(exc) from exc
    except u3exc.SSLError as exc:
        raise rexc.SSLError(exc) from exc
    response._content = body  # what Response.content caches
    response._content_consumed = True  # type: ignore[attr-defined]


#: The most one receive of a body reads.
_CHUNK = 65536

#: Failures that mean the attempt's time ran out (its lateness is noted).
_OUT_OF_TIME = frozenset({FailureKind.READ_TIMEOUT, FailureKind.WRITE_TIMEOUT,
                          FailureKind.CONNECT, FailureKind.POOL_TIMEOUT})


# -- the watchdog's view of the connection pools --------------------------------------------

#: The attempt in progress in this thread (context), for the adapter's pools.
_WATCH: ContextVar[Watch | None] = ContextVar("surefoot_attempt_watch", default=None)


class _WatchedHTTPConnectionPool(urllib3.HTTPConnectionPool):
    """A pool that tells the attempt in progress which connection it got, and takes it
    back from the attempt before the connection can serve another one."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        watch = _WATCH.get()
        if watch is not None:
            watch.attach(conn)
        return conn

    def _put_conn(self, conn: Any) -> None:
        watch = _WATCH.get()
        if watch is not None and conn is not None:
            watch.detach(conn)
        super()._put_conn(conn)


class _WatchedHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    """:class:`_WatchedHTTPConnectionPool` for https."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        watch = _WATCH.get()
        if watch is not None:
            watch.attach(conn)
        return conn

    def _put_conn(self, conn: Any) -> None:
        watch = _WATCH.get()
        if watch is not None and conn is not None:
            watch.detach(conn)
        super()._put_conn(conn)


def _watch_pools(manager: Any) -> None:
    """Make ``manager`` (urllib3's ``PoolManager``, or a ``ProxyManager``) create watched
    pools. Another kind of manager (SOCKS) is left alone: its attempts are bounded per
    socket operation only."""
    classes = getattr(manager, "pool_classes_by_scheme", None)
    if classes is not None and classes.get("http") is urllib3.HTTPConnectionPool and (
        classes.get("https") is urllib3.HTTPSConnectionPool
    ):
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPConnectionPool,
                                          "https": _WatchedHTTPSConnectionPool}


def _timed_out(message: str) -> Outcome:
    return Failure(FailureKind.READ_TIMEOUT, "ReadTimeout"), rexc.ReadTimeout(message)


def _discard(response: requests.Response) -> None:
    """Release a response that is not returned; reuse its connection when cheap."""
    try:
        if not response.raw or response.raw.closed:
            return
        response.raw.read(65536, decode_content=False)
    except Exception:  # noqa: S110 - a broken body only means the connection is not reused
        pass
    finally:
        response.close()


class SurefootAdapter(requests.adapters.HTTPAdapter):
    """A requests transport adapter running surefoot's pipeline on every request.

    ``session.mount("https://", SurefootAdapter(retry=RetryPolicy(...), auth=...))``.
    ``timeout=`` passed to requests is the per-attempt timeout; it is capped by what is
    left of the policy's deadline. ``credential_origins`` (URLs) restricts where ``auth``
    is applied at all; requests to other origins are sent without credentials.
    """

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        auth: AuthStrategy | tuple[str, str] | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
        pool_block: bool = False,
        credential_origins: Iterable[str] | None = None,
        pacing: PacingPolicy | Pacer | None = DEFAULT_PACING,
    ) -> None:
        self.retry = check_retry(retry)
        self.pacer = make_pacer(pacing)
        self.credential_origins = (
            None
            if credential_origins is None
            else frozenset(origin_of(u) for u in credential_origins)
        )
        self.auth = check_auth(auth)
        self.hook: Hook = check_hook(hook)
        self.clock: Clock = clock or default_clock
        self.rng = rng or random.random
        super().__init__(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=0,
            pool_block=pool_block,
        )

    def __repr__(self) -> str:
        return f"SurefootAdapter(retry={self.retry!r}, auth={self.auth!r})"

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: object) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: object) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _watch_pools(manager)
        return manager

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        auth = self.auth
        # Every request, with or without auth: a redirect hop to another origin carries no
        # credential (the first hop, unless credential_origins applies, parses nothing).
        hop = hop_rule(request.url or "", started_at=_started_at(request),
                       allowed=None if auth is None else self.credential_origins)
        view, position = _view(request, hop)
        spare = reserve(self.clock, SYNC_LATENESS, self.retry.deadline)
        clock: Clock = self.clock if spare is None else spare
        flow = request_flow(view, policy=self.retry, auth=auth, clock=clock,
                            hook=self.hook, rng=self.rng, pacer=self.pacer)
        parent_send = super().send

        def send_one(prepared: requests.PreparedRequest, cap: float | None,
                     watch: Watch | None) -> Outcome:
            ends = None if cap is None else clock.monotonic() + cap
            try:
                response = parent_send(
                    prepared,
                    stream=stream,
                    timeout=_cap_timeout(timeout, cap),
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
                if stream:
                    pass
                elif ends is None:
                    _ = response.content  # read inside the attempt: truncation is retryable
                else:
                    _read_body(response, ends, clock, watch)  # ... and within the deadline
            except rexc.RequestException as exc:
                kind = classify_requests_error(exc)
                return Failure(kind, type(exc).__name__), exc
            except AttemptTimedOut:
                response.close()
                return _timed_out("the attempt's deadline passed while reading the body")
            return _info(response), response

        def attempt(effect: Send) -> Outcome:
            prepared = _attempt_copy(request) if effect.headers or effect.remove else request
            _apply(prepared, effect)
            if position is not None:
                request.body.seek(position)  # type: ignore[union-attr]
            # (ended early by the recent lateness when its end is the deadline)
            cap = effect.timeout if spare is None else spare.cap(effect.timeout)
            if cap is None:
                return send_one(prepared, None, None)
            due = time.monotonic() + cap
            watch = watchdog().watch(due)
            token = _WATCH.set(watch)
            try:
                outcome = send_one(prepared, cap, watch)
            except Exception:
                if not watch.finish():
                    raise
                # its socket was shut down under it: whatever the library made of that
                outcome = _timed_out("the attempt's deadline passed")
            finally:
                _WATCH.reset(token)
            if watch.finish():  # the watchdog cut it: its time was up, whatever it got
                native = outcome[1]
                if isinstance(native, requests.Response):
                    native.close()
                outcome = _timed_out("the attempt's deadline passed")
            info = outcome[0]
            if isinstance(info, Failure) and info.kind in _OUT_OF_TIME:
                now = time.monotonic()
                if now >= due - Lateness.SLACK:  # it ran out of time
                    SYNC_LATENESS.note(now, due)
                    if spare is not None:
                        spare.spend()
            return outcome

        response: requests.Response
        response, result = drive_sync(flow, send=attempt, discard=_discard, clock=clock)
        response.surefoot_history = result.history  # type: ignore[attr-defined]
        return response


# -- session.auth = auth --------------------------------------------------------------------


class _StandaloneHook:
    """The response hook :func:`attach_auth` installs: it feeds each response to the
    logical request's flow, replays the attempts the flow asks for (after a 401), and
    prepares each redirect hop with a flow of its own."""

    __slots__ = ("auth", "flow", "origin", "position")

    def __init__(self, auth: AuthBase, request: requests.PreparedRequest) -> None:
        self.auth = auth
        self.origin = origin_of(request.url or "")
        self.flow: Flow | None = None
        self.position: int | None = None
        self._start(request)

    def _start(self, request: requests.PreparedRequest, view: RequestView | None = None) -> None:
        """Run a flow for ``request`` (``view``: what a redirect hop will send) up to its
        first attempt, and apply that attempt's credentials to the request."""
        if view is None:
            view, self.position = _view(request, FIRST_HOP)
        self.flow = standalone_flow(self.auth, view, request.headers.copy())
        step = advance(self.flow, None, self.auth.clock)
        if isinstance(step, FlowResult):  # pragma: no cover - no deadline, nothing to pace
            finish(step, None, None)
            return
        _apply(request, step)

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        flow, request, clock = self.flow, response.request, self.auth.clock
        if flow is None or request is None:
            return response
        step = advance(flow, _info(response), clock)
        while isinstance(step, Send):  # the flow replays (a 401 with a refreshed token)
            response = self._replay(response, request, step, kwargs)
            step = advance(flow, _info(response), clock)
        self.flow = None
        finish(step, response, None)
        # the outermost flow's history: the auth object's attempts, over the adapter's
        response.surefoot_history = step.history  # type: ignore[attr-defined]
        if response.is_redirect:
            self._prepare_next_hop(response, request)
        return response

    def _replay(self, response: requests.Response, request: requests.PreparedRequest,
                step: Send, kwargs: Mapping[str, Any]) -> requests.Response:
        _ = response.content
        response.close()
        replay = request.copy()
        _apply(replay, step)
        if self.position is not None:
            replay.body.seek(self.position)  # type: ignore[union-attr]
        new: requests.Response = response.connection.send(replay, **kwargs)
        new.history.append(response)
        new.request = replay
        return new

    def _prepare_next_hop(
        self, response: requests.Response, request: requests.PreparedRequest
    ) -> None:
        """requests builds the next hop from a copy of ``request``: give it that hop's
        credentials (its own flow), or none if it goes to another origin."""
        target = urljoin(response.url, response.headers.get("location", ""))
        # requests' rebuild_method rules, and the body it keeps (307/308 only)
        method = (request.method or "GET").upper()
        status = response.status_code
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
        body = _body_of(request)[0] if status in (307, 308) else None
        for name in self.auth.credential_headers:  # this hop's, or none
            request.headers.pop(name, None)
        hop = hop_rule(target, started_at=self.origin)
        self.position = None
        self._start(request, RequestView(method, target, request.headers, body,
                                         credentials_allowed=hop.credentials_allowed,
                                         redirected_elsewhere=hop.elsewhere))


def attach_auth(auth: AuthBase, request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Auth for ``session.auth = auth``: the first attempt's credentials on ``request``, and
    the hook that carries the flow on (401 replay, redirect hops)."""
    request.register_hook("response", _StandaloneHook(auth, request))  # type: ignore[no-untyped-call]
    return request
