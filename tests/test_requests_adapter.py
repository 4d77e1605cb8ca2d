"""The requests integration against the real sandbox on loopback."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest
import requests

import surefoot
from surefoot import (
    BearerAuth,
    Client,
    DeadlineExceeded,
    FileTokenStore,
    HmacAuth,
    InvalidClient,
    RetriesExhausted,
    RetryAfterTooLong,
    RetryPolicy,
    SurefootAdapter,
    Token,
    TransportError,
    Unauthorized,
)

FAST = RetryPolicy(max_attempts=4, backoff_initial=0.01, backoff_max=0.05)


def quiet(event: surefoot.Event) -> None:
    return None


def client(sandbox, **kwargs) -> Client:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("hook", quiet)
    return Client(sandbox.url, **kwargs)


def endpoint(sandbox, name: str) -> dict:
    return sandbox.stats()["endpoints"].get(name, {"requests": 0, "statuses": {}})


def cc_auth(sandbox, **kwargs) -> BearerAuth:
    return BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret", hook=quiet, **kwargs
    )


# -- retries -------------------------------------------------------------------------------


def test_5xx_is_retried_and_history_attached(sandbox):
    with client(sandbox) as c:
        response = c.get("/flaky/a", params={"fault": "503", "fail": "2"})
    assert response.status_code == 200
    history = surefoot.history_of(response)
    assert [a.status for a in history] == [503, 503, 200]
    assert endpoint(sandbox, "/flaky")["requests"] == 3


def test_retry_after_is_honoured_and_no_sleep_after_last_attempt(sandbox, no_wait):
    policy = RetryPolicy(max_attempts=3)
    with client(sandbox, retry=policy) as c:
        response = c.get("/status/429", params={"retry_after": "1"})
    assert response.status_code == 429
    assert no_wait.slept == [1.0, 1.0]
    assert [a.wait_before for a in surefoot.history_of(response)] == [0.0, 1.0, 1.0]


def test_test_mode_removes_real_waiting(sandbox):
    with surefoot.testing(), client(sandbox, retry=RetryPolicy(max_attempts=3)) as c:
        start = time.monotonic()
        c.get("/status/429", params={"retry_after": "5"})
    assert time.monotonic() - start < 1.0


def test_on_exhausted_raise_carries_history_and_response(sandbox, no_wait):
    with client(sandbox, retry=FAST.replace(on_exhausted="raise", max_attempts=2)) as c:
        with pytest.raises(RetriesExhausted) as info:
            c.get("/status/503")
    err = info.value
    assert [a.status for a in err.history] == [503, 503]
    assert err.response.status_code == 503


def test_retry_after_above_cap_fails_fast_with_requested_wait(sandbox):
    with client(sandbox) as c:
        start = time.monotonic()
        with pytest.raises(RetryAfterTooLong) as info:
            c.get("/status/429", params={"retry_after": "9999999999"})
    assert info.value.requested_wait == 9999999999
    assert time.monotonic() - start < 1.0
    assert info.value.response.status_code == 429


def test_deadline_gives_up_instead_of_overrunning(sandbox):
    policy = RetryPolicy(deadline=1.0, max_attempts=5, on_exhausted="raise")
    with client(sandbox, retry=policy) as c:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            c.get("/status/503", params={"retry_after": "2"})
    assert time.monotonic() - start < 0.5


def test_deadline_caps_the_attempt_timeout(sandbox):
    policy = RetryPolicy(deadline=0.5, max_attempts=3)
    with client(sandbox, retry=policy, timeout=30) as c:
        start = time.monotonic()
        with pytest.raises((TransportError, DeadlineExceeded)):
            c.get("/delay/3")
    assert time.monotonic() - start < 1.5


def test_truncated_response_is_retried_for_get(sandbox):
    with client(sandbox) as c:
        response = c.get("/flaky/t", params={"fault": "truncate", "fail": "1"})
    assert response.status_code == 200
    assert [a.error for a in surefoot.history_of(response)] == ["truncated", None]


def test_reset_is_retried_for_get(sandbox):
    with client(sandbox) as c:
        response = c.get("/flaky/r", params={"fault": "reset", "fail": "2"})
    assert response.status_code == 200
    assert [a.error for a in surefoot.history_of(response)] == ["reset", "reset", None]


# -- idempotency ---------------------------------------------------------------------------


def test_post_read_timeout_without_key_is_not_retried(sandbox):
    with client(sandbox, timeout=0.3) as c:
        with pytest.raises(TransportError) as info:
            c.post("/flaky/pay", params={"fault": "timeout", "p": "1", "hang": "0.8"}, json={})
    assert info.value.kind == "read_timeout"
    assert len(info.value.history) == 1
    time.sleep(0.8)  # the server counts the request when its (hung) handler finishes
    assert endpoint(sandbox, "/flaky")["requests"] == 1


def test_post_connect_failure_is_retried(closed_port):
    c = Client(f"http://127.0.0.1:{closed_port}", retry=FAST, hook=quiet)
    with c, pytest.raises(TransportError) as info:
        c.post("/orders", json={"x": 1})
    assert info.value.kind == "connect"
    assert [a.error for a in info.value.history] == ["connect"] * FAST.max_attempts


def test_post_fail_after_commit_with_idempotency_key_creates_one_order(sandbox):
    with client(sandbox, retry=FAST.replace(idempotency_keys="auto")) as c:
        response = c.post("/orders", params={"fail_after_commit": "1"}, json={"sku": "a"})
    assert response.status_code == 200
    assert response.headers.get("Idempotent-Replayed") == "true"
    assert sandbox.stats()["orders_created"] == 1


def test_post_fail_after_commit_without_key_is_not_retried(sandbox):
    with client(sandbox) as c, pytest.raises(TransportError) as info:
        c.post("/orders", params={"fail_after_commit": "1"}, json={"sku": "a"})
    assert info.value.kind == "reset"
    assert sandbox.stats()["orders_created"] == 1


def test_caller_supplied_idempotency_key_is_kept(sandbox):
    with client(sandbox, retry=FAST.replace(idempotency_keys="auto")) as c:
        response = c.post("/anything", headers={"Idempotency-Key": "mine-1"}, json={})
    assert response.json()["headers"]["Idempotency-Key"] == "mine-1"


def test_post_503_is_not_retried_without_key(sandbox):
    with client(sandbox) as c:
        response = c.post("/status/503")
    assert response.status_code == 503
    assert len(surefoot.history_of(response)) == 1


def test_caller_dicts_are_never_mutated(sandbox):
    headers = {"X-Trace": "1"}
    params = {"fault": "503", "fail": "1"}
    body = {"a": [1, 2]}
    with client(sandbox, auth=HmacAuth("demo-key", "demo-secret")) as c:
        c.put("/flaky/m", headers=headers, params=params, json=body)
    assert headers == {"X-Trace": "1"}
    assert params == {"fault": "503", "fail": "1"}
    assert body == {"a": [1, 2]}


# -- tokens --------------------------------------------------------------------------------


def test_one_401_causes_exactly_one_token_request(sandbox):
    with client(sandbox, auth=cc_auth(sandbox)) as c:
        assert c.get("/protected").status_code == 200
        requests.post(sandbox.url + "/admin/revoke-tokens", timeout=5)
        response = c.get("/protected")
    assert response.status_code == 200
    assert sandbox.stats()["tokens_issued"] == 2
    assert [a.status for a in surefoot.history_of(response)] == [401, 200]


def test_second_401_ends_the_request_without_a_loop(sandbox):
    calls = []

    def bogus() -> str:
        calls.append(1)
        return f"not-a-token-{len(calls)}"

    auth = BearerAuth(bogus, hook=quiet)
    with client(sandbox, auth=auth, retry=FAST.replace(on_exhausted="raise")) as c:
        with pytest.raises(Unauthorized) as info:
            c.get("/protected")
    assert len(calls) == 2
    assert [a.status for a in info.value.history] == [401, 401]
    assert endpoint(sandbox, "/protected")["requests"] == 2


def test_64_threads_sharing_an_expired_token_cause_one_token_request(sandbox, tmp_path):
    store = FileTokenStore(tmp_path / "token.json")
    key = f"client_credentials:demo-client@{sandbox.url}/oauth/token"
    store.save(key, Token(access_token="expired", expires_at=time.time() - 10, obtained_at=0))
    auth = cc_auth(sandbox, store=store)
    results: list[int] = []
    barrier = threading.Barrier(64)
    with client(sandbox, auth=auth) as c:
        c.session.mount("http://", SurefootAdapter(retry=FAST, auth=auth, hook=quiet,
                                                   pool_maxsize=64))

        def worker() -> None:
            barrier.wait()
            results.append(c.get("/protected").status_code)

        threads = [threading.Thread(target=worker) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [200] * 64
    stats = sandbox.stats()
    assert stats["tokens_issued"] == 1
    # nobody was sent without a token, or with the expired one
    assert endpoint(sandbox, "/protected")["statuses"] == {"200": 64}


def test_token_file_is_private_and_atomic(sandbox, tmp_path):
    path = tmp_path / "t" / "token.json"
    with client(sandbox, auth=cc_auth(sandbox, store=FileTokenStore(path))) as c:
        c.get("/protected")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.json", "token.json.lock"]


def test_corrupt_token_file_means_no_token(sandbox, tmp_path):
    path = tmp_path / "token.json"
    path.write_bytes(b"\x00garbage{")
    with client(sandbox, auth=cc_auth(sandbox, store=FileTokenStore(path))) as c:
        assert c.get("/protected").status_code == 200
    assert sandbox.stats()["tokens_issued"] == 1


def test_invalid_client_is_typed_and_not_retried(sandbox):
    auth = BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "wrong-secret", hook=quiet
    )
    with client(sandbox, auth=auth) as c, pytest.raises(InvalidClient) as info:
        c.get("/protected")
    assert "wrong-secret" not in str(info.value)
    assert endpoint(sandbox, "/oauth/token")["requests"] == 1


def test_client_secret_post(sandbox):
    auth = BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret",
        auth_method="client_secret_post", hook=quiet,
    )
    with client(sandbox, auth=auth) as c:
        assert c.get("/protected").status_code == 200


# -- signing and redirects -----------------------------------------------------------------


def test_signed_request_accepted_and_fresh_per_attempt_after_outage(sandbox):
    requests.post(sandbox.url + "/admin/outage", params={"seconds": "1"}, timeout=5)
    with client(sandbox, auth=HmacAuth("demo-key", "demo-secret"),
                retry=RetryPolicy(max_attempts=4)) as c:
        response = c.put("/signed/x", params={"b": "2", "a": "1"}, data=b"payload")
    assert response.status_code == 200, response.text
    assert response.json()["key_id"] == "demo-key"
    statuses = [a.status for a in surefoot.history_of(response)]
    assert statuses[0] == 503
    assert statuses[-1] == 200
    assert sandbox.stats()["signature_rejections"] == {}


def test_replayed_signature_is_rejected(sandbox):
    with client(sandbox, auth=HmacAuth("demo-key", "demo-secret")) as c:
        response = c.get("/signed/y")
    assert response.status_code == 200
    sent = response.request
    replay = requests.get(sent.url, headers=dict(sent.headers), timeout=5)
    assert replay.status_code == 401
    assert replay.json()["reason"] == "replayed_nonce"


def test_credentials_do_not_cross_origins_on_redirect(sandbox):
    other = sandbox.url.replace("127.0.0.1", "localhost") + "/headers"
    for auth in (HmacAuth("demo-key", "demo-secret"), cc_auth(sandbox)):
        with client(sandbox, auth=auth) as c:
            response = c.get("/redirect-to", params={"url": other})
        echoed = {k.lower() for k in response.json()["headers"]}
        assert response.status_code == 200
        assert not echoed & {"x-api-key", "x-signature", "x-nonce", "authorization"}


def test_same_origin_redirect_is_signed_afresh(sandbox):
    with client(sandbox, auth=HmacAuth("demo-key", "demo-secret")) as c:
        response = c.get("/redirect-to", params={"url": "/signed/target"})
    assert response.status_code == 200, response.text
    assert [r.status_code for r in response.history] == [302]


def test_session_auth_hmac_alone(sandbox):
    session = requests.Session()
    session.auth = HmacAuth("demo-key", "demo-secret")
    assert session.post(sandbox.url + "/signed/p", data=b"x", timeout=5).status_code == 200
    same = session.get(sandbox.url + "/redirect-to", params={"url": "/signed/q"}, timeout=5)
    assert same.status_code == 200, same.text
    other = sandbox.url.replace("127.0.0.1", "localhost") + "/headers"
    cross = session.get(sandbox.url + "/redirect-to", params={"url": other}, timeout=5)
    echoed = {k.lower() for k in cross.json()["headers"]}
    assert not echoed & {"x-api-key", "x-signature", "x-nonce"}


def test_session_auth_bearer_refreshes_once_on_401(sandbox):
    session = requests.Session()
    session.auth = cc_auth(sandbox)
    assert session.get(sandbox.url + "/protected", timeout=5).status_code == 200
    requests.post(sandbox.url + "/admin/revoke-tokens", timeout=5)
    response = session.get(sandbox.url + "/protected", timeout=5)
    assert response.status_code == 200
    assert sandbox.stats()["tokens_issued"] == 2


def test_streaming_body_is_sent_once_and_not_retried(sandbox):
    def chunks():
        yield b"a"
        yield b"b"

    with client(sandbox) as c:
        response = c.put("/status/503", data=chunks())
    assert response.status_code == 503
    history = surefoot.history_of(response)
    assert len(history) == 1
    assert "cannot be replayed" in history[0].decision


def test_secrets_never_in_events_or_errors(sandbox):
    seen: list[surefoot.Event] = []
    auth = BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret", hook=seen.append
    )
    with Client(sandbox.url, auth=auth, retry=FAST, hook=seen.append) as c:
        c.get("/protected", params={"api_key": "leak-me"})
        token = auth.cache.peek()
    assert token is not None
    text = " ".join(e.message() for e in seen) + repr(auth) + repr(token)
    for secret in ("demo-secret", token.access_token, "leak-me"):
        assert secret not in text


def test_client_never_sends_credentials_to_an_absolute_url_elsewhere(sandbox):
    other = sandbox.url.replace("127.0.0.1", "localhost") + "/headers"
    with client(sandbox, auth=HmacAuth("demo-key", "demo-secret")) as c:
        response = c.get(other)
    echoed = {k.lower() for k in response.json()["headers"]}
    assert not echoed & {"x-api-key", "x-signature", "x-nonce"}
