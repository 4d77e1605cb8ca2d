"""RFC 9421 HTTP Message Signatures, sans-I/O: signature bases, signing, verifying.

**Algorithms** (RFC 9421 §3.3). Each :class:`SignatureKey` is pinned to one:

* ``hmac-sha256`` — HMAC-SHA256 with a shared secret (standard library);
* ``ed25519`` — Ed25519 (RFC 8032);
* ``ecdsa-p256-sha256`` — ECDSA over P-256 with SHA-256; the signature is the 64 bytes
  ``r‖s`` (each big-endian, 32 bytes), not DER;
* ``rsa-pss-sha512`` — RSASSA-PSS with SHA-512, MGF1-SHA-512 and a 64-byte salt;
* ``rsa-v1_5-sha256`` — RSASSA-PKCS1-v1_5 with SHA-256.

The asymmetric algorithms use ``cryptography``, imported only when such a key is built.

**Components** (§2). Covered components are given as strings, in the order they are
signed: a field name (``"content-type"``), a derived component (``"@method"``), or either
with parameters (``'@query-param;name="Pet"'``, ``'"example-dict";key="a"'``,
``"content-digest;req"``), or as :class:`Component` objects. Derived components:
``@method``, ``@target-uri``, ``@authority``, ``@scheme``, ``@request-target``, ``@path``,
``@query``, ``@query-param`` (its ``name`` is the *encoded* name, and its value is
re-encoded as §2.2.8 says: form-decoded, then every byte but ``A-Z a-z 0-9 * - . _``
percent-encoded in upper-case hex, a space as ``%20``; a name that occurs more than once
cannot be covered) and ``@status``. Field parameters: ``sf`` (re-serialise a structured
field of a known type, see :data:`SF_FIELD_TYPES`), ``key`` (one member of a Dictionary
field), ``bs`` (each field line as a Byte Sequence) and ``req`` (the component of the
request a response answers). ``tr`` (trailers) is not supported.

**Field values** (§2.1): each field line is stripped of leading and trailing spaces and
tabs, and the lines of one field are joined with ``", "``. Headers may be any mapping
(case-insensitive ones such as ``requests``' and ``httpx``' are used as they are; a plain
``dict`` is matched case-insensitively) or a sequence of ``(name, value)`` pairs, one per
field line. A component value with a line break, or a base that is not ASCII, is refused.
A message no HTTP message can be (its method, URL or a field name or value text without a
UTF-8 encoding: a lone surrogate; or a URL ``urlsplit`` refuses, such as an unbalanced
``[``) is refused before any of it is read: :class:`~surefoot.SigningError` when signing,
:class:`~surefoot.MalformedSignature` when verifying (one rule for every scheme, see
:func:`~surefoot.signing._protocols.message_flaw`).

**Field lines a server joined** (a :class:`~surefoot.signing.SignedRequest` with
``lines_joined``, as :class:`~surefoot.middleware.VerifyWSGI` gives: a WSGI server joins
``X-Tag: a`` and ``X-Tag: b`` into one value, ``a,b`` for wsgiref, gunicorn or werkzeug,
``a, b`` for mod_wsgi, while the signer's value is ``a, b``). One such value cannot say how
many lines it was: ``a,b`` is the two lines, or one line ``a,b``. The verifier reads it as
received first (one line); only if that does not verify, it reads each covered field whose
value has a comma outside a quoted string as the lines the server joined — split at each
comma (outside quoted strings) not followed by a space or a tab, and, for ``bs``, at each
``", "`` too — in every combination of fields (at most 16 readings; past that, all of
them one way, then all the other). Each reading is lines the signer may have signed that
a server joining with that separator turns into exactly the value received, so tampering
with the lines (a value, their order, their number) is refused. What is left unprotected
is the space after a separating comma, since which server joined is not known: one line
``a, b`` signed and ``a,b`` sent verifies for a plain field (lines ``a`` and ``b`` signed
and one line ``a, b`` sent, for ``bs``). In a list field (and only list fields may be sent
on several lines, RFC 9110 §5.3) that is optional whitespace, meaning nothing; cover a
field that is not a list with ``bs`` if a space after its commas matters. ``sf`` and
``key`` parse the value, which comes out the same whatever the join. What cannot be read
back is refused (:class:`BadSignature`, saying so), never verified some other way: a field
sent on several lines one of which has a comma of its own not followed by a space
(``a,b`` and ``c`` arrive as ``a,b,c``), or an unterminated quoted string. Behind a WSGI
server, send such lines as one line, or put a space after the commas inside a line.
Without ``lines_joined`` (ASGI gives every line apart) a value is always one line.

**Signature parameters** (§2.3): ``created``, ``expires``, ``nonce``, ``alg``, ``keyid``,
``tag``. The signer writes them in that order except that ``keyid`` and ``alg`` come
before ``nonce`` (``created``, ``expires``, ``keyid``, ``alg``, ``nonce``, ``tag``), which
reproduces every example in the RFC.

**Signing** builds the signature base once, serialising the identifiers and the
``@signature-params`` by hand (they are precomputed per signer; only ``created``,
``expires`` and ``nonce`` change per message). **Verifying** parses the untrusted
``Signature-Input``, ``Signature`` (and ``Content-Digest``) fields exactly as ``http_sfv``
parses them — by :mod:`surefoot.signing._sfv`, which reads the forms these fields take
itself, fast, and hands anything else to ``http_sfv`` — and rebuilds the
``@signature-params`` line from the parsed value. What a verifier makes of a list of
covered components (each identifier checked, with its resolver; the ``Content-Digest``
algorithms it protects) is kept per verifier by the list's text (at most 256 lists,
cleared when full): a signer sends the same list every time, so it is parsed and checked
once, and only the parameters (``created``, ``nonce`` ...) are read per request. Keys
are ``cryptography`` objects (and HMAC secrets bytes) loaded once, when the
:class:`SignatureKey` is built. The verifier's checks, in order:

1. both fields present, parseable, with the chosen label (:class:`MissingHeader`,
   :class:`MalformedSignature`);
2. no unknown or mistyped signature parameter, no unknown, duplicate or malformed
   component identifier (:class:`MalformedSignature`);
3. policy: required components covered (a covered ``@target-uri`` covers its parts),
   ``created`` (and ``nonce``, when required) present (:class:`InsufficientCoverage`),
   the expected ``tag`` (:class:`TagMismatch`);
4. time: ``created`` not in the future beyond ``skew``, not older than ``max_age``
   (:class:`TimestampSkew`), ``expires`` not passed (:class:`SignatureExpired`);
5. key: ``keyid`` resolves (:class:`UnknownKey`); the key's algorithm is allowed and
   equal to ``alg`` if given (:class:`DisallowedAlgorithm`);
6. every covered component is in the message (:class:`MissingComponent`); the signature
   verifies (:class:`BadSignature`; HMAC compared in constant time);
7. a body passed in is checked against a covered ``Content-Digest``
   (:class:`BodyDigestMismatch`), whatever the form it is covered in: ``content-digest``,
   ``;sf`` or ``;bs`` (every member of a supported algorithm is checked) or ``;key=``
   (the covered members are checked; covering only members of algorithms that cannot be
   checked is :class:`InsufficientCoverage`). ``content-digest;req`` covers the related
   request's field, not this message's body;
8. the nonce, if any, is recorded in the nonce store as ``("rfc9421:" + keyid, nonce)``
   only now, so that a replay is rejected (:class:`ReplayedNonce`). The ``keyid`` is a
   signature parameter, so it is signed: the request cannot be replayed under another
   spelling of it.

Error messages and reprs never contain keys, secrets or signature bytes.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import math
import secrets
from collections.abc import (
    Callable,
    Collection,
    Container,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import unquote_to_bytes, urlsplit

from http_sfv.dictionary import Dictionary as _SfDictionary
from http_sfv.item import Item as _SfItem
from http_sfv.list import List as _SfList

from surefoot._core._clock import Clock, default_clock
from surefoot._core._messages import HttpRequest
from surefoot._extras import require
from surefoot.errors import (
    BadSignature,
    ConfigurationError,
    DisallowedAlgorithm,
    InsufficientCoverage,
    MalformedSignature,
    MissingComponent,
    MissingHeader,
    PolicyViolation,
    ReplayedNonce,
    SignatureError,
    SignatureExpired,
    SigningError,
    TagMismatch,
    TimestampSkew,
    UnknownKey,
)
from surefoot.signing._digest import (
    DIGEST_ALGORITHMS,
    DigestAlgorithm,
    verify_content_digest,
)
from surefoot.signing._digest import content_digest as digest_field
from surefoot.signing._hmac import canonical_host
from surefoot.signing._protocols import (
    Identity,
    NoncesOption,
    SignedRequest,
    check_received,
    message_flaw,
    nonces_block,
    verifier_nonces,
)
from surefoot.signing._sfv import SfInnerList, SfItem, SfMember, parse_dictionary
from surefoot.stores._protocols import NonceCache

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

__all__ = [
    "ALGORITHMS",
    "DEFAULT_REQUEST_COMPONENTS",
    "SF_FIELD_TYPES",
    "Algorithm",
    "Component",
    "MessageSigner",
    "MessageVerifier",
    "RelatedRequest",
    "SignatureKey",
    "VerifiedSignature",
]

Algorithm = Literal[
    "hmac-sha256", "ed25519", "ecdsa-p256-sha256", "rsa-pss-sha512", "rsa-v1_5-sha256"
]
ALGORITHMS: tuple[Algorithm, ...] = (
    "hmac-sha256",
    "ed25519",
    "ecdsa-p256-sha256",
    "rsa-pss-sha512",
    "rsa-v1_5-sha256",
)

#: Headers: a mapping (case-insensitive, or a plain dict) or ``(name, value)`` field lines.
Headers = Mapping[str, str] | Sequence[tuple[str, str]]

#: What ``sf`` re-serialises: the structured type of known fields (extend per verifier
#: or signer with ``sf_types=``).
SF_FIELD_TYPES: Mapping[str, Literal["item", "list", "dictionary"]] = {
    "accept-signature": "dictionary",
    "cache-status": "list",
    "cdn-cache-control": "dictionary",
    "client-cert": "item",
    "client-cert-chain": "list",
    "content-digest": "dictionary",
    "priority": "dictionary",
    "proxy-status": "list",
    "repr-digest": "dictionary",
    "signature": "dictionary",
    "signature-input": "dictionary",
    "want-content-digest": "dictionary",
    "want-repr-digest": "dictionary",
}

#: What :class:`MessageSigner` covers by default in a request.
DEFAULT_REQUEST_COMPONENTS: tuple[str, ...] = ("@method", "@authority", "@path", "@query")

_DERIVED = frozenset({
    "@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path",
    "@query", "@query-param", "@status",
})
_REQUEST_ONLY = _DERIVED - {"@status"}
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_FORM_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._")
_PARAM_TYPES: Mapping[str, type] = {
    "created": int, "expires": int, "nonce": str, "alg": str, "keyid": str, "tag": str,
}
#: Derived components that contain others: covering the whole covers the part.
_PART_OF: Mapping[str, tuple[str, ...]] = {
    "@scheme": ("@target-uri",),
    "@authority": ("@target-uri",),
    "@request-target": ("@target-uri",),
    "@path": ("@target-uri", "@request-target"),
    "@query": ("@target-uri", "@request-target"),
}
_MAX_SF_LENGTH = 16384  # Signature-Input/Signature/sf fields; http_sfv is quadratic
_MAX_STRING_PARAM = 1024
_MAX_CACHED_IDENTIFIERS = 512
# Covered-component lists a verifier keeps what it made of (by their text): a signer
# sends the same one every time, so the few in use are parsed and checked once.
_MAX_CACHED_PLANS = 256
# The most readings of the covered fields a server may have joined (WSGI) that are tried
# in every combination (each one a signature check); past it, two uniform readings.
_MAX_JOINED_READINGS = 16
_MAX_NAMES_SHOWN = 3


# -- errors inside base building; the signer and the verifier map them ---------------


class _Absent(Exception):
    """A covered component is not in the message."""


class _Invalid(Exception):
    """A covered component cannot be canonicalised (bad value, not ASCII ...)."""


# -- small serialisers ---------------------------------------------------------------


def _sf_string(value: str) -> str:
    if not (value.isascii() and value.isprintable()):
        raise ValueError("a structured-field String must be printable ASCII")
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _is_sf_string(value: object) -> bool:
    """Text a structured-field String can hold: printable ASCII (RFC 8941 §3.3.3)."""
    return isinstance(value, str) and value.isascii() and value.isprintable()


_KEY_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz*")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.*")


def _is_sf_key(value: object) -> bool:
    """A structured-field key (RFC 8941 §3.1.2), as a signature label is: a lower-case
    letter or ``*``, then lower-case letters, digits, ``_ - . *``."""
    return (isinstance(value, str) and value != "" and value[0] in _KEY_FIRST
            and all(c in _KEY_CHARS for c in value))


def _check_sf_string(value: object, parameter: str) -> None:
    """ConfigurationError unless ``value`` (``None`` aside) can be an sf-string."""
    if value is not None and not _is_sf_string(value):
        raise ConfigurationError(
            f"{parameter} must be a structured-field String: printable ASCII text")


def _check_label(value: object, parameter: str = "label") -> None:
    if not _is_sf_key(value):
        raise ConfigurationError(
            f"{parameter} must be a structured-field key: a lower-case letter or '*', "
            "then lower-case letters, digits, '_', '-', '.' or '*'")


def _sf_type_table(
    sf_types: Mapping[str, Literal["item", "list", "dictionary"]] | None,
) -> dict[str, Literal["item", "list", "dictionary"]]:
    """:data:`SF_FIELD_TYPES` with a signer's or verifier's ``sf_types`` (checked, names
    lower-cased)."""
    table = dict(SF_FIELD_TYPES)
    if sf_types is None:
        return table
    if not isinstance(sf_types, Mapping):
        raise ConfigurationError("sf_types must be a mapping of field name to type")
    for name, kind in sf_types.items():
        if not isinstance(name, str) or not name or not all(c in _TCHAR for c in name.lower()):
            raise ConfigurationError("sf_types: a field name must be a token")
        if kind not in ("item", "list", "dictionary"):
            raise ConfigurationError(
                "sf_types: a field's type must be 'item', 'list' or 'dictionary'")
        table[name.lower()] = kind
    return table


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- keys ----------------------------------------------------------------------------


def _load_pem(data: bytes, password: bytes | None) -> Any:
    from cryptography.hazmat.primitives import serialization

    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password)
    return serialization.load_pem_public_key(data)


#: A key: the secret of ``hmac-sha256`` (bytes or text), or an asymmetric key
#: (``cryptography`` object, or PEM / raw bytes).
KeyMaterial: TypeAlias = "bytes | str | PrivateKeyTypes | PublicKeyTypes"

class SignatureKey:
    """A key pinned to one algorithm, with an optional key id (``keyid``).

    ``SignatureKey("hmac-sha256", secret)`` takes ``bytes`` (or ``str``, UTF-8 encoded);
    the asymmetric algorithms take a ``cryptography`` private key (signs and verifies)
    or public key (verifies), or PEM text/bytes of either. The key must suit the
    algorithm: an Ed25519 key for ``ed25519``, a P-256 key for ``ecdsa-p256-sha256``, an
    RSA key of at least 2048 bits for the RSA algorithms — else :class:`ConfigurationError`.
    """

    __slots__ = ("_sign", "_verify", "algorithm", "can_sign", "key_id")

    algorithm: Algorithm
    key_id: str | None
    can_sign: bool
    _sign: Callable[[bytes], bytes]
    _verify: Callable[[bytes, bytes], bool]

    def __init__(
        self,
        algorithm: Algorithm,
        key: KeyMaterial,
        *,
        key_id: str | None = None,
        password: bytes | None = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ConfigurationError(
                f"unknown algorithm {algorithm!r}; use one of " + ", ".join(ALGORITHMS)
            )
        _check_sf_string(key_id, "key_id")
        self.algorithm = algorithm
        self.key_id = key_id
        if algorithm == "hmac-sha256":
            self._hmac(key)
        else:
            self._asymmetric(algorithm, key, password)

    @classmethod
    def from_pem(
        cls,
        algorithm: Algorithm,
        pem: str | bytes,
        *,
        key_id: str | None = None,
        password: bytes | None = None,
    ) -> SignatureKey:
        """A key from PEM text (private: signs and verifies; public: verifies)."""
        return cls(algorithm, pem.encode() if isinstance(pem, str) else pem,
                   key_id=key_id, password=password)

    def __repr__(self) -> str:
        kind = "secret" if self.algorithm == "hmac-sha256" else (
            "private" if self.can_sign else "public")
        return (f"SignatureKey({self.algorithm!r}, key_id={self.key_id!r}, "
                f"<{kind} key redacted>)")

    def sign(self, data: bytes) -> bytes:
        """The raw signature of ``data`` (the signature base)."""
        if not self.can_sign:
            raise SigningError("this key is a public key: it can only verify")
        return self._sign(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is valid for ``data`` (HMAC: compared in constant time)."""
        return self._verify(data, signature)

    # -- construction per algorithm ----------------------------------------------------

    def _hmac(self, key: Any) -> None:
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, (bytes, bytearray, memoryview)) or not key:
            raise ConfigurationError("hmac-sha256 needs a non-empty bytes secret")
        secret = bytes(key)
        digest = hmac.digest

        def sign(data: bytes) -> bytes:
            return digest(secret, data, "sha256")

        def verify(data: bytes, signature: bytes) -> bool:
            return hmac.compare_digest(digest(secret, data, "sha256"), signature)

        self._sign, self._verify, self.can_sign = sign, verify, True

    def _asymmetric(self, algorithm: Algorithm, key: Any, password: bytes | None) -> None:
        require("cryptography", extra="signing", what=f"the {algorithm} algorithm")
        from cryptography.exceptions import InvalidSignature
        if isinstance(key, (bytes, bytearray, str)):
            raw = key.encode() if isinstance(key, str) else bytes(key)
            try:
                key = _load_pem(raw, password)
            except Exception as exc:  # ValueError, TypeError, UnsupportedAlgorithm ...
                raise ConfigurationError(f"cannot load the {algorithm} key: {type(exc).__name__}"
                                         ) from None
        if algorithm == "ed25519":
            sign, check, can_sign = _ed25519_operations(key)
        elif algorithm == "ecdsa-p256-sha256":
            sign, check, can_sign = _ecdsa_p256_operations(key)
        else:
            sign, check, can_sign = _rsa_operations(algorithm, key)

        def verify(data: bytes, signature: bytes) -> bool:
            try:
                check(data, signature)
            except (InvalidSignature, ValueError):
                return False
            return True

        self._sign, self._verify, self.can_sign = sign, verify, can_sign


# -- the asymmetric algorithms: (sign, check that raises, can sign) for a key ---------

_Operations = tuple[Callable[[bytes], bytes], Callable[[bytes, bytes], None], bool]


def _key_pair(
    key: Any, private_type: type[Any], public_type: type[Any], wanted: str
) -> tuple[Any, Any]:
    """(private or None, public) of a ``cryptography`` key of the expected kind; else
    ``ConfigurationError(wanted)``."""
    if isinstance(key, private_type):
        return key, key.public_key()
    if isinstance(key, public_type):
        return None, key
    raise ConfigurationError(wanted)


def _ed25519_operations(key: Any) -> _Operations:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private, public = _key_pair(key, ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey,
                                "ed25519 needs an Ed25519 key")

    def sign(data: bytes) -> bytes:
        out: bytes = private.sign(data)
        return out

    def check(data: bytes, signature: bytes) -> None:
        public.verify(signature, data)

    return sign, check, private is not None


def _ecdsa_p256_operations(key: Any) -> _Operations:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    private, public = _key_pair(key, ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey,
                                "ecdsa-p256-sha256 needs an EC key")
    if public.curve.name != "secp256r1":
        raise ConfigurationError("ecdsa-p256-sha256 needs a P-256 (secp256r1) key")
    ecdsa = ec.ECDSA(hashes.SHA256())

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(data, ecdsa))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def check(data: bytes, signature: bytes) -> None:
        if len(signature) != 64:
            raise InvalidSignature
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        public.verify(encode_dss_signature(r, s), data, ecdsa)

    return sign, check, private is not None


def _rsa_operations(algorithm: Algorithm, key: Any) -> _Operations:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private, public = _key_pair(key, rsa.RSAPrivateKey, rsa.RSAPublicKey,
                                f"{algorithm} needs an RSA key")
    if public.key_size < 2048:
        raise ConfigurationError(f"{algorithm} needs an RSA key of at least 2048 bits")
    pad: Any
    algo: Any
    if algorithm == "rsa-pss-sha512":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
        algo = hashes.SHA512()
    else:
        pad, algo = padding.PKCS1v15(), hashes.SHA256()

    def sign(data: bytes) -> bytes:
        out: bytes = private.sign(data, pad, algo)
        return out

    def check(data: bytes, signature: bytes) -> None:
        public.verify(signature, data, pad, algo)

    return sign, check, private is not None


# -- component identifiers -----------------------------------------------------------

ParamValue = str | bool


@dataclass(frozen=True, slots=True)
class Component:
    """A component identifier: a name and its parameters, in order.

    ``Component("@query-param", (("name", "Pet"),))``, ``Component("content-digest",
    (("req", True),))``; or :meth:`parse` the string form. ``identifier`` is its
    serialisation, as it appears in the signature base and ``Signature-Input``.
    """

    name: str
    params: tuple[tuple[str, ParamValue], ...] = ()

    def __post_init__(self) -> None:
        _check_component(self.name, self.params)

    @classmethod
    def parse(cls, text: str) -> Component:
        """``"@method"``, ``"Content-Type"`` (field names are lower-cased),
        ``'@query-param;name="Pet"'``, ``'"example-dict";key="a"'``, ``"date;req"``."""
        if not isinstance(text, str):
            raise ConfigurationError("a component identifier must be text")
        text = text.strip()
        if not text.startswith('"'):
            name, sep, rest = text.partition(";")
            name = name.strip()
            if not name.startswith("@"):
                name = name.lower()
            if not sep:
                return cls(name)
            if not _is_sf_string(name):
                raise ConfigurationError("not a component identifier")
            text = _sf_string(name) + sep + rest
        item = _SfItem()
        try:
            item.parse(text.encode("ascii"))
        except Exception:  # http_sfv raises ValueError; any failure means not one
            raise ConfigurationError("not a component identifier") from None
        if type(item.value) is not str:
            raise ConfigurationError("a component name must be a String")
        return cls(item.value, tuple((str(k), v) for k, v in item.params.items()))

    @property
    def identifier(self) -> str:
        out = [_sf_string(self.name)]
        for key, value in self.params:
            out.append(f";{key}" if value is True else f";{key}={_sf_string(str(value))}")
        return "".join(out)

    def param(self, key: str) -> ParamValue | None:
        for k, v in self.params:
            if k == key:
                return v
        return None

    @property
    def canonical(self) -> tuple[str, frozenset[tuple[str, ParamValue]]]:
        """Identity regardless of parameter order (for duplicates and required sets)."""
        return (self.name, frozenset(self.params))

    def __str__(self) -> str:
        return self.identifier


def _check_component(name: str, params: tuple[tuple[str, ParamValue], ...]) -> None:
    """Raise ConfigurationError for an identifier RFC 9421 does not define (or that
    cannot be serialised: so ``identifier`` never fails)."""
    if not isinstance(name, str):
        raise ConfigurationError("a component name must be text")
    if not name:
        raise ConfigurationError("empty component name")
    if name == "@signature-params":
        raise ConfigurationError("@signature-params cannot be a covered component")
    derived = name.startswith("@")
    if derived and name not in _DERIVED:
        raise ConfigurationError(f"unknown derived component {name!r}")
    if not derived and not all(c in _TCHAR for c in name):
        raise ConfigurationError("a field name must be a lower-case token")
    seen: set[str] = set()
    try:
        pairs = [(key, value) for key, value in params]
    except (TypeError, ValueError):
        raise ConfigurationError("component parameters must be (name, value) pairs") from None
    for key, value in pairs:
        if not isinstance(key, str):
            raise ConfigurationError("a component parameter name must be text")
        if key in seen:
            raise ConfigurationError(f"component parameter {key!r} given twice")
        seen.add(key)
        if key in ("sf", "bs", "req", "tr"):
            if value is not True:
                raise ConfigurationError(f"component parameter {key!r} must be a flag")
        elif key in ("key", "name"):
            if type(value) is not str or not _is_sf_string(value):  # (not a Token)
                raise ConfigurationError(
                    f"component parameter {key!r} must be a String (printable ASCII)")
        else:
            raise ConfigurationError(f"unknown component parameter {key!r}")
    if "tr" in seen:
        raise ConfigurationError("trailer components (tr) are not supported")
    if derived:
        if seen & {"sf", "key", "bs"}:
            raise ConfigurationError("sf, key and bs apply to fields, not derived components")
        if ("name" in seen) != (name == "@query-param"):
            raise ConfigurationError("@query-param needs exactly its name parameter")
        if name == "@status" and "req" in seen:
            raise ConfigurationError("@status has no req form")
    else:
        if "name" in seen:
            raise ConfigurationError("the name parameter is only for @query-param")
        if "bs" in seen and seen & {"sf", "key"}:
            raise ConfigurationError("bs cannot be combined with sf or key")


def _component(spec: str | Component) -> Component:
    return spec if isinstance(spec, Component) else Component.parse(spec)


_CONTENT_DIGEST = Component("content-digest")


def _covers_content(comp: Component) -> bool:
    """Whether ``comp`` is this message's ``Content-Digest``, in any form (``sf``, ``bs``,
    ``key=``), but not the related request's (``req``)."""
    return comp.name == "content-digest" and comp.param("req") is None


def _digest_algorithms(covered: Iterable[Component]) -> tuple[str, ...] | None:
    """The ``Content-Digest`` members a signature protects, by algorithm: ``None`` when
    it does not cover this message's ``Content-Digest`` at all; every supported algorithm
    when it covers the whole field (plain, ``sf`` or ``bs``); else those of the covered
    ``key=`` members that are supported (maybe none)."""
    found = False
    keys: set[str] = set()
    for comp in covered:
        if not _covers_content(comp):
            continue
        found = True
        key = comp.param("key")
        if key is None:
            return DIGEST_ALGORITHMS
        keys.add(str(key))
    if not found:
        return None
    return tuple(a for a in DIGEST_ALGORITHMS if a in keys)


def _signed_components(
    components: Iterable[str | Component], digest: DigestAlgorithm | None
) -> tuple[Component, ...]:
    """A signer's components: parsed, each once, ``content-digest`` added when the signer
    adds the field itself."""
    if digest not in (None, "sha-256", "sha-512"):
        raise ConfigurationError("content_digest must be 'sha-256', 'sha-512' or None")
    comps = [_component(c) for c in components]
    seen: set[object] = set()
    for comp in comps:
        if comp.canonical in seen:
            raise ConfigurationError(f"component {comp.identifier} is listed twice")
        seen.add(comp.canonical)
    if digest is not None and _CONTENT_DIGEST.canonical not in seen:
        comps.append(_CONTENT_DIGEST)
    return tuple(comps)


# -- messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelatedRequest:
    """The request a response answers, for components with the ``req`` parameter."""

    method: str
    url: str
    headers: Headers = ()


def _field_table(headers: Headers) -> Callable[[str], list[str] | None]:
    """A lookup: lower-case field name → its field lines (``None``: absent)."""
    if isinstance(headers, Mapping):
        if type(headers) is dict:
            table = {k.lower(): v for k, v in headers.items()}

            def from_dict(name: str) -> list[str] | None:
                value = table.get(name)
                return None if value is None else [value]

            return from_dict
        get_list = getattr(headers, "get_list", None)  # httpx.Headers: the real lines
        if callable(get_list):

            def from_lines(name: str) -> list[str] | None:
                lines: list[str] = get_list(name)
                return lines or None

            return from_lines
        mapping = headers

        def from_mapping(name: str) -> list[str] | None:
            value = mapping.get(name)
            if value is None:  # not case-insensitive after all? look once more
                for key, val in mapping.items():
                    if key.lower() == name:
                        return [val]
                return None
            return [value]

        return from_mapping
    pairs: dict[str, list[str]] = {}
    for key, val in headers:
        pairs.setdefault(key.lower(), []).append(val)
    return pairs.get


class _Message:
    """A request or a response as the base builder sees it; the header lookup and the
    URL parts are built lazily, on first use."""

    __slots__ = ("_fields", "_headers", "_overrides", "_parts", "_query", "_split",
                 "method", "request", "status", "url")

    def __init__(
        self,
        method: str | None,
        url: str | None,
        headers: Headers | None,
        status: int | None = None,
        request: _Message | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.request = request
        self._headers = headers
        self._fields: Callable[[str], list[str] | None] | None = None
        self._overrides = overrides
        self._parts: Any = None
        self._query: dict[str, list[str]] | None = None
        self._split: Mapping[str, list[str]] | None = None

    def reading(self, split: Mapping[str, list[str]]) -> _Message:
        """The same message, with these fields' lines instead (another reading of a
        message whose server joined repeated lines)."""
        other = _Message(self.method, self.url, self._headers, self.status, self.request,
                         self._overrides)
        other._fields, other._parts = self._fields, self._parts  # (the same headers, URL)
        other._split = split
        return other

    def lines(self, name: str) -> list[str] | None:
        split = self._split
        if split is not None and name in split:
            return split[name]
        overrides = self._overrides
        if overrides is not None and name in overrides:
            return [overrides[name]]
        fields = self._fields
        if fields is None:
            if self._headers is None:
                return None
            fields = self._fields = _field_table(self._headers)
        return fields(name)

    def parts(self) -> Any:
        if self._parts is None:
            if self.url is None:
                raise _Absent("no target URI")
            try:
                self._parts = urlsplit(self.url)
            except ValueError:  # "Invalid IPv6 URL" ...
                raise _Invalid("the target URI cannot be parsed") from None
        return self._parts

    def query_params(self) -> dict[str, list[str]]:
        if self._query is None:
            table: dict[str, list[str]] = {}
            for item in self.parts().query.split("&"):
                if not item:
                    continue
                name, _, value = item.partition("=")
                table.setdefault(_form_reencode(name), []).append(_form_reencode(value))
            self._query = table
        return self._query


def _form_reencode(text: str) -> str:
    """application/x-www-form-urlencoded parsing, then percent-encode-after-encoding with
    the form set and spaceAsPlus false (RFC 9421 §2.2.8)."""
    raw = unquote_to_bytes(text.replace("+", " "))
    raw = raw.decode("utf-8", "replace").encode("utf-8")
    return "".join(chr(b) if b in _FORM_SAFE else f"%{b:02X}" for b in raw)


# -- component values: one resolver per component, built once ------------------------

Resolver = Callable[[_Message], str]


def _clean(line: str) -> str:
    line = line.strip(" \t")
    if "\n" in line or "\r" in line:
        raise _Invalid("a field value contains a line break")
    return line


def _field_lines(msg: _Message, name: str) -> list[str]:
    lines = msg.lines(name)
    if lines is None:
        raise _Absent(f"field {name} is absent")
    return lines


def _parse_sf(value: str, kind: str, name: str) -> Any:
    if len(value) > _MAX_SF_LENGTH or not value.isascii():
        raise _Invalid(f"field {name} is not a valid structured field")
    parsed: Any = {"dictionary": _SfDictionary, "list": _SfList, "item": _SfItem}[kind]()
    try:
        parsed.parse(value.encode("ascii"))
    except Exception:  # http_sfv raises ValueError; any failure means invalid
        raise _Invalid(f"field {name} is not a valid structured field") from None
    return parsed


def _field_resolver(comp: Component, sf_types: Mapping[str, str]) -> Resolver:
    name = comp.name
    key = comp.param("key")
    if comp.param("bs") is True:

        def byte_sequences(msg: _Message) -> str:
            out = []
            for line in _field_lines(msg, name):
                cleaned = _clean(line)
                try:
                    raw = cleaned.encode("latin-1")
                except UnicodeEncodeError:
                    raw = cleaned.encode("utf-8")
                out.append(f":{_b64(raw)}:")
            return ", ".join(out)

        return byte_sequences
    if key is not None:
        member_key = str(key)

        def member(msg: _Message) -> str:
            value = ", ".join([_clean(line) for line in _field_lines(msg, name)])
            found = _parse_sf(value, "dictionary", name).get(member_key)
            if found is None:
                raise _Absent(f"field {name} has no such member")
            return str(found)

        return member
    if comp.param("sf") is True:
        kind = sf_types.get(name)

        def structured(msg: _Message) -> str:
            if kind is None:
                raise _Invalid(f"field {name} is not a structured field of a known type")
            value = ", ".join([_clean(line) for line in _field_lines(msg, name)])
            return str(_parse_sf(value, kind, name))

        return structured

    def plain(msg: _Message) -> str:
        lines = msg.lines(name)
        if lines is None:
            raise _Absent(f"field {name} is absent")
        if len(lines) == 1:
            return _clean(lines[0])
        return ", ".join([_clean(line) for line in lines])

    return plain


def _authority(msg: _Message) -> str:
    parts = msg.parts()
    netloc: str = parts.netloc
    if "@" in netloc or "[" in netloc or ":" in netloc:
        return canonical_host(parts.scheme, netloc)
    return netloc.lower()


def _method(msg: _Message) -> str:
    if msg.method is None:
        raise _Absent("@method needs a request")
    return msg.method


def _target_uri(msg: _Message) -> str:
    if msg.url is None:
        raise _Absent("@target-uri needs a request")
    return msg.url


def _scheme(msg: _Message) -> str:
    return str(msg.parts().scheme).lower()


def _path(msg: _Message) -> str:
    return str(msg.parts().path or "/")


def _query(msg: _Message) -> str:
    return "?" + str(msg.parts().query)


def _request_target(msg: _Message) -> str:
    parts = msg.parts()
    target = str(parts.path or "/")
    if parts.query or (msg.url or "").partition("#")[0].endswith("?"):
        target += "?" + str(parts.query)
    return target


def _status(msg: _Message) -> str:
    if msg.status is None:
        raise _Absent("@status is for responses")
    if not 100 <= msg.status <= 999:
        raise _Invalid("@status must be three digits")
    return str(msg.status)


def _query_param_resolver(comp: Component) -> Resolver:
    wanted = str(comp.param("name"))

    def query_param(msg: _Message) -> str:
        values = msg.query_params().get(wanted)
        if not values:
            raise _Absent("the query has no such parameter")
        if len(values) > 1:
            raise _Invalid("a query parameter that occurs more than once cannot be covered")
        return values[0]

    return query_param


_DERIVERS: Mapping[str, Resolver] = {
    "@method": _method,
    "@target-uri": _target_uri,
    "@authority": _authority,
    "@scheme": _scheme,
    "@path": _path,
    "@query": _query,
    "@request-target": _request_target,
    "@status": _status,
}


_LINE_BREAK = "a derived component contains a line break"


# The usual derived components, checked as _resolver's ``checked`` checks any (a request's
# component, without a line break), in one call.


def _checked_method(msg: _Message) -> str:
    value = msg.method
    if value is None:
        raise _Absent("@method in a response needs the req parameter")
    if "\n" in value or "\r" in value:
        raise _Invalid(_LINE_BREAK)
    return value


def _checked_authority(msg: _Message) -> str:
    if msg.method is None:
        raise _Absent("@authority in a response needs the req parameter")
    value = _authority(msg)
    if "\n" in value or "\r" in value:
        raise _Invalid(_LINE_BREAK)
    return value


def _checked_path(msg: _Message) -> str:
    if msg.method is None:
        raise _Absent("@path in a response needs the req parameter")
    value = str(msg.parts().path or "/")  # (str(): as _path, whatever the URL's type)
    if "\n" in value or "\r" in value:
        raise _Invalid(_LINE_BREAK)
    return value


def _checked_query(msg: _Message) -> str:
    if msg.method is None:
        raise _Absent("@query in a response needs the req parameter")
    value = "?" + str(msg.parts().query)
    if "\n" in value or "\r" in value:
        raise _Invalid(_LINE_BREAK)
    return value


_CHECKED_DERIVERS: Mapping[str, Resolver] = {
    "@method": _checked_method,
    "@authority": _checked_authority,
    "@path": _checked_path,
    "@query": _checked_query,
}


def _resolver(comp: Component, sf_types: Mapping[str, str]) -> Resolver:
    """The function that gives ``comp``'s value in a message (raising ``_Absent`` or
    ``_Invalid``)."""
    name = comp.name
    derived = name.startswith("@")
    if not derived:
        get = _field_resolver(comp, sf_types)
    elif name == "@query-param":
        get = _query_param_resolver(comp)
    else:
        get = _DERIVERS[name]
    if name in _CHECKED_DERIVERS:
        get = _CHECKED_DERIVERS[name]
    elif derived:
        inner = get
        request_only = name in _REQUEST_ONLY

        def checked(msg: _Message) -> str:
            if request_only and msg.method is None:
                raise _Absent(f"{name} in a response needs the req parameter")
            value = inner(msg)
            if "\n" in value or "\r" in value:
                raise _Invalid(_LINE_BREAK)
            return value

        get = checked
    if comp.param("req") is True:
        direct = get

        def from_request(msg: _Message) -> str:
            if msg.request is None:
                raise _Absent(f"{name};req needs the related request")
            return direct(msg.request)

        return from_request
    return get


def _split_joined(value: str, separator: str) -> list[str] | None:
    """The field lines that a server joining repeated lines with ``separator`` (``","``:
    wsgiref, gunicorn, werkzeug; ``", "``: Apache's mod_wsgi) would have turned into
    ``value``: ``value`` split at each such separator outside a quoted string. With
    ``","``, a comma followed by a space or a tab is inside a line (HTTP strips the
    whitespace around a field line's value, so no line starts with one). ``None``: no
    separator, or an unterminated quoted string (then no other reading is safe)."""
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(value):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == ",":
            after = value[index + 1 : index + 2]
            if separator == "," and after not in (" ", "\t"):
                parts.append(value[start:index])
                start = index + 1
            elif separator == ", " and after == " ":
                parts.append(value[start:index])
                start = index + 2
    if quoted or not parts:
        return None
    parts.append(value[start:])
    return parts


def _line_sensitive(comp: Component) -> bool:
    """Whether a covered field's value depends on how its lines were joined: a plain
    field (lines joined with ``", "``) or ``bs`` (each line encoded apart). ``sf`` and
    ``key`` parse the value, which gives the same whatever the join."""
    return (not comp.name.startswith("@") and comp.param("sf") is not True
            and comp.param("key") is None and comp.param("req") is not True)


def _joined_readings(
    msg: _Message, covered: list[tuple[str, Component, Resolver]]
) -> tuple[list[str], Iterator[_Message]]:
    """For a request whose server joined repeated field lines: the covered fields whose
    one value may be such a join, and the messages reading some of them as the lines
    they were joined from. A field may have been joined with ``","`` or, for ``bs``
    (which encodes each line apart; a plain field's value is then the same as received),
    with ``", "``. Every combination when there are at most ``_MAX_JOINED_READINGS``,
    else two: every field read as joined with ``","``, then with ``", "``."""
    splits: dict[str, dict[str, list[str]]] = {}
    byte_sequences = {c[1].name for c in covered if c[1].param("bs") is True}
    for _, comp, _ in covered:
        name = comp.name
        if name in splits or not _line_sensitive(comp):
            continue
        lines = msg.lines(name)
        if lines is None or len(lines) != 1:
            continue
        separators = (",", ", ") if name in byte_sequences else (",",)
        found: dict[str, list[str]] = {}
        for separator in separators:
            parts = _split_joined(lines[0], separator)
            if parts is not None:
                found[separator] = parts
        if found:
            splits[name] = found
    names = list(splits)
    choices: list[list[list[str] | None]] = [[None, *splits[n].values()] for n in names]
    if math.prod(len(c) for c in choices) <= _MAX_JOINED_READINGS:
        readings = (
            {name: lines for name, lines in zip(names, combination, strict=True)
             if lines is not None}
            for combination in itertools.islice(itertools.product(*choices), 1, None)
        )
    else:
        readings = (
            {name: splits[name][separator] for name in names if separator in splits[name]}
            for separator in (",", ", ")
        )
    return names, (msg.reading(reading) for reading in readings if reading)


def _message(
    method: str | None,
    url: str | None,
    headers: Headers | None,
    status: int | None,
    request: RelatedRequest | None,
    overrides: Mapping[str, str] | None = None,
) -> _Message:
    related = None
    if request is not None:
        related = _Message(request.method, request.url, request.headers)
    return _Message(method, url, headers, status, related, overrides)


def _response_flaw(
    headers: Headers | None,
    request: RelatedRequest | None,
    overrides: Mapping[str, str] | None,
    *,
    strict: bool,
) -> str | None:
    """:func:`~surefoot.signing._protocols.message_flaw` of a response, its related
    request and the signer's overriding fields."""
    flaw = message_flaw(None, None, headers, strict=strict)
    if flaw is None and overrides is not None:
        flaw = message_flaw(None, None, overrides, strict=strict)
    related: object = request  # (typed; built from anything)
    if flaw is None and request is not None:
        if not isinstance(related, RelatedRequest):
            return "the related request is not a RelatedRequest" if strict else None
        flaw = message_flaw(request.method, request.url, request.headers, strict=strict)
        if flaw is not None:
            flaw = f"related request: {flaw}"
    return flaw


# -- signer --------------------------------------------------------------------------


def _default_nonce() -> str:
    return secrets.token_hex(16)


class MessageSigner:
    """Signs requests and responses with one key, one label and one set of covered
    components (a :class:`~surefoot.signing.Signer`). Pure: give it ``now`` (or a clock).

    ``sign(request)`` / ``sign_response(status, headers, request=...)`` return the fields
    to add: ``{"Signature-Input": ..., "Signature": ...}``. A fresh ``created`` and
    (unless ``nonce=False``) nonce every call; ``expires_in`` adds ``expires = created +
    expires_in``; ``include_alg`` adds ``alg``; ``tag`` adds ``tag``. ``key_id`` defaults
    to the key's.

    ``content_digest`` (``"sha-256"`` or ``"sha-512"``; default ``None``): :meth:`sign`
    also adds an RFC 9530 ``Content-Digest`` of the request's body, and covers it (it is
    added to ``components`` when not listed), so the signature protects the body.
    Without it, a ``content-digest`` listed in ``components`` must come with the
    request's own headers (and a response's, for :meth:`sign_response`).
    """

    __slots__ = ("_credential_headers", "_inner", "_label", "_nonce_factory", "_plan",
                 "_post", "_pre", "_sf_types", "_signs_body", "clock", "components",
                 "content_digest", "created", "expires_in", "key", "key_id", "label",
                 "nonce", "tag")

    def __init__(
        self,
        key: SignatureKey,
        *,
        components: Iterable[str | Component] = DEFAULT_REQUEST_COMPONENTS,
        content_digest: DigestAlgorithm | None = None,
        label: str = "sig1",
        key_id: str | None = None,
        created: bool = True,
        expires_in: float | None = None,
        nonce: bool = True,
        nonce_factory: Callable[[], str] | None = None,
        include_alg: bool = False,
        tag: str | None = None,
        sf_types: Mapping[str, Literal["item", "list", "dictionary"]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(key, SignatureKey):
            raise ConfigurationError("key must be a SignatureKey")
        if not key.can_sign:
            raise ConfigurationError("a public key cannot sign")
        _check_label(label)
        _check_sf_string(key_id, "key_id")
        _check_sf_string(tag, "tag")
        if expires_in is not None and not expires_in > 0:
            raise ConfigurationError("expires_in must be positive")
        comps = _signed_components(components, content_digest)
        self.key = key
        self.key_id = key_id if key_id is not None else key.key_id
        keyid_part = "" if self.key_id is None else f";keyid={_sf_string(self.key_id)}"
        tag_part = "" if tag is None else f";tag={_sf_string(tag)}"
        self.components = comps
        self.content_digest: DigestAlgorithm | None = content_digest
        self.label = label
        self.created = created
        self.expires_in = expires_in
        self.nonce = nonce
        self.tag = tag
        self.clock = clock or default_clock
        self._nonce_factory = nonce_factory or _default_nonce
        self._sf_types = _sf_type_table(sf_types)
        self._label = label
        self._plan = tuple(
            (comp.identifier + ": ", _resolver(comp, self._sf_types)) for comp in comps
        )
        self._inner = "(" + " ".join(comp.identifier for comp in comps) + ")"
        self._pre = keyid_part + (f';alg="{key.algorithm}"' if include_alg else "")
        self._post = tag_part
        #: The body is covered (through Content-Digest): a streaming body cannot be sent.
        self._signs_body = any(_covers_content(c) for c in comps)
        digest_field = ("Content-Digest",) if content_digest is not None else ()
        self._credential_headers = ("Signature-Input", "Signature", *digest_field)

    def __repr__(self) -> str:
        return (f"MessageSigner({self.key!r}, label={self.label!r}, "
                f"components={self._inner})")

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return self._credential_headers

    @property
    def signs_body(self) -> bool:
        return self._signs_body

    def sign(
        self, request: HttpRequest, *, now: float | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """``Signature-Input`` and ``Signature`` for a request (and its ``Content-Digest``
        with ``content_digest``). ``nonce`` replaces the generated one (test vectors)."""
        msg, digest = self._request_message(request)
        fields = self._fields(msg, now, nonce)
        if digest is not None:
            fields["Content-Digest"] = digest
        return fields

    def _request_message(self, request: HttpRequest) -> tuple[_Message, str | None]:
        """The request as signed, and the ``Content-Digest`` to add (``None``: none)."""
        flaw = message_flaw(request.method, request.url, request.headers, strict=False)
        if flaw is not None:
            raise SigningError(f"cannot sign: {flaw}")
        algorithm = self.content_digest
        if algorithm is None:
            return _Message(request.method, request.url, request.headers), None
        digest = digest_field(request.body, algorithm)
        overrides = {"content-digest": digest}
        return _Message(request.method, request.url, request.headers, None, None,
                        overrides), digest

    def sign_response(
        self,
        status: int,
        headers: Headers | None = None,
        *,
        request: RelatedRequest | None = None,
        now: float | None = None,
        nonce: str | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """``Signature-Input`` and ``Signature`` for a response (``request``: the request
        it answers, for ``req`` components)."""
        flaw = _response_flaw(headers, request, overrides, strict=False)
        if flaw is not None:
            raise SigningError(f"cannot sign: {flaw}")
        msg = _message(None, None, headers, status, request, overrides)
        return self._fields(msg, now, nonce)

    def request_base(
        self, request: HttpRequest, *, now: float | None = None, nonce: str | None = None
    ) -> tuple[str, str]:
        """The signature base and the ``@signature-params`` value a request would be
        signed with (for debugging and tests; signs nothing)."""
        return self._base(self._request_message(request)[0], now, nonce)

    def response_base(
        self,
        status: int,
        headers: Headers | None = None,
        *,
        request: RelatedRequest | None = None,
        now: float | None = None,
        nonce: str | None = None,
    ) -> tuple[str, str]:
        """Like :meth:`request_base`, for a response."""
        flaw = _response_flaw(headers, request, None, strict=False)
        if flaw is not None:
            raise SigningError(f"cannot sign: {flaw}")
        return self._base(_message(None, None, headers, status, request), now, nonce)

    def _base(self, msg: _Message, now: float | None, nonce: str | None) -> tuple[str, str]:
        parts: list[str] = []
        try:
            for prefix, resolve in self._plan:
                parts.append(prefix)
                parts.append(resolve(msg))
                parts.append("\n")
        except (_Absent, _Invalid) as exc:
            raise SigningError(f"cannot sign: {exc}") from None
        params = self._inner
        if self.created or self.expires_in is not None:
            when = int(self.clock.wall() if now is None else now)
            if self.created:
                params += f";created={when}"
            if self.expires_in is not None:
                params += f";expires={when + int(self.expires_in)}"
        params += self._pre
        if nonce is None and self.nonce:
            nonce = self._nonce_factory()
        if nonce is not None:
            try:
                params += f";nonce={_sf_string(nonce)}"
            except ValueError:
                raise SigningError("the nonce must be printable ASCII") from None
        params += self._post
        parts.append('"@signature-params": ')
        parts.append(params)
        return "".join(parts), params

    def _fields(self, msg: _Message, now: float | None, nonce: str | None) -> dict[str, str]:
        base, params = self._base(msg, now, nonce)
        try:
            data = base.encode("ascii")
        except UnicodeEncodeError:
            raise SigningError("cannot sign: a component value is not ASCII (use bs)") from None
        signature = self.key._sign(data)
        label = self._label
        return {
            "Signature-Input": f"{label}={params}",
            "Signature": f"{label}=:{_b64(signature)}:",
        }


# -- verifier ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What a verified signature said: its label, key and parameters, and the
    identifiers it covers (serialised, in order)."""

    label: str
    key_id: str
    algorithm: Algorithm
    covered: tuple[str, ...]
    created: int | None = None
    expires: int | None = None
    nonce: str | None = None
    tag: str | None = None

    def covers(self, component: str | Component) -> bool:
        """Whether the signature covers ``component`` (an identifier that is not one:
        :class:`~surefoot.ConfigurationError`)."""
        wanted = _component(component).canonical
        for identifier in self.covered:
            try:
                if Component.parse(identifier).canonical == wanted:
                    return True
            except ConfigurationError:  # (built by hand, not by a verifier)
                continue
        return False


KeyResolver = Mapping[str, SignatureKey] | Callable[[str], SignatureKey | None]


def _parse_dictionary(
    lines: list[str], field: str, known: Container[str] = ()
) -> dict[str, SfMember]:
    """A received Dictionary field (its lines joined), as ``http_sfv`` reads it (fast:
    see :mod:`._sfv`; ``known``: the Inner Lists read before, whose text need not be
    read again)."""
    text = lines[0].strip(" \t") if len(lines) == 1 else ", ".join(
        [line.strip(" \t") for line in lines])
    if len(text) > _MAX_SF_LENGTH or not text.isascii():
        raise MalformedSignature(f"{field} is not a valid structured field")
    try:
        return parse_dictionary(text, known)
    except ValueError:
        raise MalformedSignature(f"{field} is not a valid structured field") from None


#: Required components, each with its canonical form and those of the components that
#: contain it (covering one of those covers it).
_Coverage = tuple[tuple[Component, tuple[str, frozenset[tuple[str, ParamValue]]],
                        tuple[tuple[str, frozenset[tuple[str, ParamValue]]], ...]], ...]


class _Plan:
    """What a verifier made of one list of covered components (cached by its text, so
    parsed and checked once): the components with their resolvers, their canonical forms,
    the ``Content-Digest`` algorithms they protect, and the start of the
    ``@signature-params`` line."""

    __slots__ = ("covered", "digests", "heads", "identifiers", "prefix", "seen")

    def __init__(self, covered: list[tuple[str, Component, Resolver]]) -> None:
        self.covered = covered
        self.identifiers = tuple(c[0] for c in covered)
        self.heads = tuple((c[0] + ": ", c[2]) for c in covered)
        self.seen = frozenset(c[1].canonical for c in covered)
        self.digests = _digest_algorithms(c[1] for c in covered)
        self.prefix = '"@signature-params": (' + " ".join(c[0] for c in covered) + ")"


class MessageVerifier:
    """Server (or client) side of RFC 9421 (a :class:`~surefoot.signing.Verifier`):
    :meth:`verify` returns the :class:`~surefoot.signing.Identity` of a valid request
    (scheme ``"rfc9421"``; its ``signature`` is the :class:`VerifiedSignature`),
    :meth:`verify_response` the :class:`VerifiedSignature` of a valid response, or they
    raise a :class:`surefoot.SignatureError` (see the module documentation for the checks).

    * ``keys`` — ``{keyid: SignatureKey}`` or a function ``keyid -> SignatureKey | None``;
      each key is pinned to its algorithm.
    * ``required_components`` — must all be covered; default ``@method``, ``@authority``,
      ``@path`` and ``@query`` for requests and ``@status`` for responses (``()``: none).
      A covered ``@target-uri`` stands for ``@scheme``, ``@authority``,
      ``@request-target``, ``@path`` and ``@query``, and a covered ``@request-target`` for
      ``@path`` and ``@query`` (they are parts of it).
    * ``require_content_digest`` — a request with a body (or a ``Content-Digest``), or a
      response verified with a ``body``, must cover ``content-digest``, in any form
      (``content-digest``, ``;sf``, ``;bs``, ``;key=``; not ``;req``). Required or not, a
      covered ``Content-Digest`` is checked against the body.
    * ``max_age`` — seconds a signature stays acceptable after its ``created``
      (``None``: no limit); ``skew`` — tolerated clock difference, seconds.
    * ``expected_tag`` — the ``tag`` the signature must carry (``None``: any or none); a
      structured-field String (printable ASCII), else :class:`~surefoot.ConfigurationError`
      when built (it goes into ``Accept-Signature``, see :meth:`challenge`).
    * ``allowed_algorithms`` — algorithms accepted at all.
    * ``nonces`` — a :class:`~surefoot.stores.NonceCache` (``MemoryNonceCache()``, or a
      shared store's ``store.nonces``, or the store itself); with one, a nonce is required
      unless ``require_nonce=False``, and each is accepted once per key id (and
      remembered ``max_age + 2 * skew`` seconds, so a nonce store needs ``max_age`` and
      ``require_created=True``, else :class:`~surefoot.ConfigurationError`). ``None``
      (default; RFC 9421 nonces are optional) and ``False`` (as for every verifier): no
      replay check.
    * ``require_created`` — the signature must carry ``created`` (default). ``False``
      accepts signatures without it, which stay valid until their ``expires`` (if any)
      and so can be replayed: it cannot be combined with ``nonces``.
    * ``label`` — verify the signature with this label (default: the only one, else the
      first one carrying ``expected_tag``, else the first one); a structured-field key
      (a lower-case letter or ``*``, then lower-case letters, digits, ``_ - . *``), else
      :class:`~surefoot.ConfigurationError` when built.
    * ``sf_types`` — more fields ``sf`` may re-serialise, ``{name: "item" | "list" |
      "dictionary"}`` (checked when built).
    """

    __slots__ = ("_coverage", "_identifiers", "_keys", "_plans", "_required_request",
                 "_required_response", "_sf_types",
                 "allowed_algorithms", "clock", "expected_tag", "label", "max_age", "nonces",
                 "require_content_digest", "require_created", "require_nonce", "skew")

    scheme = "rfc9421"

    def __init__(
        self,
        keys: KeyResolver,
        *,
        required_components: Iterable[str | Component] | None = None,
        require_content_digest: bool = False,
        max_age: float | None = 300.0,
        skew: float = 30.0,
        expected_tag: str | None = None,
        allowed_algorithms: Collection[str] = ALGORITHMS,
        nonces: NoncesOption = None,
        require_nonce: bool | None = None,
        require_created: bool = True,
        label: str | None = None,
        sf_types: Mapping[str, Literal["item", "list", "dictionary"]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if max_age is not None and max_age <= 0:
            raise ConfigurationError("max_age must be positive (or None)")
        if skew < 0:
            raise ConfigurationError("skew must not be negative")
        unknown = set(allowed_algorithms) - set(ALGORITHMS)
        if unknown:
            raise ConfigurationError(f"unknown algorithms: {', '.join(sorted(unknown))}")
        # Both go into structured fields: the signature's, and Accept-Signature (challenge).
        _check_sf_string(expected_tag, "expected_tag")
        if label is not None:
            _check_label(label)
        cache = verifier_nonces(nonces, default=False)
        if cache is not None and max_age is None:
            raise ConfigurationError("a nonce store needs max_age (how long to remember)")
        if cache is not None and not require_created:
            # A signature without created stays valid until its expires, if any (a year
            # away, or never), but its nonce is remembered only max_age + 2 * skew: it
            # could be replayed once forgotten.
            raise ConfigurationError(
                "a nonce store needs require_created=True: a signature without created "
                "outlives its remembered nonce and could be replayed after it")
        self._keys = keys
        if required_components is None:
            self._required_request = tuple(
                Component(n) for n in ("@method", "@authority", "@path", "@query"))
            self._required_response: tuple[Component, ...] = (Component("@status"),)
        else:
            required = tuple(_component(c) for c in required_components)
            self._required_request = self._required_response = required
        self.require_content_digest = require_content_digest
        self.max_age = max_age
        self.skew = skew
        self.expected_tag = expected_tag
        self.allowed_algorithms = frozenset(allowed_algorithms)
        self.nonces: NonceCache | None = cache
        self.require_nonce = cache is not None if require_nonce is None else require_nonce
        self.require_created = require_created
        self.label = label
        self._sf_types = _sf_type_table(sf_types)
        self.clock = clock or default_clock
        self._identifiers: dict[object, tuple[str, Component, Resolver]] = {}
        self._plans: dict[str, _Plan] = {}
        # per required tuple: (it, [(component, its canonical form, those of its wholes)])
        self._coverage: dict[int, tuple[tuple[Component, ...], _Coverage]] = {}

    def __repr__(self) -> str:
        return (f"MessageVerifier(keys=<redacted>, max_age={self.max_age}, skew={self.skew}, "
                f"allowed_algorithms={sorted(self.allowed_algorithms)})")

    @property
    def blocking(self) -> bool:
        return nonces_block(self.nonces)

    def verify(self, request: SignedRequest, *, now: float | None = None) -> Identity:
        """Verify a received request (``request.url``: its absolute target URI). Its
        body is checked against a covered ``Content-Digest``; an empty body is checked
        too when a ``Content-Digest`` came with it (a stripped body must not pass), and
        without either there is nothing to check."""
        parts = check_received(request)  # text it can encode, a URL it can split
        headers: Sequence[tuple[str, str]] = request.headers  # (text pairs: checked above)
        if not isinstance(headers, (tuple, list)):  # (a SignedRequest built by hand)
            headers = tuple(headers)
        fields = {name.lower(): [value] for name, value in headers}
        if len(fields) != len(headers):  # a name on several lines: each line, in order
            fields = {}
            for name, value in headers:
                fields.setdefault(name.lower(), []).append(value)
        body: bytes | None = request.body
        if not body and "content-digest" not in fields:
            body = None
        msg = _Message(request.method, request.url, None)
        msg._fields, msg._parts = fields.get, parts  # (what _field_table would build)
        found = self._verify(msg, self._required_request, body, now, request.lines_joined)
        return Identity("rfc9421", found.key_id, found)

    def verify_response(
        self,
        status: int,
        headers: Headers,
        *,
        request: RelatedRequest | None = None,
        body: bytes | None = None,
        now: float | None = None,
    ) -> VerifiedSignature:
        """Verify a received response (``request``: the request it answers, needed when
        the signature covers ``req`` components; ``body``, if given, is checked against a
        covered ``Content-Digest``)."""
        flaw = _response_flaw(headers, request, None, strict=True)
        received: tuple[object, object] = (status, body)  # (typed; given anything)
        if flaw is None and not isinstance(received[0], int):
            flaw = "the status is not an integer"
        if flaw is None and received[1] is not None and not isinstance(
                received[1], (bytes, bytearray, memoryview)):
            flaw = "the body is not bytes"
        if flaw is not None:
            raise MalformedSignature(f"malformed response: {flaw}")
        msg = _message(None, None, headers, status, request)
        return self._verify(msg, self._required_response, body, now)

    @property
    def accept_signature(self) -> str:
        """The ``Accept-Signature`` value (RFC 9421 §5.1) asking for what this verifier
        requires of a request: its components and parameters."""
        components = list(self._required_request)
        if self.require_content_digest and not any(_covers_content(c) for c in components):
            components.append(_CONTENT_DIGEST)
        params = ""
        if self.require_created:
            params += ";created"
        if self.require_nonce:
            params += ";nonce"
        if self.expected_tag is not None:
            params += f";tag={_sf_string(self.expected_tag)}"
        label = self.label or "sig1"
        return f"{label}=(" + " ".join(c.identifier for c in components) + ")" + params

    def challenge(self, error: SignatureError) -> list[tuple[str, str]]:
        """``WWW-Authenticate: Signature``, and ``Accept-Signature`` when the signature is
        missing or falls short of the policy."""
        headers = [("WWW-Authenticate", "Signature")]
        if isinstance(error, (MissingHeader, PolicyViolation)):
            headers.append(("Accept-Signature", self.accept_signature))
        return headers

    def _known(self, name: str, params: Mapping[str, Any]) -> tuple[str, Component, Resolver]:
        """A received identifier, checked, with its resolver (cached: bounded, keyed by
        the parameters' types too, so that a Token never passes for a String)."""
        key = (name, tuple((k, type(v), v) for k, v in params.items()))
        found = self._identifiers.get(key)
        if found is None:
            try:
                comp = Component(name, tuple((str(k), v) for k, v in params.items()))
            except ConfigurationError as exc:
                raise MalformedSignature(f"invalid component identifier: {exc}") from None
            found = (comp.identifier, comp, _resolver(comp, self._sf_types))
            if len(self._identifiers) >= _MAX_CACHED_IDENTIFIERS:
                self._identifiers.clear()
            self._identifiers[key] = found
        return found

    # -- the checks, in order ------------------------------------------------------------

    def _choose(self, inputs: dict[str, SfMember], signatures: dict[str, SfMember]) -> str:
        if len(inputs) == 1 and self.label is None:  # (the usual case, in short)
            for label in inputs:
                if label in signatures:
                    return label
        labels = [label for label in inputs if label in signatures]
        if self.label is not None:
            if self.label not in labels:
                raise MissingHeader("no signature with the expected label")
            return self.label
        if not labels:
            raise MissingHeader("no label has both Signature-Input and Signature")
        if len(labels) > 1 and self.expected_tag is not None:
            tagged = [
                label for label in labels
                if inputs[label].params.get("tag") == self.expected_tag
            ]
            if tagged:
                return tagged[0]
        return labels[0]

    def _verify(
        self,
        msg: _Message,
        required: tuple[Component, ...],
        body: bytes | None,
        now: float | None,
        lines_joined: bool = False,
    ) -> VerifiedSignature:
        when = self.clock.wall() if now is None else now
        label, member, signature = self._signature(msg)  # 1. the fields
        params, plan = self._covered(member)  # 2. parameters and components
        digests = self._check_policy(params, plan, required, body)  # 3.
        self._check_time(params, when)  # 4.
        key_id, key = self._key(params)  # 5.
        self._check_signature(msg, plan, params, key, signature, lines_joined)  # 6.
        if body is not None and digests:  # 7. the body, against the covered members
            verify_content_digest(_joined(msg, "content-digest"), body, algorithms=digests)
        nonce: str | None = params.get("nonce")
        if nonce is not None and self.nonces is not None:  # 8. recorded only when valid
            assert self.max_age is not None
            ttl = self.max_age + 2 * self.skew + 1
            if not self.nonces.add_if_absent(f"rfc9421:{key_id}", nonce, now=when, ttl=ttl):
                raise ReplayedNonce("nonce already used")
        return VerifiedSignature(
            label=label,
            key_id=key_id,
            algorithm=key.algorithm,
            covered=plan.identifiers,
            created=params.get("created"),
            expires=params.get("expires"),
            nonce=nonce,
            tag=params.get("tag"),
        )

    def _signature(self, msg: _Message) -> tuple[str, SfInnerList, bytes]:
        """Both fields present and parseable; the chosen label's input and signature."""
        input_lines = msg.lines("signature-input")
        signature_lines = msg.lines("signature")
        if not input_lines or not signature_lines:
            raise MissingHeader("missing Signature-Input or Signature")
        # (the lists this verifier has plans for were read before, and are valid)
        inputs = _parse_dictionary(input_lines, "Signature-Input", self._plans)
        signatures = _parse_dictionary(signature_lines, "Signature")
        label = self._choose(inputs, signatures)
        member = inputs[label]
        sig_item = signatures[label]
        if type(member) is not SfInnerList:
            raise MalformedSignature("a Signature-Input member must be an inner list")
        if not isinstance(sig_item, SfItem) or type(sig_item.value) is not bytes:
            raise MalformedSignature("a Signature member must be a byte sequence")
        return label, member, sig_item.value

    def _covered(self, member: SfInnerList) -> tuple[dict[str, Any], _Plan]:
        """The signature parameters (known, well-typed) and the covered components
        (well-formed, each once, in order: a :class:`_Plan`)."""
        params: dict[str, Any] = member.params  # (the parser's own: checked in place)
        for key, value in params.items():
            expected_type = _PARAM_TYPES.get(key)
            if expected_type is None:
                raise MalformedSignature(f"unknown signature parameter {key!r}")
            if type(value) is not expected_type:
                raise MalformedSignature(f"signature parameter {key!r} has the wrong type")
            if type(value) is str and len(value) > _MAX_STRING_PARAM:
                raise MalformedSignature(f"signature parameter {key!r} is too long")
        source = member.source  # the same text is the same components (see _sfv)
        if source is not None:
            plan = self._plans.get(source)
            if plan is not None:
                return params, plan
        covered: list[tuple[str, Component, Resolver]] = []
        seen: set[object] = set()
        for item in member.items:
            if type(item.value) is not str:
                raise MalformedSignature("a component identifier must be a String")
            identifier, comp, resolve = self._known(item.value, item.params)
            if comp.canonical in seen:
                raise MalformedSignature(f"component {identifier} is covered twice")
            seen.add(comp.canonical)
            covered.append((identifier, comp, resolve))
        plan = _Plan(covered)
        if source is not None:  # (only lists that passed; bounded)
            if len(self._plans) >= _MAX_CACHED_PLANS:
                self._plans.clear()
            self._plans[source] = plan
        return params, plan

    def _coverage_of(self, required: tuple[Component, ...]) -> _Coverage:
        """Each required component with its canonical form and those of the components
        that contain it (computed once per required tuple)."""
        found = self._coverage.get(id(required))
        if found is not None and found[0] is required:
            return found[1]
        coverage = tuple(
            (comp, comp.canonical, tuple(Component(whole, comp.params).canonical
                                         for whole in _PART_OF.get(comp.name, ())))
            for comp in required)
        if len(self._coverage) >= 8:  # (the verifier's two tuples: never, in fact)
            self._coverage.clear()
        self._coverage[id(required)] = (required, coverage)
        return coverage

    def _check_policy(
        self,
        params: Mapping[str, Any],
        plan: _Plan,
        required: tuple[Component, ...],
        body: bytes | None,
    ) -> tuple[str, ...] | None:
        """Required components, ``created``, ``nonce`` and ``tag``; the ``Content-Digest``
        algorithms to check the body with (``None``: ``content-digest`` is not covered)."""
        seen = plan.seen
        for comp, canonical, wholes in self._coverage_of(required):
            if canonical not in seen and not any(whole in seen for whole in wholes):
                raise InsufficientCoverage(f"the signature does not cover {comp.identifier}")
        digests = plan.digests
        if body is not None:
            if digests is None and self.require_content_digest:
                raise InsufficientCoverage("the signature does not cover content-digest")
            if digests is not None and not digests:
                raise InsufficientCoverage(
                    "the signature covers no content-digest member of a supported "
                    "algorithm (" + ", ".join(DIGEST_ALGORITHMS) + ")")
        if params.get("created") is None and self.require_created:
            raise InsufficientCoverage("the signature has no created parameter")
        if params.get("nonce") is None and self.require_nonce:
            raise InsufficientCoverage("the signature has no nonce parameter")
        if self.expected_tag is not None and params.get("tag") != self.expected_tag:
            raise TagMismatch("the signature's tag is not the expected one")
        return digests

    def _check_time(self, params: Mapping[str, Any], when: float) -> None:
        skew = self.skew
        created: int | None = params.get("created")
        expires: int | None = params.get("expires")
        if created is not None:
            if created > when + skew:
                raise TimestampSkew("created is in the future")
            if self.max_age is not None and when - created > self.max_age + skew:
                raise TimestampSkew(f"the signature is older than {self.max_age:g} s")
        if expires is not None:
            if created is not None and expires < created:
                raise MalformedSignature("expires is before created")
            if when > expires + skew:
                raise SignatureExpired("the signature has expired")

    def _key(self, params: Mapping[str, Any]) -> tuple[str, SignatureKey]:
        """The ``keyid`` and its key, of an allowed algorithm (and ``alg``'s, if given)."""
        key_id: str | None = params.get("keyid")
        if key_id is None:
            raise UnknownKey("the signature has no keyid")
        keys = self._keys
        key = keys(key_id) if callable(keys) else keys.get(key_id)
        if key is None:
            raise UnknownKey("unknown key id")
        if not isinstance(key, SignatureKey):
            raise TypeError("the key resolver must return SignatureKey objects")
        if key.algorithm not in self.allowed_algorithms:
            raise DisallowedAlgorithm("the key's algorithm is not allowed")
        alg: str | None = params.get("alg")
        if alg is not None and alg != key.algorithm:
            raise DisallowedAlgorithm("alg is not the key's algorithm")
        return key_id, key

    @staticmethod
    def _check_signature(
        msg: _Message,
        plan: _Plan,
        params: Mapping[str, Any],
        key: SignatureKey,
        signature: bytes,
        lines_joined: bool = False,
    ) -> None:
        """Rebuild the signature base from the message and check the signature. When the
        server may have joined repeated field lines (``lines_joined``: WSGI) and the base
        as received does not verify, a covered field whose one value has a comma outside
        a quoted string is read as the lines it may have been joined from, too (see the
        module documentation)."""
        # The canonical serialisation of the parsed member: every identifier and parameter
        # was checked to be a String with flag/String parameters, or an Integer.
        # (A parsed String is printable ASCII: only '"' and "\\" need escaping.)
        params_line = "".join([
            plan.prefix,
            *[f";{name}={value}" if type(value) is int else f';{name}="{value}"'
              if '"' not in value and "\\" not in value else f";{name}={_sf_string(value)}"
              for name, value in params.items()],
        ])
        base = _signature_base(msg, plan.heads, params_line)
        if key.verify(base, signature):
            return
        if lines_joined:
            names, readings = _joined_readings(msg, plan.covered)
            tried = {base}
            for reading in readings:
                other = _signature_base(reading, plan.heads, params_line)
                if other not in tried:
                    tried.add(other)
                    if key.verify(other, signature):
                        return
            if names:
                shown = ", ".join(names[:_MAX_NAMES_SHOWN])
                raise BadSignature(
                    "signature does not match, with the fields the server may have joined "
                    f"({shown}) read as one line or as the lines it joined")
        raise BadSignature("signature does not match")


def _signature_base(
    msg: _Message, heads: tuple[tuple[str, Resolver], ...], params_line: str
) -> bytes:
    """The signature base: each covered component's line (``heads``: its ``identifier:
    `` and its resolver), then the ``@signature-params`` line."""
    try:
        lines = [f"{head}{resolve(msg)}\n" for head, resolve in heads]
    except _Absent as exc:
        raise MissingComponent(f"covered component missing: {exc}") from None
    except _Invalid as exc:
        raise MalformedSignature(f"covered component invalid: {exc}") from None
    lines.append(params_line)
    try:
        return "".join(lines).encode("ascii")
    except UnicodeEncodeError:
        raise MalformedSignature("a covered component value is not ASCII") from None


def _joined(msg: _Message, name: str) -> str | None:
    lines = msg.lines(name)
    if lines is None:
        return None
    if len(lines) == 1:
        return lines[0].strip(" \t")
    return ", ".join([line.strip(" \t") for line in lines])

