"""Request signing and verification: the tutorial's HMAC scheme done right, RFC 9421 HTTP
Message Signatures (with RFC 9530 Content-Digest) and AWS Signature Version 4.

Every scheme has one shape: its signer is a :class:`Signer` (``sign(request, now=)``: the
headers to add to one attempt of an :class:`HttpRequest`) and its verifier a
:class:`Verifier` (``verify(request, now=)``: a received :class:`SignedRequest` in, the
signer's :class:`Identity` out). Clients attach any signer with :class:`SigningAuth`
(``SigningAuth.hmac(...)``, ``.rfc9421(...)``, ``.sigv4(...)``); servers check requests
with the matching verifier (directly, or through :mod:`surefoot.middleware`). Verifiers
keep the nonces they have seen in a :class:`~surefoot.stores.NonceCache`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot._lazy import attach

if TYPE_CHECKING:
    from surefoot._core._messages import HttpRequest
    from surefoot.signing._auth import SigningAuth
    from surefoot.signing._digest import DigestAlgorithm, content_digest, verify_content_digest
    from surefoot.signing._hmac import HmacHeaders, HmacSigner, HmacVerifier
    from surefoot.signing._protocols import Identity, SignedRequest, Signer, Verifier
    from surefoot.signing._rfc9421 import (
        Component,
        MessageSigner,
        MessageVerifier,
        RelatedRequest,
        SignatureKey,
        VerifiedSignature,
    )
    from surefoot.signing._sigv4 import (
        CredentialsLike,
        SigV4Credentials,
        SigV4Signer,
        SigV4Verifier,
    )

__all__ = [
    "Component",
    "CredentialsLike",
    "DigestAlgorithm",
    "HmacHeaders",
    "HmacSigner",
    "HmacVerifier",
    "HttpRequest",
    "Identity",
    "MessageSigner",
    "MessageVerifier",
    "RelatedRequest",
    "SigV4Credentials",
    "SigV4Signer",
    "SigV4Verifier",
    "SignatureKey",
    "SignedRequest",
    "Signer",
    "SigningAuth",
    "VerifiedSignature",
    "Verifier",
    "content_digest",
    "verify_content_digest",
]

if not TYPE_CHECKING:  # names are imported on first use
    __getattr__, __dir__ = attach(
        __name__,
        {
            "Component": "surefoot.signing._rfc9421",
            "CredentialsLike": "surefoot.signing._sigv4",
            "DigestAlgorithm": "surefoot.signing._digest",
            "HmacHeaders": "surefoot.signing._hmac",
            "HmacSigner": "surefoot.signing._hmac",
            "HmacVerifier": "surefoot.signing._hmac",
            "HttpRequest": "surefoot._core._messages",
            "Identity": "surefoot.signing._protocols",
            "MessageSigner": "surefoot.signing._rfc9421",
            "MessageVerifier": "surefoot.signing._rfc9421",
            "RelatedRequest": "surefoot.signing._rfc9421",
            "SigV4Credentials": "surefoot.signing._sigv4",
            "SigV4Signer": "surefoot.signing._sigv4",
            "SigV4Verifier": "surefoot.signing._sigv4",
            "SignatureKey": "surefoot.signing._rfc9421",
            "SignedRequest": "surefoot.signing._protocols",
            "Signer": "surefoot.signing._protocols",
            "SigningAuth": "surefoot.signing._auth",
            "VerifiedSignature": "surefoot.signing._rfc9421",
            "Verifier": "surefoot.signing._protocols",
            "content_digest": "surefoot.signing._digest",
            "verify_content_digest": "surefoot.signing._digest",
        },
    )
