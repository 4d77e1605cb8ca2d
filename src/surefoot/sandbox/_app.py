"""The sandbox WSGI application: httpbin-style echo routes plus resilience scenarios.

Quotas, faults, outages, OAuth2 (client credentials; refresh tokens with rotation when
:attr:`SandboxConfig.refresh_tokens` is set; RFC 7009 revocation at ``/oauth/revoke``),
HMAC signatures and idempotent order creation, with counters readable in-process
(:meth:`SandboxApp.stats`) or at ``/stats``.

Signed routes go through :class:`surefoot.middleware.VerifyWSGI`, as a user's
application would: ``/signed/*`` with the tutorial's HMAC scheme
(:attr:`SandboxConfig.hmac_keys`, default ``demo-key``/``demo-secret``) and
``/signed-rfc9421/*`` with RFC 9421 ``hmac-sha256`` (:attr:`SandboxConfig.rfc9421_keys`,
default ``keyid`` ``demo-rfc9421``, secret ``demo-secret``; ``@method``, ``@authority``,
``@path``, ``@query``, ``created`` and a nonce are required, and ``content-digest`` when
there is a body). Rejections are counted per reason in ``signature_rejections``, replays
in ``replays``.

The ``/limited`` quota is a GCRA (rate ``R``, burst ``B``) per partition, and
:attr:`SandboxConfig.quota_partition` says what a partition is:

* ``"credential"`` (the default): the ``X-API-Key`` (shown as its fingerprint,
  ``key:`` and 16 hex digits of its SHA-256 — never the key), else the bearer token's
  OAuth2 client, else ``"anonymous"`` — clients that send no credentials share one quota;
* ``"global"``: one quota ``R`` for every request, whoever sends it — a fleet of
  processes is seen as ONE client, as a real API sees one account;
* ``"client"``: one quota ``R`` per ``X-Client-Id`` header (requests without it are
  partitioned as under ``"credential"``) — each process of a fleet is its own client.

Whatever the mode, ``/stats`` counts the ``/limited`` outcomes per client,
``"clients": {"<id>": {"ok": n, "429s": m}}``, with ``<id>`` the ``X-Client-Id`` or else
the credential partition, so a benchmark can compute per-client fairness.
"""

from __future__ import annotations

import math
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from surefoot.errors import ConfigurationError
from surefoot.sandbox._group import RouteGroup, Traffic
from surefoot.sandbox._http import (
    Handler,
    Route,
    _BadRequest,
    _error,
    _not_found,
    _phrase,
    _Req,
    _Resp,
    _Taken,
)
from surefoot.sandbox._routes_admin import AdminRoutes
from surefoot.sandbox._routes_echo import EchoRoutes
from surefoot.sandbox._routes_faults import FaultRoutes
from surefoot.sandbox._routes_oauth import OAuthRoutes
from surefoot.sandbox._routes_orders import OrderRoutes
from surefoot.sandbox._routes_quota import QuotaRoutes
from surefoot.sandbox._routes_signed import SignedRoutes

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["SandboxApp", "SandboxConfig"]


QuotaPartition = Literal["credential", "global", "client"]
_QUOTA_PARTITIONS: tuple[QuotaPartition, ...] = ("credential", "global", "client")


def _default_clients() -> Mapping[str, str]:
    return {"demo-client": "demo-secret"}


def _default_hmac_keys() -> Mapping[str, str]:
    return {"demo-key": "demo-secret"}


def _default_rfc9421_keys() -> Mapping[str, str]:
    return {"demo-rfc9421": "demo-secret"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """Settings of a sandbox. Secrets are kept out of ``repr``."""

    rate: float = 10.0
    """Quota refill rate of ``/limited``, requests per second (per partition)."""
    burst: int = 10
    """Quota burst size of ``/limited``."""
    quota_partition: QuotaPartition = "credential"
    """What shares one ``/limited`` quota: ``"credential"`` (API key, else bearer client,
    else ``"anonymous"``), ``"global"`` (every request) or ``"client"`` (the
    ``X-Client-Id`` header, else as ``"credential"``)."""
    token_ttl: float = 3600.0
    """Lifetime of issued access tokens, seconds."""
    refresh_tokens: bool = False
    """Issue a refresh token with every client-credentials token. Refresh tokens rotate:
    each works once (``grant_type=refresh_token`` answers a new access token and a new
    refresh token); a rotated one is ``invalid_grant``, and presenting it revokes its
    whole family (RFC 9700 §4.14.2 reuse detection)."""
    clients: Mapping[str, str] = field(default_factory=_default_clients, repr=False)
    """OAuth2 client id -> client secret."""
    hmac_keys: Mapping[str, str] = field(default_factory=_default_hmac_keys, repr=False)
    """HMAC key id -> secret for ``/signed``."""
    rfc9421_keys: Mapping[str, str] = field(default_factory=_default_rfc9421_keys, repr=False)
    """RFC 9421 ``keyid`` -> ``hmac-sha256`` secret for ``/signed-rfc9421``."""
    skew: float = 300.0
    """Allowed clock skew of signed requests, seconds."""
    seed: int | None = None
    """Seed of the fault randomness when a request gives none (None: system randomness)."""
    verbose: bool = False
    """Log every request line to stderr."""

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ConfigurationError("rate must be a positive number")
        if self.burst < 1:
            raise ConfigurationError("burst must be at least 1")
        if self.quota_partition not in _QUOTA_PARTITIONS:
            raise ConfigurationError(
                "quota_partition must be one of " + ", ".join(_QUOTA_PARTITIONS)
            )
        if not self.token_ttl > 0:
            raise ConfigurationError("token_ttl must be positive")
        if not self.skew > 0:
            raise ConfigurationError("skew must be positive")
        for name in ("clients", "hmac_keys", "rfc9421_keys"):
            mapping = getattr(self, name)
            if any(not k or not v for k, v in mapping.items()):
                raise ConfigurationError(f"{name} must map non-empty ids to non-empty secrets")
            object.__setattr__(self, name, MappingProxyType(dict(mapping)))


class SandboxApp:
    """The WSGI application. Thread-safe: all mutable state is guarded by one lock.

    A dispatcher over route groups (``_routes_*.py``), each owning its state and
    counters; this class counts every response, answers outages and composes
    :meth:`reset` and :meth:`stats`.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.stopping = threading.Event()
        """Set when the sandbox stops: wakes up sleeping /delay and timeout requests."""
        self._lock = threading.Lock()
        cfg, lock = self.config, self._lock
        self._traffic = Traffic()
        self._oauth = OAuthRoutes(cfg, lock)
        self._faults = FaultRoutes(cfg, lock, self.stopping, self._traffic)
        self._signed = SignedRoutes(cfg, lock, self._dispatch)
        self._orders = OrderRoutes(lock, self._faults)
        self._quota = QuotaRoutes(cfg, lock, self._oauth)
        self._admin = AdminRoutes(lock, self._oauth, reset=self.reset, stats=self.stats)
        self._groups: tuple[RouteGroup, ...] = (
            EchoRoutes(lock, self.stopping),
            self._quota,
            self._faults,
            self._oauth,
            self._signed,
            self._orders,
            self._admin,
        )
        self._routes: dict[str, Route] = {}
        for group in self._groups:
            self._routes.update(group.routes())

    # -- public ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Clear every counter and all state: quotas, tokens, orders, nonces, outage."""
        with self._lock:
            self._traffic.clear()
            for group in self._groups:
                group.clear()

    def close(self) -> None:
        """Wake up requests sleeping in /delay or a timeout fault."""
        self.stopping.set()

    def stats(self) -> dict[str, object]:
        """A snapshot of the counters (same shape as ``GET /stats``)."""
        with self._lock:
            return {
                **self._traffic.stats(),  # requests, endpoints, 429s
                **self._oauth.stats(),
                **self._orders.stats(),
                **self._signed.stats(),
                **self._faults.stats(),
                **self._quota.stats(),  # clients
            }

    # -- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Outage → signature verification (``/signed*``, by the middleware) → route;
        every response is counted and gets its ``X-Sandbox-Request-Id`` here."""
        path: str = environ.get("PATH_INFO") or "/"
        group = self._routes.get(path[1:].partition("/")[0], ("unmatched", None))[0]

        def counted(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None, /
        ) -> Callable[[bytes], object]:
            with self._lock:
                request_id = self._traffic.next_id()
                if group is not None:
                    self._traffic.record(group, status.partition(" ")[0])
            headers = [*headers, ("X-Sandbox-Request-Id", str(request_id))]
            return start_response(status, headers, exc_info)

        outage = self._admin.outage() if group is not None else None
        if outage is not None:
            counted(f"{outage.status} {_phrase(outage.status)}", outage.headers)
            return [outage.body]
        return self._signed.pipeline(environ, counted)

    def _dispatch(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path: str = environ.get("PATH_INFO") or "/"
        first, _, rest = path[1:].partition("/")
        handler: Handler = self._routes.get(first, (None, _not_found))[1]
        req = _Req(environ, path, rest)
        result: _Resp | _Taken
        try:
            result = handler(req)
        except _BadRequest as exc:
            result = _error(exc.status, "bad_request", message=exc.message)
        except Exception:
            errors = environ.get("wsgi.errors") or sys.stderr
            errors.write("surefoot sandbox: unhandled error\n")
            traceback.print_exc(file=errors)
            result = _error(500, "internal_error")

        if isinstance(result, _Taken):  # already counted by FaultRoutes.drop
            return []
        start_response(f"{result.status} {_phrase(result.status)}", result.headers)
        return [result.body]
