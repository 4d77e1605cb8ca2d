"""Injected faults: ``/flaky`` (error statuses, timeouts, reset, closed and truncated
connections, trickled bodies), and the connection drops, trickles and seeded dice the
other groups use too."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from surefoot.sandbox._group import RouteGroup, Traffic
from surefoot.sandbox._http import (
    _JSON,
    Route,
    _BadRequest,
    _error,
    _header_value,
    _json,
    _phrase,
    _Req,
    _Resp,
    _Taken,
)
from surefoot.sandbox._server import ConnectionControl, _http_date

__all__ = ["FaultRoutes"]

if TYPE_CHECKING:
    from surefoot.sandbox._app import SandboxConfig

_MAX_HANG = 60.0
#: A trickled body goes out in this many pieces, spread evenly over its duration.
_TRICKLE_PIECES = 10


class FaultRoutes(RouteGroup):
    """The fault randomness, the ``fail=N`` counters and the fault counters."""

    def __init__(
        self,
        config: SandboxConfig,
        lock: threading.Lock,
        stopping: threading.Event,
        traffic: Traffic,
    ) -> None:
        super().__init__(lock)
        self._config = config
        self._stopping = stopping
        self._traffic = traffic
        self.clear()

    def routes(self) -> dict[str, Route]:
        return {"flaky": ("/flaky", self._flaky)}

    def clear(self) -> None:
        self._resets = 0
        self._faults: dict[str, int] = {}
        self._rng = random.Random(self._config.seed)
        self._rngs: dict[int, random.Random] = {}
        self._fail_counts: dict[tuple[str, str, str], int] = {}

    def stats(self) -> dict[str, Any]:
        return {"resets": self._resets, "faults": dict(self._faults)}

    # -- for the other groups --------------------------------------------------------------

    def roll(self, p: float, seed: int | None) -> bool:
        """True with probability p, from the seed's own stream. Caller holds the lock."""
        if p <= 0:
            return False
        if p >= 1:
            return True
        if seed is None:
            rng = self._rng
        else:
            found = self._rngs.get(seed)
            if found is None:
                found = self._rngs[seed] = random.Random(seed)
            rng = found
        return rng.random() < p

    def hang(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the sandbox stops."""
        self._stopping.wait(seconds)

    def count(self, fault: str) -> None:
        """Count an injected fault. Caller holds the lock."""
        self._faults[fault] = self._faults.get(fault, 0) + 1

    def drop(self, req: _Req, how: str, group: str) -> _Resp | _Taken:
        """Reset, close or truncate the connection; counted first, so stats never lag."""
        control = req.connection()
        if control is None:
            return _error(501, "not_supported", message="needs the surefoot sandbox server")
        label = {"reset": "reset", "close": "closed", "truncate": "truncated"}[how]
        with self._lock:
            request_id = self._traffic.next_id()
            self._traffic.record(group, label)
            if how == "reset":
                self._resets += 1
        if how == "reset":
            control.reset()
        elif how == "close":
            control.close()
        else:
            body = b'{"ok": true, "padding": "' + b"x" * 64 + b'"}'
            control.truncate(
                "200 OK",
                [_JSON, ("X-Sandbox-Request-Id", str(request_id))],
                body[: len(body) // 2],
                len(body),
            )
        return _Taken(label)

    def truncate_response(self, req: _Req, resp: _Resp, group: str) -> _Resp | _Taken:
        """Send ``resp``'s status and headers announcing its whole body, only the first
        half of the body, then close; counted as ``truncated``."""
        control = req.connection()
        if control is None:
            return _error(501, "not_supported", message="needs the surefoot sandbox server")
        with self._lock:
            request_id = self._traffic.next_id()
            self._traffic.record(group, "truncated")
        body = resp.body
        control.truncate(
            resp.status,
            [*resp.headers, ("X-Sandbox-Request-Id", str(request_id))],
            body[: len(body) // 2],
            len(body),
        )
        return _Taken("truncated")

    def trickle(self, req: _Req, resp: _Resp, seconds: float, group: str) -> _Resp | _Taken:
        """Send ``resp``'s status and headers (with its ``Content-Length``) at once, then
        its body in :data:`_TRICKLE_PIECES` pieces spread over ``seconds``, then close
        (also when the client went away, or the sandbox stops: then at once). Counted as
        ``slow``. Each piece comes well within a read timeout: only a bound on the whole
        response ends it early."""
        control = req.connection()
        if not isinstance(control, ConnectionControl):
            return _error(501, "not_supported", message="needs the surefoot sandbox server")
        with self._lock:
            request_id = self._traffic.next_id()
            self._traffic.record(group, "slow")
        headers = [*resp.headers, ("X-Sandbox-Request-Id", str(request_id))]
        control.take_over(
            lambda sock: _trickle(sock, resp.status, headers, resp.body, seconds, self._stopping)
        )
        return _Taken("slow")

    # -- routes ----------------------------------------------------------------------------

    def _flaky(self, req: _Req) -> _Resp | _Taken:
        fault = (req.arg("fault") or "503").lower()
        if fault not in ("reset", "close", "timeout", "truncate", "slow") and not (
            fault.isdigit() and 400 <= int(fault) <= 599
        ):
            raise _BadRequest(
                "fault must be reset, close, timeout, truncate, slow or a 4xx/5xx code"
            )
        p = req.float_arg("p", 0.3, 0.0, 1.0)
        seed = req.int_arg("seed")
        fail = req.int_arg("fail")
        retry_after = req.arg("retry_after")
        hang = req.float_arg("hang", 5.0, 0.0, _MAX_HANG)
        with self._lock:
            if fail is not None:
                counter = (req.path, req.arg("key") or "", str(fail))
                count = self._fail_counts.get(counter, 0)
                self._fail_counts[counter] = count + 1
                failing = count < fail
            else:
                failing = self.roll(p, seed)
            if failing:
                self.count(fault)
        if not failing:
            return _json(200, {"ok": True})
        if fault == "timeout":
            self._stopping.wait(hang)
            return _json(200, {"ok": True, "hung": hang})
        if fault == "slow":
            padding = "x" * 64
            return self.trickle(req, _json(200, {"ok": True, "padding": padding}), hang, "/flaky")
        if fault in ("reset", "close", "truncate"):
            return self.drop(req, fault, "/flaky")
        headers = [("Retry-After", _header_value(retry_after))] if retry_after else []
        return _error(int(fault), "injected_fault", headers)


def _trickle(
    sock: socket.socket,
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    seconds: float,
    stopping: threading.Event,
) -> None:
    """The head at once, then ``body`` in pieces over ``seconds``; then a clean close."""
    lines = [f"HTTP/1.1 {status} {_phrase(status)}\r\n", f"Date: {_http_date()}\r\n"]
    lines.extend(
        f"{name}: {value}\r\n"
        for name, value in headers
        if name.lower() not in ("content-length", "connection", "transfer-encoding")
    )
    lines.append(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    pieces = max(1, min(_TRICKLE_PIECES, len(body)))
    size = -(-len(body) // pieces)  # ceil
    interval = seconds / pieces
    with contextlib.suppress(OSError):  # the client went away: stop
        sock.sendall("".join(lines).encode("latin-1"))
        for start in range(0, len(body), size):
            if stopping.wait(interval):
                break
            sock.sendall(body[start : start + size])
        sock.shutdown(socket.SHUT_RDWR)
