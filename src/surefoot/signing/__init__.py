"""Request signing and verification: the tutorial's HMAC scheme done right, RFC 9421 HTTP
Message Signatures (with RFC 9530 Content-Digest) and AWS Signature Version 4.

Clients attach a signer through an auth object (:class:`HmacAuth`,
:class:`MessageSignatureAuth`, :class:`SigV4Auth`); servers check requests with the
matching verifier (directly, or through :mod:`surefoot.middleware`). Verifiers keep the
nonces they have seen in a :class:`~surefoot.stores.NonceCache`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot._lazy import attach

if TYPE_CHECKING:
    from surefoot.signing._auth import HmacAuth
    from surefoot.signing._auth_rfc9421 import MessageSignatureAuth
    from surefoot.signing._auth_sigv4 import SigV4Auth
    from surefoot.signing._digest import DigestAlgorithm, content_digest, verify_content_digest
    from surefoot.signing._hmac import HmacHeaders, HmacSigner, HmacVerifier
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
    "HmacAuth",
    "HmacHeaders",
    "HmacSigner",
    "HmacVerifier",
    "MessageSignatureAuth",
    "MessageSigner",
    "MessageVerifier",
    "RelatedRequest",
    "SigV4Auth",
    "SigV4Credentials",
    "SigV4Signer",
    "SigV4Verifier",
    "SignatureKey",
    "VerifiedSignature",
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
            "HmacAuth": "surefoot.signing._auth",
            "HmacHeaders": "surefoot.signing._hmac",
            "HmacSigner": "surefoot.signing._hmac",
            "HmacVerifier": "surefoot.signing._hmac",
            "MessageSignatureAuth": "surefoot.signing._auth_rfc9421",
            "MessageSigner": "surefoot.signing._rfc9421",
            "MessageVerifier": "surefoot.signing._rfc9421",
            "RelatedRequest": "surefoot.signing._rfc9421",
            "SigV4Auth": "surefoot.signing._auth_sigv4",
            "SigV4Credentials": "surefoot.signing._sigv4",
            "SigV4Signer": "surefoot.signing._sigv4",
            "SigV4Verifier": "surefoot.signing._sigv4",
            "SignatureKey": "surefoot.signing._rfc9421",
            "VerifiedSignature": "surefoot.signing._rfc9421",
            "content_digest": "surefoot.signing._digest",
            "verify_content_digest": "surefoot.signing._digest",
        },
    )
