"""``MessageSignatureAuth``: RFC 9421 HTTP Message Signatures as an auth object.

It works wherever :class:`~surefoot.HmacAuth` does: ``surefoot.Client(auth=...)``,
``surefoot.httpx.Client(auth=...)`` (and the async client and transports),
``session.auth = ...`` on a plain ``requests.Session`` and ``httpx.Client(auth=...)``.
Every attempt (each retry, each same-origin redirect hop, the replay after a 401) is
signed afresh: a new ``created`` and a new nonce. With ``content_digest`` set (the
default, ``"sha-256"``) it also sends an RFC 9530 ``Content-Digest`` of the body and covers
it, so the signature protects the body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from surefoot._adapters._auth import AuthBase
from surefoot._core._clock import Clock
from surefoot._core._messages import HttpRequest
from surefoot.errors import ConfigurationError
from surefoot.oauth._token import Token
from surefoot.signing._digest import DigestAlgorithm, content_digest
from surefoot.signing._rfc9421 import (
    DEFAULT_REQUEST_COMPONENTS,
    Component,
    MessageSigner,
    SignatureKey,
)

__all__ = ["MessageSignatureAuth"]

_CONTENT_DIGEST = Component("content-digest")


class MessageSignatureAuth(AuthBase):
    """Signs every attempt with RFC 9421 HTTP Message Signatures.

    ``MessageSignatureAuth(SignatureKey("ed25519", private_key, key_id="my-key"))`` covers
    ``@method``, ``@authority``, ``@path``, ``@query`` and ``content-digest`` by default.
    ``components`` lists what to cover instead (field names cover the attempt's headers,
    as sent); ``content_digest`` is the RFC 9530 algorithm (``"sha-256"`` or
    ``"sha-512"``), or ``None`` to send no ``Content-Digest`` (one listed in
    ``components`` must then come with the request's own headers). ``label``,
    ``key_id``, ``tag``, ``expires_in``, ``include_alg`` and ``nonce_factory`` are those
    of :class:`~surefoot.MessageSigner`; every signature carries a nonce.
    """

    def __init__(
        self,
        key: SignatureKey,
        *,
        components: Iterable[str | Component] = DEFAULT_REQUEST_COMPONENTS,
        content_digest: DigestAlgorithm | None = "sha-256",
        label: str = "sig1",
        key_id: str | None = None,
        tag: str | None = None,
        expires_in: float | None = None,
        include_alg: bool = False,
        nonce_factory: Callable[[], str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if content_digest not in (None, "sha-256", "sha-512"):
            raise ConfigurationError("content_digest must be 'sha-256', 'sha-512' or None")
        comps = [c if isinstance(c, Component) else Component.parse(c) for c in components]
        covered = {c.canonical for c in comps}
        if content_digest is not None and _CONTENT_DIGEST.canonical not in covered:
            comps.append(_CONTENT_DIGEST)
        self.signer = MessageSigner(
            key,
            components=comps,
            label=label,
            key_id=key_id,
            expires_in=expires_in,
            nonce=True,
            nonce_factory=nonce_factory,
            include_alg=include_alg,
            tag=tag,
            clock=clock,
        )
        self.content_digest: DigestAlgorithm | None = content_digest
        #: The body is signed (through Content-Digest): a streaming body cannot be sent.
        self._signs_body = _CONTENT_DIGEST.canonical in {c.canonical for c in comps}
        names = ("Signature-Input", "Signature")
        self._credential_headers = names + (("Content-Digest",) if content_digest else ())

    def __repr__(self) -> str:
        return f"MessageSignatureAuth({self.signer.key!r}, label={self.signer.label!r})"

    @property
    def signs_body(self) -> bool:
        return self._signs_body

    @property
    def clock(self) -> Clock:
        return self.signer.clock

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return self._credential_headers

    def attempt_headers(
        self, request: HttpRequest, token: Token | None, *, now: float
    ) -> dict[str, str]:
        algorithm = self.content_digest
        if algorithm is None:
            return self.signer.sign_request(request.method, request.url, request.headers, now=now)
        digest = content_digest(request.body or None, algorithm)
        signed = self.signer.sign_request(
            request.method, request.url, request.headers, now=now,
            overrides={"content-digest": digest},
        )
        signed["Content-Digest"] = digest
        return signed
