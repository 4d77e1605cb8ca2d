"""surefoot: call third-party HTTP APIs without slipping.

Signed requests, self-refreshing tokens, and retries done right, for requests (and,
through the same sans-I/O core, other HTTP stacks). Importing ``surefoot`` imports no
HTTP library: the requests integration (:class:`Client`, :class:`SurefootAdapter`) is
loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from surefoot._core._clock import Clock, FakeClock, SystemClock, is_testing, set_testing, testing
from surefoot._core._history import Attempt, FailureKind
from surefoot._core._policy import RetryPolicy
from surefoot._core._retry_after import parse_http_date, parse_retry_after
from surefoot.errors import (
    AuthError,
    BadSignature,
    BodyDigestMismatch,
    CircuitOpen,
    ConfigurationError,
    CredentialScopeMismatch,
    DeadlineExceeded,
    DisallowedAlgorithm,
    InsufficientCoverage,
    InvalidClient,
    InvalidGrant,
    MalformedSignature,
    MissingComponent,
    MissingHeader,
    NotRetryable,
    PolicyViolation,
    ReplayedNonce,
    RequestFailed,
    RetriesExhausted,
    RetryAfterTooLong,
    RetryBudgetExhausted,
    SignatureError,
    SignatureExpired,
    SigningError,
    StoreConflict,
    StoreError,
    StoreUnavailable,
    SurefootError,
    TagMismatch,
    TimestampSkew,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    TransportError,
    Unauthorized,
    UnknownKey,
)
from surefoot.events import Event, EventKind, Hook, LoggingHook, redact_url
from surefoot.oauth._cache import TokenCache
from surefoot.oauth._grants import (
    ClientAuth,
    ClientCredentials,
    ClientSecretBasic,
    ClientSecretPost,
    Grant,
    PrivateKeyJwt,
    PublicClient,
    RefreshTokenGrant,
    RevocableGrant,
    Token,
)
from surefoot.pacing._adaptive import AdaptiveConfig
from surefoot.pacing._breaker import BreakerConfig
from surefoot.pacing._budget import RetryBudgetConfig
from surefoot.pacing._gcra import Quota, RateLimiter
from surefoot.pacing._pacer import Pacer, Pacing
from surefoot.signing._digest import content_digest, verify_content_digest
from surefoot.signing._hmac import HmacHeaders, HmacSigner, HmacVerifier, MemoryNonceCache
from surefoot.signing._rfc9421 import (
    MessageSigner,
    MessageVerifier,
    RelatedRequest,
    SignatureKey,
    VerifiedSignature,
)
from surefoot.signing._sigv4 import SigV4Credentials, SigV4Signer, SigV4Verifier
from surefoot.stores._facades import MemoryStore, RedisStore, SQLiteStore
from surefoot.stores._tokens import FileTokenStore, MemoryTokenStore, TokenStore

if TYPE_CHECKING:
    from surefoot._adapters._auth import BearerAuth, HmacAuth
    from surefoot._adapters._client import Client
    from surefoot._adapters._requests import SurefootAdapter
    from surefoot.signing._auth_rfc9421 import MessageSignatureAuth
    from surefoot.signing._auth_sigv4 import SigV4Auth

__version__ = "0.1.0"

__all__ = [
    "AdaptiveConfig",
    "Attempt",
    "AuthError",
    "BadSignature",
    "BearerAuth",
    "BodyDigestMismatch",
    "BreakerConfig",
    "CircuitOpen",
    "Client",
    "ClientAuth",
    "ClientCredentials",
    "ClientSecretBasic",
    "ClientSecretPost",
    "Clock",
    "ConfigurationError",
    "CredentialScopeMismatch",
    "DeadlineExceeded",
    "DisallowedAlgorithm",
    "Event",
    "EventKind",
    "FailureKind",
    "FakeClock",
    "FileTokenStore",
    "Grant",
    "HmacAuth",
    "HmacHeaders",
    "HmacSigner",
    "HmacVerifier",
    "Hook",
    "InsufficientCoverage",
    "InvalidClient",
    "InvalidGrant",
    "LoggingHook",
    "MalformedSignature",
    "MemoryNonceCache",
    "MemoryStore",
    "MemoryTokenStore",
    "MessageSignatureAuth",
    "MessageSigner",
    "MessageVerifier",
    "MissingComponent",
    "MissingHeader",
    "NotRetryable",
    "Pacer",
    "Pacing",
    "PolicyViolation",
    "PrivateKeyJwt",
    "PublicClient",
    "Quota",
    "RateLimiter",
    "RedisStore",
    "RefreshTokenGrant",
    "RelatedRequest",
    "ReplayedNonce",
    "RequestFailed",
    "RetriesExhausted",
    "RetryAfterTooLong",
    "RetryBudgetConfig",
    "RetryBudgetExhausted",
    "RetryPolicy",
    "RevocableGrant",
    "SQLiteStore",
    "SigV4Auth",
    "SigV4Credentials",
    "SigV4Signer",
    "SigV4Verifier",
    "SignatureError",
    "SignatureExpired",
    "SignatureKey",
    "SigningError",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "SurefootAdapter",
    "SurefootError",
    "SystemClock",
    "TagMismatch",
    "TimestampSkew",
    "Token",
    "TokenCache",
    "TokenEndpointError",
    "TokenError",
    "TokenResponseError",
    "TokenStore",
    "TransportError",
    "Unauthorized",
    "UnknownKey",
    "VerifiedSignature",
    "__version__",
    "content_digest",
    "history_of",
    "is_testing",
    "parse_http_date",
    "parse_retry_after",
    "redact_url",
    "set_testing",
    "testing",
    "verify_content_digest",
]

# Loaded on first use, so that ``import surefoot`` imports no HTTP library. The auth
# objects are also ``httpx.Auth`` subclasses when httpx is installed.
_LAZY = {
    "BearerAuth": "surefoot._adapters._auth",
    "Client": "surefoot._adapters._client",
    "HmacAuth": "surefoot._adapters._auth",
    "MessageSignatureAuth": "surefoot.signing._auth_rfc9421",
    "SigV4Auth": "surefoot.signing._auth_sigv4",
    "SurefootAdapter": "surefoot._adapters._requests",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'surefoot' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def history_of(response: Any) -> tuple[Attempt, ...]:
    """The attempt history surefoot recorded for a response (empty if none)."""
    history = getattr(response, "surefoot_history", None)
    if history is None:
        extensions = getattr(response, "extensions", None)
        if isinstance(extensions, dict):
            history = extensions.get("surefoot.history")
    return tuple(history or ())
