"""The async path never blocks the event loop.

A heartbeat task measures how late the loop wakes it while 100 concurrent requests run
through Retry-After waits and a token refresh whose source takes 1.2 s. Any blocking
wait, lock or token fetch on the loop would show up as a lag of that size.
"""

from __future__ import annotations

import asyncio
import threading
import time

import surefoot
from surefoot import BearerAuth, RetryPolicy
from surefoot.httpx import AsyncClient
from surefoot.oauth import Token
from surefoot.stores import FileTokenStore

BEAT = 0.005
BOUND = 0.25  # seconds: well below the waits that blocking would show (0.4 s and more)
# 100 tasks that wake together from one Retry-After run their next steps in one loop
# iteration: on a loaded 2-core machine that CPU work alone took 0.3-0.45 s. A blocking
# wait would show the whole 1.2 s refresh or the 1 s Retry-After.
BOUND_100 = 0.7


def quiet(event: surefoot.Event) -> None:
    return None


async def _with_heartbeat(work) -> tuple[object, float]:
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(BEAT)
            lags.append(loop.time() - before - BEAT)

    beat = asyncio.create_task(heartbeat())
    try:
        result = await work()
    finally:
        stop.set()
        await beat
    return result, max(lags)


def test_heartbeat_detects_a_blocking_call():
    async def blocking() -> None:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # what the check must catch

    _, lag = asyncio.run(_with_heartbeat(blocking))
    assert lag >= 0.25


def test_100_concurrent_requests_with_retries_and_a_refresh_do_not_block(sandbox, tmp_path):
    calls: list[float] = []
    lock = threading.Lock()

    threads: list[int] = []

    def slow_token_source() -> dict[str, object]:
        with lock:
            calls.append(time.monotonic())
            threads.append(threading.get_ident())
        time.sleep(1.2)  # a slow token endpoint: must never run on the loop
        return {"access_token": f"tok-{len(calls)}", "expires_in": 3600}

    store = FileTokenStore(tmp_path / "token.json")
    store.save("default", Token(access_token="old", expires_at=time.time() - 5))
    auth = BearerAuth(slow_token_source, store=store, hook=quiet)
    policy = RetryPolicy(max_attempts=3, backoff_initial=0.05, backoff_max=0.2)

    async def work() -> list[int]:
        async with AsyncClient(
            sandbox.url, auth=auth, retry=policy, hook=quiet, pacing=None
        ) as api:
            calls_ = [
                api.get("/flaky/hb", params={"fault": "503", "fail": "100", "retry_after": "1"})
                for _ in range(100)
            ]
            responses = await asyncio.gather(*calls_)
        return [r.status_code for r in responses]

    statuses, lag = asyncio.run(_with_heartbeat(work))
    assert statuses == [200] * 100
    assert len(calls) == 1  # one refresh for 100 tasks
    assert threads != [threading.get_ident()]  # the token endpoint ran off the loop's thread
    assert sandbox.stats()["endpoints"]["/flaky"]["requests"] == 200  # every one retried once
    print(f"\nmax event-loop lag with 100 concurrent requests: {lag * 1000:.1f} ms")
    assert lag < BOUND_100, f"event loop blocked for {lag:.3f} s"


def test_cancellation_during_a_refresh_leaves_no_lock_and_a_whole_token(sandbox, tmp_path):
    calls: list[int] = []

    def slow_token_source() -> dict[str, object]:
        calls.append(1)
        time.sleep(0.4)
        return {"access_token": "fresh-token", "expires_in": 3600}

    path = tmp_path / "token.json"
    auth = BearerAuth(slow_token_source, store=FileTokenStore(path), hook=quiet)

    async def work() -> int:
        async with AsyncClient(sandbox.url, auth=auth, hook=quiet) as api:
            try:
                await asyncio.wait_for(api.get("/get"), 0.1)  # cancelled mid-refresh
            except asyncio.TimeoutError:
                pass
            else:  # pragma: no cover
                raise AssertionError("the request should have been cancelled")
            response = await api.get("/get")  # waits for the refresh already in flight
            return response.status_code

    status, lag = asyncio.run(_with_heartbeat(work))
    assert status == 200
    assert calls == [1]  # the cancelled caller's refresh completed and was reused
    assert not auth.cache._lock.locked()
    assert FileTokenStore(path).load("default").access_token == "fresh-token"
    assert lag < BOUND


def test_cancellation_during_a_retry_wait_is_prompt(sandbox):
    async def work() -> float:
        async with AsyncClient(sandbox.url, hook=quiet) as api:
            start = time.monotonic()
            try:
                await asyncio.wait_for(api.get("/status/503", params={"retry_after": "2"}), 0.2)
            except asyncio.TimeoutError:
                pass
            took = time.monotonic() - start
            assert (await api.get("/get")).status_code == 200
            return took

    took, lag = asyncio.run(_with_heartbeat(work))
    assert took < 0.5
    assert lag < BOUND
