"""One shape per concept: what every signing scheme's signer and verifier are.

* :class:`Signer` — the client side: the headers to add to one attempt of a request
  (:class:`~surefoot.signing.HmacSigner`, :class:`~surefoot.signing.MessageSigner`,
  :class:`~surefoot.signing.SigV4Signer`, or your own). :class:`~surefoot.SigningAuth`
  attaches any of them to a client.
* :class:`Verifier` — the server side: a received :class:`SignedRequest` in, the
  :class:`Identity` of its signer out (:class:`~surefoot.signing.HmacVerifier`,
  :class:`~surefoot.signing.MessageVerifier`, :class:`~surefoot.signing.SigV4Verifier`,
  or your own). :mod:`surefoot.middleware` runs any of them in front of an application.

Also here: what a verifier's ``nonces=`` means (:func:`verifier_nonces`: a
:class:`~surefoot.stores.NonceCache`, a store that has one, ``False`` for no replay check,
or ``None`` for the verifier's default), the key its nonces are recorded under
(:func:`nonce_scope`) and the small rules every verifier shares.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, runtime_checkable

from surefoot._core._clock import Clock
from surefoot._core._messages import HttpRequest
from surefoot.errors import ConfigurationError, SignatureError
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
    "join_fields",
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

    def __repr__(self) -> str:  # headers hold signatures
        return f"SignedRequest({self.method} {self.url.partition('?')[0]})"

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
