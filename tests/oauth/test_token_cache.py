"""TokenCache: caching, proactive refresh, single-flight, 401 invalidation, the grant."""

from __future__ import annotations

import json
import threading
import time
import traceback

import pytest

from surefoot import DeadlineExceeded, TokenError, TransportError
from surefoot.errors import InvalidClient, TokenEndpointError
from surefoot.events import EventKind
from surefoot.oauth import ClientCredentials, HttpRequest, HttpResponse, Token, TokenCache
from surefoot.stores import MemoryTokenStore
from surefoot.testing import FakeClock

T0 = 1_700_000_000.0
SECRET = "client-secret-do-not-leak"


class Source:
    """A token function: numbered tokens with a fixed lifetime, optionally slow or failing."""

    def __init__(self, lifetime: float = 3600.0, delay: float = 0.0) -> None:
        self.lifetime = lifetime
        self.delay = delay
        self.calls = 0
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, object]:
        with self._lock:
            self.calls += 1
            n = self.calls
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return {"access_token": f"tok-{n}", "expires_in": self.lifetime}


def make_cache(source, clock: FakeClock, **kwargs) -> tuple[TokenCache, list]:
    events: list = []
    cache = TokenCache(source, clock=clock, hook=events.append, **kwargs)
    return cache, events


def run_threads(n: int, target) -> list:
    results: list = [None] * n
    errors: list = []
    barrier = threading.Barrier(n)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, errors
    return results


# -- basic caching --------------------------------------------------------------------------


def test_caches_until_expiry():
    clock = FakeClock(start_wall=T0)
    source = Source()
    cache, events = make_cache(source, clock)
    first = cache.get()
    assert first.access_token == "tok-1"
    assert first.expires_at == T0 + 3600
    assert first.version == 1
    assert cache.get() is first
    clock.advance(1800)
    assert cache.get() is first
    assert source.calls == 1
    clock.advance(1800)  # expired
    second = cache.get()
    assert second.access_token == "tok-2"
    assert second.version == 2
    assert source.calls == 2
    assert cache.refreshes == 2
    assert [e.kind for e in events].count(EventKind.TOKEN_REFRESHED) == 2


def test_refreshes_in_last_second():
    clock = FakeClock(start_wall=T0)
    source = Source()
    cache, _ = make_cache(source, clock)
    cache.get()
    clock.advance(3599.5)
    assert cache.get().access_token == "tok-2"


def test_proactive_refresh_in_soon_window():
    clock = FakeClock(start_wall=T0)
    source = Source()
    cache, _ = make_cache(source, clock)
    cache.get()
    clock.advance(3539)
    assert cache.get().access_token == "tok-1"
    clock.advance(2)  # 59 s left, inside the 60 s leeway
    assert cache.get().access_token == "tok-2"
    assert source.calls == 2


def test_short_lived_token_is_not_refreshed_on_every_call():
    clock = FakeClock(start_wall=T0)
    source = Source(lifetime=30)
    cache, _ = make_cache(source, clock)
    cache.get()
    for _ in range(26):
        clock.advance(1)
        assert cache.get().access_token == "tok-1"
    clock.advance(1.5)  # 27.5 s: in the last 3 s
    assert cache.get().access_token == "tok-2"


def test_token_function_may_return_str_or_token():
    clock = FakeClock(start_wall=T0)
    cache, _ = make_cache(lambda: "plain", clock)
    token = cache.get()
    assert token.access_token == "plain"
    assert token.expires_at is None
    cache2, _ = make_cache(lambda: Token(access_token="t", expires_at=T0 + 10), clock)
    assert cache2.get().access_token == "t"


def test_uses_stored_token_first():
    clock = FakeClock(start_wall=T0)
    store = MemoryTokenStore()
    store.save("default", Token(access_token="stored", expires_at=T0 + 3600, obtained_at=T0))
    source = Source()
    cache, _ = make_cache(source, clock, store=store)
    assert cache.get().access_token == "stored"
    assert source.calls == 0


# -- single flight ----------------------------------------------------------------------------


def test_single_flight_on_expired_token():
    clock = FakeClock(start_wall=T0)
    store = MemoryTokenStore()
    store.save("default", Token(access_token="old", expires_at=T0 - 10, obtained_at=T0 - 3610))
    source = Source(delay=0.05)
    cache, _ = make_cache(source, clock, store=store)
    results = run_threads(64, cache.get)
    assert source.calls == 1
    assert {r.access_token for r in results} == {"tok-1"}
    assert all(r is results[0] for r in results)


def test_single_flight_without_any_token():
    clock = FakeClock(start_wall=T0)
    source = Source(delay=0.05)
    cache, _ = make_cache(source, clock)
    results = run_threads(32, cache.get)
    assert source.calls == 1
    assert {r.access_token for r in results} == {"tok-1"}


def test_refresh_if_current_single_flight():
    clock = FakeClock(start_wall=T0)
    source = Source(delay=0.05)
    cache, events = make_cache(source, clock)
    stale = cache.get()
    assert source.calls == 1
    results = run_threads(16, lambda: cache.refresh_if_current(stale))
    assert source.calls == 2
    assert {r.access_token for r in results} == {"tok-2"}
    assert [e.kind for e in events].count(EventKind.TOKEN_INVALIDATED) == 16
    assert [e.kind for e in events].count(EventKind.TOKEN_REFRESHED) == 2


def test_refresh_if_current_with_an_older_token_does_not_refresh():
    clock = FakeClock(start_wall=T0)
    source = Source()
    cache, _ = make_cache(source, clock)
    old = cache.get()
    new = cache.refresh_if_current(old)
    assert new.access_token == "tok-2"
    assert cache.refresh_if_current(old) is new
    assert source.calls == 2


def test_soon_window_others_keep_using_valid_token():
    clock = FakeClock(start_wall=T0)
    source = Source()
    cache, _ = make_cache(source, clock)
    cache.get()
    clock.advance(3550)  # inside the soon window
    source.delay = 0.3
    started = threading.Event()
    original = source.__call__

    def slow_source():
        started.set()
        return original()

    cache.source = slow_source
    refresher = threading.Thread(target=cache.get)
    refresher.start()
    assert started.wait(5)
    t = time.monotonic()
    assert cache.get().access_token == "tok-1"  # does not wait for the refresh
    assert time.monotonic() - t < 0.2
    refresher.join(5)
    assert cache.get().access_token == "tok-2"


# -- failures ----------------------------------------------------------------------------------


def test_early_refresh_failure_returns_still_valid_token():
    clock = FakeClock(start_wall=T0)
    source = Source()
    cache, events = make_cache(source, clock)
    first = cache.get()
    clock.advance(3550)
    source.fail = RuntimeError("endpoint down")
    assert cache.get() is first
    assert EventKind.TOKEN_REFRESH_FAILED in [e.kind for e in events]
    clock.advance(60)  # now expired: the failure surfaces
    with pytest.raises(TokenError):
        cache.get()


def test_failing_source_raises_token_error_without_secret():
    clock = FakeClock(start_wall=T0)
    source = Source()
    source.fail = RuntimeError(f"could not log in with {SECRET}")
    cache, events = make_cache(source, clock)
    with pytest.raises(TokenError) as info:
        cache.get()
    assert str(info.value) == "token function failed: RuntimeError"  # the type, no more
    # Not chained, neither as cause nor as context: a traceback would print the
    # function's exception, and its message holds the secret.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    formatted = "".join(traceback.format_exception(info.value))
    assert SECRET not in formatted
    assert "RuntimeError" in formatted
    for event in events:
        assert SECRET not in event.message()


def test_deadline_while_waiting_for_the_lock():
    clock = FakeClock(start_wall=T0)
    source = Source(delay=0.5)
    entered = threading.Event()
    original = source.__call__

    def slow():
        entered.set()
        return original()

    cache, _ = make_cache(slow, clock)
    holder = threading.Thread(target=cache.get)
    holder.start()
    try:
        assert entered.wait(5)
        t = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            cache.get(deadline=clock.monotonic() + 0.05)
        assert time.monotonic() - t < 0.4
        with pytest.raises(DeadlineExceeded):
            cache.get(deadline=clock.monotonic() - 1)
    finally:
        holder.join(5)
    assert source.calls == 1


def test_repr_hides_token():
    clock = FakeClock(start_wall=T0)
    cache, _ = make_cache(lambda: "the-access-token-value", clock)
    cache.get()
    assert "the-access-token-value" not in repr(cache)


# -- ClientCredentials through a fake sender -----------------------------------------------


def json_response(status: int, data: object, headers: dict[str, str] | None = None):
    return HttpResponse(status, headers or {}, json.dumps(data).encode())


class Sender:
    def __init__(self, *script) -> None:
        self.script = list(script)
        self.requests: list[tuple[HttpRequest, float | None]] = []

    def __call__(self, request: HttpRequest, timeout: float | None) -> HttpResponse:
        self.requests.append((request, timeout))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def grant() -> ClientCredentials:
    return ClientCredentials(
        token_url="https://auth.example.com/token", client_id="cid", client_secret=SECRET
    )


OK = json_response(200, {"access_token": "granted", "expires_in": 3600, "token_type": "Bearer"})


def test_grant_503_then_200_is_retried():
    clock = FakeClock(start_wall=T0)
    sender = Sender(json_response(503, {}), OK)
    cache, _ = make_cache(grant(), clock, sender=sender)
    token = cache.get()
    assert token.access_token == "granted"
    assert token.expires_at == pytest.approx(T0 + 3600, abs=5)
    assert len(sender.requests) == 2
    assert len(clock.slept) == 1
    assert 0 <= clock.slept[0] <= 0.2
    request, timeout = sender.requests[0]
    assert request.headers["Authorization"].startswith("Basic ")
    assert timeout is not None
    assert 0 < timeout <= 30


def test_grant_honours_retry_after():
    clock = FakeClock(start_wall=T0)
    sender = Sender(json_response(429, {}, {"Retry-After": "2"}), OK)
    cache, _ = make_cache(grant(), clock, sender=sender)
    assert cache.get().access_token == "granted"
    assert clock.slept == [2.0]


def test_grant_invalid_client_not_retried():
    clock = FakeClock(start_wall=T0)
    sender = Sender(json_response(401, {"error": "invalid_client"}), OK)
    cache, _ = make_cache(grant(), clock, sender=sender)
    with pytest.raises(InvalidClient) as info:
        cache.get()
    assert len(sender.requests) == 1
    assert clock.slept == []
    assert SECRET not in str(info.value)


def test_grant_transport_error_then_success():
    clock = FakeClock(start_wall=T0)
    sender = Sender(TransportError("cannot connect", kind="connect"), OK)
    cache, _ = make_cache(grant(), clock, sender=sender)
    assert cache.get().access_token == "granted"
    assert len(sender.requests) == 2


def test_grant_gives_up_after_three_attempts():
    clock = FakeClock(start_wall=T0)
    sender = Sender(*[json_response(503, {}) for _ in range(5)])
    cache, _ = make_cache(grant(), clock, sender=sender)
    with pytest.raises(TokenEndpointError):
        cache.get()
    assert len(sender.requests) == 3


def test_grant_unreachable_raises_token_error():
    clock = FakeClock(start_wall=T0)
    sender = Sender(*[TransportError("down", kind="connect") for _ in range(5)])
    cache, _ = make_cache(grant(), clock, sender=sender)
    with pytest.raises(TokenError):
        cache.get()
    assert len(sender.requests) == 3


def test_early_refresh_failing_on_deadline_returns_still_valid_token():
    """A token in its refresh window is still valid: a refresh that cannot finish before
    the caller's deadline must not fail the request."""
    clock = FakeClock(start_wall=T0)
    sender = Sender(OK, json_response(503, {}, {"Retry-After": "5"}), OK)
    cache, _ = make_cache(grant(), clock, sender=sender)
    first = cache.get()
    clock.advance(3550)  # inside the soon window, 50 s of validity left
    assert cache.get(deadline=clock.monotonic() + 2.0) is first


def test_deadline_while_another_process_holds_the_store_lock(tmp_path):
    """The deadline also bounds the wait for the cross-process (file) lock, and running out
    of it is reported like every other deadline: DeadlineExceeded."""
    from surefoot.stores import FileTokenStore

    path = tmp_path / "tokens.json"
    clock = FakeClock(start_wall=T0)
    source = Source()
    cache, _ = make_cache(source, clock, store=FileTokenStore(path))
    other_process = FileTokenStore(path)
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with other_process.lock("default", timeout=5):
            inside.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(5)
        t = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            cache.get(deadline=clock.monotonic() + 0.1)
        assert time.monotonic() - t < 1.0
    finally:
        release.set()
        holder.join(5)
    assert source.calls == 0
    assert cache.get().access_token == "tok-1"
