"""``SigV4Auth``: AWS Signature Version 4 as a surefoot auth object.

Works wherever the other auth objects do: ``session.auth = SigV4Auth(...)`` (requests),
``surefoot.Client(auth=...)``, ``surefoot.httpx.Client(auth=...)`` and
``httpx.Client(auth=...)``. Every attempt (each retry, each same-origin redirect hop) is
signed afresh, with a new ``X-Amz-Date``; the signature headers never follow a redirect to
another origin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from surefoot._adapters._auth import AuthBase
from surefoot._core._clock import Clock
from surefoot._core._messages import HttpRequest
from surefoot.oauth._token import Token
from surefoot.signing._sigv4 import CredentialsLike, SigV4Credentials, SigV4Signer

__all__ = ["SigV4Auth"]


class SigV4Auth(AuthBase):
    """Signs every attempt with AWS Signature Version 4 (``AWS4-HMAC-SHA256``).

    ``SigV4Auth(access_key, secret_key, region, service, session_token=None)``, or
    :meth:`from_credentials` with a function returning fresh credentials (anything with
    ``access_key``, ``secret_key`` and ``token``, e.g. botocore's frozen credentials).

    Options (see :class:`surefoot.signing._sigv4.SigV4Signer`): ``s3`` (default: the service
    is S3; no path normalisation or double encoding, ``X-Amz-Content-SHA256`` sent),
    ``unsigned_payload`` (``UNSIGNED-PAYLOAD`` instead of the body's hash),
    ``content_sha256`` (send ``X-Amz-Content-SHA256`` outside S3 too),
    ``sign_session_token``, ``signed_headers`` (more header names to sign, or ``"all"``).
    Signed by default: ``host``, ``x-amz-date``, the session token, ``x-amz-content-sha256``
    when sent, ``content-type``, ``content-md5`` and every ``x-amz-*`` header of the request.
    """

    @property
    def signs_body(self) -> bool:
        return True

    @property
    def clock(self) -> Clock:
        return self.signer.clock

    def __init__(
        self,
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
    ) -> None:
        self.signer = SigV4Signer(
            SigV4Credentials(access_key, secret_key, session_token),
            region,
            service,
            s3=s3,
            unsigned_payload=unsigned_payload,
            content_sha256=content_sha256,
            sign_session_token=sign_session_token,
            signed_headers=signed_headers,
            clock=clock,
        )

    @classmethod
    def from_credentials(
        cls,
        credentials: SigV4Credentials | Callable[[], CredentialsLike],
        region: str,
        service: str,
        **options: Any,
    ) -> SigV4Auth:
        """From :class:`SigV4Credentials` or a function returning credentials (called on
        every attempt: rotate temporary credentials there; cache them in the function)."""
        auth = cls.__new__(cls)
        auth.signer = SigV4Signer(credentials, region, service, **options)
        return auth

    def __repr__(self) -> str:
        s = self.signer
        return f"SigV4Auth(region={s.region!r}, service={s.service!r}, secret=<redacted>)"

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256")

    def attempt_headers(
        self, request: HttpRequest, token: Token | None, *, now: float
    ) -> dict[str, str]:
        return self.signer.sign(request.method, request.url, request.body or None,
                                headers=request.headers, now=now)

    def presign(self, method: str, url: str, *, expires: int = 3600) -> str:
        """A presigned URL for ``url`` (query authentication), valid ``expires`` seconds."""
        return self.signer.presign(method, url, expires=expires)
