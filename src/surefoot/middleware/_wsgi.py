"""The WSGI middleware (see :mod:`surefoot.middleware`)."""

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
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        if not guard.protects(method, environ.get("PATH_INFO") or "/"):
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
        length = content_length(environ.get("CONTENT_LENGTH"), limit)
        stream = environ.get("wsgi.input")
        chunks: list[bytes] = []
        size = 0
        if length is not None:
            while size < length and stream is not None:
                chunk = stream.read(min(length - size, READ_CHUNK))
                if not chunk:
                    raise bad_request("the body is shorter than its Content-Length")
                chunks.append(chunk)
                size += len(chunk)
        elif environ.get("wsgi.input_terminated") and stream is not None:
            while True:
                chunk = stream.read(READ_CHUNK)
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
        if body or environ.get("CONTENT_LENGTH"):
            environ["CONTENT_LENGTH"] = str(len(body))
        return body

    @staticmethod
    def _headers(environ: WSGIEnvironment) -> list[tuple[str, str]]:
        """The field lines, as the client sent them (before the body is read: its
        ``CONTENT_LENGTH`` is the one sent)."""
        headers: list[tuple[str, str]] = []
        for key, value in environ.items():
            if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE",
                                                       "HTTP_CONTENT_LENGTH"):
                headers.append((key[5:].lower().replace("_", "-"), str(value)))
        if environ.get("CONTENT_TYPE"):
            headers.append(("content-type", str(environ["CONTENT_TYPE"])))
        sent_length = environ.get("CONTENT_LENGTH")
        if sent_length:
            headers.append(("content-length", str(sent_length).strip()))
        return headers

    def _request(
        self, environ: WSGIEnvironment, method: str, headers: list[tuple[str, str]],
        body: bytes,
    ) -> SignedRequest:
        target = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        if target:
            target = str(target)
            if target.startswith(("http://", "https://")):  # absolute-form
                rest = target.partition("://")[2]
                slash = rest.find("/")
                target = "/" if slash < 0 else rest[slash:]
        else:
            path = str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "")
            target = quote_path(path or "/", "latin-1")
            query = environ.get("QUERY_STRING")
            if query:
                target += f"?{query}"
        scheme = str(environ.get("wsgi.url_scheme") or "http")
        server = (str(environ.get("SERVER_NAME") or ""), str(environ.get("SERVER_PORT") or ""))
        url = self._guard.url(scheme, headers, server, environ.get("REMOTE_ADDR"), target)
        # The server joined repeated field lines into one HTTP_* value: say so.
        return SignedRequest(method, url, tuple(headers), body, lines_joined=True)
