"""HTTP messages as the sans-I/O core sees them: plain, immutable values.

:class:`HttpRequest` is what a signer signs (one attempt: method, URL, the headers as they
will be sent, the body) and what a token endpoint is sent; :class:`HttpResponse` is a
buffered answer (the token endpoint's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["HttpRequest", "HttpResponse"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""

    def __repr__(self) -> str:  # headers may hold credentials
        return f"HttpRequest({self.method} {self.url})"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {len(self.body)} bytes)"
