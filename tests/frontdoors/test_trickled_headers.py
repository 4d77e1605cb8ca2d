"""The whole attempt within the deadline, status line and headers included.

The HTTP stacks' timeouts bound each socket read, not the attempt: a server that trickles
its status line and headers one byte at a time, each well within the read timeout, would
hold the call for as long as it likes. surefoot bounds the whole attempt on every stack:
requests through the process's watchdog (the attempt's socket is shut down at its end),
httpx sync by shrinking every socket operation's timeout to what is left of the attempt,
httpx async with one cancel scope around the attempt.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

import surefoot
from adapters import KINDS, Api
from surefoot import DeadlineExceeded, RetryPolicy, TransportError
from surefoot._adapters._deadline import ASYNC_LATENESS, SYNC_LATENESS

#: one byte of the answer every BYTE_EVERY seconds: 20 s for the whole head
BYTE_EVERY = 0.25
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nok")
DEADLINE = 1.0
#: how late the call may end after its deadline (the 50 ms of the soak's target)
LATE_BY = 0.05


def quiet(event: surefoot.Event) -> None:
    return None


@pytest.fixture
def trickled_head_url() -> Iterator[str]:
    """A loopback server that answers its status line and headers one byte per 0.25 s
    (each byte well within any read timeout)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                conn.recv(65536)
                for byte in HEAD:
                    if stop.wait(BYTE_EVERY):
                        return
                    conn.sendall(bytes([byte]))
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


@pytest.fixture(autouse=True)
def no_margin() -> Iterator[None]:
    """Measured from a clean slate: no lateness learnt from earlier tests (the margin
    would end the attempt early, which would hide a call that ends late)."""
    SYNC_LATENESS.reset()
    ASYNC_LATENESS.reset()
    yield
    SYNC_LATENESS.reset()
    ASYNC_LATENESS.reset()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("policy", [
    RetryPolicy(deadline=DEADLINE, max_attempts=3, on_exhausted="raise"),
    RetryPolicy(deadline=DEADLINE, attempt_timeout=0.6, max_attempts=3,
                backoff_initial=0.05, backoff_max=0.1, on_exhausted="raise"),
], ids=["one-attempt", "two-attempts"])
def test_trickled_headers_do_not_hold_the_call_past_its_deadline(
    kind: str, policy: RetryPolicy, trickled_head_url: str
) -> None:
    api = Api(kind, trickled_head_url, retry=policy, hook=quiet, pacing=None)
    try:
        start = time.monotonic()
        with pytest.raises((TransportError, DeadlineExceeded)) as info:
            api.get("/slow-head")
        took = time.monotonic() - start
    finally:
        api.close()
    assert took < DEADLINE + LATE_BY, f"{kind}: the call ended {took:.3f} s after it started"
    assert took > DEADLINE - 0.1  # it did wait for the answer until the deadline
    history = info.value.history
    assert history[-1].error == "read_timeout"


@pytest.mark.parametrize("kind", KINDS)
def test_the_connection_after_a_cut_attempt_serves_the_next_call(
    kind: str, trickled_head_url: str, sandbox: object
) -> None:
    """The watchdog shuts down only the socket of the attempt past its end: the client's
    next calls (other connections of the same pools) are untouched."""
    api = Api(kind, sandbox.url, hook=quiet, pacing=None,  # type: ignore[attr-defined]
              retry=RetryPolicy(deadline=0.6, max_attempts=1, on_exhausted="raise"))
    try:
        for _ in range(3):
            assert api.get("/get").status_code == 200
        with pytest.raises((TransportError, DeadlineExceeded)):
            api.get(trickled_head_url + "/slow-head")
        time.sleep(0.1)  # past the cut attempt's end: nothing else is shut down
        assert [api.get("/get").status_code for _ in range(3)] == [200] * 3
    finally:
        api.close()


def test_a_plain_requests_session_is_not_watched(trickled_head_url: str) -> None:
    """Only surefoot's attempts are bounded: requests without the adapter keeps its own
    per-read timeout (the head arrives in full, a byte per 0.25 s)."""
    with requests.Session() as session:
        session.trust_env = False
        start = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            # a read timeout shorter than the gap between two bytes
            session.get(trickled_head_url + "/x", timeout=(1.0, 0.1))
        assert time.monotonic() - start < 0.5
