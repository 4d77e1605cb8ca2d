"""What the WSGI and ASGI middleware share: which paths are protected, the URL as the
client sent it, verifying, and the answers (see :mod:`surefoot.middleware`)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlsplit

from surefoot._log import logger as _surefoot_logger
from surefoot.errors import ConfigurationError, SignatureError, StoreError, SurefootError
from surefoot.signing._protocols import Identity, SignedRequest, Verifier, join_fields

__all__ = [
    "DEFAULT_MAX_BODY",
    "ENVIRON_KEY",
    "MAX_HEADER_BYTES",
    "MAX_TARGET",
    "READ_CHUNK",
    "SCOPE_KEY",
    "STATE_KEY",
    "Guard",
    "OnReject",
    "Protect",
    "Rejected",
    "Reply",
    "bad_request",
    "check_fields",
    "check_method",
    "content_length",
    "identity",
    "json_reply",
    "quote_path",
    "server_fault",
    "too_large",
]

#: Where :class:`~surefoot.middleware.VerifyWSGI` puts the :class:`Identity` of a
#: verified request.
ENVIRON_KEY = "surefoot.identity"
#: Where :class:`~surefoot.middleware.VerifyASGI` puts it: ``scope[SCOPE_KEY]`` and
#: ``scope["state"][STATE_KEY]``.
SCOPE_KEY = "surefoot.identity"
STATE_KEY = "surefoot_identity"

DEFAULT_MAX_BODY = 1 << 20
READ_CHUNK = 65536
#: The most header bytes (names and values of all field lines) a protected request may
#: have; more: ``431``.
MAX_HEADER_BYTES = 65536
#: The longest request target (path and query) of a protected request; longer: ``414``.
MAX_TARGET = 65536

logger = _surefoot_logger.getChild("middleware")

_SLASHES = re.compile(r"//+")
_PATH_SAFE = "/!$&'()*+,;=:@-._~"
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# RFC 9110 §5.6.2: a field name (and a method) is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: a field value is visible characters, obs-text, spaces and tabs.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 3986 §3.2.2: the host of an authority, a reg-name or an IP literal (with an
# RFC 6874 zone); the port is checked apart.
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
_IPV6_LITERAL = re.compile(
    r"\[(?P<address>[0-9A-Fa-f:.]+)(?:%25(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})+)?\]"
)
_IPVFUTURE_LITERAL = re.compile(r"\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]")


def identity(
    environ_or_scope: Mapping[str, object],
    key: str = ENVIRON_KEY,
    state_key: str = STATE_KEY,
) -> Identity | None:
    """The :class:`Identity` the middleware stored in a WSGI environ or an ASGI scope
    (``None``: the request was not verified)."""
    found = environ_or_scope.get(key)
    if found is None:
        state = environ_or_scope.get("state")
        if isinstance(state, Mapping):
            found = state.get(state_key)
    return found if isinstance(found, Identity) else None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


class Rejected(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def json_reply(
    status: int, payload: dict[str, Any], headers: Sequence[tuple[str, str]] = ()
) -> Reply:
    body = json.dumps(payload).encode()
    return Reply(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
        body,
    )


def bad_request(message: str) -> Rejected:
    return Rejected(json_reply(400, {"error": "bad_request", "message": message}))


def server_fault(where: str, value: object) -> Rejected:
    """A value the server put in the environ or scope that PEP 3333 / the ASGI spec do
    not allow (a ``PATH_INFO`` that is not a ``str``, a ``wsgi.input`` without ``read``,
    a ``scope["client"]`` that is not a pair ...): the request cannot be rebuilt as the
    client sent it, so it is answered ``400`` — a server's bug, logged at WARNING (where,
    and the value's type: never the value)."""
    logger.warning("the server broke the WSGI/ASGI spec: %s is a %s; answering 400",
                   where, type(value).__name__)
    return bad_request("malformed request")


def check_method(method: str) -> str:
    if not _TOKEN.fullmatch(method):
        raise bad_request("malformed method")
    return method


def check_fields(headers: Sequence[tuple[str, str]]) -> None:
    """Each field line is a token and a value of visible Latin-1 characters (no CR, LF,
    NUL or other control character), ``MAX_HEADER_BYTES`` in all at most."""
    size = 0
    for name, value in headers:
        size += len(name) + len(value)
        if size > MAX_HEADER_BYTES:
            raise Rejected(json_reply(431, {"error": "header_fields_too_large",
                                            "max_header_bytes": MAX_HEADER_BYTES}))
        if not _TOKEN.fullmatch(name):
            raise bad_request("malformed header name")
        if not _FIELD_VALUE.fullmatch(value):
            raise bad_request("malformed header value")


def _is_authority(text: str) -> bool:
    """``host [":" port]`` (RFC 3986 §3.2.2, 3.2.3; no userinfo), the port at most 65535,
    and parsed back the same by :func:`urllib.parse.urlsplit` (which the verifiers use)."""
    if text.startswith("["):  # an IP literal
        end = text.find("]") + 1
        if end == 0:
            return False
        literal, port = text[:end], text[end:]
        ipv6 = _IPV6_LITERAL.fullmatch(literal)
        if ipv6 is None:
            if not _IPVFUTURE_LITERAL.fullmatch(literal):
                return False
        else:
            try:
                ipaddress.IPv6Address(ipv6["address"])
            except ValueError:
                return False
    else:
        name, colon, digits = text.partition(":")
        if not _REG_NAME.fullmatch(name):
            return False
        port = colon + digits
    if port:
        digits = port[1:]
        if port[0] != ":":
            return False
        if digits and not (
            len(digits) <= 5 and digits.isascii() and digits.isdigit() and int(digits) <= 65535
        ):
            return False
    try:
        parts = urlsplit(f"http://{text}/")
        _ = parts.hostname, parts.port
    except ValueError:
        return False
    return parts.netloc == text


def too_large(limit: int) -> Rejected:
    return Rejected(json_reply(413, {"error": "payload_too_large", "max_body": limit}))


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


def quote_path(path: str, encoding: str) -> str:
    try:
        raw = path.encode(encoding)
    except UnicodeEncodeError:
        try:
            raw = path.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise bad_request("malformed path") from None
    return quote(raw, safe=_PATH_SAFE)


Protect = Iterable[str] | Callable[[str, str], bool] | None
OnReject = Callable[["SignatureError | StoreError", SignedRequest], None]


class Guard:
    """Configuration and logic common to the WSGI and ASGI middleware."""

    __slots__ = ("_predicate", "_prefixes", "max_body", "on_reject", "trust_forwarded",
                 "verifier")

    def __init__(
        self,
        verifier: Verifier,
        protect: Protect,
        max_body: int,
        trust_forwarded: bool | Collection[str],
        on_reject: OnReject | None,
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise ConfigurationError(
                "verifier must be a Verifier (HmacVerifier, MessageVerifier, SigV4Verifier "
                "or your own)"
            )
        self.verifier: Verifier = verifier
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
            raise bad_request("more than one Host header")
        host = hosts[0].strip() if hosts else ""
        if self.trusts(peer):
            table = join_fields(headers)
            proto = _last(table.get("x-forwarded-proto"))
            if proto is not None:
                scheme = proto.lower()
                if scheme not in ("http", "https"):
                    raise bad_request("X-Forwarded-Proto must be http or https")
            forwarded_host = _last(table.get("x-forwarded-host"))
            if forwarded_host is not None:
                host = forwarded_host
                headers[:] = [(n, v) for n, v in headers if n != "host"]
                headers.append(("host", host))
        if not host:
            if server is None:
                raise bad_request("no Host header")
            name, port = server
            if ":" in name and not name.startswith("["):  # an IPv6 address
                name = f"[{name}]"
            host = name if not port or _DEFAULT_PORTS.get(scheme) == port else f"{name}:{port}"
        if not _is_authority(host):
            raise bad_request("malformed Host header")
        if len(target) > MAX_TARGET:
            raise Rejected(json_reply(414, {"error": "uri_too_long", "max_target": MAX_TARGET}))
        if not target.startswith("/") or "#" in target or any(
            c.isspace() or not c.isprintable() for c in target
        ):
            raise bad_request("malformed request target")
        url = f"{scheme}://{host}{target}"
        try:
            parts = urlsplit(url)
        except ValueError:
            raise bad_request("malformed request target") from None
        if parts.netloc != host:
            raise bad_request("malformed request target")
        return url

    def verify(self, request: SignedRequest) -> Identity | Reply:
        try:
            return self.verifier.verify(request)
        except SignatureError as exc:
            logger.debug("signature rejected (%s): %s %s", exc.reason, request.method,
                         request.url.partition("?")[0])
            self._rejected(exc, request)
            return json_reply(
                401,
                {"error": "invalid_signature", "reason": exc.reason},
                self.verifier.challenge(exc),
            )
        except StoreError as exc:
            logger.warning("nonce store failed (%s): answering 503 to %s %s",
                           type(exc).__name__, request.method, request.url.partition("?")[0])
            self._rejected(exc, request)
            return json_reply(503, {"error": "store_unavailable"}, [("Retry-After", "1")])
        except ValueError as exc:  # UnicodeError too
            if isinstance(exc, SurefootError):  # a ConfigurationError: the server's fault
                raise
            # The verifier could not parse what the client sent (a request the checks
            # above let through): the client's fault, not a 500. The exception's message
            # may quote the request: only its type is logged.
            logger.warning("verifier %s failed on a malformed request (%s): answering 400 "
                           "to %s %s", type(self.verifier).__name__, type(exc).__name__,
                           request.method, request.url.partition("?")[0])
            return bad_request("malformed request").reply

    def _rejected(self, error: SignatureError | StoreError, request: SignedRequest) -> None:
        if self.on_reject is not None:
            self.on_reject(error, request)


def content_length(text: str | None, limit: int) -> int | None:
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if not (text.isascii() and text.isdigit()):
        raise bad_request("malformed Content-Length")
    digits = text.lstrip("0")  # int() refuses more than 4300 digits, zeros too
    if len(digits) > len(str(limit)):
        raise too_large(limit)
    length = int(digits or "0")
    if length > limit:
        raise too_large(limit)
    return length
