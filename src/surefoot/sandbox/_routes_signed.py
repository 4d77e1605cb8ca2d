"""Signed requests: ``/signed/*`` (the tutorial's HMAC scheme) and ``/signed-rfc9421/*``
(RFC 9421 ``hmac-sha256``), verified by :class:`surefoot.middleware.VerifyWSGI` as a
user's application would be.

The only sandbox module (with :mod:`._app` and :mod:`._cli` for ``ConfigurationError``)
that imports the rest of surefoot.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from surefoot._core._clock import SystemClock
from surefoot.errors import ReplayedNonce, SignatureError, StoreError
from surefoot.middleware import SignedRequest, VerifyWSGI, identity
from surefoot.sandbox._group import RouteGroup
from surefoot.sandbox._http import Route, _error, _json, _Req, _Resp
from surefoot.signing._hmac import HmacVerifier
from surefoot.signing._rfc9421 import MessageVerifier, SignatureKey
from surefoot.stores._memory import MemoryNonceCache

__all__ = ["SignedRoutes"]

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from surefoot.sandbox._app import SandboxConfig


class SignedRoutes(RouteGroup):
    """The verification pipeline (rebuilt, with fresh nonce caches, on every reset) and
    the rejection counters."""

    def __init__(
        self, config: SandboxConfig, lock: threading.Lock, inner: WSGIApplication
    ) -> None:
        super().__init__(lock)
        self._config = config
        self._inner = inner
        self.clear()

    def routes(self) -> dict[str, Route]:
        return {
            "signed": ("/signed", self._signed),
            "signed-rfc9421": ("/signed-rfc9421", self._signed),
        }

    def clear(self) -> None:
        self._rejections: dict[str, int] = {}
        self._replays = 0
        self.pipeline = self._build_pipeline()
        """The inner application behind the middleware of the signed routes."""

    def stats(self) -> dict[str, Any]:
        return {"signature_rejections": dict(self._rejections), "replays": self._replays}

    def _build_pipeline(self) -> WSGIApplication:
        cfg = self._config
        hmac_verifier = HmacVerifier(
            dict(cfg.hmac_keys),
            skew=cfg.skew,
            nonces=MemoryNonceCache(max_entries=100_000),
            clock=SystemClock(),
        )
        rfc9421_verifier = MessageVerifier(
            {
                key_id: SignatureKey("hmac-sha256", secret, key_id=key_id)
                for key_id, secret in cfg.rfc9421_keys.items()
            },
            require_content_digest=True,
            max_age=cfg.skew,
            skew=min(cfg.skew, 30.0),
            nonces=MemoryNonceCache(max_entries=100_000),
            clock=SystemClock(),
        )
        return VerifyWSGI(
            VerifyWSGI(
                self._inner,
                hmac_verifier,
                protect=["/signed"],
                on_reject=self._count_rejection,
            ),
            rfc9421_verifier,
            protect=["/signed-rfc9421"],
            on_reject=self._count_rejection,
        )

    def _count_rejection(self, error: SignatureError | StoreError, request: SignedRequest) -> None:
        """The middleware's ``on_reject``: count the reason (and replays)."""
        if isinstance(error, SignatureError):
            with self._lock:
                self._rejections[error.reason] = self._rejections.get(error.reason, 0) + 1
                if isinstance(error, ReplayedNonce):
                    self._replays += 1

    def _signed(self, req: _Req) -> _Resp:
        """``/signed/*`` (the tutorial's HMAC scheme) and ``/signed-rfc9421/*`` (RFC 9421,
        ``hmac-sha256``, ``content-digest`` required with a body): the middleware verified
        the signature; the body is read again here, as any application would."""
        found = identity(req.env)
        if found is None:  # pragma: no cover - the middleware guards these routes
            return _error(401, "invalid_signature", [("WWW-Authenticate", "Signature")])
        payload: dict[str, Any] = {"ok": True, "key_id": found.key_id}
        if found.signature is not None:
            payload["covered"] = list(found.signature.covered)
            payload["body_bytes"] = len(req.body())
        return _json(200, payload)
