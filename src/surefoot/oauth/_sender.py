"""A minimal HTTP sender on the standard library, for token endpoints.

It never follows redirects (a token request carries client credentials) and classifies
failures into :class:`~surefoot.FailureKind` values through :class:`TransportError`.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from surefoot._adapters._deadline import (
    AttemptTimedOut,
    read_within,
    socket_timeout,
    socket_timeout_setter,
)
from surefoot._core._clock import SystemClock
from surefoot._core._history import FailureKind
from surefoot._core._messages import HttpRequest, HttpResponse
from surefoot.errors import TransportError

__all__ = ["send"]

_MAX_BODY = 1 << 20
_CHUNK = 65536
#: Sockets time out in real time, whatever clock the caller's deadline runs on.
_CLOCK = SystemClock()


def _shrink(conn: http.client.HTTPConnection, ends: float) -> None:
    """The socket's timeout: what is left until ``ends``."""
    if conn.sock is not None:
        conn.sock.settimeout(socket_timeout(ends - _CLOCK.monotonic()))


def send(request: HttpRequest, timeout: float | None) -> HttpResponse:
    """``timeout``: the whole attempt's, from connecting to the body's last byte."""
    ends = None if timeout is None else _CLOCK.monotonic() + timeout
    parts = urlsplit(request.url)
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    host = parts.hostname or ""
    conn = connection_type(host, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            conn.connect()
        except ssl.SSLError as exc:
            raise TransportError(f"TLS error: {exc.reason}", kind=FailureKind.OTHER.value) from exc
        except OSError as exc:
            raise TransportError(
                f"cannot connect to {host}: {type(exc).__name__}", kind=FailureKind.CONNECT.value
            ) from exc
        try:
            conn.request(request.method, target, body=request.body, headers=dict(request.headers))
            if ends is not None:
                _shrink(conn, ends)
            response = conn.getresponse()
            if ends is None:
                body = response.read(_MAX_BODY)
            else:
                # One receive at a time, within the deadline: a server trickling its
                # body does not hold the attempt past it.
                body = read_within(
                    lambda: response.read1(_CHUNK), ends=ends, clock=_CLOCK,
                    settimeout=socket_timeout_setter(conn.sock),
                    timeout_errors=(TimeoutError,), limit=_MAX_BODY,
                )
        except AttemptTimedOut as exc:
            raise TransportError(
                "timed out: the attempt's deadline passed", kind=FailureKind.READ_TIMEOUT.value
            ) from exc
        except TimeoutError as exc:
            raise TransportError("timed out", kind=FailureKind.READ_TIMEOUT.value) from exc
        except http.client.IncompleteRead as exc:
            raise TransportError("truncated response", kind=FailureKind.TRUNCATED.value) from exc
        except OSError as exc:
            raise TransportError(
                f"connection lost: {type(exc).__name__}", kind=FailureKind.RESET.value
            ) from exc
        except http.client.HTTPException as exc:
            raise TransportError(
                f"invalid response: {type(exc).__name__}", kind=FailureKind.OTHER.value
            ) from exc
        return HttpResponse(response.status, dict(response.getheaders()), body)
    finally:
        conn.close()
