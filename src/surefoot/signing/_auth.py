"""The signing auth object: signs every attempt with a :class:`~surefoot.signing.Signer`.
"""

from __future__ import annotations

from collections.abc import Callable

from surefoot._adapters._auth import AuthBase
from surefoot._core._clock import Clock
from surefoot._core._messages import HttpRequest
from surefoot.oauth._token import Token
from surefoot.signing._hmac import HmacHeaders, HmacSigner

__all__ = ["HmacAuth"]


class HmacAuth(AuthBase):
    """Signs every attempt with the API-key + timestamp + nonce + HMAC scheme.

    See :mod:`surefoot.signing._hmac` (and the README) for the canonical string.
    """

    @property
    def signs_body(self) -> bool:
        return True

    @property
    def clock(self) -> Clock:
        return self.signer.clock

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
        self, request: HttpRequest, token: Token | None, *, now: float
    ) -> dict[str, str]:
        # signs no other header
        return self.signer.sign(request.method, request.url, request.body or None, now=now)
