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
    from surefoot._core._effects import TokenSource as TokenSource
    from surefoot._core._messages import HttpRequest as HttpRequest
    from surefoot._core._messages import HttpResponse as HttpResponse
    from surefoot.oauth._auth import BearerAuth as BearerAuth
    from surefoot.oauth._cache import Sender as Sender
    from surefoot.oauth._cache import TokenCache as TokenCache
    from surefoot.oauth._client_auth import ClientAuth as ClientAuth
    from surefoot.oauth._client_auth import ClientSecretBasic as ClientSecretBasic
    from surefoot.oauth._client_auth import ClientSecretPost as ClientSecretPost
    from surefoot.oauth._client_auth import PrivateKeyJwt as PrivateKeyJwt
    from surefoot.oauth._client_auth import PublicClient as PublicClient
    from surefoot.oauth._grants import ClientCredentials as ClientCredentials
    from surefoot.oauth._grants import Grant as Grant
    from surefoot.oauth._grants import RefreshTokenGrant as RefreshTokenGrant
    from surefoot.oauth._grants import RevocableGrant as RevocableGrant
    from surefoot.oauth._token import Token as Token
    from surefoot.oauth._token import TokenFunction as TokenFunction
else:  # names are imported on first use
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
