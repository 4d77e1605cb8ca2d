"""Server-side signature verification as WSGI and ASGI middleware.

::

    import surefoot
    from surefoot.middleware import VerifyASGI, VerifyWSGI

    verifier = surefoot.HmacVerifier({"my-key-id": "my-secret"})
    app = VerifyWSGI(app, verifier, protect=["/v1"])        # Flask, Django, any WSGI app
    app = VerifyASGI(app, verifier, protect=["/v1"])        # Starlette, FastAPI, any ASGI app

The verifier is a :class:`~surefoot.HmacVerifier` (the tutorial's scheme), a
:class:`~surefoot.MessageVerifier` (RFC 9421) or a :class:`~surefoot.SigV4Verifier`, or
any object following :class:`RequestVerifier`. For each protected request the middleware

1. reads the body (at most ``max_body`` bytes, else ``413``) and hands the application the
   same bytes: WSGI gets a fresh ``wsgi.input`` (and a ``CONTENT_LENGTH`` that matches);
   ASGI gets the body replayed through a wrapped ``receive``, after which ``receive`` is
   the server's own again (``http.disconnect`` passes through);
2. rebuilds the request as the client sent it: the method, the absolute URL (the scheme
   and ``Host`` of the request, or — only with ``trust_forwarded`` — those a trusted proxy
   put in ``X-Forwarded-Proto`` / ``X-Forwarded-Host``; the raw path and query as
   received when the server gives them: WSGI ``REQUEST_URI``/``RAW_URI``, ASGI
   ``raw_path``), the header field lines, and the body;
3. verifies it. A valid request goes on to the application with an :class:`Identity` in
   ``environ["surefoot.identity"]`` (WSGI) or in ``scope["state"]["surefoot_identity"]``
   and ``scope["surefoot.identity"]`` (ASGI; Starlette: ``request.state.surefoot_identity``);
   :func:`identity` reads either. An invalid one gets ``401`` with the JSON body
   ``{"error": "invalid_signature", "reason": "<reason>"}`` and a ``WWW-Authenticate``
   challenge (RFC 9421 adds an ``Accept-Signature`` saying what to sign when the signature
   is missing or falls short of the policy). A fail-closed nonce store that is down
   (:class:`~surefoot.StoreUnavailable`) gets ``503`` with ``Retry-After: 1``: the request
   may be fine, it could not be checked. Malformed requests (an unparseable
   ``Content-Length``, a ``Host`` that is not an authority) get ``400``.

Responses and logs carry reason codes only: never a key, a secret, a signature or a
header value. Rejections are logged at DEBUG (store failures at WARNING) on the
``surefoot.middleware`` logger, with the method and path but not the query.

**Which paths.** ``protect`` is ``None`` (every request), a list of path prefixes
matched segment-wise (``"/api"`` protects ``/api`` and ``/api/...`` but not
``/apiary``) against the path the wrapped application routes on (WSGI ``PATH_INFO``, ASGI
``scope["path"]``) — as it is, with repeated slashes collapsed, and with ``.``/``..``
segments resolved (a match of any of the three protects the request) — or a predicate
``(method, path) -> bool``. Everything else passes through untouched. Protecting
everything and exempting a few paths with a predicate is the safer way round.

**Repeated headers.** ASGI servers give each field line; they are passed on as they are.
WSGI servers join repeated headers into one ``HTTP_*`` value (with ``,``), which an
RFC 9421 signature over such a header (its lines joined with ``", "``) may not match.

**Blocking.** The verifiers are synchronous. With a nonce store that does I/O (Redis,
SQLite), :class:`VerifyASGI` runs the verification in a worker thread
(``asyncio.to_thread``; ``offload=`` forces it either way).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import quote

from surefoot.errors import (
    ConfigurationError,
    MissingHeader,
    PolicyViolation,
    SignatureError,
    StoreError,
)
from surefoot.signing._hmac import HmacVerifier
from surefoot.signing._rfc9421 import Component, MessageVerifier, VerifiedSignature, _sf_string
from surefoot.signing._sigv4 import SigV4Verifier
from surefoot.stores._memory import MemoryNonceCache

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "ENVIRON_KEY",
    "SCOPE_KEY",
    "STATE_KEY",
    "Identity",
    "RequestVerifier",
    "SignedRequest",
    "VerifyASGI",
    "VerifyWSGI",
    "adapt",
    "identity",
]

#: Where :class:`VerifyWSGI` puts the :class:`Identity` of a verified request.
ENVIRON_KEY = "surefoot.identity"
#: Where :class:`VerifyASGI` puts it: ``scope[SCOPE_KEY]`` and ``scope["state"][STATE_KEY]``.
SCOPE_KEY = "surefoot.identity"
STATE_KEY = "surefoot_identity"

DEFAULT_MAX_BODY = 1 << 20

logger = logging.getLogger("surefoot.middleware")

# ASGI, typed loosely (the protocol is dicts).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SLASHES = re.compile(r"//+")
_AUTHORITY = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=:\[\]]+")
_PATH_SAFE = "/!$&'()*+,;=:@-._~"
_READ_CHUNK = 65536
_DEFAULT_PORTS = {"http": "80", "https": "443"}


# -- what the middleware hands the verifier, and what it gets back ---------------------


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A received request, as the client sent it."""

    method: str
    """Upper case."""
    url: str
    """Absolute: scheme, authority, raw path and query."""
    headers: tuple[tuple[str, str], ...]
    """Field lines in order, names in lower case (a WSGI server may have joined repeats)."""
    body: bytes


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed a verified request."""

    scheme: str
    """``"hmac"``, ``"rfc9421"``, ``"sigv4"``, or a custom verifier's."""
    key_id: str
    """The key id (HMAC, RFC 9421 ``keyid``) or access key id (SigV4)."""
    signature: VerifiedSignature | None = None
    """RFC 9421: what the signature covers, its label, algorithm, created, nonce, tag."""


@runtime_checkable
class RequestVerifier(Protocol):
    """What the middleware needs from a verifier; :func:`adapt` wraps the built-in ones."""

    scheme: str

    @property
    def blocking(self) -> bool:
        """Whether :meth:`verify` may block on I/O (ASGI then runs it in a thread)."""
        ...

    def verify(self, request: SignedRequest) -> Identity:
        """The signer's identity, or raise :class:`~surefoot.SignatureError` (or
        :class:`~surefoot.StoreUnavailable`)."""
        ...

    def challenge(self, error: SignatureError) -> list[tuple[str, str]]:
        """Headers for the 401 answering ``error`` (at least ``WWW-Authenticate``)."""
        ...


def _joined(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _nonces_block(nonces: object) -> bool:
    return nonces is not None and not isinstance(nonces, MemoryNonceCache)


class _HmacAdapter:
    scheme = "hmac"

    def __init__(self, verifier: HmacVerifier) -> None:
        self.verifier = verifier

    @property
    def blocking(self) -> bool:
        return _nonces_block(self.verifier.nonces)

    def verify(self, request: SignedRequest) -> Identity:
        key_id = self.verifier.verify(
            request.method, request.url, _joined(request.headers), request.body or None
        )
        return Identity("hmac", key_id)

    def challenge(self, error: SignatureError) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", "Signature")]


class _MessageAdapter:
    scheme = "rfc9421"

    def __init__(self, verifier: MessageVerifier) -> None:
        self.verifier = verifier
        self.accept_signature = _accept_signature(verifier)

    @property
    def blocking(self) -> bool:
        return _nonces_block(self.verifier.nonces)

    def verify(self, request: SignedRequest) -> Identity:
        # An empty body is checked too when a Content-Digest came with it (a stripped
        # body must not pass); without either there is nothing to check.
        body: bytes | None = request.body
        if not body and not any(name == "content-digest" for name, _ in request.headers):
            body = None
        found = self.verifier.verify_request(
            request.method, request.url, list(request.headers), body=body
        )
        return Identity("rfc9421", found.key_id, found)

    def challenge(self, error: SignatureError) -> list[tuple[str, str]]:
        headers = [("WWW-Authenticate", "Signature")]
        if isinstance(error, (MissingHeader, PolicyViolation)):
            headers.append(("Accept-Signature", self.accept_signature))
        return headers


def _accept_signature(verifier: MessageVerifier) -> str:
    """RFC 9421 §5.1: the components and parameters this verifier requires."""
    components = list(verifier._required_request)
    digest = Component("content-digest")
    if verifier.require_content_digest and all(
        c.canonical != digest.canonical for c in components
    ):
        components.append(digest)
    params = ""
    if verifier.require_created:
        params += ";created"
    if verifier.require_nonce:
        params += ";nonce"
    if verifier.expected_tag is not None:
        params += f";tag={_sf_string(verifier.expected_tag)}"
    label = verifier.label or "sig1"
    return f"{label}=(" + " ".join(c.identifier for c in components) + ")" + params


class _SigV4Adapter:
    scheme = "sigv4"

    def __init__(self, verifier: SigV4Verifier) -> None:
        self.verifier = verifier

    @property
    def blocking(self) -> bool:
        return _nonces_block(self.verifier.nonces)

    def verify(self, request: SignedRequest) -> Identity:
        key_id = self.verifier.verify(
            request.method, request.url, list(request.headers), request.body or None
        )
        return Identity("sigv4", key_id)

    def challenge(self, error: SignatureError) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", "AWS4-HMAC-SHA256")]


AnyVerifier = HmacVerifier | MessageVerifier | SigV4Verifier | RequestVerifier


def adapt(verifier: AnyVerifier) -> RequestVerifier:
    """The :class:`RequestVerifier` for a built-in verifier (others are returned as is)."""
    if isinstance(verifier, HmacVerifier):
        return _HmacAdapter(verifier)
    if isinstance(verifier, MessageVerifier):
        return _MessageAdapter(verifier)
    if isinstance(verifier, SigV4Verifier):
        return _SigV4Adapter(verifier)
    if isinstance(verifier, RequestVerifier):
        return verifier
    raise ConfigurationError(
        "verifier must be an HmacVerifier, MessageVerifier, SigV4Verifier or RequestVerifier"
    )


def identity(
    environ_or_scope: MutableMapping[str, Any],
    key: str = ENVIRON_KEY,
    state_key: str = STATE_KEY,
) -> Identity | None:
    """The :class:`Identity` the middleware stored in a WSGI environ or an ASGI scope
    (``None``: the request was not verified)."""
    found = environ_or_scope.get(key)
    if found is None:
        state = environ_or_scope.get("state")
        if isinstance(state, MutableMapping):
            found = state.get(state_key)
    return found if isinstance(found, Identity) else None


# -- the shared part: which paths, the URL, verifying, the answers ----------------------


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


class _Rejected(Exception):
    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _reply(status: int, payload: dict[str, Any], headers: Sequence[tuple[str, str]] = ()) -> _Reply:
    body = json.dumps(payload).encode()
    return _Reply(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
        body,
    )


def _bad_request(message: str) -> _Rejected:
    return _Rejected(_reply(400, {"error": "bad_request", "message": message}))


def _too_large(limit: int) -> _Rejected:
    return _Rejected(_reply(413, {"error": "payload_too_large", "max_body": limit}))


def _normalise(path: str) -> str:
    """Dot segments resolved, empty segments dropped, a trailing slash kept."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing


def _last(value: str | None) -> str | None:
    """The value the nearest proxy appended (the last of a list)."""
    if not value:
        return None
    item = value.rpartition(",")[2].strip()
    return item or None


def _quote_path(path: str, encoding: str) -> str:
    try:
        raw = path.encode(encoding)
    except UnicodeEncodeError:
        raw = path.encode("utf-8", "surrogateescape")
    return quote(raw, safe=_PATH_SAFE)


Protect = Iterable[str] | Callable[[str, str], bool] | None
OnReject = Callable[["SignatureError | StoreError", SignedRequest], None]


class _Guard:
    """Configuration and logic common to the WSGI and ASGI middleware."""

    __slots__ = ("_predicate", "_prefixes", "max_body", "on_reject", "trust_forwarded",
                 "verifier")

    def __init__(
        self,
        verifier: AnyVerifier,
        protect: Protect,
        max_body: int,
        trust_forwarded: bool | Collection[str],
        on_reject: OnReject | None,
    ) -> None:
        self.verifier = adapt(verifier)
        self._predicate: Callable[[str, str], bool] | None = None
        self._prefixes: tuple[str, ...] | None = None
        if callable(protect):
            self._predicate = protect
        elif protect is not None:
            prefixes = [protect] if isinstance(protect, str) else list(protect)
            for prefix in prefixes:
                if not isinstance(prefix, str) or not prefix.startswith("/"):
                    raise ConfigurationError("protect: path prefixes must start with '/'")
            self._prefixes = tuple(_normalise(p).rstrip("/") for p in prefixes)
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ConfigurationError("max_body must be a non-negative number of bytes")
        self.max_body = max_body
        if isinstance(trust_forwarded, str):
            trust_forwarded = (trust_forwarded,)
        self.trust_forwarded = (
            trust_forwarded if isinstance(trust_forwarded, bool) else frozenset(trust_forwarded)
        )
        self.on_reject = on_reject

    def protects(self, method: str, path: str) -> bool:
        if self._predicate is not None:
            return bool(self._predicate(method, path))
        prefixes = self._prefixes
        if prefixes is None:
            return True
        # Protected if the path matches as it is, with repeated slashes collapsed, or
        # with its dot segments resolved too: whichever way the application routes it.
        variants = {path, _SLASHES.sub("/", path), _normalise(path)}
        return any(
            not prefix or p == prefix or p.startswith(prefix + "/")
            for prefix in prefixes
            for p in variants
        )

    def trusts(self, peer: str | None) -> bool:
        trusted = self.trust_forwarded
        if isinstance(trusted, bool):
            return trusted
        return peer is not None and peer in trusted

    def url(
        self,
        scheme: str,
        headers: list[tuple[str, str]],
        server: tuple[str, str] | None,
        peer: str | None,
        target: str,
    ) -> str:
        """The absolute URL; ``headers`` gets the forwarded host when one is trusted."""
        hosts = [value for name, value in headers if name == "host"]
        if len(hosts) > 1:
            raise _bad_request("more than one Host header")
        host = hosts[0].strip() if hosts else ""
        if self.trusts(peer):
            table = _joined(headers)
            proto = _last(table.get("x-forwarded-proto"))
            if proto is not None:
                scheme = proto.lower()
                if scheme not in ("http", "https"):
                    raise _bad_request("X-Forwarded-Proto must be http or https")
            forwarded_host = _last(table.get("x-forwarded-host"))
            if forwarded_host is not None:
                host = forwarded_host
                headers[:] = [(n, v) for n, v in headers if n != "host"]
                headers.append(("host", host))
        if not host:
            if server is None:
                raise _bad_request("no Host header")
            name, port = server
            host = name if _DEFAULT_PORTS.get(scheme) == port else f"{name}:{port}"
        if not _AUTHORITY.fullmatch(host):
            raise _bad_request("malformed Host header")
        if not target.startswith("/") or "#" in target or any(
            c.isspace() or not c.isprintable() for c in target
        ):
            raise _bad_request("malformed request target")
        return f"{scheme}://{host}{target}"

    def verify(self, request: SignedRequest) -> Identity | _Reply:
        try:
            return self.verifier.verify(request)
        except SignatureError as exc:
            logger.debug("signature rejected (%s): %s %s", exc.reason, request.method,
                         request.url.partition("?")[0])
            self._rejected(exc, request)
            return _reply(
                401,
                {"error": "invalid_signature", "reason": exc.reason},
                self.verifier.challenge(exc),
            )
        except StoreError as exc:
            logger.warning("nonce store failed (%s): answering 503 to %s %s",
                           type(exc).__name__, request.method, request.url.partition("?")[0])
            self._rejected(exc, request)
            return _reply(503, {"error": "store_unavailable"}, [("Retry-After", "1")])

    def _rejected(self, error: SignatureError | StoreError, request: SignedRequest) -> None:
        if self.on_reject is not None:
            self.on_reject(error, request)


def _content_length(text: str | None, limit: int) -> int | None:
    if text is None or not text.strip():
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise _bad_request("malformed Content-Length")
    length = int(text)
    if length > limit:
        raise _too_large(limit)
    return length


# -- WSGI ---------------------------------------------------------------------------------


class VerifyWSGI:
    """WSGI middleware: verifies the signature of each protected request before ``app``
    sees it (see the module documentation).

    * ``verifier`` — an :class:`~surefoot.HmacVerifier`, :class:`~surefoot.MessageVerifier`,
      :class:`~surefoot.SigV4Verifier` or :class:`RequestVerifier`;
    * ``protect`` — ``None`` (everything), path prefixes, or a predicate
      ``(method, path) -> bool``;
    * ``max_body`` — the largest body read, bytes (larger: ``413``); default 1 MiB;
    * ``trust_forwarded`` — honour ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` (the
      last value of each): ``True`` from any peer (only behind a proxy that sets them), or
      the proxies' addresses (``REMOTE_ADDR``); default ``False``;
    * ``on_reject`` — called with the error (a :class:`~surefoot.SignatureError` or
      :class:`~surefoot.StoreError`) and the :class:`SignedRequest` of each rejection;
    * ``environ_key`` — where the :class:`Identity` goes (default ``"surefoot.identity"``).
    """

    def __init__(
        self,
        app: WSGIApplication,
        verifier: AnyVerifier,
        *,
        protect: Protect = None,
        max_body: int = DEFAULT_MAX_BODY,
        trust_forwarded: bool | Collection[str] = False,
        on_reject: OnReject | None = None,
        environ_key: str = ENVIRON_KEY,
    ) -> None:
        self.app = app
        self._guard = _Guard(verifier, protect, max_body, trust_forwarded, on_reject)
        self.environ_key = environ_key

    @property
    def verifier(self) -> RequestVerifier:
        return self._guard.verifier

    def __repr__(self) -> str:
        return f"VerifyWSGI({self.app!r}, scheme={self.verifier.scheme!r})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        guard = self._guard
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        if not guard.protects(method, environ.get("PATH_INFO") or "/"):
            return self.app(environ, start_response)
        sent_length = environ.get("CONTENT_LENGTH")
        try:
            body = self._body(environ)
            request = self._request(environ, method, body, sent_length)
        except _Rejected as rejected:
            return self._send(rejected.reply, start_response)
        outcome = guard.verify(request)
        if isinstance(outcome, _Reply):
            return self._send(outcome, start_response)
        environ[self.environ_key] = outcome
        return self.app(environ, start_response)

    @staticmethod
    def _send(reply: _Reply, start_response: StartResponse) -> list[bytes]:
        start_response(reply.status_line, reply.headers)
        return [reply.body]

    def _body(self, environ: WSGIEnvironment) -> bytes:
        """Read the body (PEP 3333: up to CONTENT_LENGTH; to the end only when the server
        says the input is terminated) and put the same bytes back for the application."""
        limit = self._guard.max_body
        length = _content_length(environ.get("CONTENT_LENGTH"), limit)
        stream = environ.get("wsgi.input")
        chunks: list[bytes] = []
        size = 0
        if length is not None:
            while size < length and stream is not None:
                chunk = stream.read(min(length - size, _READ_CHUNK))
                if not chunk:
                    raise _bad_request("the body is shorter than its Content-Length")
                chunks.append(chunk)
                size += len(chunk)
        elif environ.get("wsgi.input_terminated") and stream is not None:
            while True:
                chunk = stream.read(_READ_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        elif environ.get("HTTP_TRANSFER_ENCODING"):
            # A body without a length on a server that does not terminate the input:
            # reading it could block for ever (PEP 3333).
            raise _Rejected(_reply(411, {"error": "length_required"}))
        body = b"".join(chunks)
        environ["wsgi.input"] = io.BytesIO(body)
        if body or environ.get("CONTENT_LENGTH"):
            environ["CONTENT_LENGTH"] = str(len(body))
        return body

    def _request(
        self, environ: WSGIEnvironment, method: str, body: bytes, sent_length: str | None
    ) -> SignedRequest:
        headers: list[tuple[str, str]] = []
        for key, value in environ.items():
            if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE",
                                                       "HTTP_CONTENT_LENGTH"):
                headers.append((key[5:].lower().replace("_", "-"), str(value)))
        if environ.get("CONTENT_TYPE"):
            headers.append(("content-type", str(environ["CONTENT_TYPE"])))
        if sent_length:
            headers.append(("content-length", str(sent_length).strip()))
        target = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        if target:
            target = str(target)
            if target.startswith(("http://", "https://")):  # absolute-form
                rest = target.partition("://")[2]
                slash = rest.find("/")
                target = "/" if slash < 0 else rest[slash:]
        else:
            path = str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "")
            target = _quote_path(path or "/", "latin-1")
            query = environ.get("QUERY_STRING")
            if query:
                target += f"?{query}"
        scheme = str(environ.get("wsgi.url_scheme") or "http")
        server = (str(environ.get("SERVER_NAME") or ""), str(environ.get("SERVER_PORT") or ""))
        url = self._guard.url(scheme, headers, server, environ.get("REMOTE_ADDR"), target)
        return SignedRequest(method, url, tuple(headers), body)


# -- ASGI ---------------------------------------------------------------------------------


class VerifyASGI:
    """ASGI middleware: verifies the signature of each protected HTTP request before
    ``app`` sees it. ``protect``, ``max_body``, ``trust_forwarded`` (addresses compared
    with ``scope["client"][0]``) and ``on_reject`` are those of :class:`VerifyWSGI`;
    the :class:`Identity` goes to ``scope["state"][state_key]`` and ``scope[scope_key]``
    (``None``: not there); ``offload`` runs the verification in a worker thread
    (``None``, the default: when the verifier's nonce store does I/O, i.e. is not a
    :class:`~surefoot.MemoryNonceCache`). Lifespan and WebSocket scopes pass through.
    The application gets a copy of the scope (and of its ``state``), never the server's.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: AnyVerifier,
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
        self._guard = _Guard(verifier, protect, max_body, trust_forwarded, on_reject)
        self.state_key = state_key
        self.scope_key = scope_key
        self.offload = self._guard.verifier.blocking if offload is None else offload

    @property
    def verifier(self) -> RequestVerifier:
        return self._guard.verifier

    def __repr__(self) -> str:
        return f"VerifyASGI({self.app!r}, scheme={self.verifier.scheme!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self._guard
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method") or "GET").upper()
        if not guard.protects(method, scope.get("path") or "/"):
            await self.app(scope, receive, send)
            return
        headers = [
            (bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
            for name, value in scope.get("headers") or ()
        ]
        try:
            body = await self._body(headers, receive)
            if body is None:  # the client went away before sending its body
                return
            request = self._request(scope, method, headers, body)
        except _Rejected as rejected:
            await self._send(rejected.reply, send)
            return
        if self.offload and _on_asyncio():
            outcome = await asyncio.to_thread(guard.verify, request)
        else:
            outcome = guard.verify(request)
        if isinstance(outcome, _Reply):
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
            raise _bad_request("conflicting Content-Length headers")
        _content_length(next(iter(lengths), None), limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "http.disconnect":
                return None
            if kind != "http.request":
                continue
            chunk = message.get("body") or b""
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(bytes(chunk))
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _request(
        self, scope: Scope, method: str, headers: list[tuple[str, str]], body: bytes
    ) -> SignedRequest:
        raw_path = scope.get("raw_path")
        if raw_path:
            target = bytes(raw_path).partition(b"?")[0].decode("latin-1")
        else:
            path = str(scope.get("path") or "/")
            root = str(scope.get("root_path") or "")
            target = _quote_path(path if path.startswith(root) else root + path, "utf-8")
        query = scope.get("query_string") or b""
        if query:
            target += "?" + bytes(query).decode("latin-1")
        server_info = scope.get("server")
        server = None
        if server_info and server_info[0] is not None:
            server = (str(server_info[0]), str(server_info[1]))
        client = scope.get("client")
        peer = str(client[0]) if client else None
        scheme = str(scope.get("scheme") or "http")
        url = self._guard.url(scheme, headers, server, peer, target)
        return SignedRequest(method, url, tuple(headers), body)

    @staticmethod
    async def _send(reply: _Reply, send: Send) -> None:
        await send({
            "type": "http.response.start",
            "status": reply.status,
            "headers": [(n.lower().encode("latin-1"), v.encode("latin-1"))
                        for n, v in reply.headers],
        })
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): verify inline
        return False
    return True
