"""AWS Signature Version 4 (``AWS4-HMAC-SHA256``): signing and verifying, sans I/O.

Header-based signing (``Authorization`` + ``X-Amz-Date``) and query presigning, with the
canonical request computed from the request *as it is sent*:

* **canonical URI** — the raw path of the URL as sent (already percent-encoded by the HTTP
  library). For every service but S3 it is normalised (``.``/``..`` segments removed,
  repeated slashes collapsed, a trailing slash kept) and then percent-encoded once more
  (every byte but ``A-Z a-z 0-9 - _ . ~ /``; so ``%20`` becomes ``%2520``: AWS's
  "double encoding"). For S3 it is not normalised and each segment is encoded exactly once
  (percent-decoded, then re-encoded; ``%2F`` inside a segment stays ``%2F``).
* **canonical query** — items split on ``&`` (empty items dropped) and at the first ``=``,
  name and value percent-decoded (``+`` is a literal plus, canonically ``%2B``: what AWS's
  own SDKs and services do) and re-encoded (all but the unreserved characters; a space is
  ``%20``), sorted by name then value, joined ``name=value`` with ``&``.
* **canonical headers** — lower-case names, values trimmed with inner runs of whitespace
  (line folds included) collapsed to one space, repeated headers joined with ``,`` in the
  order they are sent, sorted by name, one ``name:value\\n`` line each; the signed headers
  are the names joined with ``;``.
* **payload hash** — lower-case hex SHA-256 of the body, or ``UNSIGNED-PAYLOAD``.

A request whose method, URL or a header is text without a UTF-8 encoding (a lone
surrogate), or whose URL cannot be split, is refused: :class:`~surefoot.SigningError`
when signing, :class:`~surefoot.MalformedSignature` when verifying (the rule of
:func:`~surefoot.signing._protocols.message_flaw`).

The date-scoped signing key (``HMAC`` chain over date, region, service, ``aws4_request``)
is cached per (secret, date, region, service), so signing costs one SHA-256 of the
canonical request and one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeAlias
from urllib.parse import quote, unquote_to_bytes, urlsplit

from surefoot._core._clock import Clock, default_clock
from surefoot._core._messages import HttpRequest
from surefoot.errors import (
    BadSignature,
    BodyDigestMismatch,
    ConfigurationError,
    CredentialScopeMismatch,
    InsufficientCoverage,
    MalformedSignature,
    MissingHeader,
    ReplayedNonce,
    SignatureError,
    SignatureExpired,
    SigningError,
    TimestampSkew,
    UnknownKey,
)
from surefoot.signing._hmac import canonical_host
from surefoot.signing._protocols import (
    Identity,
    NoncesOption,
    check_received,
    check_signable,
    join_fields,
    nonce_scope,
    nonces_block,
    verifier_nonces,
)
from surefoot.stores._protocols import NonceCache

if TYPE_CHECKING:
    from surefoot.signing._protocols import SignedRequest

__all__ = [
    "ALGORITHM",
    "S3_SERVICES",
    "UNSIGNED_PAYLOAD",
    "CredentialsLike",
    "SigV4Credentials",
    "SigV4Parts",
    "SigV4Signer",
    "SigV4Verifier",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "signing_key",
    "string_to_sign",
]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
TERMINATOR = "aws4_request"
#: Services whose paths are neither normalised nor double-encoded, and which expect
#: ``X-Amz-Content-SHA256`` on every request.
S3_SERVICES = frozenset({"s3", "s3express", "s3-outposts", "s3-object-lambda"})
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_PLAIN = re.compile(r"[A-Za-z0-9\-._~/]*")
_PLAIN_QUERY = re.compile(
    r"[A-Za-z0-9\-._~]+=[A-Za-z0-9\-._~]*(?:&[A-Za-z0-9\-._~]+=[A-Za-z0-9\-._~]*)*"
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = re.compile(r"([0-9]{8})T[0-9]{6}Z")
_WS = re.compile(r"[ \t\r\n]+")
_SCOPE_PART = re.compile(r"[A-Za-z0-9\-_.]+")
# Headers the signer generates itself: values found among the attempt's headers are stale.
_GENERATED = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)
_DEFAULT_SIGNED = frozenset({"host", "content-type", "content-md5"})
_SKIP, _SIGN, _SHA256 = 0, 1, 2
_EMPTY_NAME = "an empty header name cannot be signed (nor sent)"

# -- errors (SignatureError family) --------------------------------------------------------


# -- credentials ----------------------------------------------------------------------------


class CredentialsLike(Protocol):
    """Anything with these attributes (botocore's frozen credentials qualify)."""

    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def token(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SigV4Credentials:
    """An access key, its secret and, for temporary credentials, the session token."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        key = self.access_key
        if not key or not key.isprintable() or any(c in key for c in "/, ="):
            raise ConfigurationError("access_key must be printable, without '/', ',', '=' or ' '")
        if not self.secret_key:
            raise ConfigurationError("secret_key must not be empty")
        try:
            self.secret_key.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            raise ConfigurationError("secret_key must be text with a UTF-8 encoding") from None
        if self.token is not None and (not self.token or not self.token.isprintable()):
            raise ConfigurationError("session token must be a non-empty single-line string")


# -- canonical pieces ---------------------------------------------------------------------


def _normalize_path(path: str) -> str:
    """RFC 3986 dot-segment removal, plus AWS's collapsing of repeated slashes."""
    out: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    trailing = "/" if path.endswith("/") and out else ""
    return "/" + "/".join(out) + trailing


def _encode(raw: str | bytes) -> str:
    return quote(raw, safe="")


def canonical_uri(path: str, *, s3: bool = False) -> str:
    """The canonical URI of the raw ``path`` as sent (see the module docstring)."""
    if not path:
        return "/"
    if not path.startswith("/"):
        path = "/" + path
    if s3:
        if _PLAIN.fullmatch(path):
            return path
        return "/".join(
            [
                segment if _PLAIN.fullmatch(segment) else _encode(unquote_to_bytes(segment))
                for segment in path.split("/")
            ]
        )
    if "//" in path or "/." in path:
        path = _normalize_path(path)
    if _PLAIN.fullmatch(path):
        return path
    return quote(path, safe="/")


def _query_pairs(query: str, skip: str | None = None) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        name_bytes = unquote_to_bytes(name)
        if skip is not None and name_bytes == skip.encode():
            continue
        pairs.append((_encode(name_bytes), _encode(unquote_to_bytes(value))))
    return pairs


def canonical_query(query: str, *, skip: str | None = None) -> str:
    """The canonical query string of the raw ``query`` (without ``?``). ``skip`` drops
    the items of that (decoded) name (``X-Amz-Signature`` when verifying a presigned URL).
    """
    if not query:
        return ""
    if skip is None and _PLAIN_QUERY.fullmatch(query):
        # name=value pairs of unreserved characters only: nothing to re-encode.
        plain = [tuple(item.split("=", 1)) for item in query.split("&")]
        plain.sort()
        return "&".join(["=".join(p) for p in plain])
    pairs = _query_pairs(query, skip)
    pairs.sort()
    return "&".join([f"{n}={v}" for n, v in pairs])


def _trim(value: str) -> str:
    if value.isascii():
        return " ".join(value.split())
    return _WS.sub(" ", value).strip(" ")


def canonical_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """``(canonical headers block, signed headers)`` of these (name, value) pairs, every
    one signed. Repeated names are joined with ``,`` in the order given. An empty header
    name raises :class:`~surefoot.SigningError`."""
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.strip().lower()
        if not key:
            raise SigningError(_EMPTY_NAME)
        trimmed = _trim(value)
        if key in merged:
            merged[key] = f"{merged[key]},{trimmed}"
        else:
            merged[key] = trimmed
    names = sorted(merged)
    return "".join([f"{n}:{merged[n]}\n" for n in names]), ";".join(names)


def canonical_request(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    payload_hash: str,
    *,
    s3: bool = False,
) -> tuple[str, str]:
    """``(canonical request, signed headers)`` for the absolute ``url`` (its raw path and
    query, as sent), signing every header in ``headers``."""
    parts = urlsplit(url)
    block, signed = canonical_headers(headers)
    text = (
        f"{method.upper()}\n{canonical_uri(parts.path, s3=s3)}\n{canonical_query(parts.query)}\n"
        f"{block}\n{signed}\n{payload_hash}"
    )
    return text, signed


def credential_scope(date: str, region: str, service: str) -> str:
    return f"{date}/{region}/{service}/{TERMINATOR}"


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _hmac256(key: bytes, text: str) -> bytes:
    return hmac.digest(key, text.encode("utf-8"), "sha256")


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """A request whose method, URL or a header is text without a UTF-8 encoding (a lone
surrogate), or whose URL cannot be split, is refused: :class:`~surefoot.SigningError`
when signing, :class:`~surefoot.MalformedSignature` when verifying (the rule of
:func:`~surefoot.signing._protocols.message_flaw`).

The date-scoped signing key: HMAC chain over date, region, service, terminator."""
    key = _hmac256(f"AWS4{secret_key}".encode(), date)
    key = _hmac256(key, region)
    key = _hmac256(key, service)
    return _hmac256(key, TERMINATOR)


def _signature(key: bytes, text: str) -> str:
    return hmac.digest(key, text.encode("utf-8"), "sha256").hex()


HeaderSource: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]]"


def _amz_date(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(int(now)))


def _hex_sha256(body: bytes | None) -> str:
    return hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256


class SigV4Parts(NamedTuple):
    """What :meth:`SigV4Signer.sign_parts` computed: the headers to add, and the
    intermediate strings (for debugging and conformance tests)."""

    headers: dict[str, str]
    canonical_request: str
    string_to_sign: str


class _KeyCache:
    """The signing key of the last (secret, date, region, service) seen, plus a small
    bounded table for verifiers that see many keys. Thread-safe (reads are lock-free)."""

    __slots__ = ("_last", "_lock", "_table", "max_entries")

    def __init__(self, max_entries: int = 1024) -> None:
        self._last: tuple[tuple[str, str, str, str], bytes] | None = None
        self._table: OrderedDict[tuple[str, str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, secret: str, date: str, region: str, service: str) -> bytes:
        ident = (secret, date, region, service)
        last = self._last
        if last is not None and last[0] == ident:
            return last[1]
        with self._lock:
            key = self._table.get(ident)
            if key is None:
                key = signing_key(secret, date, region, service)
                self._table[ident] = key
                while len(self._table) > self.max_entries:
                    self._table.popitem(last=False)
            else:
                self._table.move_to_end(ident)
        self._last = (ident, key)
        return key


def _check_scope_part(name: str, value: str) -> None:
    if not _SCOPE_PART.fullmatch(value):
        raise ConfigurationError(f"{name} must be a non-empty token like 'us-east-1'")


# -- signer ---------------------------------------------------------------------------------


class SigV4Signer:
    """Signs requests with AWS Signature Version 4 (a :class:`~surefoot.signing.Signer`).
    Pure: give it ``now`` (or a clock).

    ``credentials`` is a :class:`SigV4Credentials` or a function returning credentials
    (called once per signature; for rotating temporary credentials).

    Signed headers: ``host``, ``x-amz-date``, the session token, ``x-amz-content-sha256``
    when sent, and of the request's other headers ``content-type``, ``content-md5`` and
    every ``x-amz-*`` one, plus the names in ``signed_headers`` (or every header given,
    with ``signed_headers="all"``).

    ``s3`` (default: the service is one of :data:`S3_SERVICES`) means no path
    normalisation, single encoding, and ``X-Amz-Content-SHA256`` on every request.
    ``unsigned_payload`` signs ``UNSIGNED-PAYLOAD`` instead of the body's hash (and sends
    ``X-Amz-Content-SHA256: UNSIGNED-PAYLOAD``). ``sign_session_token=False`` adds the
    session token after signing (services that want it so).
    """

    __slots__ = (
        "_credentials",
        "_date_cache",
        "_decisions",
        "_extra",
        "_keys",
        "_sign_all",
        "clock",
        "content_sha256",
        "region",
        "s3",
        "service",
        "sign_session_token",
        "unsigned_payload",
    )

    def __init__(
        self,
        credentials: SigV4Credentials | Callable[[], CredentialsLike],
        region: str,
        service: str,
        *,
        s3: bool | None = None,
        unsigned_payload: bool = False,
        content_sha256: bool | None = None,
        sign_session_token: bool = True,
        signed_headers: Iterable[str] | str = (),
        clock: Clock | None = None,
    ) -> None:
        _check_scope_part("region", region)
        _check_scope_part("service", service)
        self._credentials = credentials
        self.region = region
        self.service = service
        self.s3 = service in S3_SERVICES if s3 is None else s3
        self.unsigned_payload = unsigned_payload
        self.content_sha256 = (
            self.s3 or unsigned_payload if content_sha256 is None else content_sha256
        )
        if unsigned_payload and not self.content_sha256:
            raise ConfigurationError("unsigned_payload needs the X-Amz-Content-SHA256 header")
        self.sign_session_token = sign_session_token
        if isinstance(signed_headers, str):
            if signed_headers != "all":
                raise ConfigurationError("signed_headers is 'all' or a list of header names")
            self._sign_all = True
            self._extra: frozenset[str] = frozenset()
        else:
            self._sign_all = False
            self._extra = frozenset(n.strip().lower() for n in signed_headers)
            if "" in self._extra:
                raise ConfigurationError("signed_headers must not contain an empty name")
        self.clock = clock or default_clock
        self._keys = _KeyCache(max_entries=16)
        self._date_cache: tuple[int, str] = (-1, "")
        self._decisions: dict[str, int] = {}

    def __repr__(self) -> str:
        creds = self._credentials
        who = creds.access_key if isinstance(creds, SigV4Credentials) else "<provider>"
        return (
            f"SigV4Signer(access_key={who!r}, region={self.region!r}, "
            f"service={self.service!r}, secret=<redacted>)"
        )

    def credentials(self) -> CredentialsLike:
        creds = self._credentials
        if isinstance(creds, SigV4Credentials):
            return creds
        got = creds()
        if not got.access_key or not got.secret_key:
            raise ConfigurationError("the credentials provider returned empty credentials")
        return got

    def _now(self, now: float | None) -> str:
        when = int(self.clock.wall() if now is None else now)
        cached = self._date_cache
        if cached[0] == when:
            return cached[1]
        text = _amz_date(when)
        self._date_cache = (when, text)
        return text

    def _decide(self, lower: str) -> int:
        """Whether a header (lower-case name) is signed, skipped, or the stale payload hash;
        memoised per name (at most 512 names). An empty name is refused
        (:class:`~surefoot.SigningError`): it is no header, and would make ``SignedHeaders``
        ambiguous."""
        if not lower.strip():
            raise SigningError(_EMPTY_NAME)
        if lower == "x-amz-content-sha256":
            decision = _SHA256
        elif lower in _GENERATED:
            decision = _SKIP
        elif (
            lower == "host"
            or self._sign_all
            or lower in _DEFAULT_SIGNED
            or lower.startswith("x-amz-")
            or lower in self._extra
        ):
            decision = _SIGN
        else:
            decision = _SKIP
        if len(self._decisions) < 512:
            self._decisions[lower] = decision
        return decision

    def _selected(
        self, url_parts: tuple[str, str], headers: HeaderSource | None
    ) -> tuple[dict[str, str], bool]:
        """The attempt's headers to sign, ``{lower-case name: canonical value}`` (Host from
        the headers, else from the URL), and whether ``X-Amz-Content-SHA256`` is among
        them. Repeated headers are joined with ``,`` when the collection keeps them apart
        (pairs, ``multi_items``); in a plain mapping the last of case variants wins."""
        chosen: dict[str, str] = {}
        has_sha256 = False
        if headers is None:
            items: Iterable[tuple[str, str]] = ()
            join = False
        elif type(headers) is dict:
            items, join = headers.items(), False
        else:
            lower_items = getattr(headers, "lower_items", None)  # requests' headers: fast
            multi = getattr(headers, "multi_items", None)  # httpx's: repeats kept apart
            if callable(lower_items):
                items, join = lower_items(), False
            elif callable(multi):
                items, join = multi(), True
            elif isinstance(headers, Mapping):
                items, join = headers.items(), False
            else:
                items, join = headers, True
        decisions = self._decisions
        for name, value in items:
            lower = name.lower()
            decision = decisions.get(lower)
            if decision is None:
                decision = self._decide(lower)
            if decision == _SIGN:
                trimmed = _trim(value)
                if join and lower in chosen:
                    chosen[lower] = f"{chosen[lower]},{trimmed}"
                else:
                    chosen[lower] = trimmed
            elif decision == _SHA256:
                has_sha256 = True
        if "host" not in chosen:
            chosen["host"] = canonical_host(*url_parts)
        return chosen, has_sha256

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256")

    @property
    def signs_body(self) -> bool:
        return True

    def sign(self, request: HttpRequest, *, now: float | None = None) -> dict[str, str]:
        """The headers to add to this request: ``X-Amz-Date``, ``Authorization``, and
        ``X-Amz-Security-Token`` / ``X-Amz-Content-SHA256`` when they apply.

        ``request.url`` is absolute, with the path and query exactly as they will be sent;
        ``request.headers`` are its other headers as they will be sent (``Host`` is taken
        from the URL when absent).
        """
        return self.sign_parts(request, now=now).headers

    def sign_parts(self, request: HttpRequest, *, now: float | None = None) -> SigV4Parts:
        """Like :meth:`sign`, with the canonical request and string to sign."""
        check_signable(request.method, request.url, request.headers)
        creds = self.credentials()
        amz_date = self._now(now)
        date = amz_date[:8]
        parts = urlsplit(request.url)
        signed_values, has_sha256 = self._selected((parts.scheme, parts.netloc), request.headers)
        added: dict[str, str] = {"X-Amz-Date": amz_date}
        signed_values["x-amz-date"] = amz_date
        token = creds.token
        if token:
            added["X-Amz-Security-Token"] = token
            if self.sign_session_token:
                signed_values["x-amz-security-token"] = token
        payload = UNSIGNED_PAYLOAD if self.unsigned_payload else _hex_sha256(request.body)
        if self.content_sha256 or has_sha256:
            # Sent (or was about to be sent, stale): always with this body's value.
            added["X-Amz-Content-SHA256"] = payload
            signed_values["x-amz-content-sha256"] = payload
        names = sorted(signed_values)
        block = "".join([f"{n}:{signed_values[n]}\n" for n in names])
        signed = ";".join(names)
        creq = (
            f"{request.method.upper()}\n{canonical_uri(parts.path, s3=self.s3)}\n"
            f"{canonical_query(parts.query)}\n{block}\n{signed}\n{payload}"
        )
        scope = f"{date}/{self.region}/{self.service}/{TERMINATOR}"
        sts = string_to_sign(amz_date, scope, creq)
        key = self._keys.get(creds.secret_key, date, self.region, self.service)
        added["Authorization"] = (
            f"{ALGORITHM} Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={_signature(key, sts)}"
        )
        return SigV4Parts(added, creq, sts)

    def presign(
        self,
        method: str,
        url: str,
        *,
        expires: int = 3600,
        headers: HeaderSource | None = None,
        body: bytes | None = None,
        now: float | None = None,
    ) -> str:
        """A presigned URL (query authentication), valid ``expires`` seconds.

        Signs ``host`` (and the headers selected like :meth:`sign` from ``headers``,
        which must then be sent unchanged). The payload is ``UNSIGNED-PAYLOAD`` for S3
        (or with ``unsigned_payload``), else the hash of ``body``. A session token is
        signed as ``X-Amz-Security-Token``, or with ``sign_session_token=False`` appended
        after ``X-Amz-Signature``, unsigned (as the services that want it so expect;
        :class:`SigV4Verifier` verifies only signed tokens).
        """
        if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
            raise ConfigurationError(f"expires must be between 1 and {MAX_PRESIGN_EXPIRES} s")
        if headers is not None and not isinstance(headers, Mapping):
            headers = list(headers)  # (read twice: checked, then signed)
        check_signable(method, url, headers)
        creds = self.credentials()
        amz_date = self._now(now)
        date = amz_date[:8]
        parts = urlsplit(url)
        signed_values = self._selected((parts.scheme, parts.netloc), headers)[0]
        names = sorted(signed_values)
        block = "".join([f"{n}:{signed_values[n]}\n" for n in names])
        signed = ";".join(names)
        scope = f"{date}/{self.region}/{self.service}/{TERMINATOR}"
        params = [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", f"{creds.access_key}/{scope}"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", signed),
        ]
        if creds.token and self.sign_session_token:
            params.append(("X-Amz-Security-Token", creds.token))
        added = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in params)
        query = f"{parts.query}&{added}" if parts.query else added
        payload = (
            UNSIGNED_PAYLOAD if self.s3 or self.unsigned_payload else _hex_sha256(body)
        )
        creq = (
            f"{method.upper()}\n{canonical_uri(parts.path, s3=self.s3)}\n"
            f"{canonical_query(query)}\n{block}\n{signed}\n{payload}"
        )
        key = self._keys.get(creds.secret_key, date, self.region, self.service)
        signature = _signature(key, string_to_sign(amz_date, scope, creq))
        query = f"{query}&X-Amz-Signature={signature}"
        if creds.token and not self.sign_session_token:
            query = f"{query}&X-Amz-Security-Token={_encode(creds.token)}"
        return parts._replace(query=query, fragment="").geturl()


# -- verifier -------------------------------------------------------------------------------

KeyLookup: TypeAlias = "Mapping[str, str] | Callable[[str], str | None]"

_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,"
    r"\s*Signature=([0-9a-fA-F]{64})\s*"
)


_PRESIGN_MARKS = (b"X-Amz-Signature", b"X-Amz-Algorithm")


def _amz_query_params(query: str) -> dict[str, str]:
    """The ``X-Amz-*`` parameters of a presigned query, ``{name: value}``, both
    percent-decoded. Names are compared after decoding (``X%2DAmz-Signature`` is
    ``X-Amz-Signature``: the canonical query decodes names too, so an encoded duplicate
    would be dropped from it with the real signature) and case-sensitively, as AWS does;
    any name given twice is refused (:class:`~surefoot.MalformedSignature`)."""
    values: dict[str, str] = {}
    for item in query.split("&"):
        raw_name, _, raw_value = item.partition("=")
        name_bytes = unquote_to_bytes(raw_name)
        if not name_bytes.startswith(b"X-Amz-"):
            continue
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedSignature("an X-Amz-* query parameter name is not UTF-8") from None
        if name in values:
            raise MalformedSignature(f"repeated query parameter {name[:64]!r}")
        try:
            values[name] = unquote_to_bytes(raw_value).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedSignature(f"{name[:64]!r} is not UTF-8") from None
    return values


class _Claim(NamedTuple):
    access_key: str
    scope: str
    amz_date: str
    signed: str
    signature: str
    payload: str | None  # None: from X-Amz-Content-SHA256 and the body, checked last
    canonical_query: str
    expires: int | None


class SigV4Verifier:
    """Server side of SigV4 (a :class:`~surefoot.signing.Verifier`): the
    :class:`~surefoot.signing.Identity` (scheme ``"sigv4"``, the access key id) of a valid
    request, or raises.

    Verifies header-based signatures (``Authorization``) and presigned URLs
    (``X-Amz-Signature`` in the query). Checks, in order: the signature fields are
    present and well-formed → the credential scope is this verifier's (date, ``region``,
    ``service``) → ``host``, ``x-amz-date`` and every ``x-amz-*`` header present are
    signed, and every signed header present → the access key is known → the date is
    within ``skew`` (AWS: 15 minutes; presigned: from ``skew`` before the date until
    ``X-Amz-Expires`` after it) → ``X-Amz-Content-SHA256``, if sent, matches the body
    (``UNSIGNED-PAYLOAD`` only when ``allow_unsigned_payload``, by default for S3) → the
    signature (constant-time) → unless ``nonces=False``, the signature was not seen
    before (replay; AWS itself has no such check), recorded per resolved key (not per
    access key id as sent, which is not signed), so every spelling of an access key the
    lookup maps to one secret shares them.

    **Replays.** SigV4 has no nonce: the replay key is the signature, and ``X-Amz-Date``
    has one-second resolution. So by default two *identical* requests signed in the same
    second (the same idempotent ``GET`` sent twice, say) are one signature, and the second
    is refused as a replay (:class:`ReplayedNonce`), as is a presigned URL used a second
    time. ``nonces`` (the same option as every verifier's):

    * ``None`` (default) — a fresh in-process :class:`~surefoot.stores.MemoryNonceCache`
      (each process, and each verifier, remembers its own);
    * a :class:`~surefoot.stores.NonceCache` or a store (its ``.nonces``) — that one
      (a shared store refuses replays across processes);
    * ``False`` — no replay check, AWS's own behaviour: identical requests (and a
      presigned URL used again) are accepted until the date leaves the ``skew`` window
      (or the presigned URL expires); a request replayed after that is refused anyway.

    A presigned URL's ``X-Amz-*`` parameters are found by their percent-decoded names
    (case-sensitively, as AWS does); one given twice, in any encoding, is refused.

    Raises (all :class:`surefoot.SignatureError`): :class:`MissingHeader`,
    :class:`MalformedSignature`, :class:`CredentialScopeMismatch`,
    :class:`InsufficientCoverage`, :class:`UnknownKey`, :class:`TimestampSkew` (and its
    :class:`SignatureExpired`), :class:`BodyDigestMismatch`, :class:`BadSignature`,
    :class:`ReplayedNonce`.

    ``request.url`` is the absolute URL as received (raw path and query, not decoded).
    """

    __slots__ = (
        "_keys",
        "_signing_keys",
        "allow_unsigned_payload",
        "clock",
        "nonces",
        "region",
        "s3",
        "service",
        "skew",
    )

    scheme = "sigv4"

    def __init__(
        self,
        keys: KeyLookup,
        *,
        region: str,
        service: str,
        skew: float = 900.0,
        s3: bool | None = None,
        allow_unsigned_payload: bool | None = None,
        nonces: NoncesOption = None,
        clock: Clock | None = None,
    ) -> None:
        _check_scope_part("region", region)
        _check_scope_part("service", service)
        if skew <= 0:
            raise ConfigurationError("skew must be positive")
        self._keys = keys
        self.region = region
        self.service = service
        self.skew = skew
        self.s3 = service in S3_SERVICES if s3 is None else s3
        self.allow_unsigned_payload = (
            self.s3 if allow_unsigned_payload is None else allow_unsigned_payload
        )
        self.nonces: NonceCache | None = verifier_nonces(nonces, default=True)
        self.clock = clock or default_clock
        self._signing_keys = _KeyCache()

    def __repr__(self) -> str:
        return (
            f"SigV4Verifier(region={self.region!r}, service={self.service!r}, "
            f"skew={self.skew:g}, keys=<redacted>)"
        )

    @property
    def blocking(self) -> bool:
        return nonces_block(self.nonces)

    def challenge(self, error: SignatureError) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", ALGORITHM)]

    def _secret(self, access_key: str) -> str | None:
        keys = self._keys
        found = keys(access_key) if callable(keys) else keys.get(access_key)
        return found or None

    def _scope(self, credential: str) -> tuple[str, str]:
        access_key, sep, scope = credential.partition("/")
        if not (sep and access_key):
            raise MalformedSignature("malformed Credential")
        fields = scope.split("/")
        if len(fields) != 4:
            raise MalformedSignature("malformed credential scope")
        return access_key, scope

    def _header_claim(self, lower: dict[str, str], authorization: str, query: str) -> _Claim:
        match = _AUTH_RE.fullmatch(authorization.strip())
        if match is None:
            raise MalformedSignature("malformed Authorization header")
        credential, signed, signature = match.groups()
        access_key, scope = self._scope(credential)
        amz_date = lower.get("x-amz-date")
        if amz_date is None:
            raise MissingHeader("missing header X-Amz-Date")
        return _Claim(access_key, scope, amz_date.strip(), signed, signature.lower(), None,
                      canonical_query(query), None)

    def _payload(self, sent_hash: str | None, body: bytes | None) -> str:
        actual = _hex_sha256(body)
        if sent_hash is None:
            return actual
        sent = sent_hash.strip()
        if sent == UNSIGNED_PAYLOAD:
            if not self.allow_unsigned_payload:
                raise BodyDigestMismatch("UNSIGNED-PAYLOAD is not accepted")
            return sent
        if not _HEX64.fullmatch(sent):
            raise MalformedSignature("X-Amz-Content-SHA256 is not a SHA-256 hex digest")
        if not hmac.compare_digest(sent, actual):
            raise BodyDigestMismatch("X-Amz-Content-SHA256 does not match the body")
        return sent

    def _query_claim(self, query: str, lower: dict[str, str]) -> _Claim:
        values = _amz_query_params(query)
        for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                     "X-Amz-SignedHeaders", "X-Amz-Signature"):
            if not values.get(name):
                raise MissingHeader(f"missing query parameter {name}")
        if values["X-Amz-Algorithm"] != ALGORITHM:
            raise MalformedSignature("unsupported X-Amz-Algorithm")
        signature = values["X-Amz-Signature"].lower()
        if not _HEX64.fullmatch(signature):
            raise MalformedSignature("malformed X-Amz-Signature")
        expires_text = values["X-Amz-Expires"]
        if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 7):
            raise MalformedSignature("malformed X-Amz-Expires")
        expires = int(expires_text)
        if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
            raise MalformedSignature("X-Amz-Expires out of range")
        access_key, scope = self._scope(values["X-Amz-Credential"])
        sent_hash = lower.get("x-amz-content-sha256")
        payload: str | None = None
        if self.s3 or (
            self.allow_unsigned_payload
            and sent_hash is not None
            and sent_hash.strip() == UNSIGNED_PAYLOAD
        ):
            payload = UNSIGNED_PAYLOAD  # presigned S3 URLs never sign the body
        return _Claim(access_key, scope, values["X-Amz-Date"], values["X-Amz-SignedHeaders"],
                      signature, payload, canonical_query(query, skip="X-Amz-Signature"),
                      expires)

    def _claim(self, lower: dict[str, str], query: str) -> _Claim:
        """What the request claims: from its ``Authorization`` header or its query."""
        authorization = lower.get("authorization")
        presigned = "X-Amz-Signature=" in query or "X-Amz-Algorithm=" in query or (
            "%" in query and any(
                unquote_to_bytes(item.partition("=")[0]) in _PRESIGN_MARKS
                for item in query.split("&")
            )
        )
        if authorization is not None and authorization.lstrip().startswith(ALGORITHM):
            if presigned:
                raise MalformedSignature("both an Authorization header and a presigned query")
            return self._header_claim(lower, authorization, query)
        if presigned:
            return self._query_claim(query, lower)
        if authorization is None:
            raise MissingHeader("missing header Authorization")
        raise MalformedSignature("Authorization is not AWS4-HMAC-SHA256")

    def _check_scope(self, claim: _Claim) -> tuple[str, float]:
        """The scope is this verifier's and of the signature's date: (date, signed at)."""
        day, signed_at = _amz_date_parts(claim.amz_date)
        date, region, service, terminator = claim.scope.split("/")
        if date != day:
            raise CredentialScopeMismatch("credential scope date is not the X-Amz-Date date")
        if region != self.region or service != self.service or terminator != TERMINATOR:
            raise CredentialScopeMismatch("credential scope is not this service's")
        return date, signed_at

    @staticmethod
    def _signed_names(claim: _Claim, lower: dict[str, str]) -> frozenset[str]:
        """The signed header names: well-formed, covering what must be, all present."""
        signed_names, signed_set = _signed_header_names(claim.signed)
        if "host" not in signed_set:
            raise InsufficientCoverage("host is not signed")
        for name in lower:
            if name.startswith("x-amz-") and name not in signed_set:
                raise InsufficientCoverage(f"{name} is present but not signed")
        if claim.expires is None and "x-amz-date" not in signed_set:
            raise InsufficientCoverage("x-amz-date is not signed")
        for name in signed_names:
            if name not in lower:
                raise MissingHeader(f"signed header {name} is missing")
        return signed_set

    def _check_time(self, claim: _Claim, signed_at: float, when: float) -> None:
        if claim.expires is None:
            if abs(when - signed_at) > self.skew:
                raise TimestampSkew(f"X-Amz-Date outside the ±{self.skew:g} s window")
        else:
            if signed_at - when > self.skew:
                raise TimestampSkew("X-Amz-Date is in the future")
            if when > signed_at + claim.expires:
                raise SignatureExpired("the presigned URL has expired")

    def verify(self, request: SignedRequest, *, now: float | None = None) -> Identity:
        """Verify the request; its :class:`~surefoot.signing.Identity` is the access key
        id (scheme ``"sigv4"``)."""
        parts = check_received(request)  # text it can encode, a URL it can split
        when = self.clock.wall() if now is None else now
        pairs = request.headers
        lower = join_fields(pairs, ",")
        claim = self._claim(lower, parts.query)
        date, signed_at = self._check_scope(claim)
        signed_set = self._signed_names(claim, lower)
        secret = self._secret(claim.access_key)
        if secret is None:
            raise UnknownKey("unknown access key")
        self._check_time(claim, signed_at, when)
        payload = claim.payload
        if payload is None:
            payload = self._payload(lower.get("x-amz-content-sha256"), request.body)
        block, _ = canonical_headers([(n, v) for n, v in pairs if n.lower() in signed_set])
        creq = (
            f"{request.method.upper()}\n{canonical_uri(parts.path, s3=self.s3)}\n"
            f"{claim.canonical_query}\n{block}\n{claim.signed}\n{payload}"
        )
        sts = string_to_sign(claim.amz_date, claim.scope, creq)
        signing = self._signing_keys.get(secret, date, self.region, self.service)
        if not hmac.compare_digest(_signature(signing, sts), claim.signature):
            raise BadSignature("signature does not match")
        if self.nonces is not None:
            ttl = 2 * self.skew + 1 if claim.expires is None else claim.expires + self.skew
            # Keyed on the resolved key: the access key id is not signed (only its scope
            # is), so another spelling of it that the lookup accepts is the same request.
            scope = nonce_scope("sigv4", secret.encode("utf-8"))
            if not self.nonces.add_if_absent(scope, claim.signature, now=when, ttl=ttl):
                raise ReplayedNonce("signature already used")
        return Identity("sigv4", claim.access_key)


# A client sends the same SignedHeaders every time, and every request of one second the
# same X-Amz-Date: what they parse to is kept (bounded: cleared when full).
_MAX_CACHED = 256
_DATES: dict[str, tuple[str, float]] = {}
_SIGNED_NAMES: dict[str, tuple[list[str], frozenset[str]]] = {}


def _amz_date_parts(amz_date: str) -> tuple[str, float]:
    """``(YYYYMMDD, seconds since the epoch)`` of a valid ``X-Amz-Date``, else
    :class:`~surefoot.MalformedSignature`."""
    found = _DATES.get(amz_date)
    if found is None:
        date_match = _AMZ_DATE.fullmatch(amz_date)
        if date_match is None:
            raise MalformedSignature("X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'")
        found = (date_match.group(1), _utc_seconds(amz_date))
        if len(_DATES) >= _MAX_CACHED:
            _DATES.clear()
        _DATES[amz_date] = found
    return found


def _signed_header_names(signed: str) -> tuple[list[str], frozenset[str]]:
    """The names of ``SignedHeaders`` (and as a set): sorted, unique, lower-case, none
    empty, else :class:`~surefoot.MalformedSignature`."""
    found = _SIGNED_NAMES.get(signed)
    if found is None:
        signed_names = signed.split(";")
        if (
            any(not n or n != n.lower() for n in signed_names)
            or signed_names != sorted(set(signed_names))
        ):
            raise MalformedSignature("SignedHeaders must be sorted, unique, lower-case names")
        found = (signed_names, frozenset(signed_names))
        if len(_SIGNED_NAMES) >= _MAX_CACHED:
            _SIGNED_NAMES.clear()
        _SIGNED_NAMES[signed] = found
    return found


def _utc_seconds(amz_date: str) -> float:
    """Seconds since the epoch of a ``YYYYMMDDTHHMMSSZ`` date (validated)."""
    d = amz_date
    try:
        when = datetime(
            int(d[0:4]), int(d[4:6]), int(d[6:8]), int(d[9:11]), int(d[11:13]), int(d[13:15]),
            tzinfo=timezone.utc,
        )
    except ValueError:
        raise MalformedSignature("X-Amz-Date is not a valid date") from None
    return when.timestamp()
