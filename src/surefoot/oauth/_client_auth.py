"""OAuth2 client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523). Pure.

:class:`ClientSecretBasic` (§2.3.1), :class:`ClientSecretPost`, :class:`PrivateKeyJwt`
(signed with ``cryptography``, imported only when used) and :class:`PublicClient`.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import quote

from surefoot.errors import (
    ConfigurationError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = [
    "JWT_BEARER_ASSERTION",
    "ClientAuth",
    "ClientSecretBasic",
    "ClientSecretPost",
    "Form",
    "PrivateKeyJwt",
    "PublicClient",
]

#: RFC 7523 §2.2: the ``client_assertion_type`` of a JWT client assertion.
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


Form = list[tuple[str, str]]


@runtime_checkable
class ClientAuth(Protocol):
    """How a client authenticates at the token and revocation endpoints.

    ``apply`` adds its credentials to the form parameters and/or the headers of one
    request (it is called once per attempt, so an assertion is never replayed).
    """

    @property
    def client_id(self) -> str: ...

    @property
    def method(self) -> str:
        """The RFC 7591 ``token_endpoint_auth_method`` name."""
        ...

    def apply(self, form: Form, headers: dict[str, str], *, token_url: str, now: float) -> None:
        ...


def _check_client_id(client_id: str) -> None:
    if not isinstance(client_id, str) or not client_id:
        raise ConfigurationError("client_id must not be empty")
    _check_encodable(client_id, "client_id")


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret:
        raise ConfigurationError("client_secret must not be empty")
    _check_encodable(secret, "client_secret")


def _check_encodable(text: str, name: str) -> None:
    """Refused when built rather than failing every request (the value is not shown)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"{name} is not valid Unicode (a lone surrogate)") from None


def _basic_quote(text: str) -> str:
    """Percent-encode for a Basic credential (see :class:`ClientSecretBasic`)."""
    return quote(text, safe="")


@dataclass(frozen=True, slots=True)
class ClientSecretBasic:
    """``client_secret_basic``: HTTP Basic with the id and secret each percent-encoded
    first (RFC 6749 §2.3.1), so ``:``, ``%``, ``+``, spaces and non-ASCII survive.

    Every byte but the unreserved ``A-Z a-z 0-9 - . _ ~`` is ``%XX`` (UTF-8) — a space is
    ``%20``, not the form encoding's ``+``. With no ``+`` in the header, servers that
    decode with ``unquote`` (authlib) and with ``unquote_plus`` (form decoding, as §2.3.1
    reads) get the same id and secret; with ``+`` for a space, the former would read a
    ``+``."""

    client_id: str
    client_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_client_id(self.client_id)
        _check_secret(self.client_secret)

    @property
    def method(self) -> str:
        return "client_secret_basic"

    def apply(self, form: Form, headers: dict[str, str], *, token_url: str, now: float) -> None:
        pair = f"{_basic_quote(self.client_id)}:{_basic_quote(self.client_secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()


@dataclass(frozen=True, slots=True)
class ClientSecretPost:
    """``client_secret_post``: ``client_id`` and ``client_secret`` in the form body."""

    client_id: str
    client_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_client_id(self.client_id)
        _check_secret(self.client_secret)

    @property
    def method(self) -> str:
        return "client_secret_post"

    def apply(self, form: Form, headers: dict[str, str], *, token_url: str, now: float) -> None:
        form += [("client_id", self.client_id), ("client_secret", self.client_secret)]


@dataclass(frozen=True, slots=True)
class PublicClient:
    """``none``: a public client (no secret) identifies itself with ``client_id`` only."""

    client_id: str

    def __post_init__(self) -> None:
        _check_client_id(self.client_id)

    @property
    def method(self) -> str:
        return "none"

    def apply(self, form: Form, headers: dict[str, str], *, token_url: str, now: float) -> None:
        form.append(("client_id", self.client_id))


_JWS_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
             "ES512", "EdDSA", "Ed25519", "Ed448")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class PrivateKeyJwt:
    """``private_key_jwt`` (RFC 7523 §2.2, OpenID Connect Core §9): each request carries a
    fresh JWT signed with the client's private key — ``iss`` = ``sub`` = the client id,
    ``aud`` = the token endpoint (or ``audience``), a random ``jti``, ``iat`` and an
    ``exp`` ``lifetime`` seconds later.

    ``private_key`` is a ``cryptography`` private key or its PEM (``password`` if it is
    encrypted). ``alg`` follows from the key unless given: RSA → ``RS256`` (``RS384``,
    ``RS512``, ``PS256``, ``PS384``, ``PS512`` on request), EC P-256/P-384/P-521 →
    ``ES256``/``ES384``/``ES512``, Ed25519/Ed448 → ``EdDSA`` (or the fully specified
``Ed25519``/``Ed448`` of RFC 9864, on request). ``key_id`` becomes the
    JWS ``kid``. Needs ``cryptography`` (``pip install surefoot[signing]``).
    """

    client_id: str
    private_key: PrivateKeyTypes | bytes | str = field(repr=False)
    _: KW_ONLY
    alg: str | None = None
    key_id: str | None = None
    audience: str | None = None
    lifetime: float = 60.0
    password: bytes | None = field(default=None, repr=False)
    send_client_id: bool = True
    """Also send ``client_id`` in the form (RFC 7521 §4.2 allows it; some servers need it)."""

    def __post_init__(self) -> None:
        _check_client_id(self.client_id)
        if not (isinstance(self.lifetime, (int, float)) and 0 < self.lifetime <= 3600):
            raise ConfigurationError("lifetime must be between 0 and 3600 seconds")
        key = _load_private_key(self.private_key, self.password)
        object.__setattr__(self, "private_key", key)
        object.__setattr__(self, "password", None)  # not kept once the key is loaded
        object.__setattr__(self, "alg", _jws_alg_for(key, self.alg))

    @property
    def method(self) -> str:
        return "private_key_jwt"

    def assertion(self, *, token_url: str, now: float) -> str:
        """A signed client assertion (compact JWS) for one request."""
        header: dict[str, Any] = {"alg": self.alg, "typ": "JWT"}
        if self.key_id:
            header["kid"] = self.key_id
        issued = int(now)
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience or token_url,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "exp": issued + max(1, math.ceil(self.lifetime)),
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        assert self.alg is not None
        signature = _jws_sign(self.private_key, self.alg, signing_input.encode("ascii"))
        return signing_input + "." + _b64url(signature)

    def apply(self, form: Form, headers: dict[str, str], *, token_url: str, now: float) -> None:
        if self.send_client_id:
            form.append(("client_id", self.client_id))
        form += [
            ("client_assertion_type", JWT_BEARER_ASSERTION),
            ("client_assertion", self.assertion(token_url=token_url, now=now)),
        ]


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    except ImportError:  # pragma: no cover - cryptography is optional
        raise ConfigurationError(
            "private_key_jwt needs the 'cryptography' package: pip install surefoot[signing]"
        ) from None
    return ec, ed448, ed25519, rsa


def _load_private_key(key: Any, password: bytes | None) -> Any:
    ec, ed448, ed25519, rsa = _crypto()
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(key, password)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"private_key is not a usable PEM private key ({type(exc).__name__})"
            ) from None
    kinds = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
             ed448.Ed448PrivateKey)
    if not isinstance(key, kinds):
        raise ConfigurationError(
            "private_key must be an RSA, EC or Ed25519/Ed448 private key (or its PEM)"
        )
    return key


_EC_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def _jws_alg_for(key: Any, alg: str | None) -> str:
    ec, ed448, _ed25519, rsa = _crypto()
    if alg is not None and alg not in _JWS_ALGS:
        raise ConfigurationError(f"alg must be one of {', '.join(_JWS_ALGS)}")
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ConfigurationError("RSA keys must have at least 2048 bits")
        allowed: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        expected = _EC_ALGS.get(key.curve.name)
        if expected is None:
            raise ConfigurationError(f"unsupported EC curve {key.curve.name}")
        allowed = (expected,)
    elif isinstance(key, ed448.Ed448PrivateKey):
        allowed = ("EdDSA", "Ed448")
    else:
        allowed = ("EdDSA", "Ed25519")
    if alg is None:
        return allowed[0]
    if alg not in allowed:
        raise ConfigurationError(f"alg {alg} does not fit this key (use {', '.join(allowed)})")
    return alg


def _jws_sign(key: Any, alg: str, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    if alg in ("EdDSA", "Ed25519", "Ed448"):
        return bytes(key.sign(data))
    digest: hashes.HashAlgorithm
    if alg.endswith("256"):
        digest = hashes.SHA256()
    elif alg.endswith("384"):
        digest = hashes.SHA384()
    else:
        digest = hashes.SHA512()
    if alg.startswith("RS"):
        return bytes(key.sign(data, padding.PKCS1v15(), digest))
    if alg.startswith("PS"):
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return bytes(key.sign(data, pss, digest))
    # ES*: the DER signature becomes the fixed-size R || S of RFC 7518 §3.4
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _resolve_client_auth(
    client_id: str,
    client_secret: str,
    auth_method: str,
    client_auth: ClientAuth | None,
    allowed: tuple[str, ...],
) -> ClientAuth:

    if client_auth is not None:
        if not isinstance(client_auth, ClientAuth):
            raise ConfigurationError("client_auth must be a ClientAuth (e.g. PrivateKeyJwt)")
        if client_secret:
            raise ConfigurationError("give client_secret or client_auth, not both")
        if client_id and client_id != client_auth.client_id:
            raise ConfigurationError("client_id differs from client_auth.client_id")
        return client_auth
    if auth_method not in allowed:
        raise ConfigurationError(
            "auth_method must be one of " + ", ".join(repr(m) for m in allowed)
            + " (or pass client_auth=PrivateKeyJwt(...))"
        )
    _check_client_id(client_id)
    if auth_method == "none":
        if client_secret:
            raise ConfigurationError("a public client (auth_method='none') has no secret")
        return PublicClient(client_id)
    if auth_method == "client_secret_post":
        return ClientSecretPost(client_id, client_secret)
    return ClientSecretBasic(client_id, client_secret)
