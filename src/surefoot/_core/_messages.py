"""HTTP messages as the sans-I/O core sees them: plain, immutable values.

:class:`HttpRequest` is what a signer signs (one attempt: method, URL, the headers as they
will be sent, the body) and what a token endpoint is sent; :class:`HttpResponse` is a
buffered answer (the token endpoint's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from surefoot.events import redact_url

__all__ = ["HttpRequest", "HttpResponse"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""

    def __repr__(self) -> str:
        # Headers and body may hold credentials, and so may the URL: its query is left out
        # (as SignedRequest's repr does), its userinfo, fragment and credential path
        # parameters too (redact_url).
        return f"HttpRequest({self.method} {redact_url(self.url).partition('?')[0]})"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {len(self.body)} bytes)"
