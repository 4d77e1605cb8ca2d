"""The public auth objects. Each is an :class:`~surefoot._core._pipeline.AuthStrategy`
for surefoot's adapters and, used on its own, a requests auth (``session.auth = ...``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from surefoot._core._clock import Clock
from surefoot._core._origin import origin_of
from surefoot._core._pipeline import FetchToken
from surefoot.events import Hook
from surefoot.oauth._cache import HasTokenStore, Sender, TokenCache
from surefoot.oauth._grants import (
    ClientAuth,
    ClientCredentials,
    ExtraParams,
    Grant,
    RefreshTokenGrant,
    Token,
    TokenFunction,
)
from surefoot.signing._hmac import HmacHeaders, HmacSigner
from surefoot.stores._tokens import TokenStore

__all__ = ["BearerAuth", "HmacAuth"]


try:  # with httpx installed, the auth objects are httpx.Auth too: httpx.Client(auth=...)
    from httpx import Auth as _HttpxAuth
except ImportError:  # pragma: no cover - httpx is optional
    _HttpxAuth = object  # type: ignore[assignment,misc]


@dataclass(frozen=True, slots=True)
class _SendRequest:
    request: Any


class _AuthObject(_HttpxAuth):
    """What both auth objects share: requests' callable protocol (``session.auth =
    auth``) and httpx's generator auth flow (``httpx.Client(auth=auth)``).

    The httpx flow — attach, send, on 401 refresh once and replay once — is written once
    (:meth:`_challenge`) and driven by both the sync and the async httpx loops; only
    token work differs (blocking in the sync flow, in a worker thread in the async one).
    """

    requires_request_body = True  # the body is signed, and replayed after a 401
    signs_body = False

    def __call__(self, request: Any) -> Any:
        from surefoot._adapters._requests import apply_auth

        return apply_auth(self, request)

    @property
    def credential_headers(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def token_cache(self) -> TokenCache | None:
        return None

    def attempt_headers(
        self,
        method: str,
        url: str,
        body: bytes | None,
        token: Token | None,
        now: float,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        raise NotImplementedError

    def _apply(self, request: Any, token: Token | None, now: float) -> None:
        request.headers.update(
            self.attempt_headers(request.method, str(request.url), request.content or None,
                                 token, now, request.headers)
        )
        # Marks where these credentials belong: surefoot's httpx transports strip them
        # from a redirect hop to another origin (httpx itself strips only Authorization).
        request.extensions["surefoot.credentials"] = (
            origin_of(str(request.url)),
            self.credential_headers,
            self,
            (request.method, str(request.url)),
        )

    def _challenge(self, request: Any) -> Generator[Any, Any, None]:
        cache = self.token_cache
        token: Token | None = None
        if cache is not None:
            token = yield FetchToken(cache, None)
        self._apply(request, token, self._wall())
        response = yield _SendRequest(request)
        if response.status_code == 401 and cache is not None and token is not None:
            token = yield FetchToken(cache, None, stale=token)
            self._apply(request, token, self._wall())
            yield _SendRequest(request)

    def _wall(self) -> float:
        cache = self.token_cache
        if cache is not None:
            return float(cache.clock.wall())
        return float(getattr(self, "signer").clock.wall())  # noqa: B009

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        flow = self._challenge(request)
        value: Any = None
        while True:
            try:
                effect = flow.send(value)
            except StopIteration:
                return
            if isinstance(effect, FetchToken):
                cache = effect.cache
                value = (
                    cache.refresh_if_current(effect.stale)
                    if effect.stale is not None
                    else cache.get()
                )
            else:
                value = yield effect.request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        flow = self._challenge(request)
        value: Any = None
        while True:
            try:
                effect = flow.send(value)
            except StopIteration:
                return
            if isinstance(effect, FetchToken):
                cache = effect.cache
                value = await (
                    cache.refresh_if_current_async(effect.stale)
                    if effect.stale is not None
                    else cache.get_async()
                )
            else:
                value = yield effect.request


class HmacAuth(_AuthObject):
    """Signs every attempt with the API-key + timestamp + nonce + HMAC scheme.

    See :mod:`surefoot.signing._hmac` (and the README) for the canonical string.
    """

    signs_body = True

    def __init__(
        self,
        key_id: str,
        secret: str | bytes,
        *,
        headers: HmacHeaders | None = None,
        clock: Clock | None = None,
        nonce_factory: Callable[[], str] | None = None,
    ) -> None:
        self.signer = HmacSigner(
            key_id, secret, headers=headers, clock=clock, nonce_factory=nonce_factory
        )

    def __repr__(self) -> str:
        return f"HmacAuth(key_id={self.signer.key_id!r}, secret=<redacted>)"

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return self.signer.headers.names()

    def attempt_headers(
        self,
        method: str,
        url: str,
        body: bytes | None,
        token: Token | None,
        now: float,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        return self.signer.sign(method, url, body, now=now)  # signs no other header


class BearerAuth(_AuthObject):
    """``Authorization: Bearer <token>`` from a self-refreshing :class:`TokenCache`.

    ``source`` is a :class:`TokenCache`, a grant (:class:`ClientCredentials`,
    :class:`RefreshTokenGrant`), or a function returning a token (string, :class:`Token`
    or token-response mapping). The other options are the :class:`TokenCache`'s
    (ignored when ``source`` already is one).
    """

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return ("Authorization",)

    def __init__(
        self,
        source: TokenCache | Grant | TokenFunction,
        *,
        store: TokenStore | HasTokenStore | None = None,
        key: str | None = None,
        leeway: float = 60.0,
        leeway_ratio: float = 0.1,
        clock: Clock | None = None,
        hook: Hook | None = None,
        sender: Sender | None = None,
        revoke_on_close: bool = False,
    ) -> None:
        if isinstance(source, TokenCache):
            self.cache = source
        else:
            self.cache = TokenCache(
                source,
                store=store,
                key=key,
                leeway=leeway,
                leeway_ratio=leeway_ratio,
                clock=clock,
                hook=hook,
                sender=sender,
                revoke_on_close=revoke_on_close,
            )

    @classmethod
    def client_credentials(
        cls,
        token_url: str,
        client_id: str = "",
        client_secret: str = "",
        *,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = (
            "client_secret_basic"
        ),
        client_auth: ClientAuth | None = None,
        scope: str | None = None,
        extra: ExtraParams | None = None,
        revocation_url: str | None = None,
        store: TokenStore | HasTokenStore | None = None,
        key: str | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        sender: Sender | None = None,
        revoke_on_close: bool = False,
    ) -> BearerAuth:
        """The client-credentials grant. Authenticate with ``client_secret`` (Basic or
        POST) or with ``client_auth=PrivateKeyJwt(client_id, private_key)``."""
        grant = ClientCredentials(
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            auth_method=auth_method,
            client_auth=client_auth,
            scope=scope,
            extra=dict(extra or {}),
            revocation_url=revocation_url,
        )
        return cls(grant, store=store, key=key, hook=hook, clock=clock, sender=sender,
                   revoke_on_close=revoke_on_close)

    @classmethod
    def refresh_token(
        cls,
        token_url: str,
        client_id: str = "",
        client_secret: str = "",
        *,
        refresh_token: str | None,
        auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
            "client_secret_basic"
        ),
        client_auth: ClientAuth | None = None,
        scope: str | None = None,
        extra: ExtraParams | None = None,
        revocation_url: str | None = None,
        store: TokenStore | HasTokenStore | None = None,
        key: str | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        sender: Sender | None = None,
        revoke_on_close: bool = False,
    ) -> BearerAuth:
        """The refresh-token grant with rotation, starting from the ``refresh_token``
        your authorization flow obtained (``None``: the store already holds a token).
        Use a persistent ``store`` — a rotated refresh token lives only there."""
        grant = RefreshTokenGrant(
            token_url=token_url,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            auth_method=auth_method,
            client_auth=client_auth,
            scope=scope,
            extra=dict(extra or {}),
            revocation_url=revocation_url,
        )
        return cls(grant, store=store, key=key, hook=hook, clock=clock, sender=sender,
                   revoke_on_close=revoke_on_close)

    def __repr__(self) -> str:
        return f"BearerAuth({self.cache!r})"

    @property
    def token_cache(self) -> TokenCache:
        return self.cache

    def attempt_headers(
        self,
        method: str,
        url: str,
        body: bytes | None,
        token: Token | None,
        now: float,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        assert token is not None
        return {"Authorization": f"Bearer {token.access_token}"}
