"""One shape per concept: what every signing scheme's signer and verifier are.

* :class:`Signer` — the client side: the headers to add to one attempt of a request
  (:class:`~surefoot.signing.HmacSigner`, :class:`~surefoot.signing.MessageSigner`,
  :class:`~surefoot.signing.SigV4Signer`, or your own). :class:`~surefoot.SigningAuth`
  attaches any of them to a client.
* :class:`Verifier` — the server side: a received :class:`SignedRequest` in, the
  :class:`Identity` of its signer out (:class:`~surefoot.signing.HmacVerifier`,
  :class:`~surefoot.signing.MessageVerifier`, :class:`~surefoot.signing.SigV4Verifier`,
  or your own). :mod:`surefoot.middleware` runs any of them in front of an application.

Also here: the one rule for text a message cannot carry (:func:`message_flaw`), what a
verifier's ``nonces=`` means (:func:`verifier_nonces`: a
:class:`~surefoot.stores.NonceCache`, a store that has one, ``False`` for no replay check,
or ``None`` for the verifier's default), the key its nonces are recorded under
(:func:`nonce_scope`) and the small rules every verifier shares.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable
from urllib.parse import SplitResult, urlsplit

from surefoot._core._clock import Clock
from surefoot._core._messages import HttpRequest
from surefoot.errors import ConfigurationError, MalformedSignature, SignatureError, SigningError
from surefoot.events import redact_url
from surefoot.stores._memory import MemoryNonceCache
from surefoot.stores._protocols import NonceCache

if TYPE_CHECKING:
    from surefoot.signing._rfc9421 import VerifiedSignature

__all__ = [
    "HasNonces",
    "Identity",
    "NoncesOption",
    "SignedRequest",
    "Signer",
    "Verifier",
    "check_received",
    "check_signable",
    "join_fields",
    "message_flaw",
    "nonce_cache",
    "nonce_scope",
    "nonces_block",
    "verifier_nonces",
]


@runtime_checkable
class Signer(Protocol):
    """Signs one attempt of a request.

    * ``credential_headers`` — the header names :meth:`sign` sets: they never follow a
      redirect to another origin;
    * ``signs_body`` — the body is covered (so a body that cannot be read in advance, a
      stream, cannot be sent);
    * ``clock`` — where ``now`` comes from when it is not given;
    * ``sign(request, now=)`` — the headers to add to this attempt. ``request.headers``
      are the attempt's other headers, as they will be sent; ``now`` is Unix time.
      Each call is a fresh signature (a new timestamp, a new nonce).
    """

    @property
    def credential_headers(self) -> tuple[str, ...]: ...

    @property
    def signs_body(self) -> bool: ...

    @property
    def clock(self) -> Clock: ...

    def sign(self, request: HttpRequest, *, now: float | None = None) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A received request, as the client sent it (what a :class:`Verifier` verifies)."""

    method: str
    """The request method (the middleware gives it in upper case)."""
    url: str
    """Absolute: scheme, authority, raw path and query."""
    headers: tuple[tuple[str, str], ...]
    """Field lines in order, names in lower case (a WSGI server may have joined repeats)."""
    body: bytes = b""
    lines_joined: bool = False
    """The server may have joined repeated field lines into one value, with a comma (and
    maybe a space): WSGI servers do (``X-Tag: a`` and ``X-Tag: b`` arrive as ``a,b``), so
    a value with a comma may stand for several lines. :class:`~surefoot.middleware.VerifyWSGI`
    sets it; a verifier that signs field lines may then read such a value either way
    (see :class:`~surefoot.signing.MessageVerifier`)."""

    def __repr__(self) -> str:
        # The headers hold signatures, the query and userinfo may hold credentials.
        return f"SignedRequest({self.method} {redact_url(self.url.partition('?')[0])})"

    @classmethod
    def of(
        cls,
        method: str,
        url: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body: bytes | None = b"",
        *,
        lines_joined: bool = False,
    ) -> SignedRequest:
        """A request received outside the middleware: ``headers`` a mapping (repeated
        field lines are kept apart when it has ``multi_items()``, as httpx's does) or
        ``(name, value)`` pairs; ``None`` is the empty body. ``lines_joined``: the headers
        come from a WSGI environ (Flask's and Django's ``request.headers`` do), whose
        server joined repeated lines (see :attr:`lines_joined`)."""
        if type(headers) is dict:  # the common case, fast
            lines = tuple([(name.lower(), value) for name, value in headers.items()])
            return cls(method, url, lines, body or b"", lines_joined)
        multi = getattr(headers, "multi_items", None)
        if callable(multi):
            pairs: Iterable[tuple[str, str]] = multi()
        elif isinstance(headers, Mapping):
            pairs = headers.items()
        else:
            pairs = headers
        lines = tuple([(str(name).lower(), str(value)) for name, value in pairs])
        return cls(method, url, lines, body or b"", lines_joined)


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
class Verifier(Protocol):
    """Verifies received requests.

    * ``scheme`` — a short name (``"hmac"``, ``"rfc9421"``, ``"sigv4"`` ...);
    * ``blocking`` — whether :meth:`verify` may block on I/O (a shared nonce store):
      :class:`~surefoot.middleware.VerifyASGI` then runs it in a worker thread;
    * ``verify(request, now=)`` — the signer's :class:`Identity`, or raise a
      :class:`~surefoot.SignatureError` (or :class:`~surefoot.StoreUnavailable` from a
      nonce store that is down); ``now`` is Unix time, default the verifier's clock;
    * ``challenge(error)`` — the headers of the ``401`` answering ``error`` (at least
      ``WWW-Authenticate``).
    """

    @property
    def scheme(self) -> str: ...

    @property
    def blocking(self) -> bool: ...

    def verify(self, request: SignedRequest, *, now: float | None = None) -> Identity: ...

    def challenge(self, error: SignatureError) -> list[tuple[str, str]]: ...


# -- what no message can carry: one rule for every signer and verifier --------------------


def _unencodable(text: str) -> bool:
    """``text`` has no UTF-8 encoding: it holds a lone surrogate (``"\\ud800"``), which
    no HTTP message can carry (encoding it raises ``UnicodeEncodeError``)."""
    if text.isascii():  # the common case, and cheap
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _field_lines(headers: object) -> Iterable[object]:
    """A header collection's field lines, as it holds them (a mapping's items, its
    ``multi_items()`` when it keeps repeated lines apart); none of an iterator's, which
    can be read only once (the caller's to materialise first)."""
    if type(headers) is tuple or type(headers) is list:  # (a SignedRequest's: fast)
        return headers
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        multi = getattr(headers, "multi_items", None)
        lines: Iterable[object] = multi() if callable(multi) else headers.items()
        return lines
    if isinstance(headers, Iterator):  # read once, by whoever reads the message: not here
        return ()
    if isinstance(headers, Iterable) and not isinstance(headers, (str, bytes)):
        return headers
    raise TypeError


def message_flaw(
    method: object, url: object, headers: object, *, strict: bool = True
) -> str | None:
    """Why a message cannot be signed or verified as it is (``None``: it can): the one
    rule every signer and verifier applies before it reads a message.

    * its method, its URL, and the names and values of its header field lines are text
      with a UTF-8 encoding: no lone surrogate (``"\\ud800"``), which no HTTP message can
      carry;
    * its URL can be split (:func:`urllib.parse.urlsplit`; not, say, with an unbalanced
      ``[`` or ``]`` in its authority).

    ``method`` and ``url`` are ``None`` for a response (it has neither). ``strict`` (a
    received message: a :class:`SignedRequest` may have been built from anything) also
    wants them, and every header name and value, to be ``str``, and the headers to be
    ``(name, value)`` pairs; without it (a request to sign, typed by the HTTP library that
    sends it) a value of another type is left to that library.

    A verifier raises :class:`~surefoot.MalformedSignature` with the reason
    (:func:`check_received`), a signer :class:`~surefoot.SigningError`
    (:func:`check_signable`)."""
    if not (type(method) is str and method.isascii() and type(url) is str and url.isascii()):
        for what, text in (("the method", method), ("the URL", url)):
            if text is None:
                continue
            if not isinstance(text, str):
                if strict:
                    return f"{what} is not text"
            elif _unencodable(text):
                return f"{what} is not text with a UTF-8 encoding"
    if isinstance(url, str):
        try:
            urlsplit(url)  # (cached: the verifier's own split is then free)
        except ValueError:  # "Invalid IPv6 URL", a netloc that NFKC changes ...
            return "the URL cannot be parsed"
    try:
        found = _field_lines(headers)
        lines: list[Any] | tuple[Any, ...] = (
            found if isinstance(found, (tuple, list)) else list(found))  # (read twice)
        try:  # all at once, fast; else line by line, below
            if not _unencodable("".join([name + value for name, value in lines])):
                return None
        except (TypeError, ValueError):
            pass
        line: Any
        for line in lines:
            name, value = line
            for text in (name, value):
                if isinstance(text, str):
                    if _unencodable(text):
                        return "a header field is not text with a UTF-8 encoding"
                elif strict:
                    return "a header field is not text"
    except (TypeError, ValueError):  # not (name, value) pairs
        if strict:
            return "the header fields are not (name, value) pairs"
    return None


def check_received(request: SignedRequest) -> SplitResult:
    """Apply :func:`message_flaw` to a received request (its body must be bytes, too);
    :class:`~surefoot.MalformedSignature` if it has a flaw, else its URL, split."""
    method: object = request.method  # (typed; but built from anything)
    url: object = request.url
    body: object = request.body
    flaw = message_flaw(request.method, request.url, request.headers)
    if flaw is None and not (isinstance(method, str) and isinstance(url, str)):
        flaw = "a request needs a method and a URL"
    if flaw is None and not isinstance(body, (bytes, bytearray, memoryview)):
        flaw = "the body is not bytes"
    if flaw is not None:
        raise MalformedSignature(f"malformed request: {flaw}")
    return urlsplit(request.url)


def check_signable(method: object, url: object, headers: object) -> None:
    """Apply :func:`message_flaw` (not strict) to a message to sign:
    :class:`~surefoot.SigningError` if it has a flaw."""
    flaw = message_flaw(method, url, headers, strict=False)
    if flaw is not None:
        raise SigningError(f"cannot sign: {flaw}")


class HasNonces(Protocol):
    """A store with a nonce cache (``MemoryStore``, ``RedisStore``, ``SQLiteStore``)."""

    @property
    def nonces(self) -> NonceCache: ...


def nonce_cache(nonces: NonceCache | HasNonces | None) -> NonceCache | None:
    """The nonce cache a verifier was given: the cache itself, or a store's ``.nonces``."""
    if nonces is None or isinstance(nonces, NonceCache):
        return nonces
    found = getattr(nonces, "nonces", None)
    if not isinstance(found, NonceCache):
        raise ConfigurationError("nonces must be a NonceCache, a store, False or None")
    return found


NoncesOption: TypeAlias = "NonceCache | HasNonces | Literal[False] | None"
"""What every verifier's ``nonces=`` takes (see :func:`verifier_nonces`)."""


def verifier_nonces(nonces: NoncesOption, *, default: bool) -> NonceCache | None:
    """The nonce cache a verifier records verified requests in (``None``: replays are not
    checked), one rule for every verifier:

    * a :class:`~surefoot.stores.NonceCache`, or a store (its ``.nonces``): that cache
      (share one store between processes to refuse replays fleet-wide);
    * ``False``: no replay check at all;
    * ``None``: the verifier's default: with ``default`` (schemes whose every request
      carries a replay key: the HMAC scheme's nonce, SigV4's signature) a fresh
      in-process :class:`~surefoot.stores.MemoryNonceCache`, else none (RFC 9421, whose
      nonce is optional).
    """
    if nonces is False:
        return None
    cache = nonce_cache(nonces)  # (an empty MemoryNonceCache is falsy: test for None)
    if cache is None and default:
        return MemoryNonceCache()
    return cache


def nonces_block(nonces: NonceCache | None) -> bool:
    """Whether recording a nonce may block on I/O: any cache but the in-process one."""
    return nonces is not None and not isinstance(nonces, MemoryNonceCache)


_SCOPE_LABEL = b"surefoot nonce scope v1"


def nonce_scope(scheme: str, secret: bytes) -> str:
    """The key id under which a verifier records a verified request's nonce:
    ``"<scheme>:<fingerprint of the key the request resolved to>"``.

    Not the key id as sent: when the key id is not itself signed (the HMAC scheme's
    ``X-API-Key``, SigV4's access key), a resolver that ignores case (or knows aliases)
    would let the same request, sent again under another spelling of its key id, pass as
    new. The fingerprint is an HMAC of a fixed label under the secret: the same for every
    spelling of one key, different for another secret, and it reveals nothing of the
    secret (it may be stored in a shared nonce store)."""
    return f"{scheme}:{hmac.digest(secret, _SCOPE_LABEL, 'sha256')[:16].hex()}"


def join_fields(lines: Iterable[tuple[str, str]], separator: str = ", ") -> dict[str, str]:
    """Field lines as one value per lower-case name, repeated lines joined with
    ``separator``, in order."""
    out: dict[str, str] = {}
    for name, value in lines:
        key = name.lower()
        out[key] = f"{out[key]}{separator}{value}" if key in out else value
    return out
