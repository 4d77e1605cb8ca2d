"""The sandbox API, over real sockets."""

from __future__ import annotations

import http.client as httpclient
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from surefoot.errors import ConfigurationError
from surefoot.sandbox import Sandbox, SandboxConfig
from surefoot.sandbox._cli import main as cli_main
from surefoot.sandbox._routes_quota import key_partition
from surefoot.signing import HmacSigner, HttpRequest


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(rate=5, burst=3) as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    sandbox.reset()
    return sandbox


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


def raw_exchange(sb: Sandbox, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", sb.port), timeout=5) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


# -- config and lifecycle ----------------------------------------------------------------


def test_config_validation_and_repr_hides_secrets() -> None:
    with pytest.raises(ConfigurationError):
        SandboxConfig(rate=0)
    with pytest.raises(ConfigurationError):
        SandboxConfig(burst=0)
    cfg = SandboxConfig(clients={"c": "topsecret"}, hmac_keys={"k": "alsosecret"})
    assert "topsecret" not in repr(cfg)
    assert "alsosecret" not in repr(cfg)
    with pytest.raises(TypeError):
        cfg.clients["x"] = "y"  # type: ignore[index]


def test_sandbox_url_start_stop() -> None:
    sandbox = Sandbox()
    assert not sandbox.running
    with sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        conn = httpclient.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
        conn.request("GET", "/get")  # leave a keep-alive connection open
        assert conn.getresponse().read()
        started = time.monotonic()
    assert not sandbox.running
    assert time.monotonic() - started < 2
    conn.close()


# -- httpbin subset ------------------------------------------------------------------------


def test_get_echo_and_request_ids(sb: Sandbox, http: requests.Session) -> None:
    r1 = http.get(sb.url + "/get?a=1&a=2&b=x", headers={"X-API-Key": "k1"})
    r2 = http.get(sb.url + "/get")
    assert r1.status_code == 200
    assert r1.headers["Content-Type"] == "application/json"
    body = r1.json()
    assert body["args"] == {"a": ["1", "2"], "b": "x"}
    assert body["headers"]["X-Api-Key"] == "k1"
    assert body["url"] == sb.url + "/get?a=1&a=2&b=x"
    assert body["origin"] == "127.0.0.1"
    assert int(r2.headers["X-Sandbox-Request-Id"]) > int(r1.headers["X-Sandbox-Request-Id"])
    assert http.post(sb.url + "/get").status_code == 405


def test_headers_title_case(sb: Sandbox, http: requests.Session) -> None:
    r = http.get(sb.url + "/headers", headers={"x-api-key": "v", "X-CUSTOM-thing": "t"})
    headers = r.json()["headers"]
    assert headers["X-Api-Key"] == "v"
    assert headers["X-Custom-Thing"] == "t"
    assert headers["Host"] == sb.url.removeprefix("http://")


def test_status_codes(sb: Sandbox, http: requests.Session) -> None:
    r = http.delete(sb.url + "/status/418")
    assert r.status_code == 418
    assert r.content == b""
    r = http.get(sb.url + "/status/503?retry_after=Wed,%2021%20Oct%202099%2007:28:00%20GMT")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "Wed, 21 Oct 2099 07:28:00 GMT"
    assert "Retry-After" not in http.get(sb.url + "/status/500").headers
    r = http.get(sb.url + "/status/302", allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/get"
    assert http.get(sb.url + "/status/204").status_code == 204
    assert http.get(sb.url + "/status/abc").status_code == 400
    assert http.get(sb.url + "/status/200?retry_after=a%0d%0aX:%20y").status_code == 400


def test_anything(sb: Sandbox, http: requests.Session) -> None:
    r = http.put(sb.url + "/anything/a/b?q=1", json={"x": [1, 2]})
    body = r.json()
    assert body["method"] == "PUT"
    assert body["json"] == {"x": [1, 2]}
    assert body["data"] == '{"x": [1, 2]}'
    assert body["args"] == {"q": "1"}
    assert body["url"].endswith("/anything/a/b?q=1")
    body = http.post(sb.url + "/anything", data=b"{not json").json()
    assert body["json"] is None
    assert body["data"] == "{not json"
    body = http.post(sb.url + "/anything", data={"f": "v"}).json()
    assert body["form"] == {"f": "v"}


def test_head_has_length_but_no_body(sb: Sandbox) -> None:
    conn = httpclient.HTTPConnection("127.0.0.1", sb.port, timeout=5)
    conn.request("HEAD", "/get")
    resp = conn.getresponse()
    assert resp.status == 200
    assert int(resp.headers["Content-Length"]) > 0
    assert resp.read() == b""
    conn.request("GET", "/get")  # the connection is still usable
    assert conn.getresponse().status == 200
    conn.close()


def test_delay(sb: Sandbox, http: requests.Session) -> None:
    started = time.monotonic()
    r = http.get(sb.url + "/delay/0.2")
    assert r.status_code == 200
    assert r.json()["delay"] == 0.2
    assert time.monotonic() - started >= 0.2
    assert http.get(sb.url + "/delay/x").status_code == 400


def test_redirect_to(sb: Sandbox, http: requests.Session) -> None:
    r = http.post(
        sb.url + "/redirect-to",
        params={"url": "http://other.example/x", "status_code": "307"},
        allow_redirects=False,
    )
    assert r.status_code == 307
    assert r.headers["Location"] == "http://other.example/x"
    r = http.get(sb.url + "/redirect-to?url=/get")
    assert r.status_code == 200
    assert r.history[0].status_code == 302
    assert http.get(sb.url + "/redirect-to").status_code == 400


def test_not_found(sb: Sandbox, http: requests.Session) -> None:
    r = http.get(sb.url + "/nope")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


# -- the server itself ---------------------------------------------------------------------


def test_keep_alive_reuses_the_connection(sb: Sandbox) -> None:
    conn = httpclient.HTTPConnection("127.0.0.1", sb.port, timeout=5)
    conn.request("GET", "/get")
    assert conn.getresponse().read()
    sock = conn.sock
    for _ in range(5):
        conn.request("POST", "/anything", body=b"hello")
        resp = conn.getresponse()
        assert json.loads(resp.read())["data"] == "hello"
    assert conn.sock is sock
    conn.close()


def test_http10_and_connection_close(sb: Sandbox) -> None:
    reply = raw_exchange(sb, b"GET /get HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in reply
    reply = raw_exchange(sb, b"GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in reply


def test_chunked_request_body(sb: Sandbox) -> None:
    conn = httpclient.HTTPConnection("127.0.0.1", sb.port, timeout=5)
    conn.request("POST", "/anything", body=iter([b'{"a"', b": 1}"]), encode_chunked=True)
    body = json.loads(conn.getresponse().read())
    assert body["data"] == '{"a": 1}'
    assert body["json"] == {"a": 1}
    conn.close()


def test_malformed_requests_get_400(sb: Sandbox, http: requests.Session) -> None:
    bad_length = b"POST /anything HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
    assert raw_exchange(sb, bad_length).startswith(b"HTTP/1.1 400 ")
    negative = b"POST /anything HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
    assert raw_exchange(sb, negative).startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(sb, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    bad_chunk = b"POST /anything HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    assert raw_exchange(sb, bad_chunk).startswith(b"HTTP/1.1 400 ")
    r = http.post(sb.url + "/orders", data=b"{bad", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert http.get(sb.url + "/get").status_code == 200  # the server is still fine


# -- faults --------------------------------------------------------------------------------


def test_flaky_reset(sb: Sandbox, http: requests.Session) -> None:
    with pytest.raises(requests.ConnectionError):
        http.get(sb.url + "/flaky/x?p=1&fault=reset")
    assert sb.stats()["resets"] == 1
    assert sb.stats()["endpoints"]["/flaky"]["statuses"] == {"reset": 1}


def test_flaky_reset_is_econnreset(sb: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", sb.port), timeout=5) as sock:
        sock.sendall(b"GET /flaky/x?p=1&fault=reset HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(100)


def test_flaky_truncate(sb: Sandbox) -> None:
    conn = httpclient.HTTPConnection("127.0.0.1", sb.port, timeout=5)
    conn.request("GET", "/flaky/x?p=1&fault=truncate")
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(httpclient.IncompleteRead):
        resp.read()
    conn.close()


def test_flaky_timeout(sb: Sandbox, http: requests.Session) -> None:
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        http.get(sb.url + "/flaky/x?p=1&fault=timeout&hang=2", timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_flaky_slow_trickles_the_body(sb: Sandbox) -> None:
    conn = httpclient.HTTPConnection("127.0.0.1", sb.port, timeout=0.5)  # per read
    started = time.monotonic()
    conn.request("GET", "/flaky/x?p=1&fault=slow&hang=1")
    resp = conn.getresponse()
    assert time.monotonic() - started < 0.5  # the head comes at once
    assert resp.status == 200
    assert resp.getheader("Connection") == "close"
    body = resp.read()  # every piece within the 0.5 s read timeout ...
    assert time.monotonic() - started >= 0.9  # ... the whole body in about 1 s
    assert len(body) == int(resp.getheader("Content-Length"))
    assert json.loads(body)["ok"] is True
    conn.close()
    stats = sb.stats()
    assert stats["faults"] == {"slow": 1}
    assert stats["endpoints"]["/flaky"]["statuses"] == {"slow": 1}


def test_flaky_slow_client_gone(sb: Sandbox, http: requests.Session) -> None:
    conn = httpclient.HTTPConnection("127.0.0.1", sb.port, timeout=5)
    conn.request("GET", "/flaky/x?p=1&fault=slow&hang=2")
    assert conn.getresponse().status == 200
    conn.close()  # mid-trickle: the server stops sending, nothing breaks
    assert http.get(sb.url + "/flaky/x?p=0").json() == {"ok": True}


def test_flaky_503_and_retry_after(sb: Sandbox, http: requests.Session) -> None:
    r = http.post(sb.url + "/flaky/x?p=1&fault=503")
    assert r.status_code == 503
    assert "Retry-After" not in r.headers
    r = http.get(sb.url + "/flaky/x?p=1&fault=503&retry_after=2")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    assert http.get(sb.url + "/flaky/x?p=0").json() == {"ok": True}
    assert http.get(sb.url + "/flaky/x?p=1&fault=bogus").status_code == 400


def test_flaky_fail_n(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/flaky/op?fail=2&key=a"
    assert [http.get(url).status_code for _ in range(4)] == [503, 503, 200, 200]
    assert http.get(sb.url + "/flaky/op?fail=2&key=b").status_code == 503


def test_flaky_seed_is_deterministic(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/flaky/x?p=0.5&seed=1234"
    first = [http.get(url).status_code for _ in range(20)]
    sb.reset()
    second = [http.get(url).status_code for _ in range(20)]
    assert first == second
    assert set(first) == {200, 503}


# -- quota ---------------------------------------------------------------------------------


def test_quota_ietf(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/limited/thing"
    headers = {"X-API-Key": "ietf"}
    responses = [http.get(url, headers=headers) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].json() == {"ok": True, "path": "thing",
                                   "partition": key_partition("ietf")}
    # a quota of rate·w per window of w seconds; what is left for the next window: the
    # bucket's content plus what refills in it (at most q)
    assert responses[0].headers["RateLimit-Policy"] == '"default";q=5;w=1'
    assert [r.headers["RateLimit"] for r in responses] == [
        '"default";r=5;t=1', '"default";r=5;t=1', '"default";r=5;t=1', '"default";r=4;t=1'
    ]
    limited = responses[3]
    assert limited.headers["Retry-After"] == "1"
    assert 1 <= int(limited.headers["retry-after-ms"]) <= 200
    assert sb.stats()["429s"] == 1
    time.sleep(int(limited.headers["retry-after-ms"]) / 1000 + 0.02)
    assert http.get(url, headers=headers).status_code == 200


def test_quota_github(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/limited/x?dialect=github"
    r = http.get(url)
    assert r.headers["x-ratelimit-limit"] == "5"
    assert r.headers["x-ratelimit-remaining"] == "5"
    assert r.headers["x-ratelimit-used"] == "0"
    assert r.headers["x-ratelimit-resource"] == "core"
    assert 0 <= int(r.headers["x-ratelimit-reset"]) - time.time() <= 2
    assert "RateLimit" not in r.headers
    r = http.get(sb.url + "/limited/x?dialect=none")
    assert not any(k.lower().startswith(("ratelimit", "x-ratelimit")) for k in r.headers)


def test_quota_partitions(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/limited/p"
    for _ in range(3):
        assert http.get(url, headers={"X-API-Key": "a"}).status_code == 200
    assert http.get(url, headers={"X-API-Key": "a"}).status_code == 429
    assert http.get(url, headers={"X-API-Key": "b"}).status_code == 200
    token = http.post(
        sb.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("demo-client", "demo-secret"),
    ).json()["access_token"]
    r = http.get(url, headers={"Authorization": f"Bearer {token}"})
    assert r.json()["partition"] == "demo-client"
    assert http.get(url, headers={"Authorization": "Bearer nope"}).json()["partition"] == (
        "anonymous"
    )


API_KEY = "sk_live_0123456789abcdef"


def test_quota_never_shows_the_api_key(sb: Sandbox, http: requests.Session) -> None:
    """/limited (200 and 429) and /stats show the key's fingerprint, never the key."""
    shown = key_partition(API_KEY)
    assert shown.startswith("key:")
    assert len(shown) == len("key:") + 16
    assert API_KEY not in shown
    replies = [_limited(http, sb, X_API_Key=API_KEY) for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    stats = http.get(sb.url + "/stats")
    for reply in (*replies, stats):
        assert API_KEY not in reply.text
        assert API_KEY not in str(reply.headers)
    assert {r.json()["partition"] for r in replies} == {shown}  # one partition, both ways
    assert stats.json()["clients"] == {shown: {"ok": 3, "429s": 1}}
    assert API_KEY not in json.dumps(sb.stats())
    # another key: another partition (its own quota), another fingerprint
    other = _limited(http, sb, X_API_Key=API_KEY + "x")
    assert other.status_code == 200
    assert other.json()["partition"] == key_partition(API_KEY + "x") != shown


def test_quota_partition_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        SandboxConfig(quota_partition="bogus")  # type: ignore[arg-type]
    assert SandboxConfig().quota_partition == "credential"


def _limited(
    http: requests.Session, sb: Sandbox, client: str | None = None, **headers: str
) -> requests.Response:
    """GET /limited/x as ``client`` (its X-Client-Id), with ``X_API_Key=...`` headers."""
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if client is not None:
        sent["X-Client-Id"] = client
    return http.get(sb.url + "/limited/x", headers=sent)


def test_quota_default_partition_ignores_client_id_but_counts_it(
    sb: Sandbox, http: requests.Session
) -> None:
    # the default (credential): no key, so clients a and b share the anonymous quota
    codes = [_limited(http, sb, client).status_code for client in ("a", "b", "a", "b")]
    assert codes == [200, 200, 200, 429]
    assert _limited(http, sb, "a", X_API_Key="k").json()["partition"] == key_partition("k")
    assert _limited(http, sb).json()["partition"] == "anonymous"
    stats = http.get(sb.url + "/stats").json()
    assert stats == sb.stats()
    assert stats["clients"] == {
        "a": {"ok": 3, "429s": 0},
        "b": {"ok": 1, "429s": 1},
        "anonymous": {"ok": 0, "429s": 1},
    }
    sb.reset()
    assert sb.stats()["clients"] == {}


def test_quota_partition_global_one_quota_for_everyone(http: requests.Session) -> None:
    with Sandbox(rate=0.1, burst=3, quota_partition="global") as sb:
        responses = [
            _limited(http, sb, X_API_Key="k1"),
            _limited(http, sb, X_API_Key="k2"),
            _limited(http, sb, "c1"),
            _limited(http, sb, "c2", X_API_Key="k1"),
        ]
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        assert {r.json()["partition"] for r in responses} == {"global"}
        assert sb.stats()["clients"] == {
            key_partition("k1"): {"ok": 1, "429s": 0},
            key_partition("k2"): {"ok": 1, "429s": 0},
            "c1": {"ok": 1, "429s": 0},
            "c2": {"ok": 0, "429s": 1},
        }
        assert sb.stats()["429s"] == 1


def test_quota_partition_client_one_quota_per_client_id(http: requests.Session) -> None:
    with Sandbox(rate=0.1, burst=2, quota_partition="client") as sb:
        assert [_limited(http, sb, "a").status_code for _ in range(3)] == [200, 200, 429]
        # another client id: its own quota, whatever credential it shares with a
        assert [_limited(http, sb, "b", X_API_Key="k").status_code for _ in range(3)] == [
            200, 200, 429
        ]
        assert _limited(http, sb, "b").json()["partition"] == "b"
        # no X-Client-Id: partitioned by credential, as by default
        r = _limited(http, sb, X_API_Key="k")
        assert (r.status_code, r.json()["partition"]) == (200, key_partition("k"))
        assert _limited(http, sb).json()["partition"] == "anonymous"
        assert sb.stats()["clients"] == {
            "a": {"ok": 2, "429s": 1},
            "b": {"ok": 2, "429s": 2},
            key_partition("k"): {"ok": 1, "429s": 0},
            "anonymous": {"ok": 1, "429s": 0},
        }
        # a malformed client id is a 400, counted nowhere
        assert _limited(http, sb, "x" * 201).status_code == 400
        assert _limited(http, sb, "").json()["partition"] == "anonymous"  # empty: absent
        assert len(sb.stats()["clients"]) == 4


@pytest.mark.parametrize(("mode", "ok_per_client"), [("client", 5), ("global", None)])
def test_quota_partition_counts_are_exact_under_concurrency(
    mode: str, ok_per_client: int | None
) -> None:
    """8 threads, 4 client ids, 10 requests each: the quota and counters stay exact."""
    with Sandbox(rate=0.01, burst=5, quota_partition=mode) as sb:
        barrier = threading.Barrier(8)
        codes: list[int] = []
        lock = threading.Lock()

        def worker(client: str) -> None:
            with requests.Session() as http:
                http.trust_env = False
                barrier.wait(5)
                mine = [_limited(http, sb, client).status_code for _ in range(10)]
            with lock:
                codes.extend(mine)

        threads = [threading.Thread(target=worker, args=(f"c{i % 4}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        clients = sb.stats()["clients"]
    assert sorted(clients) == ["c0", "c1", "c2", "c3"]
    assert all(c["ok"] + c["429s"] == 20 for c in clients.values())
    if ok_per_client is not None:
        assert all(c["ok"] == ok_per_client for c in clients.values())
    assert sum(c["ok"] for c in clients.values()) == codes.count(200) == (
        5 * 4 if mode == "client" else 5
    )
    assert sum(c["429s"] for c in clients.values()) == codes.count(429)


# -- outage --------------------------------------------------------------------------------


def test_outage(sb: Sandbox, http: requests.Session) -> None:
    assert http.post(sb.url + "/admin/outage?seconds=2").status_code == 200
    r = http.get(sb.url + "/get")
    assert r.status_code == 503
    assert r.headers["Retry-After"] in ("1", "2")
    assert http.post(sb.url + "/orders", json={}).status_code == 503
    assert http.get(sb.url + "/stats").status_code == 200
    http.post(sb.url + "/admin/outage?seconds=0")
    assert http.get(sb.url + "/get").status_code == 200
    assert http.get(sb.url + "/admin/outage").status_code == 405


# -- OAuth2 --------------------------------------------------------------------------------


def test_token_basic_and_post(sb: Sandbox, http: requests.Session) -> None:
    r = http.post(
        sb.url + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=("demo-client", "demo-secret"),
    )
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "read"
    assert len(body["access_token"]) >= 32
    r = http.post(
        sb.url + "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
    )
    assert r.status_code == 200
    assert r.json()["access_token"] != body["access_token"]
    assert sb.stats()["tokens_issued"] == 2


def test_token_errors(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/oauth/token"
    r = http.post(url, data={"grant_type": "client_credentials"}, auth=("demo-client", "wrong"))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"] == 'Basic realm="sandbox"'
    assert "wrong" not in r.text
    r = http.post(
        url,
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" not in r.headers
    r = http.post(url, data={"grant_type": "password"}, auth=("demo-client", "demo-secret"))
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"
    r = http.post(url, data={}, auth=("demo-client", "demo-secret"))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert sb.stats()["tokens_issued"] == 0


def test_basic_auth_is_form_urlencoded() -> None:
    with Sandbox(clients={"id:with colon": "s&cret"}) as sandbox:
        r = requests.post(
            sandbox.url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("id%3Awith+colon", "s%26cret"),
        )
        assert r.status_code == 200


def _token(sb: Sandbox, http: requests.Session) -> str:
    r = http.post(
        sb.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("demo-client", "demo-secret"),
    )
    token: str = r.json()["access_token"]
    return token


def test_protected(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/protected"
    r = http.get(url)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = http.get(url, headers={"Authorization": "Bearer bogus"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    token = _token(sb, http)
    r = http.post(url + "/deeper", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.json()["client_id"] == "demo-client"
    assert http.post(sb.url + "/admin/revoke-tokens").json()["revoked"] == 1
    assert http.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_token_expiry() -> None:
    with Sandbox(token_ttl=0.3) as sandbox, requests.Session() as http:
        token = _token(sandbox, http)
        auth = {"Authorization": f"Bearer {token}"}
        assert http.get(sandbox.url + "/protected", headers=auth).status_code == 200
        time.sleep(0.35)
        assert http.get(sandbox.url + "/protected", headers=auth).status_code == 401


# -- HMAC ----------------------------------------------------------------------------------


def test_signed(sb: Sandbox, http: requests.Session) -> None:
    signer = HmacSigner("demo-key", "demo-secret")
    url = sb.url + "/signed/orders?b=2&a=1"
    body = b'{"amount": 5}'
    headers = signer.sign(HttpRequest("POST", url, {}, body))
    r = http.post(url, data=body, headers=headers)
    assert r.status_code == 200
    assert r.json() == {"ok": True, "key_id": "demo-key"}

    replay = http.post(url, data=body, headers=headers)
    assert replay.status_code == 401
    assert replay.json() == {"error": "invalid_signature", "reason": "replayed_nonce"}
    assert replay.headers["WWW-Authenticate"] == "Signature"

    tampered_body = http.post(
        url, data=b'{"amount": 500}', headers=signer.sign(HttpRequest("POST", url, {}, body))
    )
    assert tampered_body.json()["reason"] == "body_digest_mismatch"
    tampered_url = http.post(
        url + "&c=3", data=body, headers=signer.sign(HttpRequest("POST", url, {}, body))
    )
    assert tampered_url.json()["reason"] == "bad_signature"
    old = signer.sign(HttpRequest("GET", url, {}, b""), now=time.time() - 1000)
    assert http.get(url, headers=old).json()["reason"] == "timestamp_skew"
    unknown = HmacSigner("nobody", "x").sign(HttpRequest("GET", url, {}, b""))
    assert http.get(url, headers=unknown).json()["reason"] == "unknown_key"
    assert http.get(url).json()["reason"] == "missing_header"

    stats = sb.stats()
    assert stats["replays"] == 1
    assert stats["signature_rejections"] == {
        "replayed_nonce": 1,
        "body_digest_mismatch": 1,
        "bad_signature": 1,
        "timestamp_skew": 1,
        "unknown_key": 1,
        "missing_header": 1,
    }


# -- orders --------------------------------------------------------------------------------


def test_orders_idempotency(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/orders"
    r = http.post(url, json={"item": "book"})
    assert r.status_code == 201
    assert r.json()["item"] == "book"
    first = http.post(url, json={"item": "pen"}, headers={"Idempotency-Key": "k1"})
    again = http.post(url, json={"item": "pen"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = http.post(url, json={"item": "car"}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422
    assert http.post(url, json=[1, 2]).status_code == 400
    assert sb.stats()["orders_created"] == 2
    listing = http.get(url).json()
    assert listing["count"] == 2
    assert http.get(f"{url}/{first.json()['id']}").json()["item"] == "pen"


def test_orders_fail_after_commit(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/orders?fail_after_commit=1"
    headers = {"Idempotency-Key": "order-42"}
    with pytest.raises(requests.ConnectionError):
        http.post(url, json={"item": "tv"}, headers=headers)
    assert sb.stats()["orders_created"] == 1  # committed despite the reset
    retry = http.post(url, json={"item": "tv"}, headers=headers)
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["item"] == "tv"
    with pytest.raises(requests.ConnectionError):  # without a key: a duplicate
        http.post(url, json={"item": "tv"})
    assert sb.stats()["orders_created"] == 2
    assert sb.stats()["resets"] == 2


def test_orders_faults_before_commit(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/orders"
    r = http.post(url + "?fault=503&p=1&retry_after=1", json={"item": "a"},
                  headers={"Idempotency-Key": "before-1"})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert "Retry-After" not in http.post(url + "?fault=503&p=1", json={"item": "a"}).headers
    with pytest.raises(requests.ConnectionError):
        http.post(url + "?fault=reset&p=1", json={"item": "a"},
                  headers={"Idempotency-Key": "before-1"})
    assert sb.stats()["orders_created"] == 0  # nothing stored
    assert sb.stats()["faults"] == {"503_before_commit": 2, "reset_before_commit": 1}
    r = http.post(url + "?fault=503&p=0", json={"item": "a"},
                  headers={"Idempotency-Key": "before-1"})
    assert r.status_code == 201  # the key was never used
    assert http.post(url + "?fault=bogus", json={}).status_code == 400
    assert http.post(url + "?fault=slow&hang=x", json={}).status_code == 400
    assert sb.stats()["orders_created"] == 1


def test_orders_timeout_after_commit(sb: Sandbox, http: requests.Session) -> None:
    url = sb.url + "/orders?fault=timeout&p=1&hang=1"
    headers = {"Idempotency-Key": "late-1"}
    with pytest.raises(requests.ReadTimeout):
        http.post(url, json={"item": "tv"}, headers=headers, timeout=0.3)
    assert sb.stats()["orders_created"] == 1  # stored before the answer hung
    started = time.monotonic()
    replay = http.post(url, json={"item": "tv"}, headers=headers)  # replays are hit too
    assert time.monotonic() - started >= 0.9
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert sb.stats()["orders_created"] == 1
    assert sb.stats()["faults"] == {"timeout_after_commit": 2}


def test_orders_truncate_and_slow_after_commit(sb: Sandbox) -> None:
    conn = httpclient.HTTPConnection("127.0.0.1", sb.port, timeout=5)
    body = json.dumps({"item": "pen"})
    json_headers = {"Content-Type": "application/json", "Idempotency-Key": "cut-1"}
    conn.request("POST", "/orders?fault=truncate&p=1", body=body, headers=json_headers)
    resp = conn.getresponse()
    assert resp.status == 201
    assert resp.getheader("Location") == "/orders/ord_1"
    with pytest.raises(httpclient.IncompleteRead):
        resp.read()
    conn.close()
    assert sb.stats()["orders_created"] == 1

    conn = httpclient.HTTPConnection("127.0.0.1", sb.port, timeout=0.5)
    started = time.monotonic()
    conn.request("POST", "/orders?fault=slow&p=1&hang=1", body=body, headers=json_headers)
    resp = conn.getresponse()
    assert resp.status == 200  # the replay of ord_1, trickled
    assert resp.getheader("Idempotent-Replayed") == "true"
    assert json.loads(resp.read()) == {"id": "ord_1", "item": "pen"}
    assert time.monotonic() - started >= 0.9
    conn.close()
    stats = sb.stats()
    assert stats["orders_created"] == 1
    assert stats["faults"] == {"truncate_after_commit": 1, "slow_after_commit": 1}
    assert stats["endpoints"]["/orders"]["statuses"] == {"truncated": 1, "slow": 1}


def test_orders_without_fault_ignore_its_parameters(sb: Sandbox, http: requests.Session) -> None:
    r = http.post(sb.url + "/orders?hang=x&retry_after=%0A&p=2", json={"item": "a"})
    assert r.status_code == 201
    assert sb.stats()["faults"] == {}


# -- stats and admin -----------------------------------------------------------------------


def test_stats_and_admin_reset(http: requests.Session) -> None:
    with Sandbox() as own:  # its own: a straggler of another test cannot count here
        _stats_and_admin_reset(own, http)


def _stats_and_admin_reset(sb: Sandbox, http: requests.Session) -> None:
    http.get(sb.url + "/get")
    http.get(sb.url + "/status/503")
    http.get(sb.url + "/status/200")
    stats = http.get(sb.url + "/stats").json()
    assert stats == sb.stats()
    assert stats["requests"] == 3
    assert stats["endpoints"]["/get"] == {"requests": 1, "statuses": {"200": 1}}
    assert stats["endpoints"]["/status"] == {"requests": 2, "statuses": {"503": 1, "200": 1}}
    for key in ("429s", "tokens_issued", "orders_created", "replays", "resets"):
        assert stats[key] == 0
    assert stats["signature_rejections"] == {}
    assert http.post(sb.url + "/admin/reset").status_code == 200
    assert sb.stats()["requests"] == 0
    assert sb.stats()["endpoints"] == {}
    assert http.get(sb.url + "/admin/reset").status_code == 405


# -- CLI -----------------------------------------------------------------------------------


def test_cli_subprocess() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "surefoot.sandbox", "--port", "0", "--burst", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with requests.Session() as http:
                r = http.get(url + "/get", timeout=5)
                assert r.status_code == 200
                r = http.get(url + "/limited/x?dialect=github", timeout=5)
                assert r.headers["x-ratelimit-limit"] == "10"
        finally:
            proc.terminate()
            code = proc.wait(timeout=10)
    assert code == 0


def test_cli_quota_partition_option() -> None:
    from surefoot.sandbox._cli import build_parser

    assert build_parser().parse_args([]).quota_partition == "credential"
    assert build_parser().parse_args(["--quota-partition", "global"]).quota_partition == (
        "global"
    )
    with pytest.raises(SystemExit) as info:
        cli_main(["--quota-partition", "bogus"])
    assert info.value.code == 2


def test_cli_rejects_bad_client() -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["--client", "no-secret"])
    assert info.value.code == 2


@pytest.mark.parametrize("port", ["-5", "65536"])
def test_sandbox_cli_refuses_a_port_out_of_range(port, capsys):
    assert cli_main(["--port", port]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "surefoot sandbox: error: --port must be 0 to 65535 (0 picks a free port)"
    ]
