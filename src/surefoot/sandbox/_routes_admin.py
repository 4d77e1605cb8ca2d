"""``/stats`` and ``/admin/{reset,outage,revoke-tokens}`` (neither counted nor affected
by an outage), and the outage itself."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from surefoot.sandbox._group import RouteGroup
from surefoot.sandbox._http import (
    _ECHO_METHODS,
    Route,
    _error,
    _json,
    _method_not_allowed,
    _not_found,
    _Req,
    _Resp,
)

__all__ = ["AdminRoutes"]

if TYPE_CHECKING:
    from surefoot.sandbox._routes_oauth import OAuthRoutes


class AdminRoutes(RouteGroup):
    """The outage deadline; reset and stats are the application's."""

    def __init__(
        self,
        lock: threading.Lock,
        oauth: OAuthRoutes,
        *,
        reset: Callable[[], None],
        stats: Callable[[], dict[str, Any]],
    ) -> None:
        super().__init__(lock)
        self._oauth = oauth
        self._reset = reset
        self._stats = stats
        self.clear()

    def routes(self) -> dict[str, Route]:
        return {"stats": (None, self._stats_route), "admin": (None, self._admin)}

    def clear(self) -> None:
        self._outage_until = 0.0

    def outage(self) -> _Resp | None:
        """The 503 to answer while an outage lasts, else None."""
        until = self._outage_until
        if not until:
            return None
        remaining = until - time.monotonic()
        if remaining <= 0:
            return None
        return _error(503, "outage", [("Retry-After", str(max(1, math.ceil(remaining))))])

    def _stats_route(self, req: _Req) -> _Resp:
        if req.rest:
            return _not_found(req)
        if req.method not in _ECHO_METHODS:
            return _method_not_allowed("GET, HEAD")
        return _json(200, self._stats())

    def _admin(self, req: _Req) -> _Resp:
        action = req.rest
        if action not in ("reset", "outage", "revoke-tokens"):
            return _not_found(req)
        if req.method != "POST":
            return _method_not_allowed("POST")
        if action == "reset":
            self._reset()
            return _json(200, {"ok": True})
        if action == "outage":
            seconds = req.float_arg("seconds", 0.0, 0.0, 86_400.0)
            with self._lock:
                self._outage_until = time.monotonic() + seconds if seconds > 0 else 0.0
            return _json(200, {"ok": True, "outage_seconds": seconds})
        with self._lock:
            revoked = self._oauth.revoke_all()
        return _json(200, {"ok": True, "revoked": revoked})
