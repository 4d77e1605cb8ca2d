"""Tokens: the value, its lifecycle, the OAuth2 grants and client authentication. Pure.

The grants are sans-I/O: ``build_request(current)`` gives the HTTP request to send
(``current`` is the token being replaced: a refresh-token grant sends its refresh token)
and ``parse_response`` turns the answer into a :class:`Token` or a typed error. Whoever
holds a connection does the sending.

* :class:`ClientCredentials` (RFC 6749 §4.4) and :class:`RefreshTokenGrant` (§6, with
  rotation);
* client authentication (:class:`ClientAuth`): :class:`ClientSecretBasic` (§2.3.1),
  :class:`ClientSecretPost`, :class:`PrivateKeyJwt` (RFC 7523, signed with
  ``cryptography``, imported only when used) and :class:`PublicClient`;
* revocation requests (RFC 7009) for grants given a ``revocation_url``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NoReturn, Protocol, runtime_checkable
from urllib.parse import quote_plus, urlencode

from surefoot.errors import (
    ConfigurationError,
    InvalidClient,
    InvalidGrant,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
)

__all__ = [
    "ClientAuth",
    "ClientCredentials",
    "ClientSecretBasic",
    "ClientSecretPost",
    "Freshness",
    "Grant",
    "HttpRequest",
    "HttpResponse",
    "PrivateKeyJwt",
    "PublicClient",
    "RefreshTokenGrant",
    "RevocableGrant",
    "Token",
    "freshness",
    "leeway_for",
    "parse_revocation_response",
    "token_from_response_json",
]


@dataclass(frozen=True, slots=True)
class Token:
    """An access token. Its secrets never appear in ``repr`` or ``str``.

    ``expires_at`` and ``obtained_at`` are Unix times (``expires_at`` ``None``: unknown,
    used until the server answers 401). ``version`` increases with every refresh.
    """

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    expires_at: float | None = None
    obtained_at: float = 0.0
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    version: int = 0

    def __repr__(self) -> str:
        return (
            f"Token(fingerprint={self.fingerprint!r}, token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, version={self.version})"
        )

    __str__ = __repr__

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible id of the access token, safe to log."""
        return hashlib.sha256(self.access_token.encode()).hexdigest()[:10]

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "obtained_at": self.obtained_at,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: Any) -> Token | None:
        """Rebuild a stored token; ``None`` for anything malformed."""
        if not isinstance(data, dict):
            return None
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            return None
        expires = data.get("expires_at")
        obtained = data.get("obtained_at", 0.0)
        version = data.get("version", 0)
        refresh = data.get("refresh_token")
        scope = data.get("scope")
        token_type = data.get("token_type", "Bearer")
        if expires is not None and not (
            isinstance(expires, (int, float)) and math.isfinite(expires)
        ):
            return None
        if not isinstance(obtained, (int, float)) or not isinstance(version, int):
            return None
        if not isinstance(token_type, str):
            return None
        return cls(
            access_token=access,
            token_type=token_type,
            expires_at=float(expires) if expires is not None else None,
            obtained_at=float(obtained),
            refresh_token=refresh if isinstance(refresh, str) else None,
            scope=scope if isinstance(scope, str) else None,
            version=version,
        )


class Freshness(str, enum.Enum):
    FRESH = "fresh"  # use it
    REFRESH_SOON = "refresh_soon"  # still valid: one caller refreshes, the others use it
    EXPIRED = "expired"  # must not be sent: wait for a new one


def leeway_for(token: Token, *, leeway: float, leeway_ratio: float) -> float:
    """How long before expiry a refresh starts: ``leeway`` seconds, but at most
    ``leeway_ratio`` of the token's lifetime, so a 30 s token is not refreshed on every
    call."""
    if token.expires_at is None:
        return 0.0
    lifetime = max(token.expires_at - token.obtained_at, 0.0)
    return min(leeway, lifetime * leeway_ratio)


def freshness(
    token: Token | None, now: float, *, leeway: float = 60.0, leeway_ratio: float = 0.1
) -> Freshness:
    if token is None:
        return Freshness.EXPIRED
    if token.expires_at is None:
        return Freshness.FRESH
    # A token that expires within a second is not worth sending.
    if now >= token.expires_at - 1.0:
        return Freshness.EXPIRED
    if now >= token.expires_at - leeway_for(token, leeway=leeway, leeway_ratio=leeway_ratio):
        return Freshness.REFRESH_SOON
    return Freshness.FRESH


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""

    def __repr__(self) -> str:  # headers may hold credentials
        return f"HttpRequest({self.method} {self.url})"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {len(self.body)} bytes)"


_ERRORS: dict[str, type[TokenEndpointError]] = {
    "invalid_client": InvalidClient,
    "invalid_grant": InvalidGrant,
}


def _expires_in(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = float(value.strip())
    else:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return min(number, 10.0 * 365 * 86400)


def token_from_response_json(data: Any, *, now: float, status: int | None = None) -> Token:
    """A token from a decoded RFC 6749 §5.1 response body, or a typed error."""
    if not isinstance(data, dict):
        raise TokenResponseError("token response is not a JSON object")
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise TokenResponseError("token response has no access_token")
    if any(c in access for c in "\r\n"):
        raise TokenResponseError("access_token contains a line break")
    token_type = data.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenResponseError(f"unsupported token_type {str(token_type)[:20]!r}")
    lifetime = _expires_in(data.get("expires_in"))
    refresh = data.get("refresh_token")
    scope = data.get("scope")
    return Token(
        access_token=access.strip(),
        token_type="Bearer",
        expires_at=now + lifetime if lifetime is not None else None,
        obtained_at=now,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=scope if isinstance(scope, str) else None,
    )


def _json_body(response: HttpResponse) -> Any:
    try:
        return json.loads(response.body.decode("utf-8")) if response.body else None
    except (UnicodeDecodeError, ValueError):
        return None


def _raise_endpoint_error(response: HttpResponse, data: Any) -> NoReturn:
    """RFC 6749 §5.2: a typed error from an error answer."""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        code = data["error"][:64]
        description = data.get("error_description")
        error_type = _ERRORS.get(code, TokenEndpointError)
        raise error_type(
            code,
            description if isinstance(description, str) else None,
            status=response.status,
        )
    raise TokenEndpointError("http_error", f"HTTP {response.status}", status=response.status)


def parse_token_response(response: HttpResponse, *, now: float) -> Token:
    """Interpret a token endpoint's answer (RFC 6749 §5.1 / §5.2)."""
    data = _json_body(response)
    if 200 <= response.status < 300:
        if data is None:
            raise TokenResponseError(
                f"token endpoint answered HTTP {response.status} with a body that is not "
                f"JSON ({len(response.body)} bytes)"
            )
        return token_from_response_json(data, now=now, status=response.status)
    _raise_endpoint_error(response, data)


# -- client authentication (RFC 6749 §2.3, RFC 7523) --------------------------------------

#: RFC 7523 §2.2: the ``client_assertion_type`` of a JWT client assertion.
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

Form = list[tuple[str, str]]
"""Form parameters in order; a name may repeat (e.g. RFC 8707 ``resource``)."""


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


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret:
        raise ConfigurationError("client_secret must not be empty")


@dataclass(frozen=True, slots=True)
class ClientSecretBasic:
    """``client_secret_basic``: HTTP Basic with the id and secret each
    form-urlencoded first (RFC 6749 §2.3.1), so ``:``, ``%`` and non-ASCII survive."""

    client_id: str
    client_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_client_id(self.client_id)
        _check_secret(self.client_secret)

    @property
    def method(self) -> str:
        return "client_secret_basic"

    def apply(self, form: Form, headers: dict[str, str], *, token_url: str, now: float) -> None:
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
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
    private_key: Any = field(repr=False)
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


# -- grants (sans-I/O) ---------------------------------------------------------------------

ExtraParams = Mapping[str, "str | Sequence[str]"]

#: Parameters a grant or its client authentication sets; ``extra`` may not override them.
_RESERVED = frozenset({
    "grant_type", "refresh_token", "scope", "client_id", "client_secret",
    "client_assertion", "client_assertion_type", "token", "token_type_hint",
})


def _check_url(url: str | None, name: str) -> None:
    if url is not None and not (
        isinstance(url, str) and url.startswith(("http://", "https://"))
    ):
        raise ConfigurationError(f"{name} must be an absolute http(s) URL")


def _normalise_extra(extra: ExtraParams) -> Mapping[str, str | tuple[str, ...]]:
    out: dict[str, str | tuple[str, ...]] = {}
    for name, value in extra.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError("extra parameter names must be non-empty strings")
        if name in _RESERVED:
            raise ConfigurationError(f"extra may not set {name!r}: use the grant's own field")
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
            out[name] = tuple(value)  # repeated, e.g. several RFC 8707 resources
        else:
            raise ConfigurationError(f"extra parameter {name!r} must be a str or a list of str")
    return MappingProxyType(out)


def _extra_pairs(extra: ExtraParams) -> Form:
    pairs: Form = []
    for name, value in extra.items():
        if isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs += [(name, v) for v in value]
    return pairs


def _form_request(
    url: str, form: Form, auth: ClientAuth, *, token_url: str, now: float | None
) -> HttpRequest:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    auth.apply(form, headers, token_url=token_url, now=time.time() if now is None else now)
    return HttpRequest("POST", url, headers, urlencode(form).encode())


def _revocation_request(
    grant: ClientCredentials | RefreshTokenGrant,
    token: str,
    token_type_hint: str | None,
    now: float | None,
) -> HttpRequest:
    if not grant.revocation_url:
        raise ConfigurationError("this grant has no revocation_url")
    form: Form = [("token", token)]
    if token_type_hint is not None:
        form.append(("token_type_hint", token_type_hint))
    return _form_request(
        grant.revocation_url, form, grant.authentication, token_url=grant.token_url, now=now
    )


def parse_revocation_response(response: HttpResponse) -> None:
    """RFC 7009 §2.2: 200 means revoked (or already invalid); anything else is a typed
    :class:`TokenEndpointError` (``unsupported_token_type``, ``invalid_client`` ...)."""
    if response.status == 200:
        return
    _raise_endpoint_error(response, _json_body(response))


@runtime_checkable
class Grant(Protocol):
    """A sans-I/O token grant, the source of a :class:`~surefoot.TokenCache`.

    ``build_request`` receives the current token (``None`` when there is none yet): a
    refresh-token grant sends its refresh token. It is called once per attempt.
    ``parse_response`` gets the same token back, to keep what the answer leaves out.
    """

    @property
    def cache_key(self) -> str:
        """The default key of its token in a store."""
        ...

    def build_request(
        self, current: Token | None = None, *, now: float | None = None
    ) -> HttpRequest: ...

    def parse_response(
        self, response: HttpResponse, *, now: float, current: Token | None = None
    ) -> Token: ...


@runtime_checkable
class RevocableGrant(Grant, Protocol):
    """A grant that knows its RFC 7009 revocation endpoint."""

    @property
    def revocation_url(self) -> str | None: ...

    def build_revocation_request(
        self, token: str, token_type_hint: str | None = None, *, now: float | None = None
    ) -> HttpRequest: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCredentials:
    """OAuth2 client-credentials grant (RFC 6749 §4.4), sans-I/O.

    Client authentication: ``client_secret`` with ``auth_method``
    ``"client_secret_basic"`` (HTTP Basic, the RFC's default) or ``"client_secret_post"``
    (in the form body), or any ``client_auth`` such as :class:`PrivateKeyJwt` (then
    ``client_id`` may be left out). ``scope`` and ``extra`` parameters (``audience``,
    ``resource`` ...; a list repeats the parameter) go with every request.
    ``revocation_url``: the RFC 7009 endpoint, for :meth:`TokenCache.revoke`.
    """

    token_url: str
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    scope: str | None = None
    extra: ExtraParams = field(default_factory=dict)
    client_auth: ClientAuth | None = None
    revocation_url: str | None = None

    def __post_init__(self) -> None:
        _check_url(self.token_url, "token_url")
        _check_url(self.revocation_url, "revocation_url")
        auth = _resolve_client_auth(
            self.client_id, self.client_secret, self.auth_method, self.client_auth,
            ("client_secret_basic", "client_secret_post"),
        )
        object.__setattr__(self, "client_auth", auth)
        object.__setattr__(self, "client_id", auth.client_id)
        object.__setattr__(self, "extra", _normalise_extra(self.extra))

    @property
    def authentication(self) -> ClientAuth:
        assert self.client_auth is not None  # set by __post_init__
        return self.client_auth

    @property
    def cache_key(self) -> str:
        return f"client_credentials:{self.client_id}@{self.token_url}"

    def build_request(
        self, current: Token | None = None, *, now: float | None = None
    ) -> HttpRequest:
        form: Form = [("grant_type", "client_credentials")]
        if self.scope:
            form.append(("scope", self.scope))
        form += _extra_pairs(self.extra)
        return _form_request(
            self.token_url, form, self.authentication, token_url=self.token_url, now=now
        )

    def parse_response(
        self, response: HttpResponse, *, now: float, current: Token | None = None
    ) -> Token:
        return parse_token_response(response, now=now)

    def build_revocation_request(
        self, token: str, token_type_hint: str | None = None, *, now: float | None = None
    ) -> HttpRequest:
        return _revocation_request(self, token, token_type_hint, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshTokenGrant:
    """OAuth2 refresh-token grant (RFC 6749 §6) with rotation, sans-I/O.

    Each request sends the refresh token of the *current* token — the one in the store,
    so a token rotated by another process is the one used — and falls back to
    ``refresh_token`` (the one your authorization flow obtained) only when there is no
    current token. A new refresh token in the answer replaces the old one; an answer
    without one keeps the old one (the server does not rotate). ``scope`` and ``extra``
    (``audience``, ``resource`` ...) are sent with every refresh, so they never get lost.

    Client authentication as for :class:`ClientCredentials`, plus ``auth_method="none"``
    for a public client. The default cache key includes a fingerprint of the initial
    ``refresh_token``: every process configured with the same grant shares one entry,
    and two users' grants never share one.
    """

    token_url: str
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic"
    )
    scope: str | None = None
    extra: ExtraParams = field(default_factory=dict)
    client_auth: ClientAuth | None = None
    revocation_url: str | None = None

    def __post_init__(self) -> None:
        _check_url(self.token_url, "token_url")
        _check_url(self.revocation_url, "revocation_url")
        if self.refresh_token is not None and (
            not isinstance(self.refresh_token, str)
            or not self.refresh_token.strip()
            or any(c in self.refresh_token for c in "\r\n")
        ):
            raise ConfigurationError("refresh_token must be a non-empty single-line string")
        auth = _resolve_client_auth(
            self.client_id, self.client_secret, self.auth_method, self.client_auth,
            ("client_secret_basic", "client_secret_post", "none"),
        )
        object.__setattr__(self, "client_auth", auth)
        object.__setattr__(self, "client_id", auth.client_id)
        object.__setattr__(self, "extra", _normalise_extra(self.extra))

    @property
    def authentication(self) -> ClientAuth:
        assert self.client_auth is not None  # set by __post_init__
        return self.client_auth

    @property
    def cache_key(self) -> str:
        key = f"refresh_token:{self.client_id}@{self.token_url}"
        if self.refresh_token:
            key += "#" + hashlib.sha256(self.refresh_token.encode()).hexdigest()[:16]
        return key

    def refresh_token_for(self, current: Token | None) -> str | None:
        """The refresh token a refresh now sends: the current token's, else the initial."""
        if current is not None and current.refresh_token:
            return current.refresh_token
        return self.refresh_token

    def build_request(
        self, current: Token | None = None, *, now: float | None = None
    ) -> HttpRequest:
        refresh = self.refresh_token_for(current)
        if refresh is None:
            raise TokenError(
                "no refresh token: pass RefreshTokenGrant(refresh_token=...) or store a "
                "token that has one"
            )
        form: Form = [("grant_type", "refresh_token"), ("refresh_token", refresh)]
        if self.scope:
            form.append(("scope", self.scope))
        form += _extra_pairs(self.extra)
        return _form_request(
            self.token_url, form, self.authentication, token_url=self.token_url, now=now
        )

    def parse_response(
        self, response: HttpResponse, *, now: float, current: Token | None = None
    ) -> Token:
        token = parse_token_response(response, now=now)
        changes: dict[str, Any] = {}
        if token.refresh_token is None:  # not rotated: the old one stays valid
            changes["refresh_token"] = self.refresh_token_for(current)
        if token.scope is None:  # RFC 6749 §5.1: omitted means as requested / as before
            changes["scope"] = self.scope or (current.scope if current is not None else None)
        return dataclasses.replace(token, **changes) if changes else token

    def build_revocation_request(
        self, token: str, token_type_hint: str | None = None, *, now: float | None = None
    ) -> HttpRequest:
        return _revocation_request(self, token, token_type_hint, now)


TokenFunction = Callable[[], "str | Token | Mapping[str, Any]"]


def token_from_callable_result(result: Any, *, now: float) -> Token:
    """A token from what a user's token function returned: a string, a :class:`Token`,
    or a mapping shaped like a token response (``access_token``, ``expires_in``)."""
    if isinstance(result, Token):
        return result
    if isinstance(result, str):
        if not result.strip() or any(c in result for c in "\r\n"):
            raise TokenResponseError("token function returned an empty or multi-line token")
        return Token(access_token=result.strip(), obtained_at=now)
    if isinstance(result, Mapping):
        return token_from_response_json(dict(result), now=now)
    raise TokenResponseError(
        f"token function returned {type(result).__name__}, expected str, Token or mapping"
    )
