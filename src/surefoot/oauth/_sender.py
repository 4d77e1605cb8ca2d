"""A minimal HTTP sender on the standard library, for token endpoints.

It never follows redirects (a token request carries client credentials) and classifies
failures into :class:`~surefoot.FailureKind` values through :class:`TransportError`.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from surefoot._core._history import FailureKind
from surefoot._core._messages import HttpRequest, HttpResponse
from surefoot.errors import TransportError

__all__ = ["send"]

_MAX_BODY = 1 << 20


def send(request: HttpRequest, timeout: float | None) -> HttpResponse:
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
            response = conn.getresponse()
            body = response.read(_MAX_BODY)
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
