"""The ``/limited`` quota: a GCRA (rate, burst) per partition, with per-client counters.

An API key is never shown: its partition (in ``/limited`` answers and in ``/stats``) is
its fingerprint, :func:`key_partition`.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from surefoot.sandbox._group import RouteGroup
from surefoot.sandbox._http import Headers, Route, _BadRequest, _bearer, _error, _json, _Req, _Resp

__all__ = ["QuotaRoutes", "key_partition"]

if TYPE_CHECKING:
    from surefoot.sandbox._app import SandboxConfig
    from surefoot.sandbox._routes_oauth import OAuthRoutes

_MAX_BUCKETS = 10_000
_MAX_CLIENTS = 10_000
_OTHER_CLIENTS = "(other)"
"""Per-client counters beyond ``_MAX_CLIENTS`` distinct ids are summed under this id."""
_MAX_CLIENT_ID = 200


class QuotaRoutes(RouteGroup):
    """The quota buckets and the per-client ``ok``/``429s`` counters."""

    def __init__(self, config: SandboxConfig, lock: threading.Lock, oauth: OAuthRoutes) -> None:
        super().__init__(lock)
        self._config = config
        self._oauth = oauth
        self.clear()

    def routes(self) -> dict[str, Route]:
        return {"limited": ("/limited", self._limited)}

    def clear(self) -> None:
        self._buckets: dict[str, float] = {}
        self._clients: dict[str, dict[str, int]] = {}

    def stats(self) -> dict[str, Any]:
        return {
            "clients": {client: dict(counts) for client, counts in sorted(self._clients.items())}
        }

    def _partition(self, req: _Req, now: float) -> str:
        """Caller holds the lock."""
        api_key = req.header("X-API-Key")
        if api_key:
            return key_partition(api_key)
        token = _bearer(req)
        if token:
            client = self._oauth.client_of(token, now)
            if client is not None:
                return client
        return "anonymous"

    def _count_client(self, client: str, allowed: bool) -> None:
        """Caller holds the lock."""
        counts = self._clients.get(client)
        if counts is None:
            if len(self._clients) >= _MAX_CLIENTS:
                client = _OTHER_CLIENTS
                counts = self._clients.get(client)
            if counts is None:
                counts = self._clients[client] = {"ok": 0, "429s": 0}
        counts["ok" if allowed else "429s"] += 1

    def _limited(self, req: _Req) -> _Resp:
        dialect = (req.arg("dialect") or "ietf").lower()
        if dialect not in ("ietf", "github", "none"):
            raise _BadRequest("dialect must be ietf, github or none")
        client_id = _client_id(req)
        cfg = self._config
        interval = 1.0 / cfg.rate
        capacity = cfg.burst * interval  # how far ahead of now the bucket may run
        now = time.monotonic()
        with self._lock:
            credential = self._partition(req, now)
            if cfg.quota_partition == "global":
                partition = "global"
            elif cfg.quota_partition == "client" and client_id is not None:
                partition = client_id
            else:
                partition = credential
            tat = max(self._buckets.get(partition, now), now)
            new_tat = tat + interval
            allowed = new_tat - now <= capacity + 1e-9
            if allowed:
                if len(self._buckets) >= _MAX_BUCKETS:
                    self._buckets = {k: v for k, v in self._buckets.items() if v > now}
                self._buckets[partition] = new_tat
                reset = new_tat - now
                remaining = max(0, int((capacity - reset) / interval + 1e-9))
                wait = 0.0
            else:
                reset = tat - now
                remaining = 0
                wait = new_tat - now - capacity
            self._count_client(credential if client_id is None else client_id, allowed)
        headers = _quota_headers(dialect, cfg.rate, remaining, allowed)
        if not allowed:
            headers.append(("Retry-After", str(max(1, math.ceil(wait)))))
            headers.append(("retry-after-ms", str(max(1, math.ceil(wait * 1000)))))
            return _error(429, "rate_limited", headers, partition=partition)
        return _json(200, {"ok": True, "path": req.rest, "partition": partition}, headers)


def key_partition(api_key: str) -> str:
    """The partition of an ``X-API-Key``: ``key:`` and the first 16 hex digits of its
    SHA-256, as the client's :class:`~surefoot.Pacer` names an ``api_key`` partition.
    The key itself is a credential: it is never in an answer or in ``/stats``."""
    try:
        raw = api_key.encode("latin-1")  # WSGI strings: the bytes as sent
    except UnicodeEncodeError:
        raw = api_key.encode("utf-8", "surrogatepass")
    return f"key:{hashlib.sha256(raw).hexdigest()[:16]}"


def _quota_headers(dialect: str, rate: float, remaining: int, allowed: bool) -> Headers:
    """The quota headers of the ``dialect`` (``ietf``, ``github`` or ``none``)."""
    headers: Headers = []
    if dialect == "none":
        return headers
    # Advertised as a quota of q requests per window of w whole seconds (q = rate·w)
    # and, for the current window of w seconds, how many requests it still admits:
    # what the bucket holds now plus what refills within the window, at most q.
    window = max(1, math.ceil(1.0 / rate))
    quota = max(1, round(rate * window))
    left = min(quota, int(remaining + rate * window - (0 if allowed else 1)))
    left = max(left, 0)
    if dialect == "ietf":
        headers.append(("RateLimit-Policy", f'"default";q={quota};w={window}'))
        headers.append(("RateLimit", f'"default";r={left};t={window}'))
    elif dialect == "github":
        headers.extend(
            [
                ("x-ratelimit-limit", str(quota)),
                ("x-ratelimit-remaining", str(left)),
                ("x-ratelimit-used", str(quota - left)),
                ("x-ratelimit-reset", str(math.ceil(time.time() + window))),
                ("x-ratelimit-resource", "core"),
            ]
        )
    return headers


def _client_id(req: _Req) -> str | None:
    """The ``X-Client-Id`` header; None without one (or an empty one)."""
    value = (req.header("X-Client-Id") or "").strip()
    if not value:
        return None
    if len(value) > _MAX_CLIENT_ID or not (value.isascii() and value.isprintable()):
        raise _BadRequest(f"X-Client-Id must be 1 to {_MAX_CLIENT_ID} printable ASCII characters")
    return value
