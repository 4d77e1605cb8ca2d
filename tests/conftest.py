"""Shared fixtures: one real sandbox server on loopback for the whole session."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from surefoot.sandbox import Sandbox


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[Sandbox]:
    with Sandbox(rate=50.0, burst=10, token_ttl=3600.0) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(_sandbox_server: Sandbox) -> Iterator[Sandbox]:
    """The shared sandbox, with counters and state cleared for this test."""
    _sandbox_server.reset()
    return _sandbox_server


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def no_wait() -> Iterator[object]:
    """surefoot's public test mode: no real waiting, virtual clock returned."""
    import surefoot

    with surefoot.testing.testing() as clock:
        yield clock


# --- a real redis-server ------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    """A real ``redis-server`` on a free port for the session. Without the binary the
    Redis tests skip locally but FAIL in CI (``CI`` set): a missing dependency must not
    turn into a green run."""
    import os

    from surefoot.sandbox import RedisServer, RedisServerNotFound

    try:
        server = RedisServer()
    except RedisServerNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} — CI must install it (.ci/run)")
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: object) -> Iterator[str]:
    """The session's Redis, flushed for this test (started again if a test killed it)."""
    import redis

    from surefoot.sandbox import RedisServer

    assert isinstance(redis_server, RedisServer)
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url
    redis_server.start()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[object]:
    """A real Redis Cluster for the session: 3 primaries with a replica each, on free
    ports (``RedisClusterServer``). Skips without ``redis-server`` / ``redis-cli``
    locally, FAILS in CI, like ``redis_server``."""
    import os

    from surefoot.sandbox._redis_server import RedisClusterServer, RedisServerNotFound

    try:
        cluster = RedisClusterServer()
    except RedisServerNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} — CI must install it (.ci/run)")
        pytest.skip(str(exc))
    with cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: object) -> str:
    """The session's Redis Cluster (``redis+cluster://...``), flushed for this test."""
    from surefoot.sandbox._redis_server import RedisClusterServer

    assert isinstance(redis_cluster, RedisClusterServer)
    redis_cluster.start()  # nodes a test stopped come back
    redis_cluster.flush()
    return redis_cluster.url


def _sentinel_setup() -> object:
    """A ``RedisSentinelServer`` (not started). Skips without ``redis-server`` locally,
    FAILS in CI, like ``redis_server``."""
    import os

    from surefoot.sandbox._redis_server import RedisSentinelServer, RedisServerNotFound

    try:
        return RedisSentinelServer()
    except RedisServerNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} — CI must install it (.ci/run)")
        pytest.skip(str(exc))


@pytest.fixture
def redis_sentinel() -> Iterator[object]:
    """A primary, its replica and three Sentinels (``RedisSentinelServer``), fresh for
    this test: for tests that fail it over (a Sentinel fails one primary over at most
    once in twice its failover timeout)."""
    from surefoot.sandbox._redis_server import RedisSentinelServer

    setup = _sentinel_setup()
    assert isinstance(setup, RedisSentinelServer)
    with setup:
        yield setup


@pytest.fixture(scope="session")
def redis_sentinel_shared() -> Iterator[object]:
    """The session's ``RedisSentinelServer``: never failed over (``redis_sentinel_url``
    flushes it for each test)."""
    from surefoot.sandbox._redis_server import RedisSentinelServer

    setup = _sentinel_setup()
    assert isinstance(setup, RedisSentinelServer)
    with setup:
        yield setup


@pytest.fixture
def redis_sentinel_url(redis_sentinel_shared: object) -> str:
    """The session's Sentinel setup (``redis+sentinel://.../surefoot``), flushed for this
    test; never failed over (use ``redis_sentinel`` for that)."""
    from surefoot.sandbox._redis_server import RedisSentinelServer

    assert isinstance(redis_sentinel_shared, RedisSentinelServer)
    redis_sentinel_shared.wait_ready()
    redis_sentinel_shared.primary.command("FLUSHALL")  # the replica follows
    return redis_sentinel_shared.url


# --- a real, independently written OAuth2 server (authlib) ---------------------------


@pytest.fixture(scope="session")
def _authlib_server() -> Iterator[object]:
    from _oauth_server import build_server

    server = build_server().start()
    yield server
    server.stop()


@pytest.fixture
def oauth_server(_authlib_server: object) -> object:
    """authlib's authorization server on loopback (see ``tests/_oauth_server.py``), its
    tokens, logs and counters cleared for this test."""
    from _oauth_server import OAuthServer

    assert isinstance(_authlib_server, OAuthServer)
    _authlib_server.reset()
    return _authlib_server
