"""The documented error tree.

Every error surefoot raises through its public API is a :class:`SurefootError`.
Adapters translate library-specific exceptions (``requests.ConnectionError``,
``httpx.ReadTimeout`` ...) into this tree at their boundary. The original is kept as
``RequestFailed.exception`` but not chained (``__cause__``), because its message may
carry the full URL with credentials in its query.

::

    SurefootError
    ├── ConfigurationError            (a ValueError) nonsense configuration, when built
    │   └── MissingExtra              (an ImportError) an optional dependency is not
    │                                 installed; the message names the pip install
    ├── RequestFailed                 a logical request did not succeed; carries .history
    │   ├── RetriesExhausted          retryable failures until max_attempts ran out
    │   ├── DeadlineExceeded          the next wait or attempt would overrun the deadline
    │   ├── RetryAfterTooLong         the server asked for a wait above the cap (.requested_wait)
    │   ├── CircuitOpen               the breaker is open: fails fast (.retry_in)
    │   ├── RetryBudgetExhausted      retries are over their share of recent traffic
    │   ├── NotRetryable              may not be retried (non-idempotent, unreplayable body)
    │   └── TransportError            failed below HTTP (.kind: connect, read_timeout, ...)
    ├── AuthError
    │   ├── Unauthorized              401 again after one refresh-and-replay
    │   ├── TokenError                a token could not be obtained
    │   │   ├── TokenEndpointError    RFC 6749 §5.2 error response (.error, .description)
    │   │   │   ├── InvalidClient     never retried
    │   │   │   └── InvalidGrant      never retried
    │   │   └── TokenResponseError    garbage from the token endpoint (not JSON, no token)
    │   ├── SigningError              the request cannot be signed (e.g. a streaming body)
    │   └── SignatureError            server side: a signature did not verify (.reason)
    │       ├── MissingHeader, MalformedSignature, UnknownKey, TimestampSkew,
    │       ├── BodyDigestMismatch, BadSignature, ReplayedNonce
    │       ├── SignatureExpired      (a TimestampSkew) an RFC 9421 ``expires`` has passed
    │       ├── MissingComponent      a covered component is absent from the message
    │       └── PolicyViolation       well-formed, but not what the verifier accepts
    │           ├── InsufficientCoverage  a required component or parameter is not signed
    │           ├── DisallowedAlgorithm   algorithm not allowed, or not the key's own
    │           ├── TagMismatch           the ``tag`` is not the expected one
    │           └── CredentialScopeMismatch  SigV4: another date/region/service
    └── StoreError                    a store (tokens, pacing, nonces) failed
        ├── StoreUnavailable          Redis/SQLite down or too slow (fail-closed stores)
        └── StoreConflict             a fenced write lost to a newer version

Messages never contain secrets: tokens, keys and signatures are never formatted into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from surefoot._core._history import Attempt

__all__ = [
    "AuthError",
    "BadSignature",
    "BodyDigestMismatch",
    "CircuitOpen",
    "ConfigurationError",
    "CredentialScopeMismatch",
    "DeadlineExceeded",
    "DisallowedAlgorithm",
    "InsufficientCoverage",
    "InvalidClient",
    "InvalidGrant",
    "MalformedSignature",
    "MissingComponent",
    "MissingExtra",
    "MissingHeader",
    "NotRetryable",
    "PolicyViolation",
    "ReplayedNonce",
    "RequestFailed",
    "RetriesExhausted",
    "RetryAfterTooLong",
    "RetryBudgetExhausted",
    "SignatureError",
    "SignatureExpired",
    "SigningError",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "SurefootError",
    "TagMismatch",
    "TimestampSkew",
    "TokenEndpointError",
    "TokenError",
    "TokenResponseError",
    "TransportError",
    "Unauthorized",
    "UnknownKey",
]


class SurefootError(Exception):
    """Base of every error surefoot raises."""


class ConfigurationError(SurefootError, ValueError):
    """A configuration value makes no sense; raised when the configuration is built."""


class MissingExtra(ConfigurationError, ImportError):
    """What was asked for needs an optional dependency that is not installed. ``extra``
    is the surefoot extra that installs it: ``pip install 'surefoot[<extra>]'`` (the
    message says so)."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        super().__init__(f"{what} needs {package}, which is not installed: "
                         f"pip install 'surefoot[{extra}]'")
        self.name = package
        self.extra = extra


class StoreError(SurefootError):
    """A store (tokens, pacing state, nonces) could not be read or written."""


class StoreUnavailable(StoreError):
    """A shared store (Redis, SQLite) is down, unreachable or too slow. Raised only by
    stores set to fail closed (``on_failure="closed"``); a store set to fail open falls
    back to local state instead, or by a full ``MemoryNonceCache`` (``when_full="refuse"``,
    its default: forgetting an unexpired nonce would open a replay window)."""


class StoreConflict(StoreError):
    """A fenced write lost: the stored value's version moved on (another holder wrote a
    newer one), so this write was refused."""


class RequestFailed(SurefootError):
    """A logical request did not succeed.

    ``history`` holds every attempt (status or error, wait before it, timing).
    ``response`` is the last native response object, if the last attempt produced one.
    """

    def __init__(
        self,
        message: str,
        *,
        history: Sequence[Attempt] = (),
        response: object = None,
    ) -> None:
        super().__init__(message)
        self.history: tuple[Attempt, ...] = tuple(history)
        self.response: object = response
        #: The HTTP library's exception behind the last attempt, if it failed below HTTP.
        self.exception: BaseException | None = None

    @property
    def attempts(self) -> int:
        return len(self.history)

    @property
    def status(self) -> int | None:
        """Status of the last attempt, if it got a response."""
        return self.history[-1].status if self.history else None


class RetriesExhausted(RequestFailed):
    """Every allowed attempt failed with a retryable outcome."""


class DeadlineExceeded(RequestFailed):
    """The logical request's deadline does not leave room for the next wait or attempt."""


class RetryAfterTooLong(RequestFailed):
    """The server asked for a wait longer than the configured cap; surefoot did not wait."""

    def __init__(
        self,
        message: str,
        *,
        requested_wait: float,
        history: Sequence[Attempt] = (),
        response: object = None,
    ) -> None:
        super().__init__(message, history=history, response=response)
        self.requested_wait = requested_wait


class CircuitOpen(RequestFailed):
    """The circuit breaker is open: the request fails fast, without waiting for the
    next probe (``RetryPolicy(circuit_wait=...)`` allows a wait; none runs past the
    deadline).

    ``retry_in`` is how many seconds until the breaker lets a probe through.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_in: float,
        history: Sequence[Attempt] = (),
        response: object = None,
    ) -> None:
        super().__init__(message, history=history, response=response)
        self.retry_in = retry_in


class RetryBudgetExhausted(RequestFailed):
    """A retryable failure, but retries are over their share of recent traffic."""


class NotRetryable(RequestFailed):
    """The attempt failed in a way that may not be retried (e.g. a POST whose read timed out)."""


class TransportError(RequestFailed):
    """The request failed below HTTP: no connection, a reset, a timeout.

    ``kind`` is one of the :class:`surefoot.FailureKind` values.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        history: Sequence[Attempt] = (),
        response: object = None,
    ) -> None:
        super().__init__(message, history=history, response=response)
        self.kind = kind


class AuthError(SurefootError):
    """Authentication or signing failed."""


class Unauthorized(AuthError, RequestFailed):
    """The server answered 401 again after one token refresh and replay."""

    def __init__(self, message: str, *, history: Sequence[Attempt] = (), response: object = None):
        RequestFailed.__init__(self, message, history=history, response=response)


class TokenError(AuthError):
    """A token could not be obtained."""


class TokenEndpointError(TokenError):
    """The token endpoint answered with an RFC 6749 §5.2 error."""

    def __init__(self, error: str, description: str | None = None, *, status: int | None = None):
        self.error = error
        self.description = description
        self.status = status
        text = f"token endpoint error {error!r}"
        if status is not None:
            text += f" (HTTP {status})"
        if description:
            text += f": {description[:200]}"
        super().__init__(text)

    #: Errors of this kind are never retried.
    retryable = False


class InvalidClient(TokenEndpointError):
    """``invalid_client``: the client credentials are wrong. Never retried."""


class InvalidGrant(TokenEndpointError):
    """``invalid_grant``: the grant (e.g. a refresh token) is invalid or revoked. Never retried."""


class TokenResponseError(TokenError):
    """The token endpoint answered something that is not a usable token response."""


class SigningError(AuthError):
    """The request cannot be signed."""


class SignatureError(AuthError):
    """Server side: the request's signature did not verify. ``reason`` is a short code."""

    reason = "invalid_signature"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.reason.replace("_", " "))


class MissingHeader(SignatureError):
    reason = "missing_header"


class MalformedSignature(SignatureError):
    reason = "malformed"


class UnknownKey(SignatureError):
    reason = "unknown_key"


class TimestampSkew(SignatureError):
    reason = "timestamp_skew"


class BodyDigestMismatch(SignatureError):
    reason = "body_digest_mismatch"


class BadSignature(SignatureError):
    reason = "bad_signature"


class ReplayedNonce(SignatureError):
    reason = "replayed_nonce"


class SignatureExpired(TimestampSkew):
    """A signature's expiry has passed: RFC 9421 ``expires``, or a SigV4 presigned URL's
    ``X-Amz-Expires``."""

    reason = "expired"


class MissingComponent(SignatureError):
    """A component the signature covers is absent from the message (RFC 9421)."""

    reason = "missing_component"


class PolicyViolation(SignatureError):
    """The signature is well-formed but the verifier's policy does not accept it."""

    reason = "policy_violation"


class InsufficientCoverage(PolicyViolation):
    """A component or signature parameter the policy requires is not covered."""

    reason = "insufficient_coverage"


class DisallowedAlgorithm(PolicyViolation):
    """The algorithm is not allowed, or is not the one the key is pinned to."""

    reason = "disallowed_algorithm"


class TagMismatch(PolicyViolation):
    """The signature's ``tag`` is not the one the verifier expects."""

    reason = "tag_mismatch"


class CredentialScopeMismatch(PolicyViolation):
    """SigV4: the credential scope (date, region, service, terminator) is not the
    verifier's."""

    reason = "credential_scope"
