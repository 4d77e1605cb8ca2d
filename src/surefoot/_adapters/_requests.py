"""requests integration: a transport adapter that drives the pipeline, and auth hooks.

``SurefootAdapter`` is mounted on a plain :class:`requests.Session`; every request
through it runs the whole per-attempt pipeline (auth re-applied per attempt, retry
decisions, Retry-After, the deadline, idempotency keys, 401 refresh-and-replay).
Responses stay :class:`requests.Response`; their attempt history is
``surefoot.history_of(response)``.

Redirects: requests follows them *after* the adapter returns, copying the original
prepared request. surefoot never puts credentials on that original (each attempt is a
copy), and it marks the logical request with its origin, so a redirect hop to another
origin is sent without credentials and a same-origin hop is signed afresh.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urljoin

import requests
import requests.adapters
import requests.exceptions as rexc
import urllib3.exceptions as u3exc

from surefoot._core._clock import Clock, default_clock
from surefoot._core._history import FailureKind
from surefoot._core._origin import origin_of
from surefoot._core._pipeline import AuthStrategy, RequestView, Send, request_flow
from surefoot._core._policy import Failure, ResponseInfo, RetryPolicy
from surefoot._drivers import drive_sync, make_pacer
from surefoot.errors import SigningError
from surefoot.events import Event, EventKind, Hook, LoggingHook, redact_url
from surefoot.oauth._cache import TokenCache

__all__ = ["SurefootAdapter", "apply_auth", "classify_requests_error"]

class _OriginMarker:
    """A no-op response hook recording the origin a logical request started at.

    requests copies a prepared request for each redirect hop and shares its hooks, so the
    marker travels with the hops; the adapter compares each hop's origin to it.
    """

    __slots__ = ("origin",)

    def __init__(self, origin: tuple[str, str, int | None]) -> None:
        self.origin = origin

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> None:
        return None


def _start_origin(request: requests.PreparedRequest, marker_type: type[Any]) -> Any:
    hooks = request.hooks.setdefault("response", []) if request.hooks is not None else []
    for hook in hooks:
        if isinstance(hook, marker_type):
            return hook
    return None


def _credentials_allowed(request: requests.PreparedRequest) -> bool:
    url = request.url or ""
    marker = _start_origin(request, _OriginMarker)
    if marker is None:
        if request.hooks is None:
            request.hooks = {"response": []}
        request.hooks.setdefault("response", []).append(_OriginMarker(origin_of(url)))
        return True
    return bool(marker.origin == origin_of(url))


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


def classify_requests_error(exc: BaseException) -> FailureKind:
    """Map a requests/urllib3 exception to where the attempt failed."""
    if isinstance(exc, (rexc.ConnectTimeout, rexc.ProxyError)):
        return FailureKind.CONNECT
    if isinstance(exc, rexc.SSLError):
        return FailureKind.OTHER
    if isinstance(exc, rexc.ReadTimeout):
        return FailureKind.READ_TIMEOUT
    if isinstance(exc, rexc.ChunkedEncodingError):
        return FailureKind.TRUNCATED
    if isinstance(exc, rexc.ConnectionError):
        inner: Any = exc.args[0] if exc.args else None
        if isinstance(inner, u3exc.MaxRetryError):
            inner = inner.reason
        if isinstance(inner, (u3exc.NewConnectionError, u3exc.ConnectTimeoutError)):
            return FailureKind.CONNECT
        if isinstance(inner, u3exc.ProtocolError):
            detail = inner.args[1] if len(inner.args) > 1 else None
            if isinstance(detail, u3exc.IncompleteRead) or "IncompleteRead" in repr(inner):
                return FailureKind.TRUNCATED
            return FailureKind.RESET
        if isinstance(inner, (u3exc.ReadTimeoutError,)):
            return FailureKind.READ_TIMEOUT
        if isinstance(inner, u3exc.EmptyPoolError):
            return FailureKind.POOL_TIMEOUT
        return FailureKind.RESET
    return FailureKind.OTHER


def _cap_timeout(user: Any, cap: float | None) -> Any:
    if cap is None:
        return user
    cap = max(cap, 0.001)
    if user is None:
        return (cap, cap)
    if isinstance(user, tuple):
        connect, read = user
        return (
            cap if connect is None else min(connect, cap),
            cap if read is None else min(read, cap),
        )
    if isinstance(user, (int, float)):
        return min(float(user), cap)
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
        auth: AuthStrategy | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
        pool_block: bool = False,
        credential_origins: Iterable[str] | None = None,
        pacing: Any = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.pacer = make_pacer(pacing)
        self.credential_origins = (
            None
            if credential_origins is None
            else frozenset(origin_of(u) for u in credential_origins)
        )
        self.auth = auth
        self.hook: Hook = hook or LoggingHook()
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

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        auth = self.auth
        allowed = auth is None or (
            _credentials_allowed(request)
            and (
                self.credential_origins is None
                or origin_of(request.url or "") in self.credential_origins
            )
        )
        body, replayable, position = _body_of(request)
        if auth is not None and allowed and getattr(auth, "signs_body", False) and (
            not replayable
        ):
            raise SigningError("cannot sign a streaming request body; pass bytes or a file")
        view = RequestView(
            method=request.method or "GET",
            url=request.url or "",
            headers=request.headers,
            body=body,
            replayable=replayable,
            credentials_allowed=allowed,
        )
        flow = request_flow(
            view,
            policy=self.retry,
            auth=auth,
            clock=self.clock,
            hook=self.hook,
            rng=self.rng,
            pacer=self.pacer,
        )
        parent_send = super().send

        def attempt(effect: Send) -> tuple[ResponseInfo | Failure, Any]:
            prepared = _attempt_copy(request) if effect.headers or effect.remove else request
            for name in effect.remove:
                prepared.headers.pop(name, None)
            prepared.headers.update(effect.headers)
            if position is not None:
                request.body.seek(position)  # type: ignore[union-attr]
            try:
                response = parent_send(
                    prepared,
                    stream=stream,
                    timeout=_cap_timeout(timeout, effect.timeout),
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
                if not stream:
                    _ = response.content  # read inside the attempt: truncation is retryable
            except rexc.RequestException as exc:
                kind = classify_requests_error(exc)
                return Failure(kind, type(exc).__name__), exc
            return ResponseInfo(response.status_code, response.headers), response

        native, result = drive_sync(flow, send=attempt, discard=_discard, clock=self.clock)
        response: requests.Response = native
        response.surefoot_history = result.history  # type: ignore[attr-defined]
        return response


# -- session.auth = auth --------------------------------------------------------------------


class _AuthHook:
    """Response hook installed by :func:`apply_auth`: keeps credentials on their origin
    across redirects, and refreshes-and-replays once on 401 for bearer tokens."""

    __slots__ = ("auth", "origin", "replayed", "token")

    def __init__(self, auth: Any, origin: tuple[str, str, int | None], token: Any) -> None:
        self.auth = auth
        self.origin = origin
        self.token = token
        self.replayed = False

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.is_redirect and request is not None:
            self._prepare_next_hop(response, request)
            return response
        cache: TokenCache | None = self.auth.token_cache
        if response.status_code != 401 or cache is None or self.replayed or request is None:
            return response
        body, replayable, position = _body_of(request)
        if not replayable:
            return response
        self.replayed = True
        self.token = cache.refresh_if_current(self.token)
        _ = response.content
        response.close()
        replay = request.copy()
        replay.headers.update(
            self.auth.attempt_headers(
                replay.method or "GET", replay.url or "", body, self.token, cache.clock.wall(),
                replay.headers,
            )
        )
        if position is not None:
            replay.body.seek(position)  # type: ignore[union-attr]
        connection = response.connection
        new: requests.Response = connection.send(replay, **kwargs)
        new.history.append(response)
        new.request = replay
        return new

    def _prepare_next_hop(
        self, response: requests.Response, request: requests.PreparedRequest
    ) -> None:
        """requests builds the next hop from a copy of ``request``: strip or re-sign it."""
        location = response.headers.get("location", "")
        target = urljoin(response.url, location)
        for name in self.auth.credential_headers:
            request.headers.pop(name, None)
        if origin_of(target) != self.origin:
            hook = getattr(self.auth, "hook", None) or LoggingHook()
            hook(Event(kind=EventKind.CREDENTIALS_WITHHELD, url=redact_url(target),
                       reason="redirected to another origin"))
            return
        # Same origin: sign what requests will send (its rebuild_method rules).
        method = (request.method or "GET").upper()
        status = response.status_code
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
        body, _, _ = _body_of(request)
        if status not in (307, 308):
            body = None
        token = self.token
        cache: TokenCache | None = self.auth.token_cache
        if cache is not None:
            token = cache.get()
        request.headers.update(
            self.auth.attempt_headers(
                method, target, body, token, _wall(self.auth), request.headers
            )
        )


def _wall(auth: Any) -> float:
    cache = getattr(auth, "token_cache", None)
    clock = cache.clock if cache is not None else getattr(auth.signer, "clock", default_clock)
    return float(clock.wall())


def apply_auth(auth: AuthStrategy, request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Auth for ``session.auth = auth``: attach credentials to this request and install
    the redirect/401 hook."""
    body, replayable, _ = _body_of(request)
    if getattr(auth, "signs_body", False) and not replayable:
        raise SigningError("cannot sign a streaming request body; pass bytes or a file")
    cache: TokenCache | None = auth.token_cache
    token = cache.get() if cache is not None else None
    request.headers.update(
        auth.attempt_headers(
            request.method or "GET", request.url or "", body, token, _wall(auth), request.headers
        )
    )
    request.register_hook(  # type: ignore[no-untyped-call]
        "response", _AuthHook(auth, origin_of(request.url or ""), token)
    )
    return request
