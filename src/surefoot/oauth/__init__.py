"""Bearer tokens and OAuth2: a token cache that refreshes before expiry, once per fleet,
and at most once per request on 401; the client-credentials and refresh-token grants
(with rotation and RFC 7009 revocation); client authentication at the token endpoint.

The common path is :class:`BearerAuth` (``BearerAuth.client_credentials(token_url, id,
secret)``); :class:`TokenCache` is the engine behind it, for sharing one token between
clients or processes (with a store from :mod:`surefoot.stores`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot._lazy import attach

if TYPE_CHECKING:
    from surefoot._core._effects import TokenSource
    from surefoot._core._messages import HttpRequest, HttpResponse
    from surefoot.oauth._auth import BearerAuth
    from surefoot.oauth._cache import Sender, TokenCache
    from surefoot.oauth._client_auth import (
        ClientAuth,
        ClientSecretBasic,
        ClientSecretPost,
        PrivateKeyJwt,
        PublicClient,
    )
    from surefoot.oauth._grants import ClientCredentials, Grant, RefreshTokenGrant, RevocableGrant
    from surefoot.oauth._token import Token, TokenFunction

__all__ = [
    "BearerAuth",
    "ClientAuth",
    "ClientCredentials",
    "ClientSecretBasic",
    "ClientSecretPost",
    "Grant",
    "HttpRequest",
    "HttpResponse",
    "PrivateKeyJwt",
    "PublicClient",
    "RefreshTokenGrant",
    "RevocableGrant",
    "Sender",
    "Token",
    "TokenCache",
    "TokenFunction",
    "TokenSource",
]

if not TYPE_CHECKING:  # names are imported on first use
    __getattr__, __dir__ = attach(
        __name__,
        {
            "BearerAuth": "surefoot.oauth._auth",
            "ClientAuth": "surefoot.oauth._client_auth",
            "ClientCredentials": "surefoot.oauth._grants",
            "ClientSecretBasic": "surefoot.oauth._client_auth",
            "ClientSecretPost": "surefoot.oauth._client_auth",
            "Grant": "surefoot.oauth._grants",
            "HttpRequest": "surefoot._core._messages",
            "HttpResponse": "surefoot._core._messages",
            "PrivateKeyJwt": "surefoot.oauth._client_auth",
            "PublicClient": "surefoot.oauth._client_auth",
            "RefreshTokenGrant": "surefoot.oauth._grants",
            "RevocableGrant": "surefoot.oauth._grants",
            "Sender": "surefoot.oauth._cache",
            "Token": "surefoot.oauth._token",
            "TokenCache": "surefoot.oauth._cache",
            "TokenFunction": "surefoot.oauth._token",
            "TokenSource": "surefoot._core._effects",
        },
    )
