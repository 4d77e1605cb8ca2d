"""The ASGI middleware (see :mod:`surefoot.middleware`).

**A server that breaks the ASGI spec.** The HTTP scope holds ``str`` for ``method``,
``scheme``, ``path`` and ``root_path``, bytes for ``raw_path``, ``query_string`` and the
header names and values, and ``[host, port]`` pairs (or ``None``) for ``server`` and
``client``; a ``receive`` gives dicts whose ``body`` is bytes. A server that gives
anything else where the middleware reads it (``client=1``, ``server=("h",)``, a ``str``
header ...) gets ``400`` for that request, whether its path is protected or not when the
method or path itself is wrong (it cannot be told), and a WARNING log line naming the
scope key and the value's type (:func:`~surefoot.middleware._guard.server_fault`): never
an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, MutableMapping
from typing import Any

from surefoot.middleware._guard import (
    DEFAULT_MAX_BODY,
    SCOPE_KEY,
    STATE_KEY,
    Guard,
    OnReject,
    Protect,
    Rejected,
    Reply,
    bad_request,
    check_fields,
    check_method,
    content_length,
    quote_path,
    server_fault,
    too_large,
)
from surefoot.signing._protocols import SignedRequest, Verifier

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "VerifyASGI"]

# ASGI, typed loosely (the protocol is dicts).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class VerifyASGI:
    """ASGI middleware: verifies the signature of each protected HTTP request before
    ``app`` sees it. ``verifier`` (any :class:`~surefoot.signing.Verifier`), ``protect``,
    ``max_body``, ``trust_forwarded`` (addresses compared with ``scope["client"][0]``) and
    ``on_reject`` are those of :class:`~surefoot.middleware.VerifyWSGI`; the
    :class:`~surefoot.signing.Identity` goes to ``scope["state"][state_key]`` and
    ``scope[scope_key]`` (``None``: not there); ``offload`` runs the verification in a
    worker thread (``None``, the default: when ``verifier.blocking``, i.e. its nonce store
    does I/O). Lifespan and WebSocket scopes pass through. The application gets a copy of
    the scope (and of its ``state``), never the server's.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        protect: Protect = None,
        max_body: int = DEFAULT_MAX_BODY,
        trust_forwarded: bool | Collection[str] = False,
        on_reject: OnReject | None = None,
        state_key: str | None = STATE_KEY,
        scope_key: str | None = SCOPE_KEY,
        offload: bool | None = None,
    ) -> None:
        self.app = app
        self._guard = Guard(verifier, protect, max_body, trust_forwarded, on_reject)
        self.state_key = state_key
        self.scope_key = scope_key
        self.offload = self._guard.verifier.blocking if offload is None else offload

    @property
    def verifier(self) -> Verifier:
        return self._guard.verifier

    def __repr__(self) -> str:
        return f"VerifyASGI({self.app!r}, scheme={self.verifier.scheme!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self._guard
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        try:
            method = (_scope_text(scope, "method") or "GET").upper()
            path = _scope_text(scope, "path") or "/"
        except Rejected as rejected:  # not even the path: protected or not, refused
            await self._send(rejected.reply, send)
            return
        if not guard.protects(method, path):
            await self.app(scope, receive, send)
            return
        try:
            check_method(method)
            headers = _fields(scope.get("headers") or ())
            check_fields(headers)
            body = await self._body(headers, receive)
            if body is None:  # the client went away before sending its body
                return
            request = self._request(scope, method, headers, body)
        except Rejected as rejected:
            await self._send(rejected.reply, send)
            return
        if self.offload and _on_asyncio():
            outcome = await asyncio.to_thread(guard.verify, request)
        else:
            outcome = guard.verify(request)
        if isinstance(outcome, Reply):
            await self._send(outcome, send)
            return

        scope = dict(scope)
        if self.state_key is not None:
            state = scope.get("state")
            scope["state"] = {**(state if isinstance(state, MutableMapping) else {}),
                              self.state_key: outcome}
        if self.scope_key is not None:
            scope[self.scope_key] = outcome
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, from the server

        await self.app(scope, replay, send)

    async def _body(self, headers: list[tuple[str, str]], receive: Receive) -> bytes | None:
        limit = self._guard.max_body
        lengths = {value.strip() for name, value in headers if name == "content-length"}
        if len(lengths) > 1:
            raise bad_request("conflicting Content-Length headers")
        content_length(next(iter(lengths), None), limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if not isinstance(message, Mapping):
                raise server_fault("a received message", message)
            kind = message.get("type")
            if kind == "http.disconnect":
                return None
            if kind != "http.request":
                continue
            chunk = message.get("body") or b""
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise server_fault("a received message's body", chunk)
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(bytes(chunk))
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _request(
        self, scope: Scope, method: str, headers: list[tuple[str, str]], body: bytes
    ) -> SignedRequest:
        raw_path = scope.get("raw_path")
        if raw_path:
            target = _text(raw_path).partition("?")[0]
        else:
            path = _scope_text(scope, "path") or "/"
            root = _scope_text(scope, "root_path") or ""
            target = quote_path(path if path.startswith(root) else root + path, "utf-8")
        query = scope.get("query_string") or b""
        if query:
            target += "?" + _text(query)
        server = _address(scope, "server")
        client = _address(scope, "client")
        peer = None if client is None else client[0]
        scheme = _scope_text(scope, "scheme") or "http"
        url = self._guard.url(scheme, headers, server, peer, target)
        return SignedRequest(method, url, tuple(headers), body)

    @staticmethod
    async def _send(reply: Reply, send: Send) -> None:
        await send({
            "type": "http.response.start",
            "status": reply.status,
            "headers": [(n.lower().encode("latin-1"), v.encode("latin-1"))
                        for n, v in reply.headers],
        })
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})


def _scope_text(scope: Scope, key: str) -> str | None:
    """``scope[key]``, a ``str``, or ``None`` when it is absent; another type is the
    server's fault (``400``)."""
    value = scope.get(key)
    if value is None or isinstance(value, str):
        return value
    raise server_fault(f"scope[{key!r}]", value)


def _address(scope: Scope, key: str) -> tuple[str, str] | None:
    """``scope["server"]`` or ``scope["client"]``: ``(host, port)`` as text, ``None``
    when absent (or empty, or a host of ``None``). The spec's shape is a two-item list or
    tuple, a ``str`` host and an ``int`` port (``None`` for a Unix socket: then there is
    no port); anything else is the server's fault (``400``)."""
    value = scope.get(key)
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise server_fault(f"scope[{key!r}]", value)
    host, port = value
    if host is None:
        return None
    if not isinstance(host, str) or not (
        port is None or (isinstance(port, (int, str)) and not isinstance(port, bool))
    ):
        raise server_fault(f"scope[{key!r}]", value)
    return host, "" if port is None else str(port)


def _text(value: object) -> str:
    """Bytes from the server as Latin-1 text (anything else, a server's mistake: 400)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    raise bad_request("malformed request")


def _fields(lines: Iterable[Any]) -> list[tuple[str, str]]:
    """``scope["headers"]`` as (lower-case name, value) text."""
    try:
        pairs = [(name, value) for name, value in lines]
    except (TypeError, ValueError):  # not pairs
        raise bad_request("malformed headers") from None
    return [(_text(name).lower(), _text(value)) for name, value in pairs]


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): verify inline
        return False
    return True
