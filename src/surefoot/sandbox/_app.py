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

* ``"credential"`` (the default): the ``X-API-Key``, else the bearer token's OAuth2
  client, else ``"anonymous"`` — clients that send no credentials share one quota;
* ``"global"``: one quota ``R`` for every request, whoever sends it — a fleet of
  processes is seen as ONE client, as a real API sees one account;
* ``"client"``: one quota ``R`` per ``X-Client-Id`` header (requests without it are
  partitioned as under ``"credential"``) — each process of a fleet is its own client.

Whatever the mode, ``/stats`` counts the ``/limited`` outcomes per client,
``"clients": {"<id>": {"ok": n, "429s": m}}``, with ``<id>`` the ``X-Client-Id`` or else
the credential partition, so a benchmark can compute per-client fairness.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import random
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qs, quote, unquote_plus

from surefoot._core._clock import SystemClock
from surefoot.errors import ConfigurationError, ReplayedNonce, SignatureError, StoreError
from surefoot.middleware import SignedRequest, VerifyWSGI, identity
from surefoot.signing._hmac import HmacVerifier
from surefoot.signing._rfc9421 import MessageVerifier, SignatureKey
from surefoot.stores._memory import MemoryNonceCache

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["ConnectionControlProtocol", "SandboxApp", "SandboxConfig"]

Headers = list[tuple[str, str]]

_MAX_SLEEP = 10.0
_MAX_HANG = 60.0
_MAX_BUCKETS = 10_000
_MAX_CLIENTS = 10_000
_OTHER_CLIENTS = "(other)"
"""Per-client counters beyond ``_MAX_CLIENTS`` distinct ids are summed under this id."""
_MAX_CLIENT_ID = 200
_JSON = ("Content-Type", "application/json")
_ECHO_METHODS = frozenset({"GET", "HEAD"})


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


class ConnectionControlProtocol(Protocol):
    """What the server puts in ``environ["surefoot.connection"]``."""

    def reset(self) -> None: ...
    def close(self) -> None: ...
    def truncate(
        self,
        status: int | str,
        headers: Iterable[tuple[str, str]],
        body_prefix: bytes,
        announced_length: int,
    ) -> None: ...


@dataclass(slots=True)
class _Resp:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


@dataclass(slots=True)
class _Taken:
    """The connection was reset, closed or truncated; nothing more is sent."""

    label: str


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _json(status: int, payload: object, headers: Headers | None = None) -> _Resp:
    hdrs = [_JSON]
    if headers:
        hdrs.extend(headers)
    return _Resp(status, hdrs, json.dumps(payload).encode())


def _error(status: int, error: str, headers: Headers | None = None, **extra: object) -> _Resp:
    return _json(status, {"error": error, **extra}, headers)


def _method_not_allowed(allowed: str) -> _Resp:
    return _error(405, "method_not_allowed", [("Allow", allowed)])


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value or not value.isprintable():
        raise _BadRequest("invalid header value")
    return value


def _title(key: str) -> str:
    return "-".join(part.capitalize() for part in key.split("_"))


class _Req:
    """One request: lazily parsed query and body."""

    __slots__ = ("_body", "_query", "env", "method", "path", "rest")

    def __init__(self, env: WSGIEnvironment, path: str, rest: str) -> None:
        self.env = env
        self.method: str = env.get("REQUEST_METHOD", "GET").upper()
        self.path = path
        self.rest = rest
        self._query: dict[str, list[str]] | None = None
        self._body: bytes | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parse_qs(self.env.get("QUERY_STRING", ""), keep_blank_values=True)
        return self._query

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def float_arg(self, name: str, default: float, lo: float, hi: float) -> float:
        text = self.arg(name)
        if text is None or text == "":
            return default
        try:
            value = float(text)
        except ValueError:
            raise _BadRequest(f"{name} must be a number") from None
        if not (lo <= value <= hi):
            raise _BadRequest(f"{name} must be between {lo:g} and {hi:g}")
        return value

    def int_arg(self, name: str) -> int | None:
        text = self.arg(name)
        if text is None or text == "":
            return None
        try:
            return int(text)
        except ValueError:
            raise _BadRequest(f"{name} must be an integer") from None

    def header(self, name: str) -> str | None:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self.env.get(key) or None
        value: str | None = self.env.get("HTTP_" + key)
        return value

    def headers(self) -> dict[str, str]:
        env = self.env
        out = {_title(k[5:]): v for k, v in env.items() if k.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if env.get(key):
                out[_title(key)] = env[key]
        return out

    def body(self) -> bytes:
        if self._body is None:
            length_text = self.env.get("CONTENT_LENGTH") or "0"
            try:
                length = int(length_text)
            except ValueError:
                raise _BadRequest("malformed Content-Length") from None
            stream = self.env.get("wsgi.input")
            self._body = stream.read(length) if stream is not None and length > 0 else b""
        return self._body

    def json_body(self) -> Any:
        raw = self.body()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest("body is not valid JSON") from None

    def url(self) -> str:
        env = self.env
        host = env.get("HTTP_HOST") or f"{env.get('SERVER_NAME', '')}:{env.get('SERVER_PORT', '')}"
        target = env.get("REQUEST_URI")
        if not target:
            target = quote(env.get("PATH_INFO", "/"), safe="/:@!$&'()*+,;=-._~%")
            if env.get("QUERY_STRING"):
                target += "?" + env["QUERY_STRING"]
        return f"{env.get('wsgi.url_scheme', 'http')}://{host}{target}"

    def args(self) -> dict[str, str | list[str]]:
        return {k: v[0] if len(v) == 1 else v for k, v in self.query.items()}

    def echo(self) -> dict[str, Any]:
        return {
            "args": self.args(),
            "headers": self.headers(),
            "url": self.url(),
            "origin": self.env.get("REMOTE_ADDR", ""),
        }

    def connection(self) -> ConnectionControlProtocol | None:
        control: ConnectionControlProtocol | None = self.env.get("surefoot.connection")
        return control


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


Handler = Callable[[_Req], "_Resp | _Taken"]


class SandboxApp:
    """The WSGI application. Thread-safe: all mutable state is guarded by one lock."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.stopping = threading.Event()
        """Set when the sandbox stops: wakes up sleeping /delay and timeout requests."""
        self._lock = threading.Lock()
        self._request_id = 0
        self._routes: dict[str, tuple[str | None, Handler]] = {
            "get": ("/get", self._get),
            "headers": ("/headers", self._headers),
            "status": ("/status", self._status),
            "anything": ("/anything", self._anything),
            "delay": ("/delay", self._delay),
            "redirect-to": ("/redirect-to", self._redirect_to),
            "limited": ("/limited", self._limited),
            "flaky": ("/flaky", self._flaky),
            "oauth": ("/oauth/token", self._oauth),  # /oauth/revoke is counted here too
            "protected": ("/protected", self._protected),
            "signed": ("/signed", self._signed),
            "signed-rfc9421": ("/signed-rfc9421", self._signed),
            "orders": ("/orders", self._orders),
            "stats": (None, self._stats),
            "admin": (None, self._admin),
        }
        self._clear()

    def _clear(self) -> None:
        """Reset all state and counters (caller holds the lock, or is __init__)."""
        cfg = self.config
        self._requests = 0
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._429s = 0
        self._tokens_issued = 0
        self._orders_created = 0
        self._rejections: dict[str, int] = {}
        self._replays = 0
        self._resets = 0
        self._faults: dict[str, int] = {}
        self._buckets: dict[str, float] = {}
        self._clients: dict[str, dict[str, int]] = {}
        self._tokens: dict[str, _Token] = {}
        self._refresh_tokens: dict[str, _Refresh] = {}
        self._rotated: dict[str, str] = {}  # a used refresh token -> its family
        self._refreshes = 0
        self._invalid_grants = 0
        self._refresh_reuses = 0
        self._revocations = 0
        self._order_store: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[str, tuple[str, str]] = {}
        self._order_seq = 0
        self._outage_until = 0.0
        self._rng = random.Random(cfg.seed)
        self._rngs: dict[int, random.Random] = {}
        self._fail_counts: dict[tuple[str, str, str], int] = {}
        # The signed routes go through the verification middleware, like a user's app.
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
        self._pipeline: WSGIApplication = VerifyWSGI(
            VerifyWSGI(
                self._dispatch,
                hmac_verifier,
                protect=["/signed"],
                on_reject=self._count_rejection,
            ),
            rfc9421_verifier,
            protect=["/signed-rfc9421"],
            on_reject=self._count_rejection,
        )

    # -- public ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Clear every counter and all state: quotas, tokens, orders, nonces, outage."""
        with self._lock:
            self._clear()

    def close(self) -> None:
        """Wake up requests sleeping in /delay or a timeout fault."""
        self.stopping.set()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (same shape as ``GET /stats``)."""
        with self._lock:
            return {
                "requests": self._requests,
                "endpoints": {
                    name: {"requests": ep["requests"], "statuses": dict(ep["statuses"])}
                    for name, ep in sorted(self._endpoints.items())
                },
                "429s": self._429s,
                "tokens_issued": self._tokens_issued,
                "refreshes": self._refreshes,
                "invalid_grants": self._invalid_grants,
                "refresh_reuses": self._refresh_reuses,
                "revocations": self._revocations,
                "orders_created": self._orders_created,
                "signature_rejections": dict(self._rejections),
                "replays": self._replays,
                "resets": self._resets,
                "faults": dict(self._faults),
                "clients": {
                    client: dict(counts) for client, counts in sorted(self._clients.items())
                },
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
                self._request_id += 1
                request_id = self._request_id
                if group is not None:
                    self._record(group, status.partition(" ")[0])
            headers = [*headers, ("X-Sandbox-Request-Id", str(request_id))]
            return start_response(status, headers, exc_info)

        outage = self._outage() if group is not None else None
        if outage is not None:
            counted(f"{outage.status} {_phrase(outage.status)}", outage.headers)
            return [outage.body]
        return self._pipeline(environ, counted)

    def _dispatch(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path: str = environ.get("PATH_INFO") or "/"
        first, _, rest = path[1:].partition("/")
        handler = self._routes.get(first, (None, self._not_found))[1]
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

        if isinstance(result, _Taken):  # already counted by _drop
            return []
        start_response(f"{result.status} {_phrase(result.status)}", result.headers)
        return [result.body]

    def _record(self, group: str, label: str) -> None:
        self._requests += 1
        ep = self._endpoints.get(group)
        if ep is None:
            ep = self._endpoints[group] = {"requests": 0, "statuses": {}}
        ep["requests"] += 1
        statuses = ep["statuses"]
        statuses[label] = statuses.get(label, 0) + 1
        if label == "429":
            self._429s += 1

    def _outage(self) -> _Resp | None:
        until = self._outage_until
        if not until:
            return None
        remaining = until - time.monotonic()
        if remaining <= 0:
            return None
        return _error(503, "outage", [("Retry-After", str(max(1, math.ceil(remaining))))])

    def _not_found(self, req: _Req) -> _Resp:
        return _error(404, "not_found", path=req.path)

    # -- httpbin subset --------------------------------------------------------------------

    def _get(self, req: _Req) -> _Resp:
        if req.rest:
            return self._not_found(req)
        if req.method not in _ECHO_METHODS:
            return _method_not_allowed("GET, HEAD")
        return _json(200, req.echo())

    def _headers(self, req: _Req) -> _Resp:
        if req.rest:
            return self._not_found(req)
        if req.method not in _ECHO_METHODS:
            return _method_not_allowed("GET, HEAD")
        return _json(200, {"headers": req.headers()})

    def _status(self, req: _Req) -> _Resp:
        text = req.rest
        if not (text.isascii() and text.isdigit() and len(text) == 3 and "200" <= text <= "599"):
            raise _BadRequest("status code must be between 200 and 599")
        code = int(text)
        headers: Headers = []
        if 300 <= code < 400:
            headers.append(("Location", "/get"))
        retry_after = req.arg("retry_after")
        if retry_after is not None:
            headers.append(("Retry-After", _header_value(retry_after)))
        return _Resp(code, headers)

    def _anything(self, req: _Req) -> _Resp:
        body = req.body()
        payload = req.echo()
        payload["method"] = req.method
        payload["data"] = body.decode("utf-8", "replace")
        try:
            payload["json"] = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError):
            payload["json"] = None
        form: dict[str, str | list[str]] = {}
        if (req.header("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            parsed = parse_qs(body.decode("latin-1"), keep_blank_values=True)
            form = {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}
        payload["form"] = form
        return _json(200, payload)

    def _delay(self, req: _Req) -> _Resp:
        try:
            seconds = float(req.rest)
        except ValueError:
            raise _BadRequest("delay must be a number of seconds") from None
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise _BadRequest("delay must be a non-negative number of seconds")
        seconds = min(seconds, _MAX_SLEEP)
        self.stopping.wait(seconds)
        return _json(200, {**req.echo(), "delay": seconds})

    def _redirect_to(self, req: _Req) -> _Resp:
        if req.rest:
            return self._not_found(req)
        target = req.arg("url")
        if not target:
            raise _BadRequest("url is required")
        code = req.int_arg("status_code") or 302
        if not 300 <= code < 400:
            raise _BadRequest("status_code must be a 3xx code")
        return _Resp(code, [("Location", _header_value(target))])

    # -- quota -----------------------------------------------------------------------------

    def _partition(self, req: _Req, now: float) -> str:
        """Caller holds the lock."""
        api_key = req.header("X-API-Key")
        if api_key:
            return api_key
        token = _bearer(req)
        if token:
            found = self._tokens.get(token)
            if found is not None and found.expires_at > now:
                return found.client_id
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
        cfg = self.config
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
        headers: Headers = []
        if dialect != "none":
            # Advertised as a quota of q requests per window of w whole seconds (q = rate·w)
            # and, for the current window of w seconds, how many requests it still admits:
            # what the bucket holds now plus what refills within the window, at most q.
            window = max(1, math.ceil(1.0 / cfg.rate))
            quota = max(1, round(cfg.rate * window))
            left = min(quota, int(remaining + cfg.rate * window - (0 if allowed else 1)))
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
        if not allowed:
            headers.append(("Retry-After", str(max(1, math.ceil(wait)))))
            headers.append(("retry-after-ms", str(max(1, math.ceil(wait * 1000)))))
            return _error(429, "rate_limited", headers, partition=partition)
        return _json(200, {"ok": True, "path": req.rest, "partition": partition}, headers)

    # -- faults ----------------------------------------------------------------------------

    def _roll(self, p: float, seed: int | None) -> bool:
        """True with probability p, from the seed's own stream. Caller holds the lock."""
        if p <= 0:
            return False
        if p >= 1:
            return True
        if seed is None:
            rng = self._rng
        else:
            found = self._rngs.get(seed)
            if found is None:
                found = self._rngs[seed] = random.Random(seed)
            rng = found
        return rng.random() < p

    def _flaky(self, req: _Req) -> _Resp | _Taken:
        fault = (req.arg("fault") or "503").lower()
        if fault not in ("reset", "close", "timeout", "truncate") and not (
            fault.isdigit() and 400 <= int(fault) <= 599
        ):
            raise _BadRequest("fault must be reset, close, timeout, truncate or a 4xx/5xx code")
        p = req.float_arg("p", 0.3, 0.0, 1.0)
        seed = req.int_arg("seed")
        fail = req.int_arg("fail")
        retry_after = req.arg("retry_after")
        hang = req.float_arg("hang", 5.0, 0.0, _MAX_HANG)
        with self._lock:
            if fail is not None:
                counter = (req.path, req.arg("key") or "", str(fail))
                count = self._fail_counts.get(counter, 0)
                self._fail_counts[counter] = count + 1
                failing = count < fail
            else:
                failing = self._roll(p, seed)
            if failing:
                self._faults[fault] = self._faults.get(fault, 0) + 1
        if not failing:
            return _json(200, {"ok": True})
        if fault == "timeout":
            self.stopping.wait(hang)
            return _json(200, {"ok": True, "hung": hang})
        if fault in ("reset", "close", "truncate"):
            return self._drop(req, fault, "/flaky")
        headers = [("Retry-After", _header_value(retry_after))] if retry_after else []
        return _error(int(fault), "injected_fault", headers)

    def _drop(self, req: _Req, how: str, group: str) -> _Resp | _Taken:
        """Reset, close or truncate the connection; counted first, so stats never lag."""
        control = req.connection()
        if control is None:
            return _error(501, "not_supported", message="needs the surefoot sandbox server")
        label = {"reset": "reset", "close": "closed", "truncate": "truncated"}[how]
        with self._lock:
            self._request_id += 1
            request_id = self._request_id
            self._record(group, label)
            if how == "reset":
                self._resets += 1
        if how == "reset":
            control.reset()
        elif how == "close":
            control.close()
        else:
            body = b'{"ok": true, "padding": "' + b"x" * 64 + b'"}'
            control.truncate(
                "200 OK",
                [_JSON, ("X-Sandbox-Request-Id", str(request_id))],
                body[: len(body) // 2],
                len(body),
            )
        return _Taken(label)

    # -- OAuth2 ----------------------------------------------------------------------------

    def _oauth(self, req: _Req) -> _Resp:
        if req.rest not in ("token", "revoke"):
            return self._not_found(req)
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
        expected = self.config.clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return None
        return client_id

    def _issue(
        self, client_id: str, scope: str | None, family: str | None, headers: Headers
    ) -> _Resp:
        """A new access token (and, with refresh tokens on, a new refresh token of
        ``family``, a new family when None)."""
        token = secrets.token_urlsafe(32)
        ttl = self.config.token_ttl
        now = time.monotonic()
        refresh = secrets.token_urlsafe(32) if self.config.refresh_tokens else None
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

    # -- signed requests -------------------------------------------------------------------

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

    # -- orders ----------------------------------------------------------------------------

    def _orders(self, req: _Req) -> _Resp | _Taken:
        if req.rest:
            if req.method not in _ECHO_METHODS:
                return _method_not_allowed("GET, HEAD")
            with self._lock:
                order = self._order_store.get(req.rest)
            return _json(200, order) if order is not None else self._not_found(req)
        if req.method in _ECHO_METHODS:
            with self._lock:
                orders = list(self._order_store.values())
            return _json(200, {"orders": orders, "count": len(orders)})
        if req.method != "POST":
            return _method_not_allowed("GET, HEAD, POST")

        data = req.json_body()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _BadRequest("the order must be a JSON object")
        fingerprint = hashlib.sha256(
            json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        key = req.header("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255):
            raise _BadRequest("Idempotency-Key must be 1 to 255 characters")
        fail_p = req.float_arg("fail_after_commit", 0.0, 0.0, 1.0)
        seed = req.int_arg("seed")
        with self._lock:
            if key is not None and key in self._idempotency:
                stored_fingerprint, order_id = self._idempotency[key]
                if stored_fingerprint != fingerprint:
                    return _error(
                        422,
                        "idempotency_key_reused",
                        message="this Idempotency-Key was used with a different body",
                    )
                replayed = dict(self._order_store[order_id])
                return _json(200, replayed, [("Idempotent-Replayed", "true")])
            self._order_seq += 1
            order_id = f"ord_{self._order_seq}"
            order = {"id": order_id, **{k: v for k, v in data.items() if k != "id"}}
            self._order_store[order_id] = order
            self._orders_created += 1
            if key is not None:
                self._idempotency[key] = (fingerprint, order_id)
            fail = self._roll(fail_p, seed)
            if fail:
                self._faults["fail_after_commit"] = self._faults.get("fail_after_commit", 0) + 1
        if fail:
            return self._drop(req, "reset", "/orders")
        return _json(201, order, [("Location", f"/orders/{order_id}")])

    # -- stats and admin -------------------------------------------------------------------

    def _stats(self, req: _Req) -> _Resp:
        if req.rest:
            return self._not_found(req)
        if req.method not in _ECHO_METHODS:
            return _method_not_allowed("GET, HEAD")
        return _json(200, self.stats())

    def _admin(self, req: _Req) -> _Resp:
        action = req.rest
        if action not in ("reset", "outage", "revoke-tokens"):
            return self._not_found(req)
        if req.method != "POST":
            return _method_not_allowed("POST")
        if action == "reset":
            self.reset()
            return _json(200, {"ok": True})
        if action == "outage":
            seconds = req.float_arg("seconds", 0.0, 0.0, 86_400.0)
            with self._lock:
                self._outage_until = time.monotonic() + seconds if seconds > 0 else 0.0
            return _json(200, {"ok": True, "outage_seconds": seconds})
        with self._lock:
            revoked = len(self._tokens)
            self._tokens.clear()
        return _json(200, {"ok": True, "revoked": revoked})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _client_id(req: _Req) -> str | None:
    """The ``X-Client-Id`` header; None without one (or an empty one)."""
    value = (req.header("X-Client-Id") or "").strip()
    if not value:
        return None
    if len(value) > _MAX_CLIENT_ID or not (value.isascii() and value.isprintable()):
        raise _BadRequest(f"X-Client-Id must be 1 to {_MAX_CLIENT_ID} printable ASCII characters")
    return value


def _bearer(req: _Req) -> str | None:
    auth = req.header("Authorization")
    if not auth:
        return None
    scheme, _, token = auth.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


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
