"""Store calls within the request's deadline: a shared store that is locked (SQLite) or
silent (a Redis that accepts connections and never answers) costs a request at most its
share of what is left of its deadline, never the store's own timeout. Failing open, the
request then goes on with local state (and succeeds); failing closed, it gets
``StoreUnavailable`` at once. Real servers throughout: the sandbox, a SQLite database
held by another connection, a TCP listener that never writes, a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import surefoot
from surefoot import BearerAuth, Pacer, PacingPolicy, RetryPolicy
from surefoot.errors import StoreUnavailable
from surefoot.httpx import AsyncClient
from surefoot.stores import RedisStore, SQLiteStore
from surefoot.stores._deadline import MIN_WAIT, SHARE, wait_for, within

DEADLINE = 0.3
#: A request with DEADLINE ends within this, store or no store (the store's share of the
#: deadline, one HTTP round trip on loopback, scheduling slack on a loaded machine).
BOUND = 0.5
SECRET = "demo-secret"


def quiet(event: object) -> None:
    pass


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A redis:// URL to a TCP listener that accepts connections, reads, never writes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []  # kept open: a closed one would answer at once

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()
    for conn in accepted:
        conn.close()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another connection holds the database with ``BEGIN EXCLUSIVE``."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def client(url: str, **options: object) -> surefoot.Client:
    return surefoot.Client(url, retry=RetryPolicy(deadline=DEADLINE), hook=quiet, **options)


def token_auth(sandbox, store) -> BearerAuth:
    return BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", SECRET, store=store.tokens, hook=quiet
    )


def ends_in_time(call, on_failure: str) -> float:
    """Run ``call``: failing open it returns a 200, failing closed it raises
    ``StoreUnavailable``. Returns how long it took."""
    start = time.monotonic()
    if on_failure == "open":
        assert call().status_code == 200
    else:
        with pytest.raises(StoreUnavailable):
            call()
    return time.monotonic() - start


# -- the rule ----------------------------------------------------------------------------


def test_store_wait_is_the_timeout_cut_to_a_share_of_the_deadline():
    assert wait_for(5.0) == 5.0
    assert wait_for(None) is None
    with within(60.0):
        assert wait_for(5.0) == 5.0  # a far deadline leaves the store its timeout
        assert wait_for(None) == pytest.approx(60.0 * SHARE, abs=0.05)
    with within(0.4):
        assert wait_for(5.0) == pytest.approx(0.4 * SHARE, abs=0.05)
        with within(10.0):  # an inner, later deadline does not extend the outer one
            assert wait_for(5.0) == pytest.approx(0.4 * SHARE, abs=0.05)
        with within(0.1):
            assert wait_for(5.0) == pytest.approx(0.1 * SHARE, abs=0.05)
    with within(-1.0):  # spent: a healthy store still gets a moment
        assert wait_for(5.0) == MIN_WAIT
    assert wait_for(5.0) == 5.0


# -- SQLite: a database that another connection holds -----------------------------------


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_sqlite_locked_pacer_call_ends_within_the_deadline(sandbox, tmp_path, on_failure):
    path = tmp_path / "state.db"
    store = SQLiteStore(path, on_failure=on_failure)  # busy_timeout: 5 s
    with client(sandbox.url, pacing=Pacer(PacingPolicy(), store=store)) as api:
        assert api.get("/get").status_code == 200  # the database exists, in WAL mode
        with locked(path):
            took = ends_in_time(lambda: api.get("/get"), on_failure)
    store.close()
    assert took < BOUND


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_sqlite_locked_before_the_store_first_opens_it(sandbox, tmp_path, on_failure):
    """The lock is held while the store opens its database (the setup: WAL, schema)."""
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()
    store = SQLiteStore(path, on_failure=on_failure)
    with client(sandbox.url, pacing=Pacer(PacingPolicy(), store=store)) as api, locked(path):
        took = ends_in_time(lambda: api.get("/get"), on_failure)
    store.close()
    assert took < BOUND


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_sqlite_locked_token_store_ends_within_the_deadline(sandbox, tmp_path, on_failure):
    path = tmp_path / "state.db"
    store = SQLiteStore(path, on_failure=on_failure)
    assert store.tokens.load("warm-up") is None  # the database and its tables exist
    auth = token_auth(sandbox, store)
    with client(sandbox.url, auth=auth, pacing=None) as api, locked(path):
        took = ends_in_time(lambda: api.get("/protected"), on_failure)
    store.close()
    assert took < BOUND


def test_sqlite_busy_timeout_is_back_to_the_store_s_after_a_deadline(tmp_path):
    """The short busy timeout of a call near its deadline is not left on the thread's
    connection: a call without a deadline waits its turn for ``busy_timeout`` again."""
    path = tmp_path / "state.db"
    store = SQLiteStore(path, busy_timeout=0.6, on_failure="closed")
    state = store.pacer_state(PacingPolicy(budget=None))
    state.reserve("p", None, now=time.monotonic(), adaptive=False)
    with locked(path):
        start = time.monotonic()
        with within(DEADLINE), pytest.raises(StoreUnavailable):
            state.reserve("p", None, now=time.monotonic(), adaptive=False)
        assert time.monotonic() - start < BOUND
        start = time.monotonic()
        with pytest.raises(StoreUnavailable):
            state.reserve("p", None, now=time.monotonic(), adaptive=False)
        assert time.monotonic() - start >= 0.5
    store.close()


# -- Redis: a server that accepts connections and never answers -------------------------


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_redis_silent_pacer_call_ends_within_the_deadline(sandbox, silent_redis, on_failure):
    store = RedisStore(silent_redis, on_failure=on_failure, timeout=1.0)
    with client(sandbox.url, pacing=Pacer(PacingPolicy(), store=store)) as api:
        took = ends_in_time(lambda: api.get("/get"), on_failure)
    store.close()
    assert took < BOUND


def test_redis_silent_fail_open_first_request_succeeds_with_default_timeout(
    sandbox, silent_redis
):
    """The store's default timeout (0.5 s) is longer than the request's deadline: the
    first request still falls back to local pacing, and succeeds."""
    store = RedisStore(silent_redis)
    with client(sandbox.url, pacing=Pacer(PacingPolicy(), store=store)) as api:
        took = ends_in_time(lambda: api.get("/get"), "open")
        assert api.get("/get").status_code == 200  # the store is skipped meanwhile
    store.close()
    assert took < BOUND


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_redis_silent_token_store_ends_within_the_deadline(sandbox, silent_redis, on_failure):
    store = RedisStore(silent_redis, on_failure=on_failure, timeout=1.0)
    with client(sandbox.url, auth=token_auth(sandbox, store), pacing=None) as api:
        took = ends_in_time(lambda: api.get("/protected"), on_failure)
    store.close()
    assert took < BOUND


def test_redis_queued_pacing_call_waits_no_longer_than_its_deadline(silent_redis):
    """A call queued behind another thread's hung call on the same key gives up when its
    own deadline says so, not after twice the store's timeout."""
    store = RedisStore(silent_redis, on_failure="closed", timeout=1.0)
    state = store.pacer_state(PacingPolicy(budget=None))
    hung = threading.Thread(
        target=lambda: pytest.raises(
            StoreUnavailable, state.reserve, "p", None, now=time.monotonic(), adaptive=False
        )
    )
    hung.start()
    time.sleep(0.1)  # the hung call holds the key
    start = time.monotonic()
    with within(DEADLINE), pytest.raises(StoreUnavailable):
        state.reserve("p", None, now=time.monotonic(), adaptive=False)
    took = time.monotonic() - start
    hung.join()
    store.close()
    assert took < BOUND


def test_redis_healthy_store_near_the_deadline_is_used_and_shared(sandbox, redis_url, caplog):
    """Calls cut short by the deadline still reach a healthy store: its state is written
    and read back, no failure is reported."""
    namespace = uuid.uuid4().hex
    store = RedisStore(redis_url, on_failure="closed")
    pacer = Pacer(PacingPolicy(), state=store.pacer_state(PacingPolicy(), namespace=namespace))
    with client(sandbox.url, pacing=pacer) as api:
        for _ in range(3):
            assert api.get("/get").status_code == 200
    assert not [r for r in caplog.records if "FAILING OPEN" in r.getMessage()]
    state = store.pacer_state(PacingPolicy(), namespace=namespace)
    partition = pacer.partition_of(sandbox.url + "/get", {})
    assert state.snapshot(partition) is not None
    store.close()


# -- async: the store calls run in worker threads, the deadline follows them -------------


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_async_client_silent_redis_pacer_ends_within_the_deadline(
    sandbox, silent_redis, on_failure
):
    store = RedisStore(silent_redis, on_failure=on_failure, timeout=1.0)

    async def request() -> object:
        async with AsyncClient(
            sandbox.url,
            retry=RetryPolicy(deadline=DEADLINE),
            hook=quiet,
            pacing=Pacer(PacingPolicy(), store=store),
        ) as api:
            return await api.get("/get")

    took = ends_in_time(lambda: asyncio.run(request()), on_failure)
    store.close()
    assert took < BOUND


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_async_client_locked_sqlite_token_store_ends_within_the_deadline(
    sandbox, tmp_path, on_failure
):
    path = tmp_path / "state.db"
    store = SQLiteStore(path, on_failure=on_failure)
    assert store.tokens.load("warm-up") is None

    async def request() -> object:
        async with AsyncClient(
            sandbox.url,
            retry=RetryPolicy(deadline=DEADLINE),
            hook=quiet,
            auth=token_auth(sandbox, store),
            pacing=None,
        ) as api:
            return await api.get("/protected")

    with locked(path):
        took = ends_in_time(lambda: asyncio.run(request()), on_failure)
    store.close()
    assert took < BOUND
