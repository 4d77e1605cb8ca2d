"""Canary sweep: ONE secret, used as every kind of credential surefoot handles, driven
through every success and failure path reachable against the sandbox — on requests, httpx
sync and async, and the CLI — must never show.

The secret (:data:`CANARY`) is at once the HMAC secret, the RFC 9421 ``hmac-sha256`` key,
the SigV4 secret access key and session token, the OAuth client secret, the access token,
the refresh token, an ``X-API-Key`` / ``Authorization`` header value, the password of a
URL's userinfo (a client's base URL, a request URL, a token or revocation URL, a Redis
URL), an ``?access_token=`` / ``?api_key=`` query value, a token kept in a
``FileTokenStore`` / ``SQLiteStore`` (sound and corrupt), and the password of encrypted
private keys (RFC 9421 ed25519, ``private_key_jwt``).

What is searched: every log record of the ``surefoot`` logger at DEBUG (caplog, plus a
handler formatting each record with its ``exc_info`` and stack), every :class:`Event`
delivered to a hook (its repr, its message and every field's ``str``), ``repr``/``str`` of
every object involved (auth objects, grants, tokens, caches, stores, clients, signers,
keys, verifiers, requests, responses, history entries), every exception with its
``__cause__``/``__context__`` chain and its formatted traceback, warnings, what reached
stdout/stderr, the CLI's stdout/stderr, and what a server of *another origin* received
after a redirect. Searched for: the secret raw, percent- and form-encoded, hex, base64 (and
base64url) at every byte alignment — so it is found inside ``Basic base64(id:secret)`` too —
a fragment of it, the SigV4 keys derived from it, and, for the verifiers, the signature a
verifier holding the secret expects (a verifier that said "expected X" would let anyone
forge requests).

Not searched: ``RequestFailed.exception``, the HTTP library's own exception, which the
README documents as possibly carrying the full URL (query credentials included) and which
is therefore kept out of the chain; and the response bodies of the sandbox's echo routes
(the server's words, not surefoot's: the paths used do not echo credentials).

Known leaks are marked ``xfail(strict=True, reason="leak: ...")``: visible, suite green.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import os
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

import surefoot
import surefoot.httpx
from surefoot import BearerAuth, PacingPolicy, RetryPolicy, SigningAuth, history_of
from surefoot.errors import (
    CircuitOpen,
    DeadlineExceeded,
    InvalidClient,
    InvalidGrant,
    RequestFailed,
    RetriesExhausted,
    RetryAfterTooLong,
    SignatureError,
    StoreError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    TransportError,
    Unauthorized,
)
from surefoot.events import Event, LoggingHook, combine_hooks
from surefoot.middleware import VerifyASGI, VerifyWSGI
from surefoot.oauth import ClientCredentials, RefreshTokenGrant, Token, TokenCache
from surefoot.pacing import BreakerPolicy
from surefoot.sandbox import Sandbox
from surefoot.signing import (
    HmacSigner,
    HmacVerifier,
    HttpRequest,
    MessageSigner,
    MessageVerifier,
    SignatureKey,
    SignedRequest,
    SigV4Credentials,
    SigV4Signer,
    SigV4Verifier,
)
from surefoot.stores import FileTokenStore, MemoryNonceCache, SQLiteStore

# --------------------------------------------------------------------------------------
# the canary, in every form it could take
# --------------------------------------------------------------------------------------

#: '+' and '/' make the raw, percent-encoded, form-encoded and base64 forms all differ.
CANARY = "c4n4ry+5ecr3t/Zq9"
#: A fragment that survives raw, percent-, form-, JSON- and repr-encoding: a partial leak.
CANARY_FRAGMENT = "5ecr3t"
ACCESS_KEY_ID = "AKIDCANARYSWEEP"  # SigV4's access key *id* is public (it is in every request)
REGION, SERVICE = "eu-west-1", "execute-api"
FIXED_NOW = 1_700_000_000.0


def _b64_cores(data: bytes) -> dict[str, str]:
    """The base64 (and base64url) characters that encode only ``data``'s bytes, for each
    of the three byte alignments it may have inside a longer encoded value."""
    out: dict[str, str] = {}
    n = len(data)
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode()
        core = encoded[-(-8 * k // 6) : (8 * (k + n)) // 6]
        out[f"base64@{k}"] = core
        out[f"base64url@{k}"] = core.translate(str.maketrans("+/", "-_"))
    return out


def _sigv4_keys(secret: str, dates: list[str], scopes: list[tuple[str, str]]) -> dict[str, str]:
    """kDate, kRegion, kService and kSigning (hex and base64): each is as good as the
    secret for its day (and region and service)."""
    out: dict[str, str] = {}
    for date in dates:
        k_date = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
        out[f"sigv4-kDate-{date}"] = k_date.hex()
        for region, service in scopes:
            k_region = hmac.new(k_date, region.encode(), hashlib.sha256).digest()
            k_service = hmac.new(k_region, service.encode(), hashlib.sha256).digest()
            k_signing = hmac.new(k_service, b"aws4_request", hashlib.sha256).digest()
            for name, key in (("kRegion", k_region), ("kService", k_service),
                              ("kSigning", k_signing)):
                label = f"sigv4-{name}-{date}-{region}-{service}"
                out[label] = key.hex()
                out[label + "-b64"] = base64.b64encode(key).decode()[:40]
    return out


def _forms(secret: str) -> dict[str, str]:
    raw = secret.encode()
    forms = {
        "raw": secret,
        "fragment": CANARY_FRAGMENT,
        "percent-encoded": quote(secret, safe=""),
        "percent-encoded(safe=/)": quote(secret),
        "form-encoded": quote_plus(secret),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "json": json.dumps(secret)[1:-1],
    }
    for label, variant in (("", raw), ("form-encoded ", quote_plus(secret).encode()),
                           ("percent-encoded ", quote(secret, safe="").encode())):
        for name, core in _b64_cores(variant).items():
            forms[label + name] = core
    today = datetime.now(timezone.utc)
    dates = sorted({(today + timedelta(days=d)).strftime("%Y%m%d") for d in (-1, 0, 1)}
                   | {time.strftime("%Y%m%d", time.gmtime(FIXED_NOW))})
    forms.update(_sigv4_keys(secret, dates, [(REGION, SERVICE), (REGION, "s3")]))
    return forms


FORMS = _forms(CANARY)
Q = quote(CANARY, safe="")  # the canary in a URL


def find_canary(text: str, extra: dict[str, str] | None = None) -> list[str]:
    """The names of the forms of the canary found in ``text``."""
    forms = {**FORMS, **(extra or {})}
    return [name for name, form in forms.items() if form and form in text]


# --------------------------------------------------------------------------------------
# capturing everything surefoot shows
# --------------------------------------------------------------------------------------


def _safe(call: Callable[[Any], str], obj: object) -> str:
    try:
        return call(obj)
    except Exception as exc:  # a repr that fails is no leak, but say so
        return f"<{call.__name__} failed: {type(exc).__name__}>"


class _Records(logging.Handler):
    """Every record, formatted with its exc_info and stack_info, plus its raw parts."""

    def __init__(self, sweep: Sweep) -> None:
        super().__init__(logging.DEBUG)
        self.sweep = sweep
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        where = f"log record {record.name}:{record.levelname}"
        self.sweep.text(where, self.format(record))
        self.sweep.text(where + " (args)", _safe(repr, record.args))
        self.sweep.text(where + " (msg)", _safe(str, record.msg))
        if record.exc_info and record.exc_info[1] is not None:
            self.sweep.exc(where + " (exc_info)", record.exc_info[1])
        event = record.__dict__.get("surefoot_event")
        if event is not None:
            self.sweep.text(where + " (surefoot_event)", _safe(repr, event))


class Sweep:
    """Collects what surefoot shows, then searches it for the canary."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
                 caught: list[warnings.WarningMessage]) -> None:
        self.seen: list[tuple[str, str]] = []
        self.events: list[Event] = []
        self.extra_forms: dict[str, str] = {}
        self._caplog = caplog
        self._capsys = capsys
        self._caught = caught
        hooks = [self.hook, LoggingHook()]
        #: the hook every client and token cache of a case gets: ours, then the logger
        self.all_hooks = combine_hooks(hooks)

    def text(self, where: str, value: str) -> None:
        self.seen.append((where, value))

    def hook(self, event: Event) -> None:
        self.events.append(event)
        where = f"event {event.kind.value}"
        self.text(where + " repr", _safe(repr, event))
        self.text(where + " str", _safe(str, event))
        self.text(where + " message()", _safe(lambda e: e.message(), event))
        for name in event._fields:
            self.text(f"{where} .{name}", _safe(str, getattr(event, name)))

    def obj(self, where: str, obj: object) -> None:
        if isinstance(obj, BaseException):
            self.exc(where, obj)
            return
        self.text(f"repr({where})", _safe(repr, obj))
        self.text(f"str({where})", _safe(str, obj))

    def objs(self, **objects: object) -> None:
        for where, obj in objects.items():
            self.obj(where, obj)

    def history(self, where: str, attempts: object) -> None:
        for i, attempt in enumerate(attempts or ()):  # type: ignore[attr-defined]
            self.obj(f"{where}[{i}]", attempt)
            describe = getattr(attempt, "describe", None)
            if callable(describe):
                self.text(f"{where}[{i}].describe()", _safe(lambda _: describe(), None))

    def exc(self, where: str, exc: BaseException) -> None:
        self.text(f"traceback({where})",
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        pending: list[tuple[str, BaseException]] = [(where, exc)]
        done: set[int] = set()
        while pending:
            label, current = pending.pop()
            if id(current) in done:
                continue
            done.add(id(current))
            self.text(f"repr({label})", _safe(repr, current))
            self.text(f"str({label})", _safe(str, current))
            for i, arg in enumerate(current.args):
                self.text(f"{label}.args[{i}]", _safe(repr, arg))
            for note in getattr(current, "__notes__", ()):
                self.text(f"{label} note", str(note))
            for attr in ("status", "reason", "error", "description", "requested_wait",
                         "retry_in", "kind", "attempts"):
                if hasattr(current, attr):
                    self.obj(f"{label}.{attr}", getattr(current, attr))
            if isinstance(current, RequestFailed):
                self.history(f"{label}.history", current.history)
                if current.response is not None:
                    self.obj(f"{label}.response", current.response)
                # `.exception` (the HTTP library's own exception) is documented as possibly
                # carrying the full URL, query credentials included: it is not chained and
                # not searched here.
            if current.__cause__ is not None:
                pending.append((f"{label}.__cause__", current.__cause__))
            if current.__context__ is not None:
                pending.append((f"{label}.__context__", current.__context__))

    def response(self, where: str, response: object) -> None:
        self.obj(where, response)
        try:
            self.history(f"history_of({where})", history_of(response))
        except Exception as exc:
            self.exc(f"history_of({where}) failed", exc)

    def other_origin(self, label: str, received: list[dict[str, Any]]) -> None:
        for i, record in enumerate(received):
            self.text(f"request received by another origin ({label}) #{i}", repr(record))

    def leaks(self) -> list[str]:
        for record in self._caplog.records:
            if record.name == "surefoot" or record.name.startswith("surefoot."):
                self.text(f"caplog {record.name}:{record.levelname}", record.getMessage())
        self.text("caplog.text (surefoot records)", "\n".join(
            self._caplog.handler.format(r) for r in self._caplog.records
            if r.name == "surefoot" or r.name.startswith("surefoot.")))
        for warning in self._caught:
            self.text(f"warning {warning.category.__name__}", str(warning.message))
        out, err = self._capsys.readouterr()
        self.text("stdout", out)
        self.text("stderr", err)
        hits = []
        for where, text in self.seen:
            for name in find_canary(text, self.extra_forms):
                form = {**FORMS, **self.extra_forms}[name]
                at = text.find(form)
                excerpt = text[max(0, at - 120) : at + len(form) + 60].replace("\n", "\\n")
                hits.append(f"  [{name}] in {where}: ...{excerpt}...")
        return hits

    def assert_clean(self) -> None:
        assert self.seen, "nothing was captured: the sweep itself is broken"
        hits = self.leaks()
        assert not hits, "the canary leaked:\n" + "\n".join(dict.fromkeys(hits))


@pytest.fixture
def sweep(caplog: pytest.LogCaptureFixture,
          capsys: pytest.CaptureFixture[str]) -> Iterator[Sweep]:
    caplog.set_level(logging.DEBUG, logger="surefoot")
    logger = logging.getLogger("surefoot")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = Sweep(caplog, capsys, caught)
        handler = _Records(found)
        logger.addHandler(handler)
        try:
            yield found
        finally:
            logger.removeHandler(handler)


# --------------------------------------------------------------------------------------
# servers: the sandbox with the canary as every secret, and a scripted "other" server
# --------------------------------------------------------------------------------------

_NOT_CANARY = {"other-client": "not-the-canary-1", "other-key": "not-the-canary-2",
               "other-9421": "not-the-canary-3"}


@pytest.fixture(scope="module")
def canary_sandbox() -> Iterator[Sandbox]:
    with Sandbox(
        rate=10_000.0,
        burst=10_000,
        refresh_tokens=True,
        clients={"canary-client": CANARY, "other-client": _NOT_CANARY["other-client"]},
        hmac_keys={"canary-key": CANARY, "other-key": _NOT_CANARY["other-key"]},
        rfc9421_keys={"canary-9421": CANARY, "other-9421": _NOT_CANARY["other-9421"]},
    ) as sandbox:
        yield sandbox


def _json_bytes(payload: object) -> bytes:
    return json.dumps(payload).encode()


_TOKEN_OK = {"access_token": CANARY, "token_type": "Bearer", "expires_in": 3600,
             "refresh_token": CANARY, "scope": "read"}

#: path -> (status, extra headers, body)
_SCRIPTS: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {
    "/token/ok": (200, [], _json_bytes(_TOKEN_OK)),
    "/token/garbage": (200, [], b'{"access_token": "' + CANARY.encode() + b'", "expires_in": 36'),
    "/token/html": (200, [("Content-Type", "text/html")],
                    b"<html><body>token=" + CANARY.encode() + b"</body></html>"),
    "/token/bad-type": (200, [], _json_bytes({"access_token": CANARY, "token_type": "mac"})),
    "/token/no-access-token": (200, [], _json_bytes({"refresh_token": CANARY})),
    "/token/not-an-object": (200, [], _json_bytes([CANARY])),
    "/token/line-break": (200, [], _json_bytes({"access_token": CANARY + "\r\nX-Injected: 1"})),
    "/token/non-ascii": (200, [], _json_bytes({"access_token": CANARY + "\u00e9"})),
    "/token/invalid-client": (400, [], _json_bytes({"error": "invalid_client"})),
    "/token/invalid-grant": (400, [], _json_bytes({"error": "invalid_grant"})),
    "/token/server-error": (500, [], _json_bytes({"error": "server_error"})),
    "/revoke/ok": (200, [], b"{}"),
    "/revoke/error": (400, [], _json_bytes({"error": "invalid_request"})),
}


class _Scripted(ThreadingHTTPServer):
    daemon_threads = True
    received: list[dict[str, Any]]


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Scripted

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        self.server.received.append({"method": self.command, "path": self.path,
                                     "headers": list(self.headers.items()), "body": body})
        if path.startswith("/sink"):
            status, headers, payload = 200, [], b'{"ok": true}'
        elif path.startswith("/token/redirect"):
            status, headers, payload = 302, [("Location", "/sink/token-redirect")], b""
        else:
            status, headers, payload = _SCRIPTS.get(path, (404, [], b"{}"))
        self.send_response(status)
        if not any(name == "Content-Type" for name, _ in headers):
            self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@dataclasses.dataclass
class ScriptedServer:
    server: _Scripted

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def sink_url(self, label: str) -> str:
        return f"{self.url}/sink/{label}"

    def at_sink(self, label: str) -> list[dict[str, Any]]:
        prefix = f"/sink/{label}"
        return [r for r in list(self.server.received) if r["path"].startswith(prefix)]


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    server = _Scripted(("127.0.0.1", 0), _ScriptedHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield ScriptedServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------
# the three front doors
# --------------------------------------------------------------------------------------

FRONTS = ("requests", "httpx", "httpx_async")


@dataclasses.dataclass
class Call:
    path: str
    method: str = "GET"


_TLS: list[ssl.SSLContext] = []


def _inner_transport(front: str) -> Any:
    """httpx's own transport under surefoot's, with one TLS context for the whole module
    (building one per client costs more than the requests themselves)."""
    import httpx

    if not _TLS:
        _TLS.append(ssl.create_default_context())
    if front == "httpx_async":
        return httpx.AsyncHTTPTransport(verify=_TLS[0])
    return httpx.HTTPTransport(verify=_TLS[0])


def run_front(front: str, sweep: Sweep, base: str, calls: list[Call], *, auth: object = None,
              headers: dict[str, str] | None = None, retry: RetryPolicy | None = None,
              pacing: object = None, use_default_pacing: bool = True,
              show_client: bool = True) -> list[object]:
    """Send ``calls`` one after another through one client of ``front``; every response
    or exception (and the client) goes to the sweep. Returns the outcomes."""
    options: dict[str, Any] = {"auth": auth, "retry": retry, "headers": headers,
                               "hook": sweep.all_hooks, "timeout": 5.0}
    if not use_default_pacing:
        options["pacing"] = pacing
    if front != "requests":
        options["transport"] = _inner_transport(front)
    outcomes: list[object] = []

    def record(i: int, outcome: object) -> None:
        outcomes.append(outcome)
        if isinstance(outcome, BaseException):
            sweep.exc(f"{front} call {i} error", outcome)
        else:
            sweep.response(f"{front} call {i} response", outcome)

    if front == "httpx_async":
        async def main() -> None:
            async with surefoot.httpx.AsyncClient(base, **options) as client:
                if show_client:
                    sweep.objs(client=client, transport=client.transport)
                for i, call in enumerate(calls):
                    try:
                        outcome: object = await client.request(call.method, call.path)
                    except Exception as exc:
                        outcome = exc
                    record(i, outcome)

        asyncio.run(main())
        return outcomes
    client_type: Any = surefoot.Client if front == "requests" else surefoot.httpx.Client
    with client_type(base, **options) as client:
        if show_client:
            sweep.objs(client=client)
            sweep.obj("client.adapter/transport", getattr(client, "adapter", None)
                      or getattr(client, "transport", None))
        for i, call in enumerate(calls):
            try:
                outcome = client.request(call.method, call.path)
            except Exception as exc:
                outcome = exc
            record(i, outcome)
    return outcomes


def status_of(outcome: object) -> int | None:
    return getattr(outcome, "status_code", None)


def sweep_auth(sweep: Sweep, auth: object) -> None:
    """repr/str of an auth object and of everything it holds."""
    if auth is None:
        return
    sweep.obj("auth", auth)
    cache = getattr(auth, "cache", None)
    if cache is not None:
        sweep.objs(**{"auth.cache": cache, "auth.cache.source": cache.source,
                      "auth.cache.store": cache.store, "auth.cache.key": cache.key})
        client_auth = getattr(cache.source, "client_auth", None)
        if client_auth is not None:
            sweep.obj("auth.cache.source.client_auth", client_auth)
        try:
            sweep.obj("auth.cache.peek()", cache.peek())
        except Exception as exc:
            sweep.exc("auth.cache.peek() failed", exc)
    signer = getattr(auth, "signer", None)
    if signer is not None:
        sweep.obj("auth.signer", signer)
        for attr in ("key", "headers", "components"):
            if hasattr(signer, attr):
                sweep.obj(f"auth.signer.{attr}", getattr(signer, attr))
        if isinstance(signer, SigV4Signer):
            sweep.obj("auth.signer.credentials()", signer.credentials())


# --------------------------------------------------------------------------------------
# 1. the matrix: every kind of credential x every outcome x every front door
# --------------------------------------------------------------------------------------

BEARER_KINDS = ("client_secret_basic", "client_secret_post", "access_token", "refresh_token")
KINDS = ("hmac", "rfc9421", "sigv4", *BEARER_KINDS, "api_key_header", "authorization_header",
         "query_params", "userinfo")
OUTCOMES = ("success", "unauthorized", "redirect_other_origin", "retries_exhausted",
            "deadline", "retry_after_too_long", "transport", "reset", "circuit_open")


@dataclasses.dataclass
class Setup:
    base: str
    auth: object = None
    headers: dict[str, str] | None = None
    query: str = ""
    userinfo: bool = False
    success_path: str = "/status/200"
    refused_path: str = "/status/401"

    def target(self, path: str) -> str:
        if self.query:
            path += ("&" if "?" in path else "?") + self.query
        if self.userinfo:
            return self.base.replace("http://", f"http://canary-user:{Q}@", 1) + path
        return path


def make_setup(kind: str, base: str, sandbox: Sandbox, scripted: ScriptedServer,
               hook: Any) -> Setup:
    token_url = sandbox.url + "/oauth/token"
    if kind == "hmac":
        return Setup(base, SigningAuth.hmac("canary-key", CANARY), success_path="/signed/x")
    if kind == "rfc9421":
        key = SignatureKey("hmac-sha256", CANARY, key_id="canary-9421")
        return Setup(base, SigningAuth.rfc9421(key), success_path="/signed-rfc9421/x")
    if kind == "sigv4":
        auth = SigningAuth.sigv4(ACCESS_KEY_ID, CANARY, REGION, SERVICE, session_token=CANARY)
        return Setup(base, auth)
    if kind == "client_secret_basic":
        auth = BearerAuth.client_credentials(token_url, "canary-client", CANARY, hook=hook)
        return Setup(base, auth, success_path="/protected")
    if kind == "client_secret_post":
        auth = BearerAuth.client_credentials(token_url, "canary-client", CANARY, hook=hook,
                                             auth_method="client_secret_post")
        return Setup(base, auth, success_path="/protected")
    if kind == "access_token":
        return Setup(base, BearerAuth(lambda: CANARY, hook=hook), success_path="/limited/x")
    if kind == "refresh_token":
        auth = BearerAuth.refresh_token(scripted.url + "/token/ok", "canary-client", CANARY,
                                        refresh_token=CANARY, hook=hook)
        return Setup(base, auth, success_path="/limited/x")
    if kind == "api_key_header":
        return Setup(base, headers={"X-API-Key": CANARY}, success_path="/limited/x")
    if kind == "authorization_header":
        return Setup(base, headers={"Authorization": f"Bearer {CANARY}"})
    if kind == "query_params":
        return Setup(base, query=f"access_token={Q}&api_key={Q}", success_path="/limited/x")
    if kind == "userinfo":
        return Setup(base, userinfo=True)
    raise AssertionError(kind)


_FAST = {"backoff_initial": 0.01, "backoff_max": 0.02, "on_exhausted": "raise"}


def _matrix_params() -> list[Any]:
    params = []
    for front in FRONTS:
        for kind in KINDS:
            for outcome in OUTCOMES:
                marks: list[Any] = []
                params.append(pytest.param(front, kind, outcome, marks=marks,
                                           id=f"{front}-{kind}-{outcome}"))
    return params




@pytest.mark.parametrize(("front", "kind", "outcome"), _matrix_params())
def test_matrix(front: str, kind: str, outcome: str, sweep: Sweep, canary_sandbox: Sandbox,
                scripted: ScriptedServer, closed_port: int, no_wait: object) -> None:
    base = (f"http://127.0.0.1:{closed_port}" if outcome == "transport"
            else canary_sandbox.url)
    setup = make_setup(kind, base, canary_sandbox, scripted, sweep.all_hooks)
    retry = RetryPolicy(max_attempts=2, deadline=10.0, **_FAST)
    pacing_options: dict[str, Any] = {}
    label = f"{front}-{kind}"
    expected: type[BaseException] | int | None = None
    if outcome == "success":
        calls, expected = [Call(setup.target(setup.success_path))], 200
    elif outcome == "unauthorized":
        path = setup.refused_path
        if kind == "hmac":  # a real refusal: the server knows another secret for this key id
            setup.auth = SigningAuth.hmac("other-key", CANARY)
            path = "/signed/x"
        elif kind == "rfc9421":
            setup.auth = SigningAuth.rfc9421(
                SignatureKey("hmac-sha256", CANARY, key_id="other-9421"))
            path = "/signed-rfc9421/x"
        calls = [Call(setup.target(path))]
        expected = Unauthorized if kind in BEARER_KINDS else 401
    elif outcome == "redirect_other_origin":
        sink = quote(scripted.sink_url(label), safe="")
        calls, expected = [Call(setup.target(f"/redirect-to?url={sink}"))], 200
    elif outcome == "retries_exhausted":
        calls, expected = [Call(setup.target("/status/503"))], RetriesExhausted
    elif outcome == "deadline":
        retry = RetryPolicy(max_attempts=3, deadline=5.0, **_FAST)
        calls, expected = [Call(setup.target("/status/503?retry_after=30"))], DeadlineExceeded
    elif outcome == "retry_after_too_long":
        calls, expected = [Call(setup.target("/status/429?retry_after=1000"))], RetryAfterTooLong
    elif outcome == "transport":
        calls, expected = [Call(setup.target("/status/200"))], TransportError
    elif outcome == "reset":
        calls = [Call(setup.target("/flaky/x?p=1&fault=reset"))]
        expected = RequestFailed
    elif outcome == "circuit_open":
        retry = RetryPolicy(max_attempts=1, deadline=5.0, **_FAST)
        pacing_options = {"use_default_pacing": False, "pacing": PacingPolicy(
            breaker=BreakerPolicy(failure_threshold=1, failure_ratio=None, open_for=60.0))}
        calls = [Call(setup.target("/status/503")), Call(setup.target("/status/503"))]
        expected = CircuitOpen
    else:
        raise AssertionError(outcome)

    outcomes = run_front(front, sweep, setup.base, calls, auth=setup.auth,
                         headers=setup.headers, retry=retry, **pacing_options)
    sweep_auth(sweep, setup.auth)
    sweep.objs(retry=retry)
    if outcome == "redirect_other_origin":
        received = scripted.at_sink(label)
        assert received, "the redirect was not followed: the path was not exercised"
        sweep.other_origin(label, received)
        assert any(e.kind.value == "credentials_withheld" for e in sweep.events) or (
            setup.auth is None), "no credentials_withheld event"

    # the path really was the one named
    last = outcomes[-1]
    if isinstance(expected, int):
        assert status_of(last) == expected, repr(last)
    else:
        assert isinstance(last, expected), repr(last)
    sweep.assert_clean()


# --------------------------------------------------------------------------------------
# 1b. the auth objects alone: session.auth on requests, httpx.Client(auth=...) with
#     surefoot's Transport (as the README says, for redirects), sync and async
# --------------------------------------------------------------------------------------

ATTACHMENTS = ("requests_session_auth", "httpx_auth", "httpx_async_auth")
AUTH_KINDS = ("hmac", "rfc9421", "sigv4", *BEARER_KINDS)


def _standalone(attach: str, sweep: Sweep, auth: Any, url: str) -> object:
    import httpx
    import requests

    try:
        if attach == "requests_session_auth":
            with requests.Session() as session:
                session.auth = auth
                sweep.obj("session.auth", session.auth)
                return session.get(url, timeout=5)
        transport_type: Any = (surefoot.httpx.AsyncTransport if attach == "httpx_async_auth"
                               else surefoot.httpx.Transport)
        transport = transport_type(_inner_transport(attach.removesuffix("_auth")),
                                   retry=RetryPolicy.no_retries(), hook=sweep.all_hooks)
        sweep.obj("transport", transport)
        if attach == "httpx_auth":
            with httpx.Client(auth=auth, transport=transport, follow_redirects=True,
                              timeout=5) as client:
                return client.get(url)

        async def main() -> object:
            async with httpx.AsyncClient(auth=auth, transport=transport, follow_redirects=True,
                                         timeout=5) as client:
                return await client.get(url)

        return asyncio.run(main())
    except Exception as exc:
        return exc


@pytest.mark.parametrize("outcome", ["success", "unauthorized", "redirect_other_origin"])
@pytest.mark.parametrize("kind", AUTH_KINDS)
@pytest.mark.parametrize("attach", ATTACHMENTS)
def test_auth_objects_alone(attach: str, kind: str, outcome: str, sweep: Sweep,
                            canary_sandbox: Sandbox, scripted: ScriptedServer,
                            no_wait: object) -> None:
    setup = make_setup(kind, canary_sandbox.url, canary_sandbox, scripted, sweep.all_hooks)
    label = f"alone-{attach}-{kind}"
    path, expected = setup.success_path, 200
    if outcome == "unauthorized":
        path, expected = "/status/401", 401
    elif outcome == "redirect_other_origin":
        path = "/redirect-to?url=" + quote(scripted.sink_url(label), safe="")
    result = _standalone(attach, sweep, setup.auth, canary_sandbox.url + path)
    if isinstance(result, BaseException):
        sweep.exc(f"{attach} error", result)
    else:
        sweep.response(f"{attach} response", result)
    sweep_auth(sweep, setup.auth)
    if outcome == "redirect_other_origin":
        received = scripted.at_sink(label)
        assert received, "the redirect was not followed: the path was not exercised"
        sweep.other_origin(label, received)
    if outcome == "unauthorized" and kind in BEARER_KINDS:
        assert isinstance(result, Unauthorized) or status_of(result) == 401, repr(result)
    else:
        assert status_of(result) == expected, repr(result)
    sweep.assert_clean()


# --------------------------------------------------------------------------------------
# 2. the token endpoint's failures (and token functions), on every front door
# --------------------------------------------------------------------------------------


def _token_auth(case: str, sandbox: Sandbox, scripted: ScriptedServer, closed_port: int,
                hook: Any) -> BearerAuth:
    sb_token = sandbox.url + "/oauth/token"
    if case == "sandbox_invalid_client_basic":
        return BearerAuth.client_credentials(sb_token, "other-client", CANARY, hook=hook)
    if case == "sandbox_invalid_client_post":
        return BearerAuth.client_credentials(sb_token, "other-client", CANARY, hook=hook,
                                             auth_method="client_secret_post")
    if case == "sandbox_unknown_client":
        return BearerAuth.client_credentials(sb_token, "nobody", CANARY, hook=hook)
    if case == "sandbox_invalid_grant":
        return BearerAuth.refresh_token(sb_token, "canary-client", CANARY,
                                        refresh_token=CANARY, hook=hook)
    if case == "sandbox_http_500":
        return BearerAuth.client_credentials(sandbox.url + "/status/500", "canary-client",
                                             CANARY, hook=hook)
    if case == "sandbox_rate_limited_429":
        return BearerAuth.client_credentials(sandbox.url + "/status/429?retry_after=1000",
                                             "canary-client", CANARY, hook=hook)
    if case == "unreachable":
        return BearerAuth.client_credentials(f"http://127.0.0.1:{closed_port}/oauth/token",
                                             "canary-client", CANARY, hook=hook)
    if case.startswith("scripted_"):
        path = "/token/" + case.removeprefix("scripted_").replace("_", "-")
        if path == "/token/invalid-grant":
            return BearerAuth.refresh_token(scripted.url + path, "canary-client", CANARY,
                                            refresh_token=CANARY, hook=hook)
        return BearerAuth.client_credentials(scripted.url + path, "canary-client", CANARY,
                                             hook=hook, auth_method="client_secret_post")
    if case == "function_bad_token":
        return BearerAuth(lambda: CANARY + "\n", hook=hook)
    if case == "function_bad_mapping":
        return BearerAuth(lambda: {"access_token": CANARY, "token_type": "mac"}, hook=hook)
    if case == "function_raises_with_secret":
        def fails() -> str:
            return str(int(CANARY))  # ValueError: invalid literal ... 'c4n4ry...'
        return BearerAuth(fails, hook=hook)
    raise AssertionError(case)



TOKEN_CASES: dict[str, type[BaseException]] = {
    "sandbox_invalid_client_basic": InvalidClient,
    "sandbox_invalid_client_post": InvalidClient,
    "sandbox_unknown_client": InvalidClient,
    "sandbox_invalid_grant": InvalidGrant,
    "sandbox_http_500": TokenEndpointError,
    "sandbox_rate_limited_429": TokenEndpointError,
    "unreachable": TokenEndpointError,
    "scripted_garbage": TokenResponseError,
    "scripted_html": TokenResponseError,
    "scripted_bad_type": TokenResponseError,
    "scripted_no_access_token": TokenResponseError,
    "scripted_not_an_object": TokenResponseError,
    "scripted_line_break": TokenResponseError,
    "scripted_non_ascii": TokenResponseError,
    "scripted_invalid_client": InvalidClient,
    "scripted_invalid_grant": InvalidGrant,
    "scripted_server_error": TokenEndpointError,
    "scripted_redirect": TokenEndpointError,
    "function_bad_token": TokenResponseError,
    "function_bad_mapping": TokenResponseError,
    "function_raises_with_secret": TokenError,
}


def _token_params() -> list[Any]:
    params = []
    for front in FRONTS:
        for case in TOKEN_CASES:
            marks: list[Any] = []
            params.append(pytest.param(front, case, marks=marks, id=f"{front}-{case}"))
    return params


@pytest.mark.parametrize(("front", "case"), _token_params())
def test_token_endpoint_failures(front: str, case: str, sweep: Sweep, canary_sandbox: Sandbox,
                                 scripted: ScriptedServer, closed_port: int,
                                 no_wait: object) -> None:
    auth = _token_auth(case, canary_sandbox, scripted, closed_port, sweep.all_hooks)
    # twice: the second request meets the remembered failure (e.g. a dead refresh token)
    outcomes = run_front(front, sweep, canary_sandbox.url,
                         [Call("/status/200"), Call("/status/200")], auth=auth,
                         retry=RetryPolicy(max_attempts=2, deadline=10.0, **_FAST))
    sweep_auth(sweep, auth)
    if case == "scripted_redirect":
        assert not scripted.at_sink("token-redirect"), "the token request followed a redirect"
    assert isinstance(outcomes[0], TOKEN_CASES[case]), repr(outcomes[0])
    sweep.assert_clean()


# --------------------------------------------------------------------------------------
# 3. token stores: persisted tokens (canary access and refresh token), corrupt stores,
#    401 -> refresh with the stored refresh token, revocation
# --------------------------------------------------------------------------------------

STORE_CASES = ("file_seeded_refused", "sqlite_seeded_refused", "file_success_then_reload",
               "sqlite_success_then_reload", "file_corrupt", "file_malformed_token",
               "sqlite_corrupt_row", "sqlite_closed_unavailable", "revoke_ok",
               "revoke_refused", "revoke_invalid_client")


def _refresh_grant_key(token_url: str) -> str:
    return RefreshTokenGrant(token_url=token_url, refresh_token=CANARY,
                             client_id="canary-client", client_secret=CANARY).cache_key


@pytest.mark.parametrize("case", STORE_CASES)
def test_token_stores(case: str, sweep: Sweep, canary_sandbox: Sandbox,
                      scripted: ScriptedServer, tmp_path: Path, no_wait: object) -> None:
    hook = sweep.all_hooks
    sb_token = canary_sandbox.url + "/oauth/token"
    canary_token = Token(access_token=CANARY, refresh_token=CANARY, scope="read",
                         expires_at=time.time() + 3600, obtained_at=time.time())
    sweep.obj("canary token", canary_token)
    retry = RetryPolicy(max_attempts=2, deadline=10.0, **_FAST)
    calls = [Call("/protected"), Call("/protected")]
    store: Any
    if case in ("file_seeded_refused", "sqlite_seeded_refused"):
        # the stored canary token is refused (401) -> refresh with the stored canary
        # refresh token -> invalid_grant; the second request meets the dead refresh token
        store = (FileTokenStore(tmp_path / "tokens.json") if case.startswith("file")
                 else SQLiteStore(tmp_path / "surefoot.db"))
        tokens = store.tokens if isinstance(store, SQLiteStore) else store
        assert tokens.save(_refresh_grant_key(sb_token), canary_token, expected_version=0)
        auth = BearerAuth.refresh_token(sb_token, "canary-client", CANARY, refresh_token=CANARY,
                                        store=store, hook=hook)
        outcomes = run_front("requests", sweep, canary_sandbox.url, calls, auth=auth,
                             retry=retry)
        assert isinstance(outcomes[0], InvalidGrant), outcomes
        sweep.objs(store=store, tokens=tokens, loaded=tokens.load(auth.cache.key))
    elif case in ("file_success_then_reload", "sqlite_success_then_reload"):
        store = (FileTokenStore(tmp_path / "tokens.json") if case.startswith("file")
                 else SQLiteStore(tmp_path / "surefoot.db"))
        for round_ in range(2):  # the second auth object reads the token the first stored
            auth = BearerAuth.client_credentials(scripted.url + "/token/ok", "canary-client",
                                                 CANARY, store=store, hook=hook)
            outcomes = run_front("requests", sweep, canary_sandbox.url,
                                 [Call("/limited/x")], auth=auth, retry=retry)
            assert status_of(outcomes[0]) == 200, (round_, outcomes)
            sweep_auth(sweep, auth)
        sweep.obj("store", store)
    elif case in ("file_corrupt", "file_malformed_token"):
        path = tmp_path / "tokens.json"
        auth = BearerAuth.client_credentials(sb_token, "canary-client", CANARY,
                                             store=FileTokenStore(path), hook=hook)
        if case == "file_corrupt":
            path.write_text('{"tokens": {"' + auth.cache.key + '": {"access_token": "'
                            + CANARY + '", "expires_at": ')
        else:
            path.write_text(json.dumps({"tokens": {auth.cache.key: {
                "access_token": CANARY, "refresh_token": CANARY, "expires_at": "soon",
                "version": -1}}}))
        path.chmod(0o600)
        outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/protected")],
                             auth=auth, retry=retry)
        assert status_of(outcomes[0]) == 200, outcomes
    elif case == "sqlite_corrupt_row":
        store = SQLiteStore(tmp_path / "surefoot.db")
        auth = BearerAuth.client_credentials(sb_token, "canary-client", CANARY, store=store,
                                             hook=hook)
        store.tokens.save(auth.cache.key, canary_token, expected_version=0)
        with sqlite3.connect(tmp_path / "surefoot.db") as db:
            db.execute("UPDATE surefoot_tokens SET json = ?",
                       ('{"access_token": "' + CANARY + '", "expires_at": ',))
        outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/protected")],
                             auth=auth, retry=retry)
        assert status_of(outcomes[0]) == 200, outcomes
        sweep.obj("store", store)
    elif case == "sqlite_closed_unavailable":
        # a fail-closed store that cannot open its database: the token just obtained
        # (from the sandbox, with the canary client secret) is kept, not lost
        (tmp_path / "a-directory.db").mkdir()
        store = SQLiteStore(tmp_path / "a-directory.db", on_failure="closed", busy_timeout=0.2)
        auth = BearerAuth.client_credentials(scripted.url + "/token/ok", "canary-client",
                                             CANARY, store=store, hook=hook)
        outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/limited/x")],
                             auth=auth, retry=retry)
        assert isinstance(outcomes[0], StoreError), outcomes
        sweep.obj("store", store)
    else:  # revocation (RFC 7009): of the canary access and refresh tokens
        revocation = {"revoke_ok": scripted.url + "/revoke/ok",
                      "revoke_refused": scripted.url + "/revoke/error",
                      "revoke_invalid_client": canary_sandbox.url + "/oauth/revoke"}[case]
        token_url = scripted.url + "/token/ok"
        client_id = "other-client" if case == "revoke_invalid_client" else "canary-client"
        auth = BearerAuth.refresh_token(token_url, client_id, CANARY, refresh_token=CANARY,
                                        revocation_url=revocation, hook=hook)
        outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/limited/x")],
                             auth=auth, retry=retry)
        assert status_of(outcomes[0]) == 200, outcomes
        sweep_auth(sweep, auth)
        failure: Exception | None = None
        try:
            auth.cache.close(revoke=True)
        except Exception as exc:
            failure = exc
            sweep.exc("cache.close(revoke=True)", exc)
        assert (failure is None) == (case == "revoke_ok"), failure
    sweep_auth(sweep, auth)
    sweep.assert_clean()


def test_pacing_by_api_key(sweep: Sweep, canary_sandbox: Sandbox, no_wait: object) -> None:
    """The pacer partitions by the API key (its fingerprint): its state, its waits after a
    429 with Retry-After, and its repr stay clean."""
    pacer = surefoot.Pacer(PacingPolicy(partition_by="api_key"))
    calls = [Call("/status/429?retry_after=1"), Call("/limited/x"), Call("/status/503")]
    outcomes = run_front("requests", sweep, canary_sandbox.url, calls,
                         headers={"X-API-Key": CANARY}, use_default_pacing=False, pacing=pacer,
                         retry=RetryPolicy(max_attempts=2, deadline=10.0, **_FAST))
    sweep.obj("pacer", pacer)
    for name in dir(pacer):
        if not name.startswith("__"):
            sweep.obj(f"pacer.{name}", getattr(pacer, name, None))
    assert status_of(outcomes[1]) == 200, outcomes
    sweep.assert_clean()


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_redis_store_url_password_unreachable(on_failure: str, sweep: Sweep,
                                              canary_sandbox: Sandbox, scripted: ScriptedServer,
                                              closed_port: int, no_wait: object) -> None:
    """A Redis URL carrying the canary as its password, the server down: the store's
    repr, its FAILING OPEN warning or StoreUnavailable, and the token kept stay clean."""
    from surefoot.stores import RedisStore

    store = RedisStore(f"redis://:{Q}@127.0.0.1:{closed_port}/0", on_failure=on_failure,
                       timeout=0.2)
    sweep.objs(store=store, tokens=store.tokens, nonces=store.nonces)
    auth = BearerAuth.client_credentials(scripted.url + "/token/ok", "canary-client", CANARY,
                                         store=store, hook=sweep.all_hooks)
    outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/limited/x")] * 2,
                         auth=auth, retry=RetryPolicy(max_attempts=1, **_FAST))
    sweep_auth(sweep, auth)
    verifier = HmacVerifier({"canary-key": CANARY}, nonces=store)
    signed = _signer("hmac", CANARY).sign(_REQUEST, now=time.time())
    try:
        sweep.obj("verify", verifier.verify(SignedRequest.of(
            _REQUEST.method, _REQUEST.url, {**_REQUEST.headers, **signed}, _REQUEST.body)))
    except Exception as exc:
        sweep.exc("verify with the store down", exc)
    store.close()
    assert outcomes, outcomes
    sweep.assert_clean()


@pytest.mark.parametrize("server_password", ["none", "another"])
def test_redis_store_url_password(server_password: str, sweep: Sweep, redis_server: Any,
                                  canary_sandbox: Sandbox, scripted: ScriptedServer,
                                  no_wait: object) -> None:
    """A real Redis and the canary as the URL's password: accepted (a server without a
    password), or refused (AUTH fails: WRONGPASS), failing open and closed."""
    import redis

    from surefoot.stores import RedisStore

    other = "not-the-canary-redis"
    url = redis_server.url.replace("redis://", f"redis://:{Q}@")
    if server_password == "another":
        admin = redis.Redis.from_url(redis_server.url)
        admin.config_set("requirepass", other)
        admin.close()
    try:
        for on_failure in ("open", "closed"):
            store = RedisStore(url, on_failure=on_failure, timeout=0.5)
            auth = BearerAuth.client_credentials(scripted.url + "/token/ok", "canary-client",
                                                 CANARY, store=store, hook=sweep.all_hooks)
            outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/limited/x")],
                                 auth=auth, retry=RetryPolicy(max_attempts=1, **_FAST))
            assert outcomes, outcomes
            sweep.obj(f"store ({on_failure})", store)
            sweep_auth(sweep, auth)
            store.close()
    finally:
        if server_password == "another":
            admin = redis.Redis.from_url(redis_server.url.replace("redis://", f"redis://:{other}@"))
            admin.config_set("requirepass", "")
            admin.close()
    if server_password == "another":
        assert any("WRONGPASS" in text or "FAILING OPEN" in text or "nauthenticat" in text
                   or "Authentication" in text for _, text in sweep.seen), (
            "the refused password left no trace: the path was not exercised")
    sweep.assert_clean()


def test_key_passwords(sweep: Sweep, canary_sandbox: Sandbox, scripted: ScriptedServer,
                       no_wait: object) -> None:
    """The canary as the password of encrypted private keys (RFC 9421 ed25519 signing,
    private_key_jwt client authentication), right and wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from surefoot.oauth import PrivateKeyJwt

    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(CANARY.encode()))
    other_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"not-the-canary"))
    key = SignatureKey.from_pem("ed25519", pem, key_id="ed", password=CANARY.encode())
    auth = SigningAuth.rfc9421(key)
    outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/status/200")],
                         auth=auth)
    assert status_of(outcomes[0]) == 200, outcomes
    sweep_auth(sweep, auth)
    jwt = PrivateKeyJwt("canary-client", pem, password=CANARY.encode())
    sweep.objs(jwt=jwt, assertion=jwt.assertion(token_url=scripted.url + "/token/ok",
                                                now=time.time()))
    jwt_auth = BearerAuth.client_credentials(scripted.url + "/token/ok", client_auth=jwt,
                                             hook=sweep.all_hooks)
    outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/limited/x")],
                         auth=jwt_auth)
    assert status_of(outcomes[0]) == 200, outcomes
    sweep_auth(sweep, jwt_auth)
    for what, build in (
        ("SignatureKey, wrong password", lambda: SignatureKey.from_pem(
            "ed25519", other_pem, password=CANARY.encode())),
        ("SignatureKey, no password", lambda: SignatureKey.from_pem("ed25519", pem)),
        ("PrivateKeyJwt, wrong password", lambda: PrivateKeyJwt(
            "canary-client", other_pem, password=CANARY.encode()).assertion(
                token_url=scripted.url + "/token/ok", now=time.time())),
    ):
        with pytest.raises(Exception) as caught:
            build()
        sweep.exc(what, caught.value)
    sweep.assert_clean()


# --------------------------------------------------------------------------------------
# 4. verifiers, used directly and through the WSGI and ASGI middleware
# --------------------------------------------------------------------------------------

_REQUEST = HttpRequest("POST", "https://api.example.test/v1/items?page=2",
                       {"content-type": "application/json", "host": "api.example.test"},
                       b'{"amount": 100}')
_NONCE = "00112233445566778899aabbccddeeff"


def _signer(scheme: str, secret: str) -> Any:
    if scheme == "hmac":
        return HmacSigner("canary-key", secret, nonce_factory=lambda: _NONCE)
    if scheme == "rfc9421":
        key = SignatureKey("hmac-sha256", secret, key_id="canary-9421")
        return MessageSigner(key, content_digest="sha-256", nonce_factory=lambda: _NONCE)
    return SigV4Signer(SigV4Credentials(ACCESS_KEY_ID, secret, CANARY), REGION, SERVICE)


def _verifier(scheme: str, secret: str) -> Any:
    if scheme == "hmac":
        return HmacVerifier({"canary-key": secret}, nonces=MemoryNonceCache())
    if scheme == "rfc9421":
        return MessageVerifier(
            {"canary-9421": SignatureKey("hmac-sha256", secret, key_id="canary-9421")},
            require_content_digest=True, nonces=MemoryNonceCache())
    return SigV4Verifier({ACCESS_KEY_ID: secret}, region=REGION, service=SERVICE,
                         nonces=MemoryNonceCache())


def _signature_values(scheme: str, headers: dict[str, str]) -> dict[str, str]:
    """The secret-derived values of a set of signature headers."""
    if scheme == "hmac":
        return {"signature": headers["X-Signature"]}
    if scheme == "rfc9421":
        return {"signature": headers["Signature"].split(":")[1]}
    return {"signature": headers["Authorization"].rpartition("Signature=")[2]}


def _tampered(scheme: str, case: str, signed: dict[str, str]) -> tuple[HttpRequest,
                                                                        dict[str, str], float]:
    """The request as received, its headers, and the time it is verified at."""
    request, headers, now = _REQUEST, dict(signed), FIXED_NOW + 1
    if case == "bad_signature":
        if scheme == "hmac":
            headers["X-Signature"] = "0" * 64
        elif scheme == "rfc9421":
            headers["Signature"] = "sig1=:" + base64.b64encode(b"\0" * 32).decode() + ":"
        else:
            head, _, _ = headers["Authorization"].rpartition("Signature=")
            headers["Authorization"] = head + "Signature=" + "0" * 64
    elif case == "tampered_body":
        request = dataclasses.replace(_REQUEST, body=b'{"amount": 100000}')
    elif case == "tampered_path":
        request = dataclasses.replace(_REQUEST, url=_REQUEST.url.replace("items", "admin"))
    elif case == "skewed":
        now = FIXED_NOW + 100_000
    elif case == "missing_header":
        headers.popitem()
    return request, headers, now


VERIFY_CASES = ("valid_then_replayed", "bad_signature", "tampered_body", "tampered_path",
                "skewed", "missing_header", "wrong_secret_on_verifier")


@pytest.mark.parametrize("case", VERIFY_CASES)
@pytest.mark.parametrize("scheme", ["hmac", "rfc9421", "sigv4"])
def test_verifiers(scheme: str, case: str, sweep: Sweep) -> None:
    signer = _signer(scheme, CANARY)
    signed = signer.sign(_REQUEST, now=FIXED_NOW)
    verifier = _verifier(scheme, _NOT_CANARY["other-key"] if case == "wrong_secret_on_verifier"
                         else CANARY)
    request, headers, now = _tampered(scheme, case, signed)
    # what a verifier holding the canary would expect for the request as received: never
    # to be shown (with it anyone could forge this request)
    expected = signer.sign(request, now=FIXED_NOW)
    sweep.extra_forms.update({f"expected {k}": v
                              for k, v in _signature_values(scheme, expected).items()})
    if case in ("bad_signature", "missing_header"):
        sweep.extra_forms.update({f"original {k}": v
                                  for k, v in _signature_values(scheme, signed).items()})
    received = SignedRequest.of(request.method, request.url,
                                {**request.headers, **headers}, request.body)
    sweep.objs(signer=signer, verifier=verifier, request=request, received=received,
               nonces=verifier.nonces)
    accepted = []
    for attempt in range(2 if case == "valid_then_replayed" else 1):
        try:
            identity = verifier.verify(received, now=now)
        except SignatureError as exc:
            sweep.exc(f"verify #{attempt}", exc)
            sweep.objs(**{f"challenge #{attempt}": verifier.challenge(exc)})
        else:
            accepted.append(attempt)
            sweep.obj(f"identity #{attempt}", identity)
    # valid: accepted once, then refused as a replay; anything else: refused
    assert accepted == ([0] if case == "valid_then_replayed" else []), accepted
    sweep.assert_clean()


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"ok": true}']


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


@pytest.mark.parametrize("case", ["bad_signature", "tampered_body", "skewed", "valid"])
@pytest.mark.parametrize("scheme", ["hmac", "rfc9421", "sigv4"])
@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_middleware(server: str, scheme: str, case: str, sweep: Sweep) -> None:
    signer = _signer(scheme, CANARY)
    when = time.time()
    signed = signer.sign(_REQUEST, now=when)
    request, headers, _ = _tampered(scheme, case, signed)
    if case == "skewed":
        signed = signer.sign(_REQUEST, now=when - 100_000)
        headers = dict(signed)
    expected = signer.sign(request, now=when)
    sweep.extra_forms.update({f"expected {k}": v
                              for k, v in _signature_values(scheme, expected).items()})
    verifier = _verifier(scheme, CANARY)
    all_headers = {**request.headers, **headers}
    target = request.url.removeprefix("https://api.example.test")
    path, _, query = target.partition("?")
    rejected: list[object] = []

    def on_reject(error: object, received: object) -> None:
        rejected.append(error)
        sweep.objs(**{"on_reject error": error, "on_reject request": received})

    status: list[str] = []
    reply_headers: list[object] = []
    body = b""
    if server == "wsgi":
        middleware: Any = VerifyWSGI(_wsgi_app, verifier, on_reject=on_reject)
        environ = {
            "REQUEST_METHOD": request.method, "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_NAME": "api.example.test", "SERVER_PORT": "443", "wsgi.url_scheme": "https",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": io.BytesIO(request.body),
            "CONTENT_LENGTH": str(len(request.body)), "REMOTE_ADDR": "127.0.0.1",
        }
        for name, value in all_headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ[key] = value
            else:
                environ["HTTP_" + key] = value

        def start_response(line: str, response_headers: list[object], *exc: object) -> None:
            status.append(line)
            reply_headers.extend(response_headers)

        body = b"".join(middleware(environ, start_response))
    else:
        middleware = VerifyASGI(_asgi_app, verifier, on_reject=on_reject)
        scope = {"type": "http", "method": request.method, "path": path,
                 "raw_path": path.encode(), "query_string": query.encode(), "scheme": "https",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
                 "server": ("api.example.test", 443), "client": ("127.0.0.1", 5000),
                 "http_version": "1.1", "root_path": ""}
        sent: list[dict[str, Any]] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(middleware(scope, receive, send))
        for message in sent:
            if message["type"] == "http.response.start":
                status.append(str(message["status"]))
                reply_headers.extend(message.get("headers", []))
            else:
                body += message.get("body", b"")
    sweep.objs(middleware=middleware, status=status, reply_headers=reply_headers,
               body=body.decode("utf-8", "replace"))
    assert (case == "valid") == (not rejected), (status, body)
    sweep.assert_clean()


# --------------------------------------------------------------------------------------
# 5. repr of objects built from URLs that carry credentials
# --------------------------------------------------------------------------------------



@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_base_url_with_credentials_flow(front: str, where: str, sweep: Sweep,
                                        canary_sandbox: Sandbox, no_wait: object) -> None:
    """A base URL carrying the canary: requests, events, logs and errors stay clean (the
    client's own repr is checked by the next test)."""
    base = (canary_sandbox.url.replace("http://", f"http://canary-user:{Q}@")
            if where == "userinfo" else canary_sandbox.url + f"/?api_key={Q}")
    calls = [Call("/status/200"), Call("/status/503")]
    retry = RetryPolicy(max_attempts=2, deadline=10.0, **_FAST)
    if front == "httpx_async":
        async def main() -> list[object]:
            async with surefoot.httpx.AsyncClient(
                base, retry=retry, hook=sweep.all_hooks, transport=_inner_transport(front),
            ) as client:
                out: list[object] = []
                for call in calls:
                    try:
                        out.append(await client.request(call.method, call.path))
                    except Exception as exc:
                        out.append(exc)
                return out

        outcomes = asyncio.run(main())
    else:
        client_type: Any = surefoot.Client if front == "requests" else surefoot.httpx.Client
        extra = {} if front == "requests" else {"transport": _inner_transport(front)}
        outcomes = []
        with client_type(base, retry=retry, hook=sweep.all_hooks, **extra) as client:
            for call in calls:
                try:
                    outcomes.append(client.request(call.method, call.path))
                except Exception as exc:
                    outcomes.append(exc)
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            sweep.exc(f"call {i}", outcome)
        else:
            sweep.response(f"call {i}", outcome)
    assert status_of(outcomes[0]) == 200
    assert isinstance(outcomes[1], RetriesExhausted)
    sweep.assert_clean()


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_base_url_with_credentials_client_repr(front: str, where: str, sweep: Sweep) -> None:
    base = (f"http://canary-user:{Q}@127.0.0.1:9/" if where == "userinfo"
            else f"http://127.0.0.1:9/?api_key={Q}")
    client_type: Any = {"requests": surefoot.Client, "httpx": surefoot.httpx.Client,
                        "httpx_async": surefoot.httpx.AsyncClient}[front]
    client = client_type(base)
    sweep.obj("client", client)
    sweep.assert_clean()


@pytest.mark.parametrize("url", ["token_url_query", "token_url_userinfo",
                                 "revocation_url_query"])
def test_oauth_urls_with_credentials_repr(url: str, sweep: Sweep, scripted: ScriptedServer,
                                          canary_sandbox: Sandbox, no_wait: object) -> None:
    token_url = scripted.url + "/token/ok"
    revocation_url = None
    if url == "token_url_query":
        token_url += f"?api_key={Q}"
    elif url == "token_url_userinfo":
        token_url = token_url.replace("http://", f"http://canary-client:{Q}@")
    else:
        revocation_url = scripted.url + f"/revoke/ok?api_key={Q}"
    auth = BearerAuth.client_credentials(token_url, "canary-client", CANARY,
                                         revocation_url=revocation_url, hook=sweep.all_hooks)
    outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/limited/x")],
                         auth=auth, retry=RetryPolicy(max_attempts=1, **_FAST))
    assert status_of(outcomes[0]) == 200, outcomes
    sweep_auth(sweep, auth)
    sweep.assert_clean()


@pytest.mark.parametrize("url", ["token_url_query", "revocation_url_query"])
def test_oauth_urls_with_credentials_flow(url: str, sweep: Sweep, scripted: ScriptedServer,
                                          canary_sandbox: Sandbox, no_wait: object) -> None:
    """The same grants, minus the reprs of the objects holding the URL: the token and
    revocation requests' events, logs and errors stay clean."""
    token_url = scripted.url + "/token/server-error"
    revocation_url = None
    if url == "token_url_query":
        token_url += f"?api_key={Q}"
    else:
        token_url = scripted.url + "/token/ok"
        revocation_url = scripted.url + f"/revoke/error?api_key={Q}"
    auth = BearerAuth.client_credentials(token_url, "canary-client", CANARY,
                                         revocation_url=revocation_url, hook=sweep.all_hooks)
    outcomes = run_front("requests", sweep, canary_sandbox.url, [Call("/limited/x")],
                         auth=auth, retry=RetryPolicy(max_attempts=1, **_FAST),
                         show_client=False)
    if revocation_url is not None:
        assert status_of(outcomes[0]) == 200, outcomes
        with pytest.raises(TokenEndpointError) as caught:
            auth.cache.close(revoke=True)
        sweep.exc("revoke", caught.value)
    else:
        assert isinstance(outcomes[0], TokenEndpointError), outcomes
    sweep.obj("token", auth.cache.peek())
    sweep.assert_clean()


def test_http_request_repr_with_query_credentials(sweep: Sweep) -> None:
    request = HttpRequest("GET", f"https://api.example.test/v1?access_token={Q}", {})
    sweep.obj("HttpRequest", request)
    sweep.assert_clean()


def test_signed_request_repr_with_credentials_in_url(sweep: Sweep) -> None:
    """What a verifier is handed: its repr drops the query, the userinfo and matrix
    parameters' credentials (a proxy may have kept them in the URL)."""
    from surefoot.signing import SignedRequest

    request = SignedRequest.of(
        "GET", f"https://u:{Q}@api.example.test/v1;access_token={Q}?api_key={Q}",
        {"authorization": f"Bearer {CANARY}"},
    )
    sweep.obj("SignedRequest", request)
    sweep.assert_clean()


_TOKEN_URL = "https://auth.example.test/token"
_REVOKE_URL = "https://auth.example.test/revoke"


def test_http_request_repr_headers_and_body(sweep: Sweep) -> None:
    """What a grant builds for the token endpoint (client secret in Basic, in the form,
    refresh token in the form) and what a signer signs: their reprs stay clean."""
    grants = [
        ClientCredentials(token_url=_TOKEN_URL, client_id="canary-client", client_secret=CANARY,
                          revocation_url=_REVOKE_URL),
        ClientCredentials(token_url=_TOKEN_URL, client_id="canary-client", client_secret=CANARY,
                          auth_method="client_secret_post", revocation_url=_REVOKE_URL),
        RefreshTokenGrant(token_url=_TOKEN_URL, client_id="canary-client", client_secret=CANARY,
                          refresh_token=CANARY, revocation_url=_REVOKE_URL),
    ]
    for i, grant in enumerate(grants):
        sweep.objs(**{f"grant {i}": grant, f"grant {i} request": grant.build_request(now=0)})
        revocation = grant.build_revocation_request(CANARY, "refresh_token", now=0)
        sweep.obj(f"grant {i} revocation request", revocation)
    cache = TokenCache(grants[2], hook=sweep.all_hooks)
    sweep.obj("cache", cache)
    for scheme in ("hmac", "rfc9421", "sigv4"):
        signer = _signer(scheme, CANARY)
        request = HttpRequest("POST", "https://api.example.test/v1",
                              {"X-API-Key": CANARY, "Authorization": f"Bearer {CANARY}"},
                              CANARY.encode())
        sweep.objs(**{f"{scheme} signer": signer, f"{scheme} request": request})
    sweep.assert_clean()


# --------------------------------------------------------------------------------------
# 6. the CLI: `python -m surefoot request ... -v`, secrets from env vars and @files
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class CliCase:
    commands: list[list[str]]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    exit_codes: tuple[int, ...] = (0,)
    sink: str | None = None


@dataclasses.dataclass
class CliResult:
    returncodes: list[int]
    stdout: str
    stderr: str


def _cli_cases(sb: str, scripted: ScriptedServer, closed_port: int,
               files: Path) -> dict[str, CliCase]:
    secret_file = files / "secret.txt"
    secret_file.write_text(CANARY + "\n")
    b64_file = files / "secret.b64"
    b64_file.write_text(base64.b64encode(CANARY.encode()).decode() + "\n")
    token_cache = files / "token.json"
    corrupt_cache = files / "corrupt.json"
    corrupt_cache.write_text('{"tokens": {"x": {"access_token": "' + CANARY + '", ')
    corrupt_cache.chmod(0o600)
    userinfo_base = sb.replace("http://", f"http://canary-user:{Q}@")
    creds_query = f"access_token={Q}&api_key={Q}"
    oauth = ["--oauth2-token-url", sb + "/oauth/token", "--client-id", "canary-client"]
    secret_env = {"SUREFOOT_CLIENT_SECRET": CANARY}
    get = ["request", "GET"]
    return {
        "sign_hmac_env": CliCase([[*get, sb + "/signed/x", "--sign",
                                   "hmac:canary-key:env:SF_CANARY"]], {"SF_CANARY": CANARY}),
        "sign_hmac_file": CliCase([[*get, sb + "/signed/x", "--sign",
                                    f"hmac:canary-key:@{secret_file}"]]),
        "sign_hmac_default_env_refused": CliCase(
            [[*get, sb + "/signed/x", "--sign", "hmac:other-key", "--retries", "1"]],
            {"SUREFOOT_HMAC_SECRET": CANARY}, (3,)),
        "legacy_hmac_option_env": CliCase([[*get, sb + "/signed/x", "--hmac", "canary-key:"]],
                                          {"SUREFOOT_HMAC_SECRET": CANARY}),
        "sign_secret_on_command_line_refused": CliCase(
            [[*get, sb + "/signed/x", "--sign", f"hmac:canary-key:{CANARY}"]], {}, (2,)),
        "sign_rfc9421_base64_file": CliCase(
            [[*get, sb + "/signed-rfc9421/x", "--sign",
              f"rfc9421:hmac-sha256:canary-9421:@{b64_file}", "--secret-encoding", "base64"]]),
        "sign_rfc9421_invalid_base64": CliCase(
            [[*get, sb + "/signed-rfc9421/x", "--sign",
              f"rfc9421:hmac-sha256:canary-9421:@{secret_file}", "--secret-encoding",
              "base64"]], {}, (2,)),
        "sign_rfc9421_refused": CliCase(
            [[*get, sb + "/signed-rfc9421/x", "--sign", "rfc9421:hmac-sha256:other-9421"]],
            {"SUREFOOT_SIGNING_KEY": CANARY}, (3,)),
        "sigv4_env_then_redirect": CliCase(
            [[*get, sb + "/status/200", "--sign", f"sigv4:{REGION}:{SERVICE}"],
             [*get, sb + "/redirect-to?url=" + quote(scripted.sink_url("cli-sigv4"), safe=""),
              "--sign", f"sigv4:{REGION}:{SERVICE}"]],
            {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": CANARY,
             "AWS_SESSION_TOKEN": CANARY}, (0, 0), "cli-sigv4"),
        "sigv4_files_http_error": CliCase(
            [[*get, sb + "/status/503", "--retries", "1", "--sign", f"sigv4:{REGION}:s3",
              "--aws-access-key-id", ACCESS_KEY_ID, "--aws-secret-access-key",
              f"@{secret_file}", "--aws-session-token", f"@{secret_file}",
              "--unsigned-payload"]], {}, (3,)),
        "oauth_token_cache_then_401": CliCase(
            [[*get, sb + "/protected", *oauth, "--token-cache", str(token_cache)],
             [*get, sb + "/status/401", *oauth, "--token-cache", str(token_cache),
              "--oauth2-auth-method", "post"]],
            secret_env, (0, 3)),
        "oauth_redirect_other_origin": CliCase(
            [[*get, sb + "/redirect-to?url=" + quote(scripted.sink_url("cli-oauth"), safe=""),
              *oauth]], secret_env, (0,), "cli-oauth"),
        "oauth_invalid_client_secret_option": CliCase(
            [[*get, sb + "/protected", "--oauth2-token-url", sb + "/oauth/token",
              "--client-id", "other-client", "--client-secret", CANARY]], {}, (5,)),
        "oauth_token_garbage": CliCase(
            [[*get, sb + "/protected", "--oauth2-token-url", scripted.url + "/token/garbage",
              "--client-id", "canary-client", "--oauth2-auth-method", "post"]],
            secret_env, (5,)),
        "oauth_token_http_500": CliCase(
            [[*get, sb + "/protected", "--oauth2-token-url", sb + "/status/500",
              "--client-id", "canary-client"]], secret_env, (5,)),
        "oauth_corrupt_token_cache": CliCase(
            [[*get, sb + "/protected", *oauth, "--token-cache", str(corrupt_cache)]],
            secret_env),
        "url_credentials_ok": CliCase([[*get, userinfo_base + f"/status/200?{creds_query}"]]),
        "url_credentials_http_error": CliCase(
            [[*get, userinfo_base + f"/status/503?{creds_query}", "--retries", "1"]], {}, (3,)),
        "url_credentials_retry_after_too_long": CliCase(
            [[*get, sb + f"/status/429?retry_after=1000&{creds_query}"]], {}, (3,)),
        "url_credentials_closed_port": CliCase(
            [[*get, f"http://canary-user:{Q}@127.0.0.1:{closed_port}/x?{creds_query}",
              "--retries", "0"]], {}, (4,)),
        "url_credentials_invalid_url": CliCase(
            [[*get, f"http://canary-user:{Q}@127.0.0.1:99999/x?{creds_query}"]], {}, (2,)),
        "header_api_key_ok": CliCase([[*get, sb + "/limited/x", "-H", f"X-API-Key: {CANARY}"]]),
        "header_api_key_redirect_other_origin": CliCase(
            [[*get, sb + "/redirect-to?url=" + quote(scripted.sink_url("cli-api-key"), safe=""),
              "-H", f"X-API-Key: {CANARY}"]], {}, (0,), "cli-api-key"),
        "header_api_key_invalid_value": CliCase(
            [[*get, sb + "/limited/x", "-H", f"X-API-Key: {CANARY}\x01"]], {}, (2,)),
    }

def _run_cli(case: CliCase) -> CliResult:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUREFOOT_", "AWS_"))}
    env.update(case.env)
    codes, out, err = [], [], []
    for command in case.commands:
        done = subprocess.run([sys.executable, "-m", "surefoot", *command, "-v"],
                              capture_output=True, timeout=60, env=env, check=False)
        codes.append(done.returncode)
        out.append(done.stdout.decode("utf-8", "replace"))
        err.append(done.stderr.decode("utf-8", "replace"))
    return CliResult(codes, "\n".join(out), "\n".join(err))


class _ClosedPort:
    """A loopback port with nothing listening on it (as the ``closed_port`` fixture)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        pass


CLI_NAMES = (
    "sign_hmac_env", "sign_hmac_file", "sign_hmac_default_env_refused",
    "legacy_hmac_option_env", "sign_secret_on_command_line_refused",
    "sign_rfc9421_base64_file", "sign_rfc9421_invalid_base64", "sign_rfc9421_refused",
    "sigv4_env_then_redirect", "sigv4_files_http_error", "oauth_token_cache_then_401",
    "oauth_redirect_other_origin", "oauth_invalid_client_secret_option",
    "oauth_token_garbage", "oauth_token_http_500", "oauth_corrupt_token_cache",
    "url_credentials_ok", "url_credentials_http_error", "url_credentials_retry_after_too_long",
    "url_credentials_closed_port", "url_credentials_invalid_url", "header_api_key_ok",
    "header_api_key_redirect_other_origin", "header_api_key_invalid_value",
)


@pytest.fixture(scope="module")
def cli_results(canary_sandbox: Sandbox, scripted: ScriptedServer,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[CliCase, CliResult]]:
    """Every CLI case, run once, a few at a time (each is a fresh interpreter)."""
    with _ClosedPort() as port:
        cases = _cli_cases(canary_sandbox.url, scripted, port, tmp_path_factory.mktemp("cli"))
    assert set(cases) == set(CLI_NAMES)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run_cli, case) for name, case in cases.items()}
        return {name: (cases[name], future.result()) for name, future in futures.items()}




@pytest.mark.parametrize("name", CLI_NAMES)
def test_cli(name: str, cli_results: dict[str, tuple[CliCase, CliResult]], sweep: Sweep,
             scripted: ScriptedServer) -> None:
    case, result = cli_results[name]
    sweep.text("CLI stdout", result.stdout)
    sweep.text("CLI stderr", result.stderr)
    if case.sink is not None:
        received = scripted.at_sink(case.sink)
        assert received, "the redirect was not followed"
        sweep.other_origin(case.sink, received)
    assert tuple(result.returncodes) == case.exit_codes, (result.returncodes, result.stderr)
    assert result.stderr.strip(), "-v printed nothing: the path was not exercised"
    sweep.assert_clean()


# --------------------------------------------------------------------------------------
# 7. the sweep itself finds the canary
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shown", [
    CANARY,
    Q,
    quote_plus(CANARY),
    "Basic " + base64.b64encode(f"canary-client:{quote_plus(CANARY)}".encode()).decode(),
    "Basic " + base64.b64encode(f"x:{CANARY}".encode()).decode(),
    "Basic " + base64.b64encode(f"xy:{CANARY}".encode()).decode(),
    base64.urlsafe_b64encode(b"prefix" + CANARY.encode()).decode(),
    CANARY.encode().hex(),
    f"...{CANARY_FRAGMENT}...",
])
def test_sweep_finds_the_canary(shown: str, sweep: Sweep) -> None:
    logging.getLogger("surefoot.test").debug("shown: %s", shown)
    assert sweep.leaks()
