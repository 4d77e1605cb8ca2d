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

    with surefoot.testing() as clock:
        yield clock
