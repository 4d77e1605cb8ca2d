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

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlencode

from surefoot._core._messages import HttpRequest, HttpResponse
from surefoot.errors import (
    ConfigurationError,
    TokenError,
)
from surefoot.events import redact_url
from surefoot.oauth._client_auth import (
    ClientAuth,
    Form,
    _resolve_client_auth,
)
from surefoot.oauth._token import Token, _json_body, _raise_endpoint_error, parse_token_response
from surefoot.oauth._url import check_http_url

__all__ = [
    "ClientCredentials",
    "Grant",
    "RefreshTokenGrant",
    "RevocableGrant",
    "parse_revocation_response",
]


# -- client authentication (RFC 6749 §2.3, RFC 7523) --------------------------------------


"""Form parameters in order; a name may repeat (e.g. RFC 8707 ``resource``)."""


# -- grants (sans-I/O) ---------------------------------------------------------------------

ExtraParams = Mapping[str, "str | Sequence[str]"]

#: Parameters a grant or its client authentication sets; ``extra`` may not override them.
_RESERVED = frozenset({
    "grant_type", "refresh_token", "scope", "client_id", "client_secret",
    "client_assertion", "client_assertion_type", "token", "token_type_hint",
})


def _key_url(url: str) -> str:
    """``url`` as a cache key shows it (keys show in reprs and in stores).

    A URL :func:`~surefoot.events.redact_url` leaves as it is (no userinfo, no fragment,
    no credential parameter: the usual token URL) is used as it is, so the keys already in
    stores stay valid. Otherwise the redacted URL, then ``~`` and a fingerprint of the
    whole URL (as the refresh-token fingerprint of :class:`RefreshTokenGrant`): grants
    whose URLs differ only in a credential never share a store entry.
    """
    shown = redact_url(url)
    if shown == url:
        return url
    return f"{shown}~{hashlib.sha256(url.encode()).hexdigest()[:16]}"


#: The fields of a grant holding URLs, which may carry credentials (userinfo, a query
#: parameter): shown redacted by its repr.
_URL_FIELDS = ("token_url", "revocation_url")


def _grant_repr(grant: ClientCredentials | RefreshTokenGrant) -> str:
    """The dataclass repr, with the URLs redacted (:func:`~surefoot.events.redact_url`)."""
    parts = []
    for f in dataclasses.fields(grant):
        value = getattr(grant, f.name)
        if f.name in _URL_FIELDS:
            parts.append(f"{f.name}={None if value is None else redact_url(value)!r}")
        elif f.repr:
            parts.append(f"{f.name}={value!r}")
    return f"{type(grant).__name__}({', '.join(parts)})"


def _check_url(url: str | None, name: str) -> None:
    if url is not None:
        check_http_url(url, name)


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

    The repr and the cache key show the URLs redacted (a credential in their userinfo or
    query never shows).
    """

    token_url: str = field(repr=False)  # shown redacted by __repr__
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    scope: str | None = None
    extra: ExtraParams = field(default_factory=dict)
    client_auth: ClientAuth | None = None
    revocation_url: str | None = field(default=None, repr=False)  # shown redacted

    def __post_init__(self) -> None:
        _settle_client(self, ("client_secret_basic", "client_secret_post"))

    def __repr__(self) -> str:
        return _grant_repr(self)

    @property
    def authentication(self) -> ClientAuth:
        assert self.client_auth is not None  # set by __post_init__
        return self.client_auth

    @property
    def cache_key(self) -> str:
        return f"client_credentials:{self.client_id}@{_key_url(self.token_url)}"

    def build_request(
        self, current: Token | None = None, *, now: float | None = None
    ) -> HttpRequest:
        return _token_request(self, [("grant_type", "client_credentials")], now)

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
    and two users' grants never share one. The repr and the cache key show the URLs
    redacted, as for :class:`ClientCredentials`.
    """

    token_url: str = field(repr=False)  # shown redacted by __repr__
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic"
    )
    scope: str | None = None
    extra: ExtraParams = field(default_factory=dict)
    client_auth: ClientAuth | None = None
    revocation_url: str | None = field(default=None, repr=False)  # shown redacted

    def __post_init__(self) -> None:
        if self.refresh_token is not None and (
            not isinstance(self.refresh_token, str)
            or not self.refresh_token.strip()
            or any(c in self.refresh_token for c in "\r\n")
        ):
            raise ConfigurationError("refresh_token must be a non-empty single-line string")
        _settle_client(self, ("client_secret_basic", "client_secret_post", "none"))

    def __repr__(self) -> str:
        return _grant_repr(self)

    @property
    def authentication(self) -> ClientAuth:
        assert self.client_auth is not None  # set by __post_init__
        return self.client_auth

    @property
    def cache_key(self) -> str:
        key = f"refresh_token:{self.client_id}@{_key_url(self.token_url)}"
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
        return _token_request(
            self, [("grant_type", "refresh_token"), ("refresh_token", refresh)], now
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


def _settle_client(grant: ClientCredentials | RefreshTokenGrant, methods: tuple[str, ...]) -> None:
    """Check a grant being built: its endpoints, its client authentication (one of
    ``methods``, or ``client_auth``) and its extra parameters, settled in place."""
    _check_url(grant.token_url, "token_url")
    _check_url(grant.revocation_url, "revocation_url")
    auth = _resolve_client_auth(
        grant.client_id, grant.client_secret, grant.auth_method, grant.client_auth, methods
    )
    object.__setattr__(grant, "client_auth", auth)
    object.__setattr__(grant, "client_id", auth.client_id)
    object.__setattr__(grant, "extra", _normalise_extra(grant.extra))


def _token_request(
    grant: ClientCredentials | RefreshTokenGrant, form: Form, now: float | None
) -> HttpRequest:
    """The token request of ``grant``: ``form``, then its scope and extra parameters,
    authenticated as the grant's client."""
    if grant.scope:
        form.append(("scope", grant.scope))
    form += _extra_pairs(grant.extra)
    return _form_request(
        grant.token_url, form, grant.authentication, token_url=grant.token_url, now=now
    )
