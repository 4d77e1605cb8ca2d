"""httpx-only behaviour: surefoot's auth objects as ``httpx.Auth``, the transports under a
plain ``httpx.Client``/``AsyncClient``, streamed responses, and cancellation.

What the convenience clients share with requests is in ``tests/frontdoors/test_conformance.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import requests

import surefoot
import surefoot.httpx
from surefoot import BearerAuth, RetryPolicy, SigningAuth

FAST = RetryPolicy(max_attempts=4, backoff_initial=0.01, backoff_max=0.05)
HMAC_HEADERS = {"x-api-key", "x-signature", "x-nonce", "x-timestamp", "x-content-sha256"}


def quiet(event: surefoot.Event) -> None:
    return None


def cc_auth(sandbox: Any) -> BearerAuth:
    return BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret", hook=quiet
    )


def elsewhere(sandbox: Any, path: str = "/headers") -> str:
    return str(sandbox.url).replace("127.0.0.1", "localhost") + path


def echoed(response: httpx.Response) -> set[str]:
    return {k.lower() for k in response.json()["headers"]}


def flaky_requests(sandbox: Any) -> int:
    found = sandbox.stats()["endpoints"].get("/flaky", {"requests": 0})
    return int(found["requests"])


# -- the auth objects as httpx.Auth ----------------------------------------------------------


def test_hmac_auth_signs_a_plain_httpx_client(sandbox):
    with httpx.Client(auth=SigningAuth.hmac("demo-key", "demo-secret")) as client:
        response = client.post(sandbox.url + "/signed/p", content=b"payload")
    assert response.status_code == 200, response.text
    assert response.json()["key_id"] == "demo-key"


def test_hmac_auth_signs_a_plain_httpx_async_client(sandbox):
    async def main() -> httpx.Response:
        async with httpx.AsyncClient(auth=SigningAuth.hmac("demo-key", "demo-secret")) as client:
            return await client.post(sandbox.url + "/signed/p", content=b"payload")

    response = asyncio.run(main())
    assert response.status_code == 200, response.text
    assert response.json()["key_id"] == "demo-key"


def test_bearer_auth_refreshes_once_on_401_sync(sandbox):
    with httpx.Client(auth=cc_auth(sandbox)) as client:
        assert client.get(sandbox.url + "/protected").status_code == 200
        requests.post(sandbox.url + "/admin/revoke-tokens", timeout=5)
        response = client.get(sandbox.url + "/protected")
    assert response.status_code == 200
    assert sandbox.stats()["tokens_issued"] == 2
    assert [r.status_code for r in response.history] == [401]  # httpx keeps the challenge


def test_bearer_auth_refreshes_once_on_401_async(sandbox):
    async def main() -> httpx.Response:
        async with httpx.AsyncClient(auth=cc_auth(sandbox)) as client:
            assert (await client.get(sandbox.url + "/protected")).status_code == 200
            revoke = await client.post(sandbox.url + "/admin/revoke-tokens")
            assert revoke.status_code == 200
            return await client.get(sandbox.url + "/protected")

    response = asyncio.run(main())
    assert response.status_code == 200
    assert sandbox.stats()["tokens_issued"] == 2


def test_bearer_auth_gives_up_after_one_replay(sandbox):
    calls: list[int] = []

    def bogus() -> str:
        calls.append(1)
        return f"not-a-token-{len(calls)}"

    with httpx.Client(auth=BearerAuth(bogus, hook=quiet)) as client:
        response = client.get(sandbox.url + "/protected")
    assert response.status_code == 401
    assert len(calls) == 2
    assert sandbox.stats()["endpoints"]["/protected"]["requests"] == 2


# -- the transports under plain httpx clients ------------------------------------------------


def test_transport_under_a_plain_httpx_client(sandbox):
    transport = surefoot.httpx.Transport(
        retry=FAST, auth=SigningAuth.hmac("demo-key", "demo-secret"), hook=quiet
    )
    with httpx.Client(transport=transport, base_url=sandbox.url) as client:
        flaky = client.get("/flaky/x", params={"fault": "503", "fail": "1"})
        signed = client.put("/signed/z", content=b"body")
    assert flaky.status_code == 200
    assert [a.status for a in surefoot.history_of(flaky)] == [503, 200]
    assert signed.status_code == 200, signed.text
    assert signed.json()["key_id"] == "demo-key"


def test_async_transport_under_a_plain_httpx_async_client(sandbox):
    transport = surefoot.httpx.AsyncTransport(
        retry=FAST, auth=SigningAuth.hmac("demo-key", "demo-secret"), hook=quiet
    )

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url=sandbox.url) as client:
            flaky = await client.get("/flaky/x", params={"fault": "503", "fail": "1"})
            signed = await client.put("/signed/z", content=b"body")
            return flaky, signed

    flaky, signed = asyncio.run(main())
    assert [a.status for a in surefoot.history_of(flaky)] == [503, 200]
    assert signed.status_code == 200, signed.text


def test_large_response_still_streams(sandbox):
    transport = surefoot.httpx.Transport(retry=FAST, hook=quiet, buffer_limit=10)
    with httpx.Client(transport=transport) as client:
        with client.stream("GET", sandbox.url + "/anything", params={"q": "1"}) as response:
            assert int(response.headers["content-length"]) > 10
            assert not response.is_stream_consumed
            chunks = list(response.iter_bytes())
        history = surefoot.history_of(response)
    payload = json.loads(b"".join(chunks))
    assert payload["method"] == "GET"
    assert payload["args"] == {"q": "1"}
    assert [a.status for a in history] == [200]


def test_large_response_still_streams_async(sandbox):
    transport = surefoot.httpx.AsyncTransport(retry=FAST, hook=quiet, buffer_limit=10)

    async def main() -> bytes:
        async with httpx.AsyncClient(transport=transport) as client:
            async with client.stream("GET", sandbox.url + "/anything") as response:
                assert not response.is_stream_consumed
                return b"".join([chunk async for chunk in response.aiter_bytes()])

    assert json.loads(asyncio.run(main()))["method"] == "GET"


def test_truncated_large_response_is_the_callers_not_retried(sandbox):
    """Above buffer_limit the body is not read inside the attempt: a truncation shows up
    when the caller reads it, and is not retried (at or below the limit it is)."""
    transport = surefoot.httpx.Transport(retry=FAST, hook=quiet, buffer_limit=10)
    with httpx.Client(transport=transport) as client:
        with client.stream(
            "GET", sandbox.url + "/flaky/big", params={"fault": "truncate", "fail": "1"}
        ) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                response.read()
    assert flaky_requests(sandbox) == 1


# -- redirects with httpx.Auth ---------------------------------------------------------------


def test_transport_strips_hmac_credentials_on_cross_origin_redirect(sandbox):
    seen: list[surefoot.Event] = []
    with httpx.Client(
        auth=SigningAuth.hmac("demo-key", "demo-secret"),
        transport=surefoot.httpx.Transport(hook=seen.append),
        follow_redirects=True,
    ) as client:
        response = client.get(sandbox.url + "/redirect-to", params={"url": elsewhere(sandbox)})
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [302]
    assert not echoed(response) & (HMAC_HEADERS | {"authorization"})
    assert any(e.kind == surefoot.events.EventKind.CREDENTIALS_WITHHELD for e in seen)


def test_transport_strips_bearer_credentials_on_cross_origin_redirect(sandbox):
    with httpx.Client(
        auth=cc_auth(sandbox),
        transport=surefoot.httpx.Transport(hook=quiet),
        follow_redirects=True,
    ) as client:
        response = client.get(sandbox.url + "/redirect-to", params={"url": elsewhere(sandbox)})
    assert response.status_code == 200
    assert "authorization" not in echoed(response)


def test_transport_keeps_hmac_signature_valid_on_same_origin_redirect(sandbox):
    """Parity with ``session.auth = SigningAuth.hmac(...)`` on requests, which re-signs a
    same-origin hop (tests/frontdoors/test_requests_specific.py)."""
    with httpx.Client(
        auth=SigningAuth.hmac("demo-key", "demo-secret"),
        transport=surefoot.httpx.Transport(hook=quiet),
        follow_redirects=True,
    ) as client:
        response = client.get(sandbox.url + "/redirect-to", params={"url": "/signed/q"})
    assert [r.status_code for r in response.history] == [302]
    assert response.status_code == 200, response.text


# -- cancellation ----------------------------------------------------------------------------


def test_cancelled_during_retry_after_wait_then_the_client_still_works(sandbox):
    async def main() -> tuple[float, int, int]:
        async with surefoot.httpx.AsyncClient(sandbox.url, retry=FAST, hook=quiet) as api:
            start = time.monotonic()
            with pytest.raises((asyncio.CancelledError, asyncio.TimeoutError)):
                await asyncio.wait_for(
                    api.get("/status/503", params={"retry_after": "2"}), timeout=0.2
                )
            elapsed = time.monotonic() - start
            after = await api.get("/get")
            flaky = await api.get("/flaky/c", params={"fault": "503", "fail": "1"})
            return elapsed, after.status_code, flaky.status_code

    elapsed, after, flaky = asyncio.run(main())
    assert elapsed < 1.0
    assert (after, flaky) == (200, 200)
    assert sandbox.stats()["endpoints"]["/status"]["requests"] == 1  # no attempt after cancel


def test_cancelled_in_flight_then_the_client_still_works(sandbox):
    async def main() -> tuple[float, int]:
        async with surefoot.httpx.AsyncClient(sandbox.url, retry=FAST, hook=quiet) as api:
            start = time.monotonic()
            with pytest.raises((asyncio.CancelledError, asyncio.TimeoutError)):
                await asyncio.wait_for(api.get("/delay/3"), timeout=0.2)
            elapsed = time.monotonic() - start
            return elapsed, (await api.get("/get")).status_code

    elapsed, status = asyncio.run(main())
    assert elapsed < 1.0
    assert status == 200
