"""The WSGI middleware (see :mod:`surefoot.middleware`).

**A server that breaks PEP 3333.** The environ holds native strings (``str``) for the
CGI variables and the ``HTTP_*`` fields, and a ``wsgi.input`` whose ``read`` gives bytes.
A server that gives anything else where the middleware reads it (``PATH_INFO=1``, a
``wsgi.input`` that is no stream ...) gets ``400`` for that request, whether its path is
protected or not when the path itself is wrong (it cannot be told), and a WARNING log
line naming the environ key and the value's type
(:func:`~surefoot.middleware._guard.server_fault`): never an exception.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from surefoot.middleware._guard import (
    DEFAULT_MAX_BODY,
    ENVIRON_KEY,
    READ_CHUNK,
    Guard,
    OnReject,
    Protect,
    Rejected,
    Reply,
    bad_request,
    check_fields,
    check_method,
    content_length,
    json_reply,
    quote_path,
    server_fault,
    too_large,
)
from surefoot.signing._protocols import SignedRequest, Verifier

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["VerifyWSGI"]


class VerifyWSGI:
    """WSGI middleware: verifies the signature of each protected request before ``app``
    sees it (see the module documentation).

    * ``verifier`` — any :class:`~surefoot.signing.Verifier`:
      :class:`~surefoot.signing.HmacVerifier`, :class:`~surefoot.signing.MessageVerifier`,
      :class:`~surefoot.signing.SigV4Verifier`, or your own;
    * ``protect`` — ``None`` (everything), path prefixes, or a predicate
      ``(method, path) -> bool``;
    * ``max_body`` — the largest body read, bytes (larger: ``413``); default 1 MiB;
    * ``trust_forwarded`` — honour ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` (the
      last value of each): ``True`` from any peer (only behind a proxy that sets them), or
      the proxies' addresses (``REMOTE_ADDR``); default ``False``;
    * ``on_reject`` — called with the error (a :class:`~surefoot.SignatureError` or
      :class:`~surefoot.StoreError`) and the :class:`~surefoot.signing.SignedRequest` of
      each rejection;
    * ``environ_key`` — where the :class:`~surefoot.signing.Identity` goes (default
      ``"surefoot.identity"``).

    The server joined repeated header lines into one ``HTTP_*`` value: the
    :class:`~surefoot.signing.SignedRequest` says so (``lines_joined``), see "Repeated
    headers" in :mod:`surefoot.middleware`.
    """

    def __init__(
        self,
        app: WSGIApplication,
        verifier: Verifier,
        *,
        protect: Protect = None,
        max_body: int = DEFAULT_MAX_BODY,
        trust_forwarded: bool | Collection[str] = False,
        on_reject: OnReject | None = None,
        environ_key: str = ENVIRON_KEY,
    ) -> None:
        self.app = app
        self._guard = Guard(verifier, protect, max_body, trust_forwarded, on_reject)
        self.environ_key = environ_key

    @property
    def verifier(self) -> Verifier:
        return self._guard.verifier

    def __repr__(self) -> str:
        return f"VerifyWSGI({self.app!r}, scheme={self.verifier.scheme!r})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        guard = self._guard
        try:
            method = (_text(environ, "REQUEST_METHOD") or "GET").upper()
            path = _text(environ, "PATH_INFO") or "/"
        except Rejected as rejected:  # not even the path: protected or not, refused
            return self._send(rejected.reply, start_response)
        if not guard.protects(method, path):
            return self.app(environ, start_response)
        try:
            check_method(method)
            headers = self._headers(environ)
            check_fields(headers)
            body = self._body(environ)
            request = self._request(environ, method, headers, body)
        except Rejected as rejected:
            return self._send(rejected.reply, start_response)
        outcome = guard.verify(request)
        if isinstance(outcome, Reply):
            return self._send(outcome, start_response)
        environ[self.environ_key] = outcome
        return self.app(environ, start_response)

    @staticmethod
    def _send(reply: Reply, start_response: StartResponse) -> list[bytes]:
        start_response(reply.status_line, reply.headers)
        return [reply.body]

    def _body(self, environ: WSGIEnvironment) -> bytes:
        """Read the body (PEP 3333: up to CONTENT_LENGTH; to the end only when the server
        says the input is terminated) and put the same bytes back for the application."""
        limit = self._guard.max_body
        sent_length = _text(environ, "CONTENT_LENGTH")
        length = content_length(sent_length, limit)
        stream = environ.get("wsgi.input")
        if stream is not None and not callable(getattr(stream, "read", None)):
            raise server_fault("environ['wsgi.input']", stream)
        chunks: list[bytes] = []
        size = 0
        if length is not None:
            while size < length and stream is not None:
                chunk = _chunk(stream.read(min(length - size, READ_CHUNK)))
                if not chunk:
                    raise bad_request("the body is shorter than its Content-Length")
                chunks.append(chunk)
                size += len(chunk)
        elif environ.get("wsgi.input_terminated") and stream is not None:
            while True:
                chunk = _chunk(stream.read(READ_CHUNK))
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
        elif environ.get("HTTP_TRANSFER_ENCODING"):
            # A body without a length on a server that does not terminate the input:
            # reading it could block for ever (PEP 3333).
            raise Rejected(json_reply(411, {"error": "length_required"}))
        body = b"".join(chunks)
        environ["wsgi.input"] = io.BytesIO(body)
        if body or sent_length:
            environ["CONTENT_LENGTH"] = str(len(body))
        return body

    @staticmethod
    def _headers(environ: WSGIEnvironment) -> list[tuple[str, str]]:
        """The field lines, as the client sent them (before the body is read: its
        ``CONTENT_LENGTH`` is the one sent)."""
        headers: list[tuple[str, str]] = []
        for key, value in environ.items():
            if (isinstance(key, str) and key.startswith("HTTP_")
                    and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH")):
                if not isinstance(value, str):
                    raise server_fault(f"environ[{key[:64]!r}]", value)
                headers.append((key[5:].lower().replace("_", "-"), value))
        content_type = _text(environ, "CONTENT_TYPE")
        if content_type:
            headers.append(("content-type", content_type))
        sent_length = _text(environ, "CONTENT_LENGTH")
        if sent_length:
            headers.append(("content-length", sent_length.strip()))
        return headers

    def _request(
        self, environ: WSGIEnvironment, method: str, headers: list[tuple[str, str]],
        body: bytes,
    ) -> SignedRequest:
        target = _text(environ, "REQUEST_URI") or _text(environ, "RAW_URI")
        if target:
            if target.startswith(("http://", "https://")):  # absolute-form
                rest = target.partition("://")[2]
                slash = rest.find("/")
                target = "/" if slash < 0 else rest[slash:]
        else:
            path = (_text(environ, "SCRIPT_NAME") or "") + (_text(environ, "PATH_INFO") or "")
            target = quote_path(path or "/", "latin-1")
            query = _text(environ, "QUERY_STRING")
            if query:
                target += f"?{query}"
        scheme = _text(environ, "wsgi.url_scheme") or "http"
        server = (_text(environ, "SERVER_NAME") or "", _text(environ, "SERVER_PORT") or "")
        url = self._guard.url(scheme, headers, server, _text(environ, "REMOTE_ADDR"), target)
        # The server joined repeated field lines into one HTTP_* value: say so.
        return SignedRequest(method, url, tuple(headers), body, lines_joined=True)


def _text(environ: WSGIEnvironment, key: str) -> str | None:
    """``environ[key]``, a ``str`` (PEP 3333), or ``None`` when it is absent; another
    type is the server's fault (``400``)."""
    value = environ.get(key)
    if value is None or isinstance(value, str):
        return value
    raise server_fault(f"environ[{key!r}]", value)


def _chunk(data: object) -> bytes:
    """What ``wsgi.input.read`` gave: bytes (PEP 3333); anything else, the server's fault."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise server_fault("environ['wsgi.input'].read()", data)
