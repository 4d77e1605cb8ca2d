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
    ConfigurationError,
    InvalidClient,
    InvalidGrant,
    TokenEndpointError,
    TokenResponseError,
)

__all__ = [
    "MAX_TOKEN_LIFETIME",
    "Freshness",
    "StaticToken",
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
        """Rebuild a stored token; ``None`` for anything malformed.

        Total: any decoded JSON value gives a token or ``None``, never an exception
        (a store may hold anything: a corrupt file, another program's data). Times must
        be finite numbers (not booleans), ``version`` a non-negative integer, and
        ``access_token`` a string a request can carry (see :func:`_usable_token`).
        """
        if not isinstance(data, dict):
            return None
        access = data.get("access_token")
        if not isinstance(access, str) or not access or not _usable_token(access):
            return None
        expires = data.get("expires_at")
        obtained = _finite(data.get("obtained_at", 0.0))
        version = data.get("version", 0)
        refresh = data.get("refresh_token")
        scope = data.get("scope")
        token_type = data.get("token_type", "Bearer")
        expires_at = None if expires is None else _finite(expires)
        if expires is not None and expires_at is None:
            return None
        if obtained is None:
            return None
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            return None
        if not isinstance(token_type, str):
            return None
        return cls(
            access_token=access,
            token_type=token_type,
            expires_at=expires_at,
            obtained_at=obtained,
            refresh_token=refresh if isinstance(refresh, str) and _usable_token(refresh) else None,
            scope=scope if isinstance(scope, str) and _encodable(scope) else None,
            version=version,
        )


def _finite(value: object) -> float | None:
    """``value`` as a finite float; ``None`` for a boolean, a non-number, NaN, an
    infinity or an integer too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _encodable(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (JSON may decode lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _usable_token(text: str) -> bool:
    """Whether ``text`` is a token a request can carry: non-empty, and only visible
    ASCII characters and spaces (RFC 6749 Appendix A: ``1*VSCHAR``, %x20-7E). Anything
    else (a line break, a control character, a lone surrogate, non-ASCII) could not be
    sent in a header or a form, or would inject into one."""
    return bool(text) and text.isascii() and all(" " <= c <= "~" for c in text)


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


#: The longest lifetime an ``expires_in`` is taken at: ten years. A larger value (even one
#: of 400 digits) is clamped to it: the server means "does not expire soon", and the token
#: is used until it expires or the server answers 401, as with no ``expires_in`` at all.
MAX_TOKEN_LIFETIME = 10.0 * 365 * 86400
#: Digit strings longer than this are clamped without being converted to a number.
_MAX_DIGITS = 15


def _expires_in(value: Any) -> float | None:
    """The lifetime in seconds an ``expires_in`` stands for, at most
    :data:`MAX_TOKEN_LIFETIME`; ``None`` (unknown: the token is used until the server
    answers 401) for anything that is not a non-negative number or a string of ASCII
    digits: a boolean, NaN, an infinity, a negative number, ``"1e3"``, a list ..."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):  # any size: compared as an integer, never overflows
        return None if value < 0 else float(min(value, int(MAX_TOKEN_LIFETIME)))
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            return None
        return min(value, MAX_TOKEN_LIFETIME)
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            return None
        if len(text.lstrip("0")) > _MAX_DIGITS:
            return MAX_TOKEN_LIFETIME
        return min(float(text), MAX_TOKEN_LIFETIME)
    return None


def token_from_response_json(data: Any, *, now: float, status: int | None = None) -> Token:
    """A token from a decoded RFC 6749 §5.1 response body, or a typed error.

    Total: any decoded JSON value (or mapping from a token function) gives a
    :class:`Token` or a :class:`~surefoot.errors.TokenResponseError`. ``access_token``
    must be a usable token (see :func:`_usable_token`); ``token_type`` ``Bearer`` (any
    case) or absent. ``expires_in`` is read by :func:`_expires_in`: clamped to
    :data:`MAX_TOKEN_LIFETIME` (ten years) when larger, ignored (no known expiry) when it
    is not a non-negative number. A ``refresh_token`` or ``scope`` that is not a usable
    string is ignored, as if absent.
    """
    if not isinstance(data, dict):
        raise TokenResponseError("token response is not a JSON object")
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise TokenResponseError("token response has no access_token")
    if any(c in access for c in "\r\n"):
        raise TokenResponseError("access_token contains a line break")
    access = access.strip()
    if not _usable_token(access):
        raise TokenResponseError(
            "access_token contains characters a request cannot carry (RFC 6749: visible ASCII only)"
        )
    token_type = data.get("token_type", "Bearer")
    if not isinstance(token_type, str):
        raise TokenResponseError(f"unsupported token_type of type {type(token_type).__name__}")
    if token_type.lower() != "bearer":
        raise TokenResponseError(f"unsupported token_type {token_type[:20]!r}")
    lifetime = _expires_in(data.get("expires_in"))
    refresh = data.get("refresh_token")
    scope = data.get("scope")
    return Token(
        access_token=access,
        token_type="Bearer",
        expires_at=now + lifetime if lifetime is not None else None,
        obtained_at=now,
        refresh_token=refresh if isinstance(refresh, str) and _usable_token(refresh) else None,
        scope=scope if isinstance(scope, str) and _encodable(scope) else None,
    )


def _json_body(response: HttpResponse) -> Any:
    """The decoded JSON body; ``None`` for an empty body or anything that does not
    decode: not UTF-8, not JSON, nested too deeply (``RecursionError``), an integer past
    Python's digit limit (``ValueError``) ..."""
    if not response.body:
        return None
    try:
        return json.loads(bytes(response.body).decode("utf-8"))
    except (ValueError, RecursionError, OverflowError, TypeError):
        return None


def _printable(text: str) -> str:
    """``text`` with every character that is not printable (line breaks and other
    control characters, lone surrogates) replaced by ``?``: the server's words go into
    an error message, where they must neither forge log lines nor fail to encode."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _raise_endpoint_error(response: HttpResponse, data: Any) -> NoReturn:
    """RFC 6749 §5.2: a typed error from an error answer."""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        code = _printable(data["error"][:64])
        description = data.get("error_description")
        error_type = _ERRORS.get(code, TokenEndpointError)
        raise error_type(
            code,
            _printable(description) if isinstance(description, str) else None,
            status=response.status,
        )
    raise TokenEndpointError("http_error", status=response.status)


def parse_token_response(response: HttpResponse, *, now: float) -> Token:
    """Interpret a token endpoint's answer (RFC 6749 §5.1 / §5.2)."""
    data = _json_body(response)
    if 200 <= response.status < 300:
        if data is None:
            raise TokenResponseError(
                f"token endpoint answered HTTP {response.status} with a body that is not "
                f"JSON ({len(response.body)} bytes)"
            )
        if isinstance(data, dict) and "access_token" not in data and isinstance(
            data.get("error"), str
        ):
            # Some servers (and authlib's client) read an RFC 6749 §5.2 error body on a
            # 2xx as the endpoint's error: ``invalid_client`` stays ``InvalidClient``.
            _raise_endpoint_error(response, data)
        return token_from_response_json(data, now=now, status=response.status)
    _raise_endpoint_error(response, data)


TokenFunction = Callable[[], "str | Token | Mapping[str, Any]"]


class StaticToken:
    """A token that never changes (an API token from the environment, say), as a token
    function: ``BearerAuth("...")``. It has no expiry; after a 401 it is sent once more
    (the source has nothing newer), then the request gives up. ``repr`` never shows it."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        if not token or token != token.strip() or any(c in token for c in "\r\n"):
            raise ConfigurationError(
                "a static token must be a non-empty string without surrounding whitespace "
                "or line breaks")
        self._token = token

    def __call__(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


def token_from_callable_result(result: Any, *, now: float) -> Token:
    """A token from what a user's token function returned: a string, a :class:`Token`,
    or a mapping shaped like a token response (``access_token``, ``expires_in``)."""
    if isinstance(result, Token):
        return result
    if isinstance(result, str):
        if not result.strip() or any(c in result for c in "\r\n"):
            raise TokenResponseError("token function returned an empty or multi-line token")
        if not _usable_token(result.strip()):
            raise TokenResponseError(
                "token function returned a token with characters a request cannot carry "
                "(RFC 6749: visible ASCII only)"
            )
        return Token(access_token=result.strip(), obtained_at=now)
    if isinstance(result, Mapping):
        return token_from_response_json(dict(result), now=now)
    raise TokenResponseError(
        f"token function returned {type(result).__name__}, expected str, Token or mapping"
    )
