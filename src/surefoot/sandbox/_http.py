"""Request and response helpers shared by the sandbox's route groups."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, quote

__all__ = ["ConnectionControlProtocol", "Handler", "Headers", "Route"]

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

Headers = list[tuple[str, str]]

_JSON = ("Content-Type", "application/json")
_ECHO_METHODS = frozenset({"GET", "HEAD"})


class ConnectionControlProtocol(Protocol):
    """What the server puts in ``environ["surefoot.connection"]``."""

    def reset(self) -> None: ...
    def close(self) -> None: ...
    def truncate(
        self,
        status: int | str,
        headers: Iterable[tuple[str, str]],
        body_prefix: bytes,
        announced_length: int,
    ) -> None: ...


@dataclass(slots=True)
class _Resp:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


@dataclass(slots=True)
class _Taken:
    """The connection was reset, closed or truncated; nothing more is sent."""

    label: str


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _json(status: int, payload: object, headers: Headers | None = None) -> _Resp:
    hdrs = [_JSON]
    if headers:
        hdrs.extend(headers)
    return _Resp(status, hdrs, json.dumps(payload).encode())


def _error(status: int, error: str, headers: Headers | None = None, **extra: object) -> _Resp:
    return _json(status, {"error": error, **extra}, headers)


def _method_not_allowed(allowed: str) -> _Resp:
    return _error(405, "method_not_allowed", [("Allow", allowed)])


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value or not value.isprintable():
        raise _BadRequest("invalid header value")
    return value


def _title(key: str) -> str:
    return "-".join(part.capitalize() for part in key.split("_"))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _Req:
    """One request: lazily parsed query and body."""

    __slots__ = ("_body", "_query", "env", "method", "path", "rest")

    def __init__(self, env: WSGIEnvironment, path: str, rest: str) -> None:
        self.env = env
        self.method: str = env.get("REQUEST_METHOD", "GET").upper()
        self.path = path
        self.rest = rest
        self._query: dict[str, list[str]] | None = None
        self._body: bytes | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parse_qs(self.env.get("QUERY_STRING", ""), keep_blank_values=True)
        return self._query

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def float_arg(self, name: str, default: float, lo: float, hi: float) -> float:
        text = self.arg(name)
        if text is None or text == "":
            return default
        try:
            value = float(text)
        except ValueError:
            raise _BadRequest(f"{name} must be a number") from None
        if not (lo <= value <= hi):
            raise _BadRequest(f"{name} must be between {lo:g} and {hi:g}")
        return value

    def int_arg(self, name: str) -> int | None:
        text = self.arg(name)
        if text is None or text == "":
            return None
        try:
            return int(text)
        except ValueError:
            raise _BadRequest(f"{name} must be an integer") from None

    def header(self, name: str) -> str | None:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self.env.get(key) or None
        value: str | None = self.env.get("HTTP_" + key)
        return value

    def headers(self) -> dict[str, str]:
        env = self.env
        out = {_title(k[5:]): v for k, v in env.items() if k.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if env.get(key):
                out[_title(key)] = env[key]
        return out

    def body(self) -> bytes:
        if self._body is None:
            length_text = self.env.get("CONTENT_LENGTH") or "0"
            try:
                length = int(length_text)
            except ValueError:
                raise _BadRequest("malformed Content-Length") from None
            stream = self.env.get("wsgi.input")
            self._body = stream.read(length) if stream is not None and length > 0 else b""
        return self._body

    def json_body(self) -> Any:
        raw = self.body()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest("body is not valid JSON") from None

    def url(self) -> str:
        env = self.env
        host = env.get("HTTP_HOST") or f"{env.get('SERVER_NAME', '')}:{env.get('SERVER_PORT', '')}"
        target = env.get("REQUEST_URI")
        if not target:
            target = quote(env.get("PATH_INFO", "/"), safe="/:@!$&'()*+,;=-._~%")
            if env.get("QUERY_STRING"):
                target += "?" + env["QUERY_STRING"]
        return f"{env.get('wsgi.url_scheme', 'http')}://{host}{target}"

    def args(self) -> dict[str, str | list[str]]:
        return {k: v[0] if len(v) == 1 else v for k, v in self.query.items()}

    def echo(self) -> dict[str, Any]:
        return {
            "args": self.args(),
            "headers": self.headers(),
            "url": self.url(),
            "origin": self.env.get("REMOTE_ADDR", ""),
        }

    def connection(self) -> ConnectionControlProtocol | None:
        control: ConnectionControlProtocol | None = self.env.get("surefoot.connection")
        return control


Handler = Callable[[_Req], "_Resp | _Taken"]
Route = tuple["str | None", Handler]
"""A route: the endpoint name its responses are counted under (None: not counted, and
served during an outage), and its handler."""


def _not_found(req: _Req) -> _Resp:
    return _error(404, "not_found", path=req.path)


def _bearer(req: _Req) -> str | None:
    auth = req.header("Authorization")
    if not auth:
        return None
    scheme, _, token = auth.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
