"""Server-side verification middleware (``surefoot.middleware``), over real servers.

WSGI: an application served by wsgiref (no raw request target: the URL is rebuilt from
``PATH_INFO``) and by the sandbox's HTTP/1.1 server (``REQUEST_URI``, chunked bodies),
on loopback, driven with ``http.client``. ASGI: the same application driven by httpx's
``ASGITransport`` (an independent implementation of the server side of the protocol)
and, for the corner cases (disconnects, split bodies, lifespan), by a small driver that
calls the application with ``scope``/``receive``/``send`` directly.

Each scheme (the tutorial's HMAC, RFC 9421, SigV4) on each server: a valid request is
accepted and the application sees the whole body; tampering with the method, path,
query, body, key or timestamp is rejected, and so is a replay.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
import requests
from http_sfv.dictionary import Dictionary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import surefoot
from surefoot.middleware import (
    Identity,
    SignedRequest,
    VerifyASGI,
    VerifyWSGI,
    identity,
)
from surefoot.sandbox import Sandbox
from surefoot.sandbox._server import SandboxHTTPServer
from surefoot.signing import (
    HmacSigner,
    HmacVerifier,
    HttpRequest,
    MessageSigner,
    MessageVerifier,
    SignatureKey,
    SigV4Credentials,
    SigV4Signer,
    SigV4Verifier,
    Verifier,
    content_digest,
)
from surefoot.stores import MemoryNonceCache

KEY_ID = "test-key"
SECRET = "s3cr3t-never-shown"
PROTECTED = "/api"
REGION, SERVICE = "eu-west-1", "execute-api"


# -- the applications behind the middleware ---------------------------------------------


def wsgi_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A plain WSGI app: reads its body by CONTENT_LENGTH and says what it saw."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    body = stream.read(length) if length else b""
    found = identity(environ)
    payload = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING", ""),
        "body": body.decode("latin-1"),
        "identity": [found.scheme, found.key_id] if found else None,
        "replaced_input": stream is not environ.get("test.server_input"),
    }
    data = json.dumps(payload).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app: receives its body message by message and says what it saw."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    chunks: list[bytes] = []
    messages = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        messages += 1
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    found = identity(scope)
    payload = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope.get("query_string", b"").decode("latin-1"),
        "body": b"".join(chunks).decode("latin-1"),
        "identity": [found.scheme, found.key_id] if found else None,
        "messages": messages,
    }
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


# -- the schemes ------------------------------------------------------------------------


@dataclass
class Scheme:
    name: str
    verifier: Callable[..., Any]
    sign: Callable[..., dict[str, str]]
    retime: Callable[[dict[str, str]], dict[str, str]]
    """Moves the signed timestamp by one second without signing again."""
    body_reason: str
    """The reason a changed body is rejected with."""


def _hmac_sign(method: str, url: str, body: bytes, *, key_id: str = KEY_ID,
               secret: str = SECRET, now: float | None = None) -> dict[str, str]:
    return HmacSigner(key_id, secret).sign(HttpRequest(method, url, {}, body), now=now)


def _hmac_retime(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "X-Timestamp": str(int(headers["X-Timestamp"]) - 1)}


def _rfc9421_sign(method: str, url: str, body: bytes, *, key_id: str = KEY_ID,
                  secret: str = SECRET, now: float | None = None) -> dict[str, str]:
    headers: dict[str, str] = {}
    components = ["@method", "@authority", "@path", "@query"]
    if body:
        headers["Content-Digest"] = content_digest(body)
        components.append("content-digest")
    signer = MessageSigner(SignatureKey("hmac-sha256", secret, key_id=key_id),
                           components=components)
    headers.update(signer.sign(HttpRequest(method, url, headers, body), now=now))
    return headers


def _rfc9421_retime(headers: dict[str, str]) -> dict[str, str]:
    text = headers["Signature-Input"]
    before, _, rest = text.partition(";created=")
    created, _, after = rest.partition(";")
    return {**headers, "Signature-Input": f"{before};created={int(created) - 1};{after}"}


def _sigv4_sign(method: str, url: str, body: bytes, *, key_id: str = KEY_ID,
                secret: str = SECRET, now: float | None = None) -> dict[str, str]:
    signer = SigV4Signer(SigV4Credentials(key_id, secret), REGION, SERVICE)
    return signer.sign(HttpRequest(method, url, {}, body), now=now)


def _sigv4_retime(headers: dict[str, str]) -> dict[str, str]:
    date = headers["X-Amz-Date"]
    seconds = int(date[-3:-1])
    return {**headers, "X-Amz-Date": f"{date[:-3]}{(seconds + 1) % 60:02d}Z"}


SCHEMES = {
    "hmac": Scheme(
        "hmac",
        lambda nonces=None: HmacVerifier({KEY_ID: SECRET},
                                         nonces=nonces or MemoryNonceCache()),
        _hmac_sign, _hmac_retime, "body_digest_mismatch",
    ),
    "rfc9421": Scheme(
        "rfc9421",
        lambda nonces=None: MessageVerifier(
            {KEY_ID: SignatureKey("hmac-sha256", SECRET, key_id=KEY_ID)},
            require_content_digest=True, nonces=nonces or MemoryNonceCache(),
        ),
        _rfc9421_sign, _rfc9421_retime, "body_digest_mismatch",
    ),
    "sigv4": Scheme(
        "sigv4",
        lambda nonces=None: SigV4Verifier({KEY_ID: SECRET}, region=REGION, service=SERVICE,
                                          nonces=nonces or MemoryNonceCache()),
        _sigv4_sign, _sigv4_retime, "bad_signature",
    ),
}


# -- the servers ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class WSGITarget:
    """A WSGI app behind the middleware, served on loopback."""

    def __init__(self, kind: str, app: Any) -> None:
        self.kind = kind
        self.server: Any
        if kind == "wsgiref":
            self.server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer,
                                      handler_class=_QuietHandler)
        else:
            self.server = SandboxHTTPServer(("127.0.0.1", 0), app)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes = b"",
             *, chunked: bool = False) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            if chunked:
                conn.request(method, target, body=iter([body[:3], body[3:]]),
                             headers=headers, encode_chunked=True)
            else:
                conn.request(method, target, body=body if body or method == "POST" else None,
                             headers=headers)
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         response.read())
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ASGITarget:
    """An ASGI app behind the middleware, driven by httpx's ASGITransport."""

    kind = "asgi"
    base = "http://asgi.test"

    def __init__(self, app: Any) -> None:
        self.app = app

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes = b"",
             *, chunked: bool = False) -> Reply:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport) as client:
                content: Any = body
                if chunked:
                    async def parts() -> Any:
                        yield body[:3]
                        yield body[3:]
                    content = parts()
                return await client.request(method, self.base + target, headers=headers,
                                            content=content)

        response = asyncio.run(run())
        return Reply(response.status_code, dict(response.headers), response.content)

    def close(self) -> None:
        pass


Target = WSGITarget | ASGITarget


def make_target(kind: str, verifier: Any, **options: Any) -> Target:
    if kind == "asgi":
        return ASGITarget(VerifyASGI(asgi_echo, verifier, **options))
    guarded = VerifyWSGI(wsgi_echo, verifier, **options)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["test.server_input"] = environ["wsgi.input"]
        return guarded(environ, start_response)

    return WSGITarget(kind, app)


SERVERS = ("wsgiref", "sandbox-server", "asgi")


@pytest.fixture(scope="module")
def _targets() -> Iterator[dict[tuple[str, str], Target]]:
    made: dict[tuple[str, str], Target] = {}
    yield made
    for target in made.values():
        target.close()


@pytest.fixture(params=[(s, k) for s in SERVERS for k in SCHEMES], ids=lambda p: f"{p[0]}-{p[1]}")
def case(request: pytest.FixtureRequest,
         _targets: dict[tuple[str, str], Target]) -> tuple[Target, Scheme]:
    server, scheme = request.param
    target = _targets.get((server, scheme))
    if target is None:
        target = _targets[server, scheme] = make_target(
            server, SCHEMES[scheme].verifier(), protect=[PROTECTED])
    return target, SCHEMES[scheme]


# -- the matrix: each scheme on each server ---------------------------------------------

BODY = b'{"amount": 100, "currency": "EUR"}'
_TARGET = "/api/payments?b=2&a=1"
_serial = iter(range(1, 1 << 30))


def fresh() -> str:
    """The target with a unique query item: SigV4 has no nonce, so two identical requests
    signed in the same second are one signature (and the second a replay)."""
    return f"{_TARGET}&n={next(_serial)}"


def test_valid_request_reaches_the_app_with_its_whole_body(case: tuple[Target, Scheme]) -> None:
    target, scheme = case
    where = fresh()
    headers = scheme.sign("POST", target.base + where, BODY)
    reply = target.send("POST", where, headers, BODY)
    assert reply.status == 200, reply.body
    seen = reply.json()
    assert seen["body"] == BODY.decode()
    assert seen["identity"] == [scheme.name, KEY_ID]
    assert seen["path"] == "/api/payments"
    assert seen["query"] == where.partition("?")[2]
    if target.kind != "asgi":
        assert seen["replaced_input"] is True
    else:
        assert seen["messages"] == 1

    get = target.send("GET", "/api/items", scheme.sign("GET", target.base + "/api/items", b""))
    assert get.status == 200, get.body
    assert get.json()["body"] == ""


def test_chunked_body_is_read_and_replayed(case: tuple[Target, Scheme]) -> None:
    target, scheme = case
    if target.kind == "wsgiref":
        pytest.skip("wsgiref does not support chunked request bodies")
    where = fresh()
    headers = scheme.sign("PUT", target.base + where, BODY)
    reply = target.send("PUT", where, headers, BODY, chunked=True)
    assert reply.status == 200, reply.body
    assert reply.json()["body"] == BODY.decode()


def _rejected(reply: Reply, reason: str) -> None:
    assert reply.status == 401, reply.body
    assert reply.json() == {"error": "invalid_signature", "reason": reason}
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["www-authenticate"]
    assert SECRET.encode() not in reply.body


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("method", "bad_signature"),
        ("path", "bad_signature"),
        ("query", "bad_signature"),
        ("added query", "bad_signature"),
        ("body", None),
        ("stripped body", None),
        ("wrong secret", "bad_signature"),
        ("unknown key", "unknown_key"),
        ("old timestamp", "timestamp_skew"),
        ("moved timestamp", "bad_signature"),
        ("no signature", "missing_header"),
    ],
)
def test_tampering_is_rejected(case: tuple[Target, Scheme], tamper: str,
                               reason: str | None) -> None:
    target, scheme = case
    where = fresh()
    url = target.base + where
    method, path, body = "POST", where, BODY
    headers = scheme.sign("POST", url, BODY)
    if tamper == "method":
        method = "PUT"
    elif tamper == "path":
        path = where.replace("payments", "refunds")
    elif tamper == "query":
        path = where.replace("b=2", "b=3")
    elif tamper == "added query":
        path = where + "&c=1"
    elif tamper == "body":
        body = BODY.replace(b"100", b"900")
    elif tamper == "stripped body":
        body = b""
    elif tamper == "wrong secret":
        headers = scheme.sign("POST", url, BODY, secret="not-the-secret")
    elif tamper == "unknown key":
        headers = scheme.sign("POST", url, BODY, key_id="nobody")
    elif tamper == "old timestamp":
        headers = scheme.sign("POST", url, BODY, now=time.time() - 1000)
    elif tamper == "moved timestamp":
        headers = scheme.retime(headers)
    elif tamper == "no signature":
        headers = {}
    expected = reason or scheme.body_reason
    if tamper == "stripped body" and scheme.name == "sigv4":
        expected = "bad_signature"
    _rejected(target.send(method, path, headers, body), expected)


def test_replay_is_rejected(case: tuple[Target, Scheme]) -> None:
    target, scheme = case
    where = fresh()
    headers = scheme.sign("POST", target.base + where, BODY)
    assert target.send("POST", where, headers, BODY).status == 200
    _rejected(target.send("POST", where, headers, BODY), "replayed_nonce")


def test_too_large_body_is_413(case: tuple[Target, Scheme]) -> None:
    target, scheme = case
    big = b"x" * 2048
    server = target.kind
    where = fresh()
    small = make_target(server, scheme.verifier(), protect=[PROTECTED], max_body=1024)
    try:
        headers = scheme.sign("POST", small.base + where, big)
        reply = small.send("POST", where, headers, big)
        assert reply.status == 413
        assert reply.json() == {"error": "payload_too_large", "max_body": 1024}
        if server != "wsgiref":  # no length announced: counted while reading
            reply = small.send("POST", where, headers, big, chunked=True)
            assert reply.status == 413
        exact = b"y" * 1024
        reply = small.send("POST", where, scheme.sign("POST", small.base + where, exact), exact)
        assert reply.status == 200
        assert reply.json()["body"] == exact.decode()
    finally:
        small.close()


def test_unprotected_paths_pass_through_untouched(case: tuple[Target, Scheme]) -> None:
    target, _ = case
    for path in ("/public", "/apiary", "/", "/public/api"):
        reply = target.send("POST", path + "?x=1", {}, BODY)
        assert reply.status == 200, (path, reply.body)
        seen = reply.json()
        assert seen["identity"] is None
        assert seen["body"] == BODY.decode()
        if target.kind != "asgi":
            assert seen["replaced_input"] is False  # the server's own wsgi.input
    for path in ("/api", "/api/", "//api/x", "/x/../api/y", "/./api"):
        assert target.send("GET", path, {}).status == 401, path


@pytest.mark.parametrize("server", SERVERS)
def test_sigv4_identical_requests_in_one_second_refused_by_default_unless_opted_out(
    server: str,
) -> None:
    """SigV4 has no nonce: the same GET signed twice in one second is the same request.
    A default ``SigV4Verifier`` refuses the second as a replay; ``nonces=False`` (AWS's
    own behaviour) accepts it."""
    default = make_target(server, SigV4Verifier({KEY_ID: SECRET}, region=REGION,
                                                service=SERVICE))
    lenient = make_target(server, SigV4Verifier({KEY_ID: SECRET}, region=REGION,
                                                service=SERVICE, nonces=False))
    try:
        for target, again in ((default, 401), (lenient, 200)):
            now = time.time()
            first = _sigv4_sign("GET", target.base + "/api/items", b"", now=now)
            second = _sigv4_sign("GET", target.base + "/api/items", b"", now=now)
            assert first == second  # no nonce: one signature
            assert target.send("GET", "/api/items", first).status == 200
            reply = target.send("GET", "/api/items", second)
            assert reply.status == again, reply.body
            if again == 401:
                _rejected(reply, "replayed_nonce")
    finally:
        default.close()
        lenient.close()


# -- 503 when a fail-closed nonce store is down ------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("scheme_name", ["hmac", "rfc9421"])
def test_store_down_is_503(server: str, scheme_name: str, redis_server: Any,
                           redis_url: str) -> None:
    scheme = SCHEMES[scheme_name]
    store = surefoot.stores.RedisStore(redis_url, on_failure="closed", timeout=0.3)
    rejected: list[str] = []
    target = make_target(server, scheme.verifier(store.nonces), protect=[PROTECTED],
                         on_reject=lambda error, request: rejected.append(type(error).__name__))
    try:
        where = fresh()
        if server == "asgi":
            assert isinstance(target, ASGITarget)
            assert target.app.offload is True  # Redis I/O runs in a worker thread
        headers = scheme.sign("POST", target.base + where, BODY)
        assert target.send("POST", where, headers, BODY).status == 200
        _rejected(target.send("POST", where, headers, BODY), "replayed_nonce")
        redis_server.kill()
        headers = scheme.sign("POST", target.base + where, BODY)
        reply = target.send("POST", where, headers, BODY)
        assert reply.status == 503
        assert reply.json() == {"error": "store_unavailable"}
        assert reply.headers["retry-after"] == "1"
        # a bad signature is still a 401: the store is only asked about valid ones
        _rejected(target.send("POST", where, scheme.retime(headers), BODY), "bad_signature")
        assert rejected == ["ReplayedNonce", "StoreUnavailable", "BadSignature"]
    finally:
        target.close()
        store.close()


# -- RFC 9421 challenge -------------------------------------------------------------------


def test_rfc9421_accept_signature_says_what_to_sign() -> None:
    target = make_target("asgi", MessageVerifier(
        {KEY_ID: SignatureKey("hmac-sha256", SECRET, key_id=KEY_ID)},
        require_content_digest=True, nonces=MemoryNonceCache(), expected_tag="app-1"))
    reply = target.send("GET", "/x", {})
    _rejected(reply, "missing_header")
    parsed = Dictionary()
    parsed.parse(reply.headers["accept-signature"].encode())
    member = parsed["sig1"]
    assert [item.value for item in member] == [
        "@method", "@authority", "@path", "@query", "content-digest"]
    assert dict(member.params) == {"created": True, "nonce": True, "tag": "app-1"}
    assert reply.headers["www-authenticate"] == "Signature"
    # a bad signature gets no hint
    signer = MessageSigner(SignatureKey("hmac-sha256", "wrong", key_id=KEY_ID), tag="app-1")
    headers = signer.sign(HttpRequest("GET", target.base + "/x", {}))
    reply = target.send("GET", "/x", headers)
    _rejected(reply, "bad_signature")
    assert "accept-signature" not in reply.headers


# -- URL reconstruction: proxies and hosts ----------------------------------------------


@pytest.mark.parametrize("server", ["wsgiref", "asgi"])
def test_forwarded_headers_only_when_trusted(server: str) -> None:
    def headers_for() -> dict[str, str]:
        return {
            **_hmac_sign("GET", "https://api.example.com/api/x?q=1", b""),
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example, api.example.com",  # the proxy's is the last
        }

    plain = make_target(server, SCHEMES["hmac"].verifier())
    trusted = make_target(server, SCHEMES["hmac"].verifier(), trust_forwarded=True)
    # wsgiref's REMOTE_ADDR, and httpx's ASGITransport's scope["client"], are 127.0.0.1
    by_peer = make_target(server, SCHEMES["hmac"].verifier(), trust_forwarded=["127.0.0.1"])
    other = make_target(server, SCHEMES["hmac"].verifier(), trust_forwarded=["10.9.9.9"])
    try:
        _rejected(plain.send("GET", "/api/x?q=1", headers_for()), "bad_signature")
        assert trusted.send("GET", "/api/x?q=1", headers_for()).status == 200
        assert by_peer.send("GET", "/api/x?q=1", headers_for()).status == 200
        _rejected(other.send("GET", "/api/x?q=1", headers_for()), "bad_signature")
    finally:
        for target in (plain, trusted, by_peer, other):
            target.close()


@pytest.mark.parametrize("server", ["wsgiref", "sandbox-server", "asgi"])
def test_host_that_is_not_an_authority_is_400(server: str) -> None:
    target = make_target(server, SCHEMES["hmac"].verifier())
    try:
        # A Host with a path in it would shift what the verifier sees as the path.
        headers = {**_hmac_sign("GET", "http://h/api/x", b""), "Host": "h/api"}
        reply = target.send("GET", "/x", headers)
        assert reply.status == 400
        assert reply.json()["error"] == "bad_request"
    finally:
        target.close()


@pytest.mark.parametrize("host", ["[", "a]b"])
@pytest.mark.parametrize("scheme_name", list(SCHEMES))
@pytest.mark.parametrize("server", SERVERS)
def test_host_with_a_stray_bracket_is_400(server: str, scheme_name: str, host: str) -> None:
    """urlsplit raised ValueError on such a Host: a 500, with no credentials (SigV4)."""
    target = make_target(server, SCHEMES[scheme_name].verifier())
    try:
        for headers in ({"Host": host},
                        {**SCHEMES[scheme_name].sign("GET", "http://h/api/x", b""),
                         "Host": host}):
            reply = target.send("GET", "/api/x", headers)
            assert reply.status == 400, reply.body
            assert reply.json() == {"error": "bad_request", "message": "malformed Host header"}
    finally:
        target.close()


def test_percent_encoded_path_survives_wsgiref_decoding() -> None:
    """wsgiref gives no raw target: the path is re-encoded from PATH_INFO."""
    target = make_target("wsgiref", SCHEMES["hmac"].verifier())
    try:
        path = "/api/a%20b/caf%C3%A9?x=%2F"
        reply = target.send("GET", path, _hmac_sign("GET", target.base + path, b""))
        assert reply.status == 200, reply.body
    finally:
        target.close()


# -- multi-value headers -----------------------------------------------------------------


def test_asgi_repeated_header_lines_are_kept_apart() -> None:
    verifier = MessageVerifier({KEY_ID: SignatureKey("hmac-sha256", SECRET, key_id=KEY_ID)},
                               required_components=["@method", "x-tag"])
    app = VerifyASGI(asgi_echo, verifier)
    lines = [("x-tag", "a"), ("x-tag", "b")]
    signer = MessageSigner(SignatureKey("hmac-sha256", SECRET, key_id=KEY_ID),
                           components=["@method", "@path", "x-tag"])
    signature = signer.sign(HttpRequest("GET", "http://asgi.test/m", httpx.Headers(lines)))
    raw = [(b"host", b"asgi.test"), (b"x-tag", b"a"), (b"x-tag", b"b")] + [
        (name.lower().encode(), value.encode()) for name, value in signature.items()]
    sent = drive(app, method="GET", path="/m", headers=raw)
    assert sent[0]["status"] == 200, sent
    swapped = [raw[0], raw[2], raw[1], *raw[3:]]
    sent = drive(app, method="GET", path="/m", headers=swapped)
    assert sent[0]["status"] == 401


def send_lines(target: Target, method: str, path: str,
               lines: list[tuple[str, str]]) -> Reply:
    """One request with these header field lines, a repeated name sent as separate lines
    (the WSGI server then joins them into one ``HTTP_*`` value; ASGI keeps them apart)."""
    if isinstance(target, ASGITarget):
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=target.app)
            async with httpx.AsyncClient(transport=transport) as client:
                return await client.request(method, target.base + path, headers=lines)

        response = asyncio.run(run())
        return Reply(response.status_code, dict(response.headers), response.content)
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        conn.putrequest(method, path)
        for name, value in lines:
            conn.putheader(name, value)
        conn.endheaders()
        reply = conn.getresponse()
        return Reply(reply.status, {k.lower(): v for k, v in reply.getheaders()},
                     reply.read())
    finally:
        conn.close()


def _tag_signature(target: Target, path: str, lines: list[tuple[str, str]],
                   component: str) -> list[tuple[str, str]]:
    signer = MessageSigner(SignatureKey("hmac-sha256", SECRET, key_id=KEY_ID),
                           components=["@method", "@authority", "@path", component])
    request = HttpRequest("GET", target.base + path, httpx.Headers(lines))
    return list(signer.sign(request).items())


def _tag_verifier() -> MessageVerifier:
    return MessageVerifier({KEY_ID: SignatureKey("hmac-sha256", SECRET, key_id=KEY_ID)},
                           required_components=["@method", "@authority", "@path"])


@pytest.mark.parametrize("component", ["x-tag", "x-tag;bs"])
@pytest.mark.parametrize("server", SERVERS)
def test_repeated_header_lines_verify_whatever_the_server_joined(server: str,
                                                                 component: str) -> None:
    """Two ``X-Tag`` lines, covered by an RFC 9421 signature (their value ``a, b``, or one
    byte sequence each): wsgiref and the sandbox server join them into ``a,b``, ASGI keeps
    them apart; every one verifies the genuine request and refuses a tampered one."""
    target = make_target(server, _tag_verifier())
    try:
        path = "/api/tags"
        for lines in ([("X-Tag", "a"), ("X-Tag", "b")],
                      [("X-Tag", '"x,y"'), ("X-Tag", "z")],  # a comma in a quoted string
                      [("X-Tag", "a, b"), ("X-Tag", "c")]):  # a comma and a space in a line
            signature = _tag_signature(target, path, lines, component)
            reply = send_lines(target, "GET", path, [*lines, *signature])
            assert reply.status == 200, (lines, reply.body)
            assert reply.json()["identity"] == ["rfc9421", KEY_ID]
        signature = _tag_signature(target, path, [("X-Tag", "a"), ("X-Tag", "b")], component)
        for tampered in ([("X-Tag", "a"), ("X-Tag", "c")], [("X-Tag", "b"), ("X-Tag", "a")],
                         [("X-Tag", "a")], [("X-Tag", "a"), ("X-Tag", "b"), ("X-Tag", "c")],
                         [("X-Tag", "a,c")]):
            _rejected(send_lines(target, "GET", path, [*tampered, *signature]),
                      "bad_signature")
    finally:
        target.close()


@pytest.mark.parametrize("server", SERVERS)
def test_repeated_lines_a_joining_server_makes_ambiguous_are_refused(server: str) -> None:
    """The documented limit: lines ``a,b`` and ``c`` reach a WSGI application as ``a,b,c``,
    which cannot be split back into the lines that were signed: refused (``401``), never
    verified under another reading. ASGI gets the lines apart and verifies them."""
    target = make_target(server, _tag_verifier())
    try:
        path = "/api/tags"
        lines = [("X-Tag", "a,b"), ("X-Tag", "c")]
        signature = _tag_signature(target, path, lines, "x-tag")
        reply = send_lines(target, "GET", path, [*lines, *signature])
        if server == "asgi":
            assert reply.status == 200, reply.body
        else:
            _rejected(reply, "bad_signature")
    finally:
        target.close()


# -- a hand-written ASGI driver for the protocol's corners -------------------------------


def drive(app: Any, *, path: str = "/api/x", method: str = "POST",
          headers: list[tuple[bytes, bytes]] | None = None,
          messages: list[dict[str, Any]] | None = None,
          scope_extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Call ``app`` once, as a server would; returns what it sent."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "server": ("asgi.test", 80),
        "client": ("127.0.0.1", 5000),
        "headers": headers if headers is not None else [(b"host", b"asgi.test")],
        **(scope_extra or {}),
    }
    incoming = list(messages if messages is not None else
                    [{"type": "http.request", "body": b"", "more_body": False}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


class Recorder:
    """An ASGI app that records its scope and everything it receives."""

    def __init__(self, receives: int = 2) -> None:
        self.receives = receives
        self.scope: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        for _ in range(self.receives):
            self.received.append(await receive())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _signed_headers(path: str, body: bytes) -> list[tuple[bytes, bytes]]:
    signed = _hmac_sign("POST", "http://asgi.test" + path, body)
    return [(b"host", b"asgi.test"), (b"content-length", str(len(body)).encode())] + [
        (k.lower().encode(), v.encode()) for k, v in signed.items()]


def test_asgi_split_body_is_replayed_whole_then_disconnect_passes_through() -> None:
    recorder = Recorder(receives=2)
    app = VerifyASGI(recorder, SCHEMES["hmac"].verifier())
    body = b"0123456789" * 10
    messages = [{"type": "http.request", "body": body[i:i + 7], "more_body": i + 7 < len(body)}
                for i in range(0, len(body), 7)]
    sent = drive(app, headers=_signed_headers("/api/x", body), messages=messages,
                    scope_extra={"state": {"db": "pool"}})
    assert sent[0]["status"] == 204
    assert recorder.received == [
        {"type": "http.request", "body": body, "more_body": False},
        {"type": "http.disconnect"},  # the server's, passed through
    ]
    assert recorder.scope is not None
    found = identity(recorder.scope)
    assert found == Identity("hmac", KEY_ID)
    assert recorder.scope["state"] == {"db": "pool", "surefoot_identity": found}


def test_asgi_client_gone_before_the_body_ends() -> None:
    recorder = Recorder()
    app = VerifyASGI(recorder, SCHEMES["hmac"].verifier())
    sent = drive(app, headers=_signed_headers("/api/x", b"abcdef"),
                    messages=[{"type": "http.request", "body": b"abc", "more_body": True},
                              {"type": "http.disconnect"}])
    assert sent == []
    assert recorder.scope is None


def test_asgi_declared_length_over_the_limit_is_refused_before_reading() -> None:
    recorder = Recorder()
    app = VerifyASGI(recorder, SCHEMES["hmac"].verifier(), max_body=10)
    read: list[int] = []

    async def run() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            read.append(1)
            return {"type": "http.request", "body": b"x" * 11}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/api", "headers":
                 [(b"host", b"h"), (b"content-length", b"11")]}
        await app(scope, receive, send)
        return sent

    sent = asyncio.run(run())
    assert sent[0]["status"] == 413
    assert read == []


def test_asgi_lifespan_and_websocket_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    app = VerifyASGI(inner, SCHEMES["hmac"].verifier())

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        pass

    asyncio.run(app({"type": "lifespan"}, nothing, ignore))
    asyncio.run(app({"type": "websocket", "path": "/api"}, nothing, ignore))
    assert seen == ["lifespan", "websocket"]


def test_asgi_unprotected_request_gets_the_servers_receive() -> None:
    captured: list[Any] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        captured.append((scope, receive))

    app = VerifyASGI(inner, SCHEMES["hmac"].verifier(), protect=["/api"])
    scope = {"type": "http", "method": "GET", "path": "/public", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        pass

    asyncio.run(app(scope, receive, send))
    assert captured == [(scope, receive)]
    assert identity(scope) is None


# -- WSGI corners, called directly -------------------------------------------------------


def _environ(**extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(extra)
    return environ


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, bytes]:
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> Any:
        status.append(line)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return status[0], body


def test_wsgi_short_body_malformed_length_and_unterminated_input() -> None:
    app = VerifyWSGI(wsgi_echo, SCHEMES["hmac"].verifier())
    short = _environ(REQUEST_METHOD="POST", CONTENT_LENGTH="10")
    short["wsgi.input"] = io.BytesIO(b"abc")
    assert _call(app, short)[0].startswith("400")
    bad = _environ(REQUEST_METHOD="POST", CONTENT_LENGTH="ten")
    assert _call(app, bad)[0].startswith("400")
    chunked = _environ(REQUEST_METHOD="POST", HTTP_TRANSFER_ENCODING="chunked")
    assert _call(app, chunked)[0].startswith("411")


# -- malformed requests: an answer (4xx), never an exception ------------------------------


def _asgi_call(app: Any, scope_extra: dict[str, Any], headers: list[Any]) -> dict[str, Any]:
    """The response start the middleware sent (it must send one, and not raise)."""
    sent = drive(app, method="GET", headers=headers, scope_extra=scope_extra)
    assert sent, "no response"
    assert sent[0]["type"] == "http.response.start"
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert b"Traceback" not in body
    assert len(body) < 200
    return {"status": sent[0]["status"], "body": body}


MALFORMED_HOSTS = ["[", "a]b", "]", "[]", "[::1", "::1", "[x]", "[V1.x]", "[1.2.3.4]",
                   "a[b]", "h:99999", "h:x", "h:80:80", "[::1]x", "h%zz",
                   "h/api", "u@h", "h h", "h\tx", ":80", "é.example", "[::1%/x]"]
GOOD_HOSTS = ["h", "h:8080", "h:", "[::1]", "[::1]:", "[::1]:8080", "[v1.x]",
              "[fe80::1%25eth0]", "xn--caf-dma.example", "a-b.c_d~e"]


@pytest.mark.parametrize("scheme_name", list(SCHEMES))
def test_any_malformed_host_is_400_wsgi_and_asgi(scheme_name: str) -> None:
    verifier = SCHEMES[scheme_name].verifier()
    wsgi = VerifyWSGI(wsgi_echo, verifier)
    asgi = VerifyASGI(asgi_echo, verifier)
    for host in MALFORMED_HOSTS:
        status, body = _call(wsgi, _environ(HTTP_HOST=host, PATH_INFO="/api/x"))
        assert status.startswith("400"), (host, status)
        assert json.loads(body)["error"] == "bad_request"
        reply = _asgi_call(asgi, {}, [(b"host", host.encode())])
        assert reply["status"] == 400, host
    for host in GOOD_HOSTS:  # well formed, unsigned
        assert _call(wsgi, _environ(HTTP_HOST=host, PATH_INFO="/api/x"))[0].startswith("401")
        assert _asgi_call(asgi, {}, [(b"host", host.encode())])["status"] == 401, host


def test_malformed_field_lines_target_and_method_are_4xx() -> None:
    verifier = SCHEMES["sigv4"].verifier()
    wsgi = VerifyWSGI(wsgi_echo, verifier)
    asgi = VerifyASGI(asgi_echo, verifier)
    huge = "x" * 70000
    wsgi_cases: list[tuple[dict[str, Any], str]] = [
        ({"HTTP_X_A": "a\r\nInjected: 1"}, "400"),
        ({"HTTP_X_A": "a\nb"}, "400"),
        ({"HTTP_X_A": "a\x00b"}, "400"),
        ({"HTTP_X_A": "caf\u00e9 \u20ac"}, "400"),  # not Latin-1: not what PEP 3333 gives
        ({"HTTP_X_A": "\udcff"}, "400"),
        ({"HTTP_X_(A)": "a"}, "400"),  # not a token
        ({"HTTP_X_A": huge}, "431"),
        ({"CONTENT_TYPE": "text/plain\r\n"}, "400"),
        ({"REQUEST_METHOD": "GE T"}, "400"),
        ({"REQUEST_METHOD": "G\u00c9T"}, "400"),
        ({"PATH_INFO": "/api/\ud800"}, "400"),  # no encoding has it
        ({"REQUEST_URI": "/api/x y"}, "400"),
        ({"REQUEST_URI": "/api/\x85"}, "400"),
        ({"REQUEST_URI": "/api/" + huge}, "414"),
        ({"QUERY_STRING": "a=\r\n"}, "400"),
        ({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "9" * 5000}, "413"),  # int() refuses
        ({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "0" * 5000 + "3"}, "400"),  # short
    ]
    for extra, expected in wsgi_cases:
        environ = _environ(**{"PATH_INFO": "/api/x", **extra})
        status, body = _call(wsgi, environ)
        assert status.startswith(expected), (extra.keys(), status, body)
        assert len(body) < 200
    asgi_cases: list[tuple[dict[str, Any], list[Any], int]] = [
        ({}, [(b"host", b"h"), (b"x-a", b"a\r\nInjected: 1")], 400),
        ({}, [(b"host", b"h"), (b"x-a", b"\x7f")], 400),
        ({}, [(b"host", b"h"), (b"x a", b"1")], 400),
        ({}, [(b"host", b"h"), (b"x-a", huge.encode())], 431),
        ({}, [(b"host", b"h"), ("x-a", "str, not bytes")], 400),
        ({}, [(b"host", b"h"), (b"x-a",)], 400),
        ({}, [(b"host", b"h"), (b"content-length", b"9" * 5000)], 413),
        ({"method": "GE\nT"}, [(b"host", b"h")], 400),
        ({"raw_path": b"/api/x y"}, [(b"host", b"h")], 400),
        ({"raw_path": b"/api/" + huge.encode()}, [(b"host", b"h")], 414),
        ({"raw_path": "/api/str"}, [(b"host", b"h")], 400),
        ({"raw_path": None, "path": "/api/\ud800"}, [(b"host", b"h")], 400),
        ({"query_string": b"a=\r\n"}, [(b"host", b"h")], 400),
        ({"server": ("::1", 8000)}, [], 401),  # no Host: the server's address, bracketed
    ]
    for scope_extra, headers, expected_status in asgi_cases:
        reply = _asgi_call(asgi, scope_extra, headers)
        assert reply["status"] == expected_status, (scope_extra, headers[-1:], reply)


class ParseFailingVerifier:
    """A verifier with a bug: it raises ValueError on a request it cannot parse."""

    scheme = "broken"
    blocking = False

    def verify(self, request: SignedRequest, *, now: float | None = None) -> Identity:
        raise ValueError(f"cannot parse {request.url}")

    def challenge(self, error: surefoot.SignatureError) -> list[tuple[str, str]]:
        return []


@pytest.mark.parametrize("server", ["wsgiref", "asgi"])
def test_a_verifier_failing_to_parse_is_400_not_500(server: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="surefoot.middleware")
    target = make_target(server, ParseFailingVerifier())
    try:
        reply = target.send("GET", "/api/x?token=query-secret", {})
    finally:
        target.close()
    assert reply.status == 400
    assert reply.json() == {"error": "bad_request", "message": "malformed request"}
    assert "ParseFailingVerifier" in caplog.text
    assert "query-secret" not in caplog.text  # neither the query nor the message


# -- a server that breaks PEP 3333 / the ASGI spec: 400, logged, never an exception -------------

WSGI_SERVER_FAULTS: list[tuple[dict[str, Any], str]] = [
    ({"PATH_INFO": 1}, "PATH_INFO"),
    ({"PATH_INFO": b"/api/x"}, "PATH_INFO"),
    ({"REQUEST_METHOD": 1}, "REQUEST_METHOD"),
    ({"wsgi.input": 1, "CONTENT_LENGTH": "1"}, "wsgi.input"),
    ({"wsgi.input": io.StringIO("abc"), "CONTENT_LENGTH": "3"}, "wsgi.input"),
    ({"CONTENT_LENGTH": 3}, "CONTENT_LENGTH"),
    ({"HTTP_X_A": b"bytes"}, "HTTP_X_A"),
    ({"QUERY_STRING": ["a=1"]}, "QUERY_STRING"),
    ({"REQUEST_URI": 1}, "REQUEST_URI"),
    ({"SERVER_PORT": 80, "HTTP_HOST": ""}, "SERVER_PORT"),
    ({"REMOTE_ADDR": ["10.0.0.1"]}, "REMOTE_ADDR"),
    ({"wsgi.url_scheme": b"http"}, "wsgi.url_scheme"),
]


@pytest.mark.parametrize(("extra", "key"), WSGI_SERVER_FAULTS,
                         ids=[key for _, key in WSGI_SERVER_FAULTS])
def test_wsgi_environ_values_of_the_wrong_type_are_400_and_logged(
    extra: dict[str, Any], key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="surefoot.middleware")
    app = VerifyWSGI(wsgi_echo, SCHEMES["hmac"].verifier(), protect=["/api"],
                     trust_forwarded=["10.0.0.1"])
    status, body = _call(app, _environ(**{"PATH_INFO": "/api/x", **extra}))
    assert status.startswith("400"), (extra, status)
    assert json.loads(body) == {"error": "bad_request", "message": "malformed request"}
    assert f"environ[{key!r}]" in caplog.text
    assert "answering 400" in caplog.text


def test_wsgi_an_unprotected_path_passes_a_wrongly_typed_value_it_does_not_read() -> None:
    app = VerifyWSGI(wsgi_echo, SCHEMES["hmac"].verifier(), protect=["/api"])
    status, _ = _call(app, _environ(PATH_INFO="/public", **{"wsgi.input": 1}))
    assert status.startswith("200")


ASGI_SERVER_FAULTS: list[tuple[dict[str, Any], str]] = [
    ({"client": 1}, "client"),
    ({"client": ("10.0.0.1",)}, "client"),
    ({"client": (1, 5000)}, "client"),
    ({"server": ("h",)}, "server"),
    ({"server": "h:80"}, "server"),
    ({"server": ("h", 80, 1)}, "server"),
    ({"server": ("h", 1.5)}, "server"),
    ({"method": 1}, "method"),
    ({"path": b"/api/x", "raw_path": None}, "path"),
    ({"root_path": 1, "raw_path": None}, "root_path"),
    ({"scheme": b"http"}, "scheme"),
]


@pytest.mark.parametrize(("extra", "key"), ASGI_SERVER_FAULTS,
                         ids=[f"{key}-{i}" for i, (_, key) in enumerate(ASGI_SERVER_FAULTS)])
def test_asgi_scope_values_of_the_wrong_shape_are_400_and_logged(
    extra: dict[str, Any], key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="surefoot.middleware")
    app = VerifyASGI(asgi_echo, SCHEMES["hmac"].verifier(), trust_forwarded=["10.0.0.1"])
    reply = _asgi_call(app, extra, [(b"host", b"asgi.test")])
    assert reply["status"] == 400, extra
    assert json.loads(reply["body"])["error"] == "bad_request"
    assert f"scope[{key!r}]" in caplog.text


def test_asgi_a_body_that_is_not_bytes_is_400(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="surefoot.middleware")
    app = VerifyASGI(asgi_echo, SCHEMES["hmac"].verifier())
    sent = drive(app, messages=[{"type": "http.request", "body": "text, not bytes"}])
    assert sent[0]["status"] == 400
    assert "body is a str" in caplog.text


@pytest.mark.parametrize(("server", "status"), [
    ((), 400),  # empty: no server address, and no Host either
    (None, 400),
    (("h", None), 401),  # a Unix socket: no port
    ((None, 80), 400),
    (["asgi.test", 80], 401),
])
def test_asgi_server_pairs_the_spec_allows(server: Any, status: int) -> None:
    app = VerifyASGI(asgi_echo, SCHEMES["hmac"].verifier())
    assert _asgi_call(app, {"server": server}, [])["status"] == status


_ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="latin-1")),
    st.text(alphabet=st.sampled_from(
        list("[]:@%/?#;.=&vV01fF \t\r\nh\x00\x85\udcff\ud800\u20ac"))),
)


def _wire(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(host=_ANY_TEXT, path=_ANY_TEXT, raw=st.booleans())
@pytest.mark.parametrize("scheme_name", list(SCHEMES))
def test_any_host_and_path_get_an_answer_never_an_exception(
    scheme_name: str, host: str, path: str, raw: bool
) -> None:
    """Whatever the Host and the path, WSGI and ASGI answer 400 (malformed), 414 or 401
    (unsigned): the middleware never raises."""
    expected = {400, 401, 414}
    verifier = SCHEMES[scheme_name].verifier()
    wsgi = VerifyWSGI(wsgi_echo, verifier)
    environ = _environ(HTTP_HOST=host, PATH_INFO="/api/" + path)
    if raw:
        environ["REQUEST_URI"] = "/api/" + path
    status, _ = _call(wsgi, environ)
    assert int(status[:3]) in expected
    asgi = VerifyASGI(asgi_echo, verifier)
    scope: dict[str, Any] = {"path": "/api/" + path,
                             "raw_path": _wire("/api/" + path) if raw else None}
    reply = _asgi_call(asgi, scope, [(b"host", _wire(host))])
    assert reply["status"] in expected


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("/api", True), ("/api/", True), ("/api/x/y", True), ("//api/x", True),
        ("/./api", True), ("/x/../api/y", True), ("/api/../public", True),
        ("//api/../x", True), ("/apiary", False), ("/public", False), ("/", False),
        ("/public/api", False), ("/Api", False),
    ],
)
def test_which_paths_are_protected(path: str, protected: bool) -> None:
    app = VerifyWSGI(wsgi_echo, SCHEMES["hmac"].verifier(), protect=["/api/"])
    status, _ = _call(app, _environ(PATH_INFO=path))
    assert status.startswith("401" if protected else "200")


def test_wsgi_predicate_and_identity_in_environ() -> None:
    calls: list[tuple[str, str]] = []

    def protect(method: str, path: str) -> bool:
        calls.append((method, path))
        return method != "OPTIONS"

    app = VerifyWSGI(wsgi_echo, SCHEMES["hmac"].verifier(), protect=protect)
    status, _ = _call(app, _environ(REQUEST_METHOD="OPTIONS", PATH_INFO="/api"))
    assert status.startswith("200")
    url = "http://127.0.0.1/api?a=1"
    signed = {f"HTTP_{k.upper().replace('-', '_')}": v
              for k, v in _hmac_sign("GET", url, b"").items()}
    environ = _environ(PATH_INFO="/api", QUERY_STRING="a=1", HTTP_HOST="127.0.0.1", **signed)
    status, body = _call(app, environ)
    assert status.startswith("200"), body
    assert environ["surefoot.identity"] == Identity("hmac", KEY_ID)
    assert calls == [("OPTIONS", "/api"), ("GET", "/api")]


# -- a custom verifier through the Verifier protocol -------------------------------------


class TokenVerifier:
    """A Verifier of our own: a static bearer token per client."""

    scheme = "token"
    blocking = False

    def verify(self, request: SignedRequest, *, now: float | None = None) -> Identity:
        for name, value in request.headers:
            if name == "authorization" and value == "Token good":
                return Identity("token", "client-1")
        raise surefoot.errors.BadSignature("no good token")

    def challenge(self, error: surefoot.SignatureError) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", "Token")]


@pytest.mark.parametrize("server", ["wsgiref", "asgi"])
def test_custom_request_verifier(server: str) -> None:
    assert isinstance(TokenVerifier(), Verifier)
    target = make_target(server, TokenVerifier())
    try:
        ok = target.send("GET", "/x", {"Authorization": "Token good"})
        assert ok.json()["identity"] == ["token", "client-1"]
        bad = target.send("GET", "/x", {"Authorization": "Token bad"})
        assert bad.status == 401
        assert bad.headers["www-authenticate"] == "Token"
    finally:
        target.close()


def test_configuration_errors() -> None:
    with pytest.raises(surefoot.ConfigurationError):
        VerifyWSGI(wsgi_echo, object())  # type: ignore[arg-type]
    with pytest.raises(surefoot.ConfigurationError):
        VerifyWSGI(wsgi_echo, SCHEMES["hmac"].verifier(), protect=["api"])
    with pytest.raises(surefoot.ConfigurationError):
        VerifyASGI(asgi_echo, SCHEMES["hmac"].verifier(), max_body=-1)
    assert VerifyASGI(asgi_echo, SCHEMES["hmac"].verifier()).offload is False
    assert VerifyASGI(asgi_echo, SCHEMES["sigv4"].verifier()).offload is False


def test_identity_keys_are_configurable() -> None:
    verifier = SCHEMES["hmac"].verifier()
    status, _ = _call(VerifyWSGI(wsgi_echo, verifier), _environ())
    assert status.startswith("401")
    url = "http://127.0.0.1/api"
    signed = {f"HTTP_{k.upper().replace('-', '_')}": v
              for k, v in _hmac_sign("GET", url, b"").items()}
    environ = _environ(PATH_INFO="/api", HTTP_HOST="127.0.0.1", **signed)
    _call(VerifyWSGI(wsgi_echo, verifier, environ_key="auth.who"), environ)
    assert environ["auth.who"] == Identity("hmac", KEY_ID)
    assert identity(environ) is None
    assert identity(environ, "auth.who") == Identity("hmac", KEY_ID)

    recorder = Recorder(receives=1)
    app = VerifyASGI(recorder, verifier, state_key=None, scope_key="auth.who")
    assert drive(app, headers=_signed_headers("/api/x", b""))[0]["status"] == 204
    assert recorder.scope is not None
    assert "state" not in recorder.scope
    assert recorder.scope["auth.who"] == Identity("hmac", KEY_ID)


def test_middleware_imports_no_http_library() -> None:
    import subprocess
    import sys

    code = ("import sys, surefoot.middleware\n"
            "print(sorted({m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    for heavy in ("requests", "httpx", "redis", "starlette", "urllib3", "cryptography"):
        assert f"'{heavy}'" not in out


# -- no secrets in responses or logs -----------------------------------------------------


def test_no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    target = make_target("asgi", SCHEMES["hmac"].verifier())
    caplog.set_level(logging.DEBUG, logger="surefoot.middleware")
    headers = _hmac_sign("POST", target.base + "/api/x?token=query-secret", BODY)
    target.send("POST", "/api/x?token=query-secret", headers, BODY)
    _rejected(target.send("POST", "/api/x?token=query-secret", headers, BODY),
              "replayed_nonce")
    text = caplog.text
    assert "replayed_nonce" in text
    assert "/api/x" in text
    for secret in (SECRET, "query-secret", headers["X-Signature"], headers["X-Nonce"]):
        assert secret not in text


# -- the sandbox's signed routes, with surefoot's own clients ------------------------------


def test_sandbox_signed_routes_use_the_middleware() -> None:
    with Sandbox() as sandbox, requests.Session() as http:
        http.trust_env = False
        app = sandbox.app
        hmac_session = requests.Session()
        hmac_session.trust_env = False
        hmac_session.auth = surefoot.SigningAuth.hmac("demo-key", "demo-secret")
        r = hmac_session.post(sandbox.url + "/signed/pay?x=1", json={"a": 1})
        assert r.json() == {"ok": True, "key_id": "demo-key"}

        rfc = requests.Session()
        rfc.trust_env = False
        rfc.auth = surefoot.SigningAuth.rfc9421(
            SignatureKey("hmac-sha256", "demo-secret", key_id="demo-rfc9421"))
        body = {"amount": 5, "note": "x" * 5000}
        r = rfc.post(sandbox.url + "/signed-rfc9421/orders?b=2&a=1", json=body)
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["key_id"] == "demo-rfc9421"
        assert data["body_bytes"] == len(json.dumps(body))
        assert '"content-digest"' in data["covered"]
        assert rfc.get(sandbox.url + "/signed-rfc9421/x").status_code == 200

        unsigned = http.get(sandbox.url + "/signed-rfc9421/x")
        assert unsigned.status_code == 401
        assert unsigned.json() == {"error": "invalid_signature", "reason": "missing_header"}
        assert "content-digest" in unsigned.headers["Accept-Signature"]
        assert "X-Sandbox-Request-Id" in unsigned.headers
        # the HMAC scheme's key is not an RFC 9421 key, and the other way round
        wrong = requests.Session()
        wrong.trust_env = False
        wrong.auth = surefoot.SigningAuth.rfc9421(
            SignatureKey("hmac-sha256", "demo-secret", key_id="demo-key"))
        assert wrong.get(sandbox.url + "/signed-rfc9421/x").json()["reason"] == "unknown_key"
        stats = app.stats()
        assert stats["signature_rejections"] == {"missing_header": 1, "unknown_key": 1}
        assert stats["endpoints"]["/signed-rfc9421"] == {
            "requests": 4, "statuses": {"200": 2, "401": 2}}
        assert stats["endpoints"]["/signed"] == {"requests": 1, "statuses": {"200": 1}}
