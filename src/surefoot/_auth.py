"""The public auth objects. Each is an :class:`~surefoot._core._pipeline.AuthStrategy`
for surefoot's adapters and, used on its own, a requests auth (``session.auth = ...``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._core._clock import Clock
from ._core._events import Hook
from ._core._hmac import HmacHeaders, HmacSigner
from ._core._tokens import ClientCredentials, Token, TokenFunction
from ._stores import TokenStore
from ._tokencache import Sender, TokenCache

__all__ = ["BearerAuth", "HmacAuth"]


class _RequestsCallable:
    """``session.auth = auth``: requests calls the auth with the prepared request."""

    __slots__ = ()

    def __call__(self, request: Any) -> Any:
        from ._requests import apply_auth

        return apply_auth(self, request)  # type: ignore[arg-type]


class HmacAuth(_RequestsCallable):
    """Signs every attempt with the API-key + timestamp + nonce + HMAC scheme.

    See :mod:`surefoot._core._hmac` (and the README) for the canonical string.
    """

    __slots__ = ("signer",)
    signs_body = True
    token_cache = None

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
        self, method: str, url: str, body: bytes | None, token: Token | None, now: float
    ) -> dict[str, str]:
        return self.signer.sign(method, url, body, now=now)


class BearerAuth(_RequestsCallable):
    """``Authorization: Bearer <token>`` from a self-refreshing :class:`TokenCache`.

    ``source`` is a :class:`TokenCache`, a :class:`ClientCredentials` grant, or a function
    returning a token (string, :class:`Token` or token-response mapping).
    """

    __slots__ = ("cache",)
    signs_body = False
    credential_headers = ("Authorization",)

    def __init__(
        self,
        source: TokenCache | ClientCredentials | TokenFunction,
        *,
        store: TokenStore | None = None,
        leeway: float = 60.0,
        leeway_ratio: float = 0.1,
        clock: Clock | None = None,
        hook: Hook | None = None,
        sender: Sender | None = None,
    ) -> None:
        if isinstance(source, TokenCache):
            self.cache = source
        else:
            self.cache = TokenCache(
                source,
                store=store,
                leeway=leeway,
                leeway_ratio=leeway_ratio,
                clock=clock,
                hook=hook,
                sender=sender,
            )

    @classmethod
    def client_credentials(
        cls,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = (
            "client_secret_basic"
        ),
        scope: str | None = None,
        extra: Mapping[str, str] | None = None,
        store: TokenStore | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
    ) -> BearerAuth:
        grant = ClientCredentials(
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            auth_method=auth_method,
            scope=scope,
            extra=dict(extra or {}),
        )
        return cls(grant, store=store, hook=hook, clock=clock)

    def __repr__(self) -> str:
        return f"BearerAuth({self.cache!r})"

    @property
    def token_cache(self) -> TokenCache:
        return self.cache

    def attempt_headers(
        self, method: str, url: str, body: bytes | None, token: Token | None, now: float
    ) -> dict[str, str]:
        assert token is not None
        return {"Authorization": f"Bearer {token.access_token}"}
