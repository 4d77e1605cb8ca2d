"""The tutorial's API-key + timestamp + signature scheme, done right.

A signed request carries five headers (names configurable, see :class:`HmacHeaders`)::

    X-API-Key:        <key id>
    X-Timestamp:      <unix seconds, integer>
    X-Nonce:          <32 lowercase hex characters, random per attempt>
    X-Content-SHA256: <lowercase hex SHA-256 of the body bytes; of b"" when there is no body>
    X-Signature:      <lowercase hex HMAC-SHA256(secret, canonical string)>

The canonical string is seven lines joined by ``\\n`` after a fixed first line, with no
trailing newline::

    SUREFOOT-HMAC-SHA256
    <METHOD, upper case>
    <canonical path>
    <canonical query>
    <canonical host>
    <timestamp, as sent>
    <nonce, as sent>
    <body digest, as computed from the body>

* canonical path: the raw URL path (as sent, not decoded) split on ``/``; each segment
  percent-decoded to bytes, then every byte percent-encoded (upper-case hex) except
  ``A-Z a-z 0-9 - _ . ~``; the segments joined with ``/``. An empty path is ``/``. (So
  ``%2F`` inside a segment stays ``%2F``, distinct from a ``/``.)
* canonical query: split the raw query on ``&``, drop empty items, split each item at the
  first ``=`` (no ``=`` means an empty value), percent-decode name and value (``+`` stays a
  literal ``+``), re-encode both like the path but also encoding ``/``, sort the pairs by
  name then value (byte order), join as ``name=value`` with ``&``.
* canonical host: the host (and port) from the URL, lower case, without the port when it is
  the scheme's default (80 for http, 443 for https).

A request whose method, URL or a header is text without a UTF-8 encoding (a lone
surrogate), or whose URL cannot be split, is refused: :class:`~surefoot.SigningError`
when signing, :class:`~surefoot.MalformedSignature` when verifying (the rule of
:func:`~surefoot.signing._protocols.message_flaw`).

The verifier recomputes everything from the request it received, checks the timestamp is
within ``skew`` seconds of its clock, compares the signature in constant time, and only
then records the nonce so that a replay within the window is rejected. The nonce is
recorded under the key the key id resolved to (``"hmac:<fingerprint of the secret>"``,
see :func:`~surefoot.signing._protocols.nonce_scope`), not under the key id as sent: the
key id is not signed, so with a resolver that ignores case (or knows aliases) the same
request sent again as ``X-API-Key: MY-KEY`` instead of ``my-key`` is still a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit

from surefoot._core._clock import Clock, default_clock
from surefoot._core._messages import HttpRequest
from surefoot.errors import (
    BadSignature,
    BodyDigestMismatch,
    ConfigurationError,
    MalformedSignature,
    MissingHeader,
    ReplayedNonce,
    SignatureError,
    TimestampSkew,
    UnknownKey,
)
from surefoot.signing._protocols import (
    Identity,
    NoncesOption,
    SignedRequest,
    check_received,
    check_signable,
    join_fields,
    nonce_scope,
    nonces_block,
    verifier_nonces,
)
from surefoot.stores._protocols import NonceCache

__all__ = ["HmacHeaders", "HmacSigner", "HmacVerifier", "canonical_string"]

ALGORITHM = "SUREFOOT-HMAC-SHA256"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DEFAULT_PORT_TEXT = {scheme: str(port) for scheme, port in _DEFAULT_PORTS.items()}
_MAX_PORT_DIGITS = 640


@dataclass(frozen=True, slots=True, kw_only=True)
class HmacHeaders:
    """Header names of the scheme."""

    api_key: str = "X-API-Key"
    timestamp: str = "X-Timestamp"
    nonce: str = "X-Nonce"
    digest: str = "X-Content-SHA256"
    signature: str = "X-Signature"

    def names(self) -> tuple[str, ...]:
        return (self.api_key, self.timestamp, self.nonce, self.digest, self.signature)


# Already canonical: only unreserved characters (and "/" in a path; "name=value" pairs
# in a query), so percent-decoding and re-encoding would give back the same text.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~/]+")
_PLAIN_QUERY = re.compile(
    r"[A-Za-z0-9\-._~]+=[A-Za-z0-9\-._~]*(?:&[A-Za-z0-9\-._~]+=[A-Za-z0-9\-._~]*)*"
)


def _encode(raw: bytes) -> str:
    """Every byte but ``A-Z a-z 0-9 - _ . ~`` as ``%XX`` (upper-case hex)."""
    return quote_from_bytes(raw, safe="")  # its always-safe set is exactly _UNRESERVED


def canonical_path(path: str) -> str:
    if not path:
        return "/"
    if _PLAIN_PATH.fullmatch(path):
        return path
    # Segment by segment, so that an encoded slash (%2F) stays distinct from "/".
    return "/".join([_encode(unquote_to_bytes(segment)) for segment in path.split("/")])


def canonical_query(query: str) -> str:
    if not query:
        return ""
    if _PLAIN_QUERY.fullmatch(query):
        plain = [item.split("=", 1) for item in query.split("&")]
        plain.sort()  # by name, then value, as the general case sorts its pairs
        return "&".join(["=".join(pair) for pair in plain])
    pairs: list[tuple[str, str]] = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((_encode(unquote_to_bytes(name)), _encode(unquote_to_bytes(value))))
    pairs.sort()
    return "&".join([f"{n}={v}" for n, v in pairs])


def canonical_host(scheme: str, netloc: str) -> str:
    host = netloc.rpartition("@")[2].lower()
    if host.startswith("["):  # IPv6 literal
        end = host.find("]")
        name, port_text = host[: end + 1], host[end + 2 :] if end + 1 < len(host) else ""
    else:
        name, _, port_text = host.partition(":")
    if port_text and port_text.isdigit():
        # int() refuses more than sys.get_int_max_str_digits() digits (at least 640): no
        # port is that long, and such a one (from an untrusted Host) is kept as text.
        port = str(int(port_text)) if len(port_text) <= _MAX_PORT_DIGITS else port_text
        if port != _DEFAULT_PORT_TEXT.get(scheme.lower()):
            return f"{name}:{port}"
    return name


def body_digest(body: bytes | None) -> str:
    return hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256


def canonical_string(
    method: str, url: str, *, timestamp: str, nonce: str, digest: str
) -> str:
    """The string that is signed, for ``method`` and the absolute ``url``."""
    parts = urlsplit(url)
    return "\n".join(
        (
            ALGORITHM,
            method.upper(),
            canonical_path(parts.path),
            canonical_query(parts.query),
            canonical_host(parts.scheme, parts.netloc),
            timestamp,
            nonce,
            digest,
        )
    )


def _to_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


class HmacSigner:
    """Signs requests with the scheme above (a :class:`~surefoot.signing.Signer`). Pure:
    give it ``now`` (or a clock)."""

    __slots__ = ("_nonce", "_secret", "clock", "headers", "key_id")

    def __init__(
        self,
        key_id: str,
        secret: str | bytes,
        *,
        headers: HmacHeaders | None = None,
        clock: Clock | None = None,
        nonce_factory: Callable[[], str] | None = None,
    ) -> None:
        if not key_id or any(c in key_id for c in "\r\n"):
            raise ConfigurationError("key_id must be a non-empty single-line string")
        if not secret:
            raise ConfigurationError("secret must not be empty")
        self.key_id = key_id
        self._secret = _to_bytes(secret)
        self.headers = headers or HmacHeaders()
        self.clock = clock or default_clock
        self._nonce = nonce_factory or (lambda: secrets.token_hex(16))

    def __repr__(self) -> str:
        return f"HmacSigner(key_id={self.key_id!r}, secret=<redacted>)"

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return self.headers.names()

    @property
    def signs_body(self) -> bool:
        return True

    def sign(self, request: HttpRequest, *, now: float | None = None) -> dict[str, str]:
        """The headers to add to this attempt (its other headers are not signed). A fresh
        timestamp and nonce every call."""
        check_signable(request.method, request.url, request.headers)
        when = self.clock.wall() if now is None else now
        timestamp = str(int(when))
        nonce = self._nonce()
        digest = body_digest(request.body)
        text = canonical_string(
            request.method, request.url, timestamp=timestamp, nonce=nonce, digest=digest
        )
        h = self.headers
        return {
            h.api_key: self.key_id,
            h.timestamp: timestamp,
            h.nonce: nonce,
            h.digest: digest,
            h.signature: _mac(self._secret, text),
        }


KeyLookup = Mapping[str, "str | bytes"] | Callable[[str], "str | bytes | None"]


class HmacVerifier:
    """Server side of the scheme: the :class:`~surefoot.signing.Identity` (scheme
    ``"hmac"``, the key id) of a valid request, or raises.

    Raises (all :class:`surefoot.SignatureError`): :class:`MissingHeader`,
    :class:`MalformedSignature`, :class:`UnknownKey`, :class:`TimestampSkew`,
    :class:`BodyDigestMismatch`, :class:`BadSignature`, :class:`ReplayedNonce`.
    ``nonces`` is a :class:`~surefoot.stores.NonceCache` or a store (its ``.nonces``);
    default (``None``) a fresh :class:`~surefoot.stores.MemoryNonceCache`; ``False``: no
    replay check (every verifier's ``nonces=`` means the same, see
    :func:`~surefoot.signing._protocols.verifier_nonces`; the signer's nonce is fresh per
    attempt, so only a replay repeats one). Nonces are recorded per resolved key (every
    spelling of a key id the lookup maps to one secret shares them).
    """

    __slots__ = ("_keys", "clock", "headers", "nonces", "skew")

    scheme = "hmac"

    def __init__(
        self,
        keys: KeyLookup,
        *,
        skew: float = 300.0,
        nonces: NoncesOption = None,
        headers: HmacHeaders | None = None,
        clock: Clock | None = None,
    ) -> None:
        if skew <= 0:
            raise ConfigurationError("skew must be positive")
        self._keys = keys
        self.skew = skew
        self.nonces: NonceCache | None = verifier_nonces(nonces, default=True)
        self.headers = headers or HmacHeaders()
        self.clock = clock or default_clock

    def __repr__(self) -> str:
        return f"HmacVerifier(skew={self.skew}, keys=<redacted>)"

    @property
    def blocking(self) -> bool:
        return nonces_block(self.nonces)

    def challenge(self, error: SignatureError) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", "Signature")]

    def _secret(self, key_id: str) -> bytes | None:
        keys = self._keys
        found = keys(key_id) if callable(keys) else keys.get(key_id)
        return _to_bytes(found) if found else None

    def _values(self, request: SignedRequest) -> dict[str, str]:
        """The scheme's five header values (repeated lines joined, as a server would)."""
        lower = join_fields(request.headers)
        values: dict[str, str] = {}
        for name in self.headers.names():
            value = lower.get(name.lower())
            if value is None or not value.strip():
                raise MissingHeader(f"missing header {name}")
            values[name] = value.strip()
        return values

    def verify(self, request: SignedRequest, *, now: float | None = None) -> Identity:
        check_received(request)  # text it can encode, a URL it can split
        when = self.clock.wall() if now is None else now
        h = self.headers
        values = self._values(request)
        key_id, timestamp, nonce = values[h.api_key], values[h.timestamp], values[h.nonce]
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            raise MalformedSignature(f"{h.timestamp} is not integer seconds")
        if not (0 < len(nonce) <= 128 and nonce.isascii() and nonce.isprintable()):
            raise MalformedSignature(f"{h.nonce} is malformed")
        secret = self._secret(key_id)
        if secret is None:
            raise UnknownKey("unknown key id")
        if abs(when - int(timestamp)) > self.skew:
            raise TimestampSkew(f"timestamp outside the ±{self.skew:g} s window")
        sent_digest, sent_signature = values[h.digest].lower(), values[h.signature].lower()
        if not (sent_digest.isascii() and sent_signature.isascii()):
            raise MalformedSignature("digest or signature is not ASCII hex")
        digest = body_digest(request.body)
        if not hmac.compare_digest(digest, sent_digest):
            raise BodyDigestMismatch("body digest does not match the body")
        text = canonical_string(
            request.method, request.url, timestamp=timestamp, nonce=nonce, digest=digest
        )
        if not hmac.compare_digest(_mac(secret, text), sent_signature):
            raise BadSignature("signature does not match")
        # Keyed on the resolved key, not the unsigned key id as sent (see the module doc).
        if self.nonces is not None:
            scope = nonce_scope("hmac", secret)
            if not self.nonces.add_if_absent(scope, nonce, now=when, ttl=2 * self.skew + 1):
                raise ReplayedNonce("nonce already used")
        return Identity("hmac", key_id)
