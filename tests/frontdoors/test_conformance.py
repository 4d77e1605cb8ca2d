"""One behaviour suite, run against the sandbox on every way of attaching surefoot.

Each test runs on requests (``surefoot.Client``), httpx sync (``surefoot.httpx.Client``)
and httpx async (``surefoot.httpx.AsyncClient``, through the sync facade in
``tests/adapters.py``): same options, same typed errors, same history. The tests of auth,
tokens and redirects (``make_auth_api``) also run on the auth objects used alone
(``session.auth = auth``, ``httpx.Client(auth=auth)``, ``httpx.AsyncClient(auth=auth)``),
which run the same pipeline with the no-retry policy.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

import surefoot
from adapters import ALL_KINDS, KINDS, Api, echoed_headers, recording_transport
from surefoot import (
    BearerAuth,
    DeadlineExceeded,
    RetriesExhausted,
    RetryPolicy,
    SigningAuth,
    TransportError,
    Unauthorized,
)
from surefoot.errors import InvalidClient, RetryAfterTooLong
from surefoot.oauth import Token
from surefoot.requests import SurefootAdapter
from surefoot.stores import FileTokenStore

FAST = RetryPolicy(max_attempts=4, backoff_initial=0.01, backoff_max=0.05)
CREDENTIAL_HEADERS = {"x-api-key", "x-signature", "x-nonce", "authorization"}


def quiet(event: surefoot.Event) -> None:
    return None


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


MakeApi = Callable[..., Api]


def _factory(kind: str, sandbox: Any) -> Iterator[MakeApi]:
    """``make(**client_kwargs)``: an :class:`Api` of ``kind`` on the sandbox (``base_url=``
    to point elsewhere), quiet and with the FAST policy unless overridden; closed after the
    test."""
    made: list[Api] = []

    def make(*, base_url: str | None = None, **kw: Any) -> Api:
        kw.setdefault("hook", quiet)
        kw.setdefault("retry", FAST)
        api = Api(kind, base_url or sandbox.url, **kw)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def make_api(kind: str, sandbox: Any) -> Iterator[MakeApi]:
    """An :class:`Api` factory for this test's client kind (see :func:`_factory`)."""
    yield from _factory(kind, sandbox)


@pytest.fixture(params=ALL_KINDS)
def auth_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_auth_api(auth_kind: str, sandbox: Any) -> Iterator[MakeApi]:
    """``make_api`` over every attachment mode, the standalone auth objects included."""
    yield from _factory(auth_kind, sandbox)


def endpoint(sandbox: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = sandbox.stats()["endpoints"].get(name, {"requests": 0, "statuses": {}})
    return found


def cc_auth(sandbox: Any, **kwargs: Any) -> BearerAuth:
    return BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret", hook=quiet, **kwargs
    )


def elsewhere(sandbox: Any, path: str = "/headers") -> str:
    """The same server under another origin (another host name)."""
    return str(sandbox.url).replace("127.0.0.1", "localhost") + path


# -- retries -------------------------------------------------------------------------------


def test_5xx_is_retried_and_history_attached(sandbox, make_api):
    response = make_api().get("/flaky/a", params={"fault": "503", "fail": "2"})
    assert response.status_code == 200
    history = surefoot.history_of(response)
    assert [a.status for a in history] == [503, 503, 200]
    assert endpoint(sandbox, "/flaky")["requests"] == 3


def test_retry_after_is_honoured_and_no_sleep_after_last_attempt(make_api, no_wait):
    api = make_api(retry=RetryPolicy(max_attempts=3))
    response = api.get("/status/429", params={"retry_after": "1"})
    assert response.status_code == 429
    assert no_wait.slept == [1.0, 1.0]
    assert [a.wait_before for a in surefoot.history_of(response)] == [0.0, 1.0, 1.0]


def test_test_mode_removes_real_waiting(make_api):
    with surefoot.testing.testing():
        api = make_api(retry=RetryPolicy(max_attempts=3))
        start = time.monotonic()
        response = api.get("/status/429", params={"retry_after": "5"})
    assert time.monotonic() - start < 1.0
    assert [a.status for a in surefoot.history_of(response)] == [429, 429, 429]


def test_on_exhausted_raise_carries_history_and_response(make_api, no_wait):
    api = make_api(retry=FAST.replace(on_exhausted="raise", max_attempts=2))
    with pytest.raises(RetriesExhausted) as info:
        api.get("/status/503")
    err = info.value
    assert [a.status for a in err.history] == [503, 503]
    assert err.response.status_code == 503


def test_retry_after_above_cap_fails_fast_with_requested_wait(make_api):
    api = make_api()
    start = time.monotonic()
    with pytest.raises(RetryAfterTooLong) as info:
        api.get("/status/429", params={"retry_after": "9999999999"})
    assert info.value.requested_wait == 9999999999
    assert time.monotonic() - start < 1.0
    assert info.value.response.status_code == 429


def test_deadline_gives_up_instead_of_overrunning(make_api):
    api = make_api(retry=RetryPolicy(deadline=1.0, max_attempts=5, on_exhausted="raise"))
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        api.get("/status/503", params={"retry_after": "2"})
    assert time.monotonic() - start < 0.5


def test_deadline_caps_the_attempt_timeout(make_api):
    api = make_api(retry=RetryPolicy(deadline=0.5, max_attempts=3), timeout=30)
    start = time.monotonic()
    with pytest.raises((TransportError, DeadlineExceeded)):
        api.get("/delay/3")
    assert time.monotonic() - start < 1.5


def test_truncated_response_is_retried_for_get(make_api):
    response = make_api().get("/flaky/t", params={"fault": "truncate", "fail": "1"})
    assert response.status_code == 200
    assert [a.error for a in surefoot.history_of(response)] == ["truncated", None]


def test_reset_is_retried_for_get(make_api):
    response = make_api().get("/flaky/r", params={"fault": "reset", "fail": "2"})
    assert response.status_code == 200
    assert [a.error for a in surefoot.history_of(response)] == ["reset", "reset", None]


# -- idempotency ---------------------------------------------------------------------------


def test_post_read_timeout_without_key_is_not_retried(sandbox, make_api):
    api = make_api(timeout=0.3)
    with pytest.raises(TransportError) as info:
        api.post("/flaky/pay", params={"fault": "timeout", "p": "1", "hang": "0.8"}, json={})
    assert info.value.kind == "read_timeout"
    assert len(info.value.history) == 1
    time.sleep(0.8)  # the server counts the request when its (hung) handler finishes
    assert endpoint(sandbox, "/flaky")["requests"] == 1


def test_post_connect_failure_is_retried(make_api, closed_port):
    api = make_api(base_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(TransportError) as info:
        api.post("/orders", json={"x": 1})
    assert info.value.kind == "connect"
    assert [a.error for a in info.value.history] == ["connect"] * FAST.max_attempts


def test_post_fail_after_commit_with_idempotency_key_creates_one_order(sandbox, make_api):
    api = make_api(retry=FAST.replace(idempotency_keys="auto"))
    response = api.post("/orders", params={"fail_after_commit": "1"}, json={"sku": "a"})
    assert response.status_code == 200
    assert response.headers.get("Idempotent-Replayed") == "true"
    assert sandbox.stats()["orders_created"] == 1
    assert [a.error for a in surefoot.history_of(response)] == ["reset", None]


def test_post_fail_after_commit_without_key_is_not_retried(sandbox, make_api):
    with pytest.raises(TransportError) as info:
        make_api().post("/orders", params={"fail_after_commit": "1"}, json={"sku": "a"})
    assert info.value.kind == "reset"
    assert len(info.value.history) == 1
    assert sandbox.stats()["orders_created"] == 1


def test_caller_supplied_idempotency_key_is_kept(make_api):
    api = make_api(retry=FAST.replace(idempotency_keys="auto"))
    response = api.post("/anything", headers={"Idempotency-Key": "mine-1"}, json={})
    assert response.json()["headers"]["Idempotency-Key"] == "mine-1"


def test_post_503_is_not_retried_without_key(make_api):
    response = make_api().post("/status/503")
    assert response.status_code == 503
    assert len(surefoot.history_of(response)) == 1


def test_caller_dicts_are_never_mutated(make_api):
    headers = {"X-Trace": "1"}
    params = {"fault": "503", "fail": "1"}
    body = {"a": [1, 2]}
    api = make_api(auth=SigningAuth.hmac("demo-key", "demo-secret"))
    response = api.put("/flaky/m", headers=headers, params=params, json=body)
    assert [a.status for a in surefoot.history_of(response)] == [503, 200]
    assert headers == {"X-Trace": "1"}
    assert params == {"fault": "503", "fail": "1"}
    assert body == {"a": [1, 2]}


# -- tokens --------------------------------------------------------------------------------


def test_one_401_causes_exactly_one_token_request(sandbox, make_auth_api):
    api = make_auth_api(auth=cc_auth(sandbox))
    assert api.get("/protected").status_code == 200
    requests.post(sandbox.url + "/admin/revoke-tokens", timeout=5)
    response = api.get("/protected")
    assert response.status_code == 200
    assert sandbox.stats()["tokens_issued"] == 2
    assert [a.status for a in surefoot.history_of(response)] == [401, 200]


def test_second_401_ends_the_request_without_a_loop(sandbox, make_auth_api):
    calls = []

    def bogus() -> str:
        calls.append(1)
        return f"not-a-token-{len(calls)}"

    api = make_auth_api(auth=BearerAuth(bogus, hook=quiet),
                        retry=FAST.replace(on_exhausted="raise"))
    if api.standalone:  # the no-retry policy hands the second 401 back
        response = api.get("/protected")
        assert response.status_code == 401
        history = surefoot.history_of(response)
    else:
        with pytest.raises(Unauthorized) as info:
            api.get("/protected")
        history = info.value.history
    assert len(calls) == 2
    assert [a.status for a in history] == [401, 401]
    assert endpoint(sandbox, "/protected")["requests"] == 2


def test_64_concurrent_callers_sharing_an_expired_token_cause_one_token_request(
    sandbox, make_auth_api, auth_kind, tmp_path
):
    store = FileTokenStore(tmp_path / "token.json")
    key = f"client_credentials:demo-client@{sandbox.url}/oauth/token"
    store.save(key, Token(access_token="expired", expires_at=time.time() - 10, obtained_at=0))
    auth = cc_auth(sandbox, store=store)
    api = make_auth_api(auth=auth)
    if auth_kind == "requests":  # requests' default pool keeps 10 connections per host
        adapter = SurefootAdapter(
            retry=FAST,
            auth=auth,
            hook=quiet,
            pool_maxsize=64,
            credential_origins=[sandbox.url],
        )
        api.client.session.mount("http://", adapter)
    statuses = api.concurrent(64, "GET", "/protected")
    assert statuses == [200] * 64
    assert sandbox.stats()["tokens_issued"] == 1
    # nobody was sent without a token, or with the expired one
    assert endpoint(sandbox, "/protected")["statuses"] == {"200": 64}


def test_token_file_is_private_and_atomic(sandbox, make_auth_api, tmp_path):
    path = tmp_path / "t" / "token.json"
    api = make_auth_api(auth=cc_auth(sandbox, store=FileTokenStore(path)))
    assert api.get("/protected").status_code == 200
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.json", "token.json.lock"]


def test_corrupt_token_file_means_no_token(sandbox, make_auth_api, tmp_path):
    path = tmp_path / "token.json"
    path.write_bytes(b"\x00garbage{")
    api = make_auth_api(auth=cc_auth(sandbox, store=FileTokenStore(path)))
    assert api.get("/protected").status_code == 200
    assert sandbox.stats()["tokens_issued"] == 1


def test_invalid_client_is_typed_and_not_retried(sandbox, make_auth_api):
    auth = BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "wrong-secret", hook=quiet
    )
    with pytest.raises(InvalidClient) as info:
        make_auth_api(auth=auth).get("/protected")
    assert "wrong-secret" not in str(info.value)
    assert "wrong-secret" not in repr(info.value)
    assert endpoint(sandbox, "/oauth/token")["requests"] == 1
    assert endpoint(sandbox, "/protected")["requests"] == 0


def test_client_secret_post(sandbox, make_auth_api):
    auth = BearerAuth.client_credentials(
        sandbox.url + "/oauth/token",
        "demo-client",
        "demo-secret",
        auth_method="client_secret_post",
        hook=quiet,
    )
    assert make_auth_api(auth=auth).get("/protected").status_code == 200
    assert sandbox.stats()["tokens_issued"] == 1


# -- signing and redirects -----------------------------------------------------------------


def test_signed_request_accepted_and_fresh_per_attempt_after_outage(sandbox, make_api):
    requests.post(sandbox.url + "/admin/outage", params={"seconds": "1"}, timeout=5)
    api = make_api(
        auth=SigningAuth.hmac("demo-key", "demo-secret"), retry=RetryPolicy(max_attempts=4)
    )
    response = api.put("/signed/x", params={"b": "2", "a": "1"}, body=b"payload")
    assert response.status_code == 200, response.text
    assert response.json()["key_id"] == "demo-key"
    statuses = [a.status for a in surefoot.history_of(response)]
    assert statuses[0] == 503
    assert statuses[-1] == 200
    assert sandbox.stats()["signature_rejections"] == {}


def test_replayed_signature_is_rejected(sandbox, make_auth_api, auth_kind):
    sent: list[Any] = []
    api = make_auth_api(auth=SigningAuth.hmac("demo-key", "demo-secret"),
                        **recording_transport(auth_kind, sent))
    response = api.get("/signed/y")
    assert response.status_code == 200
    wire = sent[-1] if sent else response.request
    assert "X-Signature" in wire.headers
    replay = requests.get(str(wire.url), headers=dict(wire.headers), timeout=5)
    assert replay.status_code == 401
    assert replay.json()["reason"] == "replayed_nonce"


@pytest.mark.parametrize("scheme", ["hmac", "bearer"])
def test_credentials_do_not_cross_origins_on_redirect(sandbox, make_auth_api, scheme):
    auth = SigningAuth.hmac("demo-key", "demo-secret") if scheme == "hmac" else cc_auth(sandbox)
    response = make_auth_api(auth=auth).get("/redirect-to", params={"url": elsewhere(sandbox)})
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [302]
    assert not echoed_headers(response) & CREDENTIAL_HEADERS


def test_same_origin_redirect_is_signed_afresh(make_auth_api):
    api = make_auth_api(auth=SigningAuth.hmac("demo-key", "demo-secret"))
    response = api.get("/redirect-to", params={"url": "/signed/target"})
    assert response.status_code == 200, response.text
    assert [r.status_code for r in response.history] == [302]


@pytest.mark.parametrize("scheme", ["hmac", "bearer"])
def test_client_never_sends_credentials_to_an_absolute_url_elsewhere(sandbox, make_api, scheme):
    auth = SigningAuth.hmac("demo-key", "demo-secret") if scheme == "hmac" else cc_auth(sandbox)
    response = make_api(auth=auth).get(elsewhere(sandbox))
    assert response.status_code == 200
    assert not echoed_headers(response) & CREDENTIAL_HEADERS


#: Set on the client: a credential header (withheld from another origin) and one that is not.
STATIC_HEADERS = {"X-API-Key": "static-api-key", "X-Trace-Id": "trace-1"}


def test_static_credential_header_does_not_cross_origins_on_redirect(sandbox, make_api):
    """A credential header set on the client (or per request), with no auth object, is
    withheld from a redirect hop to another origin; other headers go on."""
    seen: list[surefoot.Event] = []
    api = make_api(headers=STATIC_HEADERS, hook=seen.append)
    response = api.get("/redirect-to", params={"url": elsewhere(sandbox)},
                       headers={"X-Auth-Token": "per-request-token"})
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [302]
    echoed = echoed_headers(response)
    assert not echoed & {"x-api-key", "x-auth-token"}
    assert "x-trace-id" in echoed
    withheld = [e for e in seen if e.kind is surefoot.events.EventKind.CREDENTIALS_WITHHELD]
    assert withheld
    assert all("static-api-key" not in e.message() for e in withheld)


def test_static_credential_header_follows_a_same_origin_redirect(make_api):
    api = make_api(headers=STATIC_HEADERS)
    response = api.get("/redirect-to", params={"url": "/headers"})
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [302]
    sent = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert sent["x-api-key"] == "static-api-key"


def test_static_credential_header_with_auth_does_not_cross_origins(sandbox, make_auth_api):
    """The same with an auth object, on every attachment (the auth object alone too)."""
    # (not X-API-Key: the HMAC scheme sends its key id in it, one of its own headers)
    api = make_auth_api(auth=SigningAuth.hmac("demo-key", "demo-secret"),
                        headers={"X-Auth-Token": "static-token", "X-Trace-Id": "trace-1"})
    response = api.get("/redirect-to", params={"url": elsewhere(sandbox)})
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [302]
    echoed = echoed_headers(response)
    assert not echoed & (CREDENTIAL_HEADERS | {"x-auth-token"})
    assert "x-trace-id" in echoed


def test_a_request_that_is_not_redirected_parses_no_origin(make_api, monkeypatch):
    """The redirect rule costs a request that is not redirected nothing: no URL parsed."""
    from surefoot._core import _origin

    parsed: list[str] = []
    real = _origin.origin_of

    def counting(url: str) -> Any:
        parsed.append(url)
        return real(url)

    api = make_api(headers=STATIC_HEADERS)
    monkeypatch.setattr(_origin, "origin_of", counting)
    assert api.get("/status/200").status_code == 200
    assert parsed == []
    assert api.get("/redirect-to", params={"url": "/status/200"}).status_code == 200
    assert parsed  # the hop did compare origins


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("/v1?api_key=hunter2", "/v1/?api_key=hunter2"),
        ("/v1", "/v1/"),
        ("/v1/", "/v1/"),
        ("", "/"),
    ],
)
def test_base_url_gets_its_slash_on_the_path_and_repr_redacts_it(sandbox, make_api, base,
                                                                  expected):
    api = make_api(base_url=sandbox.url + base)
    assert api.client.base_url == sandbox.url + expected
    userinfo = make_api(base_url=sandbox.url.replace("http://", "http://user:hunter2@") + base)
    for client in (api.client, userinfo.client):
        shown = repr(client)
        assert "hunter2" not in shown
        assert sandbox.url.removeprefix("http://") in shown


def test_streaming_body_is_sent_once_and_not_retried(sandbox, make_api):
    response = make_api().put("/status/503", stream_body=[b"a", b"b"])
    assert response.status_code == 503
    history = surefoot.history_of(response)
    assert len(history) == 1
    assert "cannot be replayed" in history[0].decision
    assert endpoint(sandbox, "/status")["requests"] == 1


def test_secrets_never_in_events_or_errors(sandbox, make_auth_api):
    seen: list[surefoot.Event] = []
    auth = BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret", hook=seen.append
    )
    api = make_auth_api(auth=auth, hook=seen.append)
    assert api.get("/protected", params={"api_key": "leak-me"}).status_code == 200
    token = auth.cache.peek()
    assert token is not None
    assert seen
    text = " ".join(e.message() for e in seen) + repr(auth) + repr(token) + repr(api.client)
    for secret in ("demo-secret", token.access_token, "leak-me"):
        assert secret not in text


def test_secrets_never_in_errors_or_their_history(sandbox, make_api, closed_port):
    auth = cc_auth(sandbox)
    api = make_api(auth=auth, retry=FAST.replace(on_exhausted="raise", max_attempts=2))
    with pytest.raises(RetriesExhausted) as exhausted:
        api.get("/status/503", params={"api_key": "leak-me"})
    token = auth.cache.peek()
    assert token is not None
    down = make_api(
        base_url=f"http://127.0.0.1:{closed_port}",
        auth=cc_auth(sandbox),
        retry=FAST.replace(max_attempts=1),
    )
    with pytest.raises(TransportError) as transport:
        down.get("/x", params={"api_key": "leak-me", "access_token": "leak-me-too"})
    for err in (exhausted.value, transport.value):
        text = str(err) + repr(err) + repr(err.history)
        for secret in ("demo-secret", token.access_token, "leak-me"):
            assert secret not in text


# -- pacing, retry budget, circuit breaker (on every adapter) -------------------------------

from surefoot import CircuitOpen, PacingPolicy, RetryBudgetExhausted  # noqa: E402
from surefoot.pacing import BreakerPolicy, Quota, RetryBudgetPolicy  # noqa: E402


def test_client_side_quota_paces_attempts(make_api, sandbox, no_wait):
    api = make_api(pacing=PacingPolicy(quotas=(Quota.per_second(20),), budget=None))
    for _ in range(6):
        assert api.get("/get").status_code == 200
    assert sum(no_wait.slept) == pytest.approx(0.25, abs=1e-6)  # 5 gaps of 50 ms
    assert sandbox.stats()["429s"] == 0


def test_retry_after_pauses_the_whole_partition(make_api, no_wait):
    pacing = PacingPolicy(budget=None, adaptive=None)
    api = make_api(pacing=pacing, retry=FAST.replace(max_attempts=1))
    assert api.get("/status/429", params={"retry_after": "2"}).status_code == 429
    assert no_wait.slept == []
    assert api.get("/get").status_code == 200  # another request, same host: waits
    assert sum(no_wait.slept) == pytest.approx(2.0, abs=0.05)


def test_pacing_slot_past_the_deadline_fails_at_once(make_api, no_wait):
    policy = FAST.replace(max_attempts=1, deadline=1.0, on_exhausted="raise")
    api = make_api(pacing=PacingPolicy(budget=None, adaptive=None), retry=policy)
    with pytest.raises(RetriesExhausted):
        api.get("/status/429", params={"retry_after": "5"})
    with pytest.raises(DeadlineExceeded):
        api.get("/get")
    assert no_wait.slept == []


def test_retry_budget_stops_a_retry_storm(make_api, sandbox, no_wait):
    budget = RetryBudgetPolicy(ratio=0.0, min_retries_per_second=0.1, window=10.0)
    api = make_api(pacing=PacingPolicy(budget=budget), retry=FAST.replace(on_exhausted="raise"))
    with pytest.raises(RetryBudgetExhausted) as first:
        api.get("/status/503")
    assert [a.status for a in first.value.history] == [503, 503]  # the one retry it had
    assert "retry budget" in first.value.history[-1].decision
    with pytest.raises(RetryBudgetExhausted) as second:
        api.get("/status/503")
    assert len(second.value.history) == 1
    assert sandbox.stats()["endpoints"]["/status"]["requests"] == 3


def test_open_breaker_fails_fast_past_the_deadline(make_api, sandbox):
    breaker = BreakerPolicy(failure_threshold=2, failure_ratio=None, open_for=30.0)
    policy = FAST.replace(max_attempts=1, deadline=5.0)
    api = make_api(pacing=PacingPolicy(breaker=breaker, budget=None), retry=policy)
    for _ in range(2):
        assert api.get("/status/503").status_code == 503
    start = time.monotonic()
    with pytest.raises(CircuitOpen) as info:
        api.get("/status/200")
    assert time.monotonic() - start < 0.5
    assert 25 < info.value.retry_in <= 30
    assert sandbox.stats()["endpoints"]["/status"]["requests"] == 2  # never sent


@pytest.mark.parametrize("circuit_wait", [None, 5.0])
def test_open_breaker_waits_for_the_probe_when_asked(make_api, sandbox, no_wait, circuit_wait):
    breaker = BreakerPolicy(failure_threshold=2, failure_ratio=None, open_for=3.0)
    policy = FAST.replace(max_attempts=1, deadline=30.0, circuit_wait=circuit_wait)
    api = make_api(pacing=PacingPolicy(breaker=breaker, budget=None, adaptive=None), retry=policy)
    for _ in range(2):
        api.get("/status/503")
    assert api.get("/get").status_code == 200  # waited for the half-open probe
    assert sum(no_wait.slept) == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("deadline", [None, 30.0])
def test_open_breaker_fails_fast_by_default(make_api, sandbox, no_wait, deadline):
    breaker = BreakerPolicy(failure_threshold=2, failure_ratio=None, open_for=3.0)
    policy = FAST.replace(max_attempts=1, deadline=deadline)
    api = make_api(pacing=PacingPolicy(breaker=breaker, budget=None, adaptive=None), retry=policy)
    for _ in range(2):
        api.get("/status/503")
    with pytest.raises(CircuitOpen, match="failing fast") as info:
        api.get("/get")
    assert no_wait.slept == []  # no wait for the probe: the caller decides what to do
    assert 2.5 < info.value.retry_in <= 3.0
    assert endpoint(sandbox, "/get")["requests"] == 0


def test_circuit_wait_shorter_than_the_probe_fails_fast(make_api, no_wait):
    breaker = BreakerPolicy(failure_threshold=2, failure_ratio=None, open_for=3.0)
    policy = FAST.replace(max_attempts=1, deadline=None, circuit_wait=1.0)
    api = make_api(pacing=PacingPolicy(breaker=breaker, budget=None, adaptive=None), retry=policy)
    for _ in range(2):
        api.get("/status/503")
    with pytest.raises(CircuitOpen, match="longer than circuit_wait"):
        api.get("/get")
    assert no_wait.slept == []


def test_one_hook_sees_everything_of_its_requests(make_api, sandbox, no_wait):
    """The client's hook: each logical request from REQUEST_STARTED to REQUEST_DONE, with
    the token work done for it (the auth's own hook is another one) and its retries."""
    from surefoot.events import EventKind

    events: list[surefoot.Event] = []
    api = make_api(auth=cc_auth(sandbox), hook=events.append, retry=FAST)
    assert api.get("/flaky", params={"fail": "1", "status": "503", "key": "hook"}
                   ).status_code == 200
    ids = {e.request_id for e in events}
    assert len(ids) == 1
    assert 0 not in ids
    kinds = [e.kind for e in events]
    assert kinds[0] is EventKind.REQUEST_STARTED
    assert kinds[-1] is EventKind.REQUEST_DONE
    assert EventKind.TOKEN_REFRESHED in kinds  # the first token, fetched for this request
    refreshed = events[kinds.index(EventKind.TOKEN_REFRESHED)]
    assert refreshed.reason.startswith("first token")
    assert refreshed.url.startswith(sandbox.url)
    assert refreshed.method == "GET"
    assert kinds.count(EventKind.ATTEMPT_SENT) == 2
    assert EventKind.RETRY_SCHEDULED in kinds
    done = events[-1]
    assert (done.status, done.attempt, done.error) == (200, 2, None)
    assert done.elapsed is not None
    assert done.elapsed > 0
    assert {e.partition for e in events} == {sandbox.url.split("//")[1]}
    events.clear()
    api.get("/status/404")
    assert len({e.request_id for e in events}) == 1
    assert events[0].request_id not in ids


def test_pacing_waits_and_an_open_circuit_are_events(make_api, sandbox, no_wait):
    from surefoot.events import EventKind

    events: list[surefoot.Event] = []
    breaker = BreakerPolicy(failure_threshold=2, failure_ratio=None, open_for=3.0)
    pacing = PacingPolicy(quotas=(Quota.per_second(20),), breaker=breaker, budget=None,
                          adaptive=None)
    api = make_api(pacing=pacing, retry=FAST.replace(max_attempts=1), hook=events.append)
    for _ in range(2):
        api.get("/status/503")
    waits = [e for e in events if e.kind is EventKind.PACING_WAIT]
    assert [round(e.wait, 3) for e in waits] == [0.05]  # the second request's slot
    assert waits[0].attempt == 1
    assert waits[0].request_id == events[-1].request_id
    events.clear()
    with pytest.raises(CircuitOpen):
        api.get("/get")
    opened = [e for e in events if e.kind is EventKind.CIRCUIT_OPEN]
    assert len(opened) == 1
    assert 2.5 < opened[0].wait <= 3.0
    assert [e.kind for e in events][-2:] == [EventKind.GAVE_UP, EventKind.REQUEST_DONE]
    assert events[-1].error == "CircuitOpen"


def test_request_done_reports_a_request_that_raised(make_api, sandbox):
    from surefoot.errors import TokenError
    from surefoot.events import EventKind

    events: list[surefoot.Event] = []
    auth = BearerAuth.client_credentials(sandbox.url + "/oauth/token", "demo-client",
                                         "wrong-secret", hook=quiet)
    api = make_api(auth=auth, hook=events.append, retry=FAST)
    with pytest.raises(TokenError):
        api.get("/get")
    done = [e for e in events if e.kind is EventKind.REQUEST_DONE]
    assert len(done) == 1
    assert done[0].error == "InvalidClient"
    assert "demo-secret" not in repr(events)
    assert "wrong-secret" not in repr(events)


def test_attempt_timeout_longer_than_deadline_is_rejected():
    with pytest.raises(surefoot.ConfigurationError, match="longer than the whole deadline"):
        RetryPolicy(deadline=5, attempt_timeout=10)


def test_learned_quota_means_no_429s(make_api, sandbox):
    # the session sandbox enforces 50/s with a burst of 10 on /limited, and says so
    api = make_api(pacing=PacingPolicy(), retry=FAST.replace(max_attempts=1))
    statuses = [api.get("/limited/q", params={"dialect": "ietf"}).status_code
                for _ in range(40)]
    assert statuses == [200] * 40
    assert sandbox.stats()["429s"] == 0


def test_adaptive_pacing_when_the_server_states_no_quota(make_api, sandbox):
    # no quota headers: the adaptive rate probes up from 20/s and backs off on 429s
    # (each carrying Retry-After, which also pauses the partition)
    from surefoot.pacing import AdaptivePolicy

    api = make_api(pacing=PacingPolicy(adaptive=AdaptivePolicy(initial_rate=20.0)),
                   retry=FAST.replace(max_attempts=4))
    statuses = [api.get("/limited/r", params={"dialect": "none"}).status_code
                for _ in range(60)]
    assert statuses == [200] * 60
    assert sandbox.stats()["429s"] <= 6  # against 60 requests into a 50/s bucket


# -- shared pacing state (SQLite, Redis) on every adapter -------------------------------


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
def test_two_clients_sharing_a_store_pace_as_one(make_api, sandbox, store_kind, tmp_path,
                                                 request):
    """Two clients (think: two processes) with their own Pacer on one store: they learn
    the sandbox's quota (50/s, burst 10) together and never exceed it between them."""
    import time as _time

    import surefoot

    if store_kind == "sqlite":
        store = surefoot.stores.SQLiteStore(tmp_path / "state.db", on_failure="closed")
    else:
        url = request.getfixturevalue("redis_url")
        store = surefoot.stores.RedisStore(url, on_failure="closed")
    first = make_api(pacing=surefoot.Pacer(PacingPolicy(), store=store))
    second = make_api(pacing=surefoot.Pacer(PacingPolicy(), store=store))
    start = _time.monotonic()
    statuses = [api.get("/limited/shared").status_code for _ in range(15)
                for api in (first, second)]
    elapsed = _time.monotonic() - start
    assert statuses == [200] * 30
    assert sandbox.stats()["429s"] == 0
    # the burst of 10, then 20 more at <= 50/s between them: at least ~0.4 s
    assert elapsed >= 0.35
    store.close()


# -- the whole attempt within the deadline -----------------------------------------------


@pytest.fixture
def trickle_url() -> Iterator[str]:
    """A loopback server that answers 200 with a 20-byte body, one byte per 0.25 s (each
    byte well within any read timeout; the whole body takes 5 s)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 20\r\nConnection: close\r\n\r\n")
                for _ in range(20):
                    if stop.wait(0.25):
                        return
                    conn.sendall(b"x")
            except OSError:
                return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(2)
    listener.close()


def test_a_trickled_body_does_not_hold_the_attempt_past_the_deadline(make_api, trickle_url):
    api = make_api(base_url=trickle_url,
                   retry=RetryPolicy(deadline=1.0, max_attempts=3, on_exhausted="raise"))
    start = time.monotonic()
    with pytest.raises((TransportError, DeadlineExceeded)):
        api.get("/slow")
    assert time.monotonic() - start < 1.3


def test_a_trickled_token_response_does_not_hold_the_token_fetch(trickle_url):
    from surefoot.oauth._sender import send
    from surefoot.signing import HttpRequest

    start = time.monotonic()
    with pytest.raises(TransportError, match="deadline") as info:
        send(HttpRequest("POST", trickle_url + "/token", {}, b""), 1.0)
    assert info.value.kind == "read_timeout"
    assert time.monotonic() - start < 1.2
