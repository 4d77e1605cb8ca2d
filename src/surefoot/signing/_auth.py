"""``SigningAuth``: any :class:`~surefoot.signing.Signer` as an auth object.

It works wherever the other auth objects do: ``surefoot.Client(auth=...)``,
``surefoot.httpx.Client(auth=...)`` (and the async client and transports),
``session.auth = ...`` on a plain ``requests.Session`` and ``httpx.Client(auth=...)``.
Every attempt (each retry, each same-origin redirect hop, the replay after a 401) is
signed afresh; the signer's headers never follow a redirect to another origin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from surefoot._adapters._auth import AuthBase
from surefoot._core._clock import Clock
from surefoot._core._messages import HttpRequest
from surefoot.errors import ConfigurationError
from surefoot.signing._digest import DigestAlgorithm
from surefoot.signing._hmac import HmacHeaders, HmacSigner
from surefoot.signing._protocols import Signer
from surefoot.signing._rfc9421 import (
    DEFAULT_REQUEST_COMPONENTS,
    Component,
    MessageSigner,
    SignatureKey,
)
from surefoot.signing._sigv4 import SigV4Credentials, SigV4Signer

if TYPE_CHECKING:
    from surefoot.oauth._token import Token

__all__ = ["SigningAuth"]


class SigningAuth(AuthBase):
    """Signs every attempt with ``signer``: ``SigningAuth(signer)``, or one of

    * ``SigningAuth.hmac(key_id, secret, **options)`` — the tutorial's scheme
      (:class:`~surefoot.signing.HmacSigner`; options ``headers``, ``clock``,
      ``nonce_factory``);
    * ``SigningAuth.rfc9421(key, **options)`` — RFC 9421 HTTP Message Signatures
      (:class:`~surefoot.signing.MessageSigner`) with an RFC 9530 ``Content-Digest`` of
      the body, covered (``content_digest="sha-256"``; ``"sha-512"``, or ``None`` for none);
    * ``SigningAuth.sigv4(access_key, secret_key, region, service, **options)`` — AWS
      Signature Version 4 (:class:`~surefoot.signing.SigV4Signer`); for rotating
      credentials, ``SigningAuth(SigV4Signer(get_credentials, region, service))``.

    The header names it sets (``credential_headers``), whether the body is covered
    (``signs_body``) and the clock of the signatures are the signer's.
    """

    def __init__(self, signer: Signer) -> None:
        if not isinstance(signer, Signer):
            raise ConfigurationError("signer must be a Signer (credential_headers, "
                                     "signs_body, clock, sign)")
        self.signer = signer

    def __repr__(self) -> str:
        return f"SigningAuth({self.signer!r})"  # the signers' reprs redact their secrets

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return self.signer.credential_headers

    @property
    def signs_body(self) -> bool:
        return self.signer.signs_body

    @property
    def clock(self) -> Clock:
        return self.signer.clock

    def attempt_headers(
        self, request: HttpRequest, token: Token | None, *, now: float
    ) -> dict[str, str]:
        return self.signer.sign(request, now=now)

    # -- one per built-in scheme --------------------------------------------------------

    @classmethod
    def hmac(
        cls,
        key_id: str,
        secret: str | bytes,
        *,
        headers: HmacHeaders | None = None,
        clock: Clock | None = None,
        nonce_factory: Callable[[], str] | None = None,
    ) -> SigningAuth:
        """The tutorial's API-key + timestamp + nonce + HMAC scheme
        (:class:`~surefoot.signing.HmacSigner`)."""
        return cls(HmacSigner(key_id, secret, headers=headers, clock=clock,
                              nonce_factory=nonce_factory))

    @classmethod
    def rfc9421(
        cls,
        key: SignatureKey,
        *,
        components: Iterable[str | Component] = DEFAULT_REQUEST_COMPONENTS,
        content_digest: DigestAlgorithm | None = "sha-256",
        label: str = "sig1",
        key_id: str | None = None,
        expires_in: float | None = None,
        include_alg: bool = False,
        tag: str | None = None,
        nonce_factory: Callable[[], str] | None = None,
        clock: Clock | None = None,
    ) -> SigningAuth:
        """RFC 9421 HTTP Message Signatures (:class:`~surefoot.signing.MessageSigner`).

        Covers ``@method``, ``@authority``, ``@path``, ``@query`` and ``content-digest``
        by default (``components=`` lists what to cover instead; field names cover the
        attempt's headers, as sent). Every signature carries a fresh ``created`` and nonce.
        """
        return cls(MessageSigner(
            key, components=components, content_digest=content_digest, label=label,
            key_id=key_id, expires_in=expires_in, include_alg=include_alg, tag=tag,
            nonce_factory=nonce_factory, clock=clock,
        ))

    @classmethod
    def sigv4(
        cls,
        access_key: str,
        secret_key: str,
        region: str,
        service: str,
        *,
        session_token: str | None = None,
        s3: bool | None = None,
        unsigned_payload: bool = False,
        content_sha256: bool | None = None,
        sign_session_token: bool = True,
        signed_headers: Iterable[str] | str = (),
        clock: Clock | None = None,
    ) -> SigningAuth:
        """AWS Signature Version 4 (:class:`~surefoot.signing.SigV4Signer`; options
        ``s3``, ``unsigned_payload``, ``content_sha256``, ``sign_session_token``,
        ``signed_headers``, ``clock``)."""
        credentials = SigV4Credentials(access_key, secret_key, session_token)
        return cls(SigV4Signer(
            credentials, region, service, s3=s3, unsigned_payload=unsigned_payload,
            content_sha256=content_sha256, sign_session_token=sign_session_token,
            signed_headers=signed_headers, clock=clock,
        ))
