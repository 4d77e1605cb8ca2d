"""The signing auth object: signs every attempt with a :class:`~surefoot.signing.Signer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from surefoot._adapters._auth import _AuthObject
from surefoot._core._clock import Clock
from surefoot.oauth._token import Token
from surefoot.signing._hmac import HmacHeaders, HmacSigner

__all__ = ["HmacAuth"]


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
