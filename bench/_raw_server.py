"""An independent loopback HTTP/1.1 server for the overhead and throughput benchmarks:
raw asyncio.

It shares no code with surefoot (not the sandbox), answers every request (``/slow`` aside)
at once with a small 200 and keeps the connection alive, so that a client's time is almost
all its own.
Paths:

* ``/get`` (and any other path): ``200`` with a 2-byte JSON body;
* ``/quota``: the same, with quota headers in two dialects (``RateLimit-Policy`` /
  ``RateLimit`` and ``X-RateLimit-*``) announcing a quota far above what one client can
  send, so a pacer learns it and never has to wait: the cost of pacing, not its effect;
* ``/slow``: the ``/quota`` answer, sent :data:`SLOW` seconds late. ``bench/throughput.py``
  primes a client's pool with one such request per worker, all at once: each needs a
  connection of its own, so every pool starts a run with as many open connections as it
  has workers (without it, how many an httpx pool holds, and so what its bookkeeping
  costs per request, depends on the run's history).

Run as ``python bench/_raw_server.py``: it prints its base URL, then serves until it is
killed (:class:`_sandbox_process.RawServerProcess`). Bodies with ``Content-Length`` are
read and discarded; chunked bodies are not supported (the benchmarks send none), nor is
pipelining behind a ``/slow`` request (its answer would come after the next one's).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

#: Seconds ``/slow`` waits before answering.
SLOW = 0.25

_PLAIN = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _quota_response() -> bytes:
    reset = 1  # the window restarts every second: never exhausted at this rate
    headers = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json\r\n"
        'RateLimit-Policy: "bench";q=1000000;w=1\r\n'
        f'RateLimit: "bench";r=999999;t={reset}\r\n'
        "X-RateLimit-Limit: 1000000\r\n"
        "X-RateLimit-Remaining: 999999\r\n"
        f"X-RateLimit-Reset: {int(time.time()) + reset}\r\n"
        "Content-Length: 2\r\n\r\n{}"
    )
    return headers.encode("ascii")


class _Protocol(asyncio.Protocol):
    __slots__ = ("buffer", "need", "transport")

    def __init__(self) -> None:
        self.buffer = b""
        self.need = 0  # body bytes still to discard
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            if self.need:
                taken = min(self.need, len(buffer))
                self.need -= taken
                buffer = buffer[taken:]
                if self.need:
                    break
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buffer = buffer[:end], buffer[end + 4:]
            self.need = _content_length(head)
            line = head.split(b"\r\n", 1)[0]
            path = line.split(b" ", 2)[1] if line.count(b" ") >= 2 else b"/"
            assert self.transport is not None
            if path.startswith(b"/quota"):
                self.transport.write(_quota_response())
            elif path.startswith(b"/slow"):
                asyncio.get_running_loop().call_later(SLOW, self._late, _quota_response())
            else:
                self.transport.write(_PLAIN)
        self.buffer = buffer

    def _late(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return max(0, int(value.strip()))
            except ValueError:
                return 0
    return 0


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())
