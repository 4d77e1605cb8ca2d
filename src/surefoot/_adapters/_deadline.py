"""The whole attempt within the deadline, body included.

The HTTP stacks' timeouts bound each socket operation, not the attempt: a server that
trickles its body a byte at a time, each within the read timeout, would hold an attempt
(and its deadline) for as long as it likes. Where an adapter reads the body inside the
attempt, it reads it here: one receive at a time, the socket's timeout shrunk to what is
left before each, and the clock checked after each, so the attempt ends at its deadline.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from surefoot._core._clock import Clock

__all__ = [
    "MAX_SOCKET_TIMEOUT",
    "AttemptTimedOut",
    "read_within",
    "socket_timeout",
    "socket_timeout_setter",
]

#: The longest timeout handed to a socket (a far-off deadline does not fit a timeval).
MAX_SOCKET_TIMEOUT = 86400.0


class AttemptTimedOut(Exception):
    """The attempt's deadline passed while its body was being read."""


def socket_timeout(left: float) -> float:
    """A socket timeout for ``left`` seconds: at least a millisecond (0 would mean
    non-blocking), at most :data:`MAX_SOCKET_TIMEOUT`."""
    return min(max(left, 0.001), MAX_SOCKET_TIMEOUT)


def socket_timeout_setter(sock: object) -> Callable[[float], None] | None:
    """``sock.settimeout`` if ``sock`` is a socket still open, else ``None``."""
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return None
    return sock.settimeout


def read_within(
    read1: Callable[[], bytes],
    *,
    ends: float,
    clock: Clock,
    settimeout: Callable[[float], None] | None,
    timeout_errors: tuple[type[BaseException], ...],
    limit: int | None = None,
) -> bytes:
    """The rest of a body, read with ``read1`` (one receive: ``b""`` at its end) until
    ``ends`` (a ``clock.monotonic()`` instant). Raises :class:`AttemptTimedOut` once the
    deadline has passed (a receive that times out after it counts as the deadline, one
    of ``timeout_errors`` before it is the stack's own read timeout and propagates).
    ``limit``: the body is cut there (its first ``limit`` bytes)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        left = ends - clock.monotonic()
        if left <= 0:
            raise AttemptTimedOut
        if settimeout is not None:
            try:
                settimeout(socket_timeout(left))
            except OSError:  # closed under us: the read below reports it
                settimeout = None
        try:
            chunk = read1()
        except timeout_errors:
            if ends - clock.monotonic() <= 0.001:
                raise AttemptTimedOut from None
            raise
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size >= limit:
            return b"".join(chunks)[:limit]
