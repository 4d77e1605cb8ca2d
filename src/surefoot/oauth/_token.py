"""The token: its value, its lifecycle (fresh, refresh soon, expired) and the parsing of
token-endpoint answers into it. Pure.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from surefoot._core._messages import HttpResponse
from surefoot.errors import (
    InvalidClient,
    InvalidGrant,
    TokenEndpointError,
    TokenResponseError,
)

__all__ = [
    "Freshness",
    "Token",
    "TokenFunction",
    "freshness",
    "leeway_for",
    "parse_token_response",
    "token_from_callable_result",
    "token_from_response_json",
]


@dataclass(frozen=True, slots=True)
class Token:
    """An access token. Its secrets never appear in ``repr`` or ``str``.

    ``expires_at`` and ``obtained_at`` are Unix times (``expires_at`` ``None``: unknown,
    used until the server answers 401). ``version`` increases with every refresh.
    """

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    expires_at: float | None = None
    obtained_at: float = 0.0
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    version: int = 0

    def __repr__(self) -> str:
        return (
            f"Token(fingerprint={self.fingerprint!r}, token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, version={self.version})"
        )

    __str__ = __repr__

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible id of the access token, safe to log."""
        return hashlib.sha256(self.access_token.encode()).hexdigest()[:10]

    def to_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "obtained_at": self.obtained_at,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: object) -> Token | None:
        """Rebuild a stored token; ``None`` for anything malformed."""
        if not isinstance(data, dict):
            return None
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            return None
        expires = data.get("expires_at")
        obtained = data.get("obtained_at", 0.0)
        version = data.get("version", 0)
        refresh = data.get("refresh_token")
        scope = data.get("scope")
        token_type = data.get("token_type", "Bearer")
        if expires is not None and not (
            isinstance(expires, (int, float)) and math.isfinite(expires)
        ):
            return None
        if not isinstance(obtained, (int, float)) or not isinstance(version, int):
            return None
        if not isinstance(token_type, str):
            return None
        return cls(
            access_token=access,
            token_type=token_type,
            expires_at=float(expires) if expires is not None else None,
            obtained_at=float(obtained),
            refresh_token=refresh if isinstance(refresh, str) else None,
            scope=scope if isinstance(scope, str) else None,
            version=version,
        )


class Freshness(str, enum.Enum):
    FRESH = "fresh"  # use it
    REFRESH_SOON = "refresh_soon"  # still valid: one caller refreshes, the others use it
    EXPIRED = "expired"  # must not be sent: wait for a new one


def leeway_for(token: Token, *, leeway: float, leeway_ratio: float) -> float:
    """How long before expiry a refresh starts: ``leeway`` seconds, but at most
    ``leeway_ratio`` of the token's lifetime, so a 30 s token is not refreshed on every
    call."""
    if token.expires_at is None:
        return 0.0
    lifetime = max(token.expires_at - token.obtained_at, 0.0)
    return min(leeway, lifetime * leeway_ratio)


def freshness(
    token: Token | None, now: float, *, leeway: float = 60.0, leeway_ratio: float = 0.1
) -> Freshness:
    if token is None:
        return Freshness.EXPIRED
    if token.expires_at is None:
        return Freshness.FRESH
    # A token that expires within a second is not worth sending.
    if now >= token.expires_at - 1.0:
        return Freshness.EXPIRED
    if now >= token.expires_at - leeway_for(token, leeway=leeway, leeway_ratio=leeway_ratio):
        return Freshness.REFRESH_SOON
    return Freshness.FRESH


_ERRORS: dict[str, type[TokenEndpointError]] = {
    "invalid_client": InvalidClient,
    "invalid_grant": InvalidGrant,
}


def _expires_in(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = float(value.strip())
    else:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return min(number, 10.0 * 365 * 86400)


def token_from_response_json(data: Any, *, now: float, status: int | None = None) -> Token:
    """A token from a decoded RFC 6749 §5.1 response body, or a typed error."""
    if not isinstance(data, dict):
        raise TokenResponseError("token response is not a JSON object")
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise TokenResponseError("token response has no access_token")
    if any(c in access for c in "\r\n"):
        raise TokenResponseError("access_token contains a line break")
    token_type = data.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenResponseError(f"unsupported token_type {str(token_type)[:20]!r}")
    lifetime = _expires_in(data.get("expires_in"))
    refresh = data.get("refresh_token")
    scope = data.get("scope")
    return Token(
        access_token=access.strip(),
        token_type="Bearer",
        expires_at=now + lifetime if lifetime is not None else None,
        obtained_at=now,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=scope if isinstance(scope, str) else None,
    )


def _json_body(response: HttpResponse) -> Any:
    try:
        return json.loads(response.body.decode("utf-8")) if response.body else None
    except (UnicodeDecodeError, ValueError):
        return None


def _raise_endpoint_error(response: HttpResponse, data: Any) -> NoReturn:
    """RFC 6749 §5.2: a typed error from an error answer."""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        code = data["error"][:64]
        description = data.get("error_description")
        error_type = _ERRORS.get(code, TokenEndpointError)
        raise error_type(
            code,
            description if isinstance(description, str) else None,
            status=response.status,
        )
    raise TokenEndpointError("http_error", f"HTTP {response.status}", status=response.status)


def parse_token_response(response: HttpResponse, *, now: float) -> Token:
    """Interpret a token endpoint's answer (RFC 6749 §5.1 / §5.2)."""
    data = _json_body(response)
    if 200 <= response.status < 300:
        if data is None:
            raise TokenResponseError(
                f"token endpoint answered HTTP {response.status} with a body that is not "
                f"JSON ({len(response.body)} bytes)"
            )
        return token_from_response_json(data, now=now, status=response.status)
    _raise_endpoint_error(response, data)


TokenFunction = Callable[[], "str | Token | Mapping[str, Any]"]


def token_from_callable_result(result: Any, *, now: float) -> Token:
    """A token from what a user's token function returned: a string, a :class:`Token`,
    or a mapping shaped like a token response (``access_token``, ``expires_in``)."""
    if isinstance(result, Token):
        return result
    if isinstance(result, str):
        if not result.strip() or any(c in result for c in "\r\n"):
            raise TokenResponseError("token function returned an empty or multi-line token")
        return Token(access_token=result.strip(), obtained_at=now)
    if isinstance(result, Mapping):
        return token_from_response_json(dict(result), now=now)
    raise TokenResponseError(
        f"token function returned {type(result).__name__}, expected str, Token or mapping"
    )
