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
    from surefoot._core._messages import HttpRequest as HttpRequest
    from surefoot.signing._auth import SigningAuth as SigningAuth
    from surefoot.signing._digest import DigestAlgorithm as DigestAlgorithm
    from surefoot.signing._digest import content_digest as content_digest
    from surefoot.signing._digest import verify_content_digest as verify_content_digest
    from surefoot.signing._hmac import HmacHeaders as HmacHeaders
    from surefoot.signing._hmac import HmacSigner as HmacSigner
    from surefoot.signing._hmac import HmacVerifier as HmacVerifier
    from surefoot.signing._protocols import Identity as Identity
    from surefoot.signing._protocols import SignedRequest as SignedRequest
    from surefoot.signing._protocols import Signer as Signer
    from surefoot.signing._protocols import Verifier as Verifier
    from surefoot.signing._rfc9421 import Component as Component
    from surefoot.signing._rfc9421 import MessageSigner as MessageSigner
    from surefoot.signing._rfc9421 import MessageVerifier as MessageVerifier
    from surefoot.signing._rfc9421 import RelatedRequest as RelatedRequest
    from surefoot.signing._rfc9421 import SignatureKey as SignatureKey
    from surefoot.signing._rfc9421 import VerifiedSignature as VerifiedSignature
    from surefoot.signing._sigv4 import CredentialsLike as CredentialsLike
    from surefoot.signing._sigv4 import SigV4Credentials as SigV4Credentials
    from surefoot.signing._sigv4 import SigV4Signer as SigV4Signer
    from surefoot.signing._sigv4 import SigV4Verifier as SigV4Verifier
else:  # names are imported on first use
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
