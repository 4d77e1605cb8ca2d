"""``BearerAuth``: ``Authorization: Bearer <token>`` from a self-refreshing token cache.
"""

from __future__ import annotations

from typing import Literal

from surefoot._adapters._auth import AuthBase
from surefoot._core._clock import Clock
from surefoot._core._messages import HttpRequest
from surefoot.events import Hook
from surefoot.oauth._cache import Sender, TokenCache
from surefoot.oauth._client_auth import ClientAuth
from surefoot.oauth._grants import ClientCredentials, ExtraParams, Grant, RefreshTokenGrant
from surefoot.oauth._token import Token, TokenFunction
from surefoot.oauth._url import check_http_url
from surefoot.stores._protocols import Store, TokenStore

__all__ = ["BearerAuth"]


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>`` from a self-refreshing :class:`TokenCache`.

    ``source`` is a :class:`TokenCache`, a grant (:class:`ClientCredentials`,
    :class:`RefreshTokenGrant`), a function returning a token (string, :class:`Token`
    or token-response mapping), or a static token string (``BearerAuth(os.environ[
    "API_TOKEN"])``: it never expires, and a 401 is not refreshed away). The other
    options are the :class:`TokenCache`'s (ignored when ``source`` already is one).

    ``revoke_on_close=True`` (needs a grant with a ``revocation_url``): closing a surefoot
    client that uses this auth revokes the token (RFC 7009), best-effort.
    """

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return ("Authorization",)

    def __init__(
        self,
        source: TokenCache | Grant | TokenFunction | str,
        *,
        store: TokenStore | Store | None = None,
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
        store: TokenStore | Store | None = None,
        key: str | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        sender: Sender | None = None,
        revoke_on_close: bool = False,
    ) -> BearerAuth:
        """The client-credentials grant. Authenticate with ``client_secret`` (Basic or
        POST) or with ``client_auth=PrivateKeyJwt(client_id, private_key)``.

        ``token_url`` (and ``revocation_url``) must be absolute http(s) URLs with a host
        and a valid port: anything else raises :class:`~surefoot.ConfigurationError`
        here, not on the first request."""
        check_http_url(token_url, "token_url")
        if revocation_url is not None:
            check_http_url(revocation_url, "revocation_url")
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
        store: TokenStore | Store | None = None,
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
    def token_source(self) -> TokenCache:
        return self.cache

    @property
    def hook(self) -> Hook:
        return self.cache.hook

    def attempt_headers(
        self, request: HttpRequest, token: Token | None, *, now: float
    ) -> dict[str, str]:
        assert token is not None  # the pipeline fetched it from token_source
        return {"Authorization": f"Bearer {token.access_token}"}
