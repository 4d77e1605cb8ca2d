"""The httpbin subset: ``/get``, ``/headers``, ``/status``, ``/anything``, ``/delay``,
``/redirect-to``."""

from __future__ import annotations

import json
import math
import threading
from urllib.parse import parse_qs

from surefoot.sandbox._group import RouteGroup
from surefoot.sandbox._http import (
    _ECHO_METHODS,
    Headers,
    Route,
    _BadRequest,
    _header_value,
    _json,
    _method_not_allowed,
    _not_found,
    _Req,
    _Resp,
)

__all__ = ["EchoRoutes"]

_MAX_SLEEP = 10.0


class EchoRoutes(RouteGroup):
    """Stateless echo routes; ``/delay`` sleeps until ``stopping`` is set."""

    def __init__(self, lock: threading.Lock, stopping: threading.Event) -> None:
        super().__init__(lock)
        self._stopping = stopping

    def routes(self) -> dict[str, Route]:
        return {
            "get": ("/get", self._get),
            "headers": ("/headers", self._headers),
            "status": ("/status", self._status),
            "anything": ("/anything", self._anything),
            "delay": ("/delay", self._delay),
            "redirect-to": ("/redirect-to", self._redirect_to),
        }

    def _get(self, req: _Req) -> _Resp:
        if req.rest:
            return _not_found(req)
        if req.method not in _ECHO_METHODS:
            return _method_not_allowed("GET, HEAD")
        return _json(200, req.echo())

    def _headers(self, req: _Req) -> _Resp:
        if req.rest:
            return _not_found(req)
        if req.method not in _ECHO_METHODS:
            return _method_not_allowed("GET, HEAD")
        return _json(200, {"headers": req.headers()})

    def _status(self, req: _Req) -> _Resp:
        text = req.rest
        if not (text.isascii() and text.isdigit() and len(text) == 3 and "200" <= text <= "599"):
            raise _BadRequest("status code must be between 200 and 599")
        code = int(text)
        headers: Headers = []
        if 300 <= code < 400:
            headers.append(("Location", "/get"))
        retry_after = req.arg("retry_after")
        if retry_after is not None:
            headers.append(("Retry-After", _header_value(retry_after)))
        return _Resp(code, headers)

    def _anything(self, req: _Req) -> _Resp:
        body = req.body()
        payload = req.echo()
        payload["method"] = req.method
        payload["data"] = body.decode("utf-8", "replace")
        try:
            payload["json"] = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError):
            payload["json"] = None
        form: dict[str, str | list[str]] = {}
        if (req.header("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            parsed = parse_qs(body.decode("latin-1"), keep_blank_values=True)
            form = {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}
        payload["form"] = form
        return _json(200, payload)

    def _delay(self, req: _Req) -> _Resp:
        try:
            seconds = float(req.rest)
        except ValueError:
            raise _BadRequest("delay must be a number of seconds") from None
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise _BadRequest("delay must be a non-negative number of seconds")
        seconds = min(seconds, _MAX_SLEEP)
        self._stopping.wait(seconds)
        return _json(200, {**req.echo(), "delay": seconds})

    def _redirect_to(self, req: _Req) -> _Resp:
        if req.rest:
            return _not_found(req)
        target = req.arg("url")
        if not target:
            raise _BadRequest("url is required")
        code = req.int_arg("status_code") or 302
        if not 300 <= code < 400:
            raise _BadRequest("status_code must be a 3xx code")
        return _Resp(code, [("Location", _header_value(target))])
