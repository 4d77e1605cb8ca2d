"""OAuth2: the token endpoint ``/oauth/token`` (client credentials; refresh tokens with
rotation and reuse detection), RFC 7009 revocation at ``/oauth/revoke``, and the bearer
protected ``/protected``."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, unquote_plus

from surefoot.sandbox._group import RouteGroup
from surefoot.sandbox._http import (
    Headers,
    Route,
    _bearer,
    _error,
    _json,
    _method_not_allowed,
    _not_found,
    _Req,
    _Resp,
)

__all__ = ["OAuthRoutes"]

if TYPE_CHECKING:
    from surefoot.sandbox._app import SandboxConfig


@dataclass(slots=True)
class _Token:
    client_id: str
    scope: str | None
    expires_at: float


@dataclass(slots=True)
class _Refresh:
    client_id: str
    scope: str | None
    family: str


class OAuthRoutes(RouteGroup):
    """Issued access and refresh tokens, and the OAuth2 counters."""

    def __init__(self, config: SandboxConfig, lock: threading.Lock) -> None:
        super().__init__(lock)
        self._config = config
        self.clear()

    def routes(self) -> dict[str, Route]:
        return {
            "oauth": ("/oauth/token", self._oauth),  # /oauth/revoke is counted here too
            "protected": ("/protected", self._protected),
        }

    def clear(self) -> None:
        self._tokens: dict[str, _Token] = {}
        self._refresh_tokens: dict[str, _Refresh] = {}
        self._rotated: dict[str, str] = {}  # a used refresh token -> its family
        self._tokens_issued = 0
        self._refreshes = 0
        self._invalid_grants = 0
        self._refresh_reuses = 0
        self._revocations = 0

    def stats(self) -> dict[str, Any]:
        return {
            "tokens_issued": self._tokens_issued,
            "refreshes": self._refreshes,
            "invalid_grants": self._invalid_grants,
            "refresh_reuses": self._refresh_reuses,
            "revocations": self._revocations,
        }

    # -- for the other groups (caller holds the lock) --------------------------------------

    def client_of(self, token: str, now: float) -> str | None:
        """The client of a live access token, else None."""
        found = self._tokens.get(token)
        if found is not None and found.expires_at > now:
            return found.client_id
        return None

    def revoke_all(self) -> int:
        """Drop every access token (refresh tokens stay); how many there were."""
        revoked = len(self._tokens)
        self._tokens.clear()
        return revoked

    # -- routes ----------------------------------------------------------------------------

    def _oauth(self, req: _Req) -> _Resp:
        if req.rest not in ("token", "revoke"):
            return _not_found(req)
        if req.method != "POST":
            return _method_not_allowed("POST")
        no_store = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
        content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _error(400, "invalid_request", no_store, error_description="expected a form")
        try:
            form = parse_qs(req.body().decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return _error(400, "invalid_request", no_store, error_description="body not UTF-8")
        if any(len(values) > 1 for values in form.values()):
            return _error(400, "invalid_request", no_store, error_description="repeated parameter")
        params = {k: v[0] for k, v in form.items()}

        basic = _basic_credentials(req)
        if basic is False:
            return self._invalid_client(no_store, basic=True)
        if basic is not None and "client_secret" in params:
            return _error(400, "invalid_request", no_store, error_description="two auth methods")
        if req.rest == "revoke":
            return self._revoke(params, basic, no_store)
        grant_type = params.get("grant_type")
        if not grant_type:
            return _error(400, "invalid_request", no_store, error_description="grant_type missing")
        if grant_type not in ("client_credentials", "refresh_token"):
            return _error(400, "unsupported_grant_type", no_store)
        client_id = self._authenticate(params, basic)
        if client_id is None:
            return self._invalid_client(no_store, basic=basic is not None)
        if grant_type == "refresh_token":
            return self._refresh(params, client_id, no_store)
        scope = params.get("scope") or None
        return self._issue(client_id, scope, None, no_store)

    def _authenticate(
        self, params: dict[str, str], basic: tuple[str, str] | None
    ) -> str | None:
        """The authenticated client id (Basic or form credentials), else None."""
        if basic is not None:
            client_id, secret = basic
        elif "client_id" in params and "client_secret" in params:
            client_id, secret = params["client_id"], params["client_secret"]
        else:
            return None
        expected = self._config.clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return None
        return client_id

    def _issue(
        self, client_id: str, scope: str | None, family: str | None, headers: Headers
    ) -> _Resp:
        """A new access token (and, with refresh tokens on, a new refresh token of
        ``family``, a new family when None)."""
        token = secrets.token_urlsafe(32)
        ttl = self._config.token_ttl
        now = time.monotonic()
        refresh = secrets.token_urlsafe(32) if self._config.refresh_tokens else None
        with self._lock:
            if len(self._tokens) >= 10_000:
                self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
            self._tokens[token] = _Token(client_id, scope, now + ttl)
            self._tokens_issued += 1
            if refresh is not None:
                if len(self._refresh_tokens) >= 10_000:
                    self._refresh_tokens.clear()
                self._refresh_tokens[refresh] = _Refresh(client_id, scope, family or refresh)
        payload: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(ttl),
        }
        if refresh is not None:
            payload["refresh_token"] = refresh
        if scope is not None:
            payload["scope"] = scope
        return _json(200, payload, headers)

    def _refresh(self, params: dict[str, str], client_id: str, headers: Headers) -> _Resp:
        """RFC 6749 §6 with rotation: the refresh token works once; presenting a rotated
        one is ``invalid_grant`` and revokes its family."""
        presented = params.get("refresh_token")
        if not presented:
            return _error(400, "invalid_request", headers,
                          error_description="refresh_token missing")
        requested = params.get("scope") or None
        with self._lock:
            found = self._refresh_tokens.get(presented)
            if found is None or found.client_id != client_id:
                self._invalid_grants += 1
                family = self._rotated.get(presented)
                if family is not None:  # reuse of a rotated token: end the family
                    self._refresh_reuses += 1
                    self._refresh_tokens = {
                        k: v for k, v in self._refresh_tokens.items() if v.family != family
                    }
                return _error(400, "invalid_grant", headers)
            granted = set((found.scope or "").split())
            if requested is not None and not set(requested.split()) <= granted:
                return _error(400, "invalid_scope", headers)
            del self._refresh_tokens[presented]
            if len(self._rotated) >= 100_000:
                self._rotated.clear()
            self._rotated[presented] = found.family
            self._refreshes += 1
        return self._issue(client_id, requested or found.scope, found.family, headers)

    def _revoke(
        self, params: dict[str, str], basic: tuple[str, str] | None, headers: Headers
    ) -> _Resp:
        """RFC 7009: revoke an access or refresh token of the authenticated client (a
        refresh token takes its family with it). Unknown tokens are fine (200)."""
        client_id = self._authenticate(params, basic)
        if client_id is None:
            return self._invalid_client(headers, basic=basic is not None)
        token = params.get("token")
        if not token:
            return _error(400, "invalid_request", headers, error_description="token missing")
        hint = params.get("token_type_hint")
        if hint not in (None, "access_token", "refresh_token"):
            return _error(400, "unsupported_token_type", headers)
        with self._lock:
            access = self._tokens.get(token)
            if access is not None and access.client_id == client_id:
                del self._tokens[token]
                self._revocations += 1
            refresh = self._refresh_tokens.get(token)
            if refresh is not None and refresh.client_id == client_id:
                self._refresh_tokens = {
                    k: v for k, v in self._refresh_tokens.items() if v.family != refresh.family
                }
                self._revocations += 1
        return _json(200, {}, headers)

    @staticmethod
    def _invalid_client(headers: Headers, *, basic: bool) -> _Resp:
        if basic:
            headers = [*headers, ("WWW-Authenticate", 'Basic realm="sandbox"')]
        return _error(401, "invalid_client", headers)

    def _protected(self, req: _Req) -> _Resp:
        token = _bearer(req)
        if token is None:
            return _error(401, "unauthorized", [("WWW-Authenticate", 'Bearer realm="sandbox"')])
        now = time.monotonic()
        with self._lock:
            found = self._tokens.get(token)
        if found is None or found.expires_at <= now:
            return _error(
                401,
                "invalid_token",
                [("WWW-Authenticate", 'Bearer realm="sandbox", error="invalid_token"')],
            )
        return _json(200, {"ok": True, "client_id": found.client_id, "scope": found.scope})


def _basic_credentials(req: _Req) -> tuple[str, str] | Literal[False] | None:
    """(id, secret) from a Basic header; None without one; False if it is malformed."""
    auth = req.header("Authorization")
    if not auth:
        return None
    scheme, _, encoded = auth.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return False
    return unquote_plus(client_id), unquote_plus(secret)
