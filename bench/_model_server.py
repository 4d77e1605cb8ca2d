"""An independent quota server: five textbook rate-limit models behind ten header dialects.

Issue 12: surefoot's pacing must hold on quota servers it was not tuned on. This module
has no surefoot import at all; it is written from the algorithms' usual definitions, not
from surefoot's sandbox. Run it as a subprocess::

    python bench/_model_server.py --algorithm tb --rate 200 --burst 10 \\
        --dialect ietf --retry-after int --port 0

It prints one line, ``listening on http://127.0.0.1:PORT``, and serves until killed: an
asyncio HTTP/1.1 server on raw streams with keep-alive (one process, one thread; it
serves hundreds of concurrent keep-alive connections at thousands of requests/s).
ONE global quota: every client shares it.

Endpoints
---------

* ``GET /q`` (any query string): the rate-limited resource. ``200`` and a short body if
  the model admits the request, else ``429`` (with ``Retry-After`` per
  ``--retry-after``). Every ``/q`` response, 200 or 429, carries the rate-limit headers
  of ``--dialect``, rendered from the model's state when the response is written.
* ``GET /stats``: ``{"requests": n, "statuses": {"200": n, "429": n, "503": n},
  "per_client": {id: {"requests": n, "429": n}}}``, counting ``/q`` requests only
  (``id`` from the ``X-Client-Id`` request header, ``"-"`` when absent).
* ``POST /reset``: a fresh model (as at start) and zeroed counters; ends an outage.
* ``POST /outage?seconds=S``: for S seconds every ``/q`` gets ``503`` with
  ``Retry-After: 1`` (no rate-limit headers; the model is not consulted, so it keeps
  refilling). Counted in ``/stats``.

Models (``--algorithm``; times are ``time.monotonic()`` seconds, passed in explicitly so
that the harness can run the same classes on a virtual clock)
-----------------------------------------------------------------------------------------

* ``tb`` — token bucket (:class:`TokenBucket`): capacity B tokens, refilled continuously
  at R/s, starts full; a request takes one token or is refused (a refusal costs nothing).
* ``gcra`` — GCRA (:class:`Gcra`), emission interval T = 1/R, burst B: a theoretical
  arrival time TAT; a request at ``now`` is admitted iff ``now >= TAT - (B - 1)·T``, and
  then ``TAT = max(TAT, now) + T``. Same admissions as ``tb``, kept separately.
* ``fixed`` — fixed window (:class:`FixedWindow`), L requests per W s, the common
  ``INCR key; EXPIRE key W`` (on the first INCR) implementation: the window starts at the
  first request after the previous window expired, and refused requests are counted too
  (which changes nothing: once over L, they stay refused until the key expires).
* ``sliding`` — sliding-window log (:class:`SlidingLog`): the times of admitted requests;
  a request is admitted iff fewer than L were admitted in the trailing W seconds
  (``(now - W, now]``). Refused requests are not logged.
* ``leaky`` — a leaky bucket as a queue (:class:`LeakyQueue`): requests are served one
  every 1/R seconds in arrival order; a request's response is delayed until its slot
  (``slot = max(now, previous slot + 1/R)``). At most B requests may wait (slot later
  than now); one more gets 429 at once.

What the headers say (:class:`Snapshot`)
----------------------------------------

* **limit** — the stated quota: for ``tb``/``gcra``/``leaky`` R per 1 s (if R is not a
  whole number, the shortest whole-second window W in which R·W is whole: 0.5/s is 1 per
  2 s); for ``fixed``/``sliding`` L per W.
* **remaining** — requests that could be admitted right now: ``floor(tokens)`` for
  ``tb``, the same quantity from the TAT for ``gcra`` (``floor((now - TAT)/T) + B``,
  clamped to [0, B]); ``L - count`` for ``fixed``/``sliding``; the free queue places
  ``B - waiting`` for ``leaky`` (an idle server serves one more at once, not counted).
* **reset** — seconds until the quota is fully available again: ``tb``/``gcra`` until
  the bucket is full (``(B - tokens)/R``; ``TAT - now``), ``fixed`` until the window
  ends (0 when no window is open), ``sliding`` until the OLDEST logged request leaves the
  window (0 when the log is empty; i.e. when one more place opens, not all of them),
  ``leaky`` until the queue has drained (the last slot). Rounded UP to whole seconds in
  the integer formats, so a reset under a second reads ``1``.
* **next** — seconds until the next request would be admitted (0 if now): what
  ``Retry-After`` and the ``x-next`` dialect report.

Dialects (``--dialect``)
------------------------

* ``ietf`` — draft-ietf-httpapi-ratelimit-headers-10:
  ``RateLimit-Policy: "default";q=L;w=W`` and ``RateLimit: "default";r=REM;t=RESET``.
* ``ietf-now`` — the same without ``;w=`` in the policy.
* ``legacy`` — ``RateLimit-Limit: L``, ``RateLimit-Remaining: REM``,
  ``RateLimit-Reset: RESET`` (delta seconds; the older drafts).
* ``x-delta`` — ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset``
  (delta seconds, ceil).
* ``x-epoch`` — the same, the reset as the Unix epoch second (ceil) at which the quota
  is full again / the window ends.
* ``x-next`` — the same, the reset as the Unix epoch second (ceil) at which the NEXT
  request would be admitted, and remaining capped at the burst B: a token bucket seen
  through window-style headers (for ``fixed``/``sliding`` the cap is L).
* ``github`` — ``X-RateLimit-Limit``, ``-Remaining``, ``-Used`` (``L - remaining``, so
  that limit = remaining + used, as GitHub keeps it), ``-Reset`` (epoch, ceil),
  ``-Resource: core``.
* ``discord`` — ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` (epoch, 3 decimals),
  ``-Reset-After`` (seconds, 3 decimals), ``-Bucket: abc123``.
* ``openai`` — ``x-ratelimit-limit-requests: L``, ``x-ratelimit-remaining-requests``,
  ``x-ratelimit-reset-requests`` as a Go duration of the reset, to the millisecond
  (``20ms``, ``1s``, ``1.5s``, ``6m0s``).
* ``none`` — no rate-limit headers.

Every dialect's limit is L of "L per W" (``q``/``w`` for ``ietf``); the window-less ones
(all but ``ietf``) thus leave the client to guess W (one second for ``tb``).

``Retry-After`` on 429 (``--retry-after``): ``int`` — ``max(1, ceil(next))``, what most
servers send; ``frac`` — ``next`` with 3 decimals (no minimum); ``none`` — no header.

The ideal client
----------------

:func:`ideal_seconds` simulates a perfectly greedy, infinitely fast client with C
connections against a fresh model from t = 0, sending only requests that will be
admitted, and returns the earliest time at which n requests could all have been admitted
(for ``leaky``: served). Efficiency = ``ideal_seconds(n_done) / elapsed``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "ALGORITHMS",
    "DIALECTS",
    "RETRY_AFTER",
    "Decision",
    "ModelParams",
    "Snapshot",
    "ideal_seconds",
    "make_model",
    "render_headers",
]

ALGORITHMS = ("tb", "gcra", "fixed", "sliding", "leaky")
DIALECTS = ("ietf", "ietf-now", "legacy", "x-delta", "x-epoch", "x-next", "github",
            "discord", "openai", "none")
RETRY_AFTER = ("int", "frac", "none")
EPS = 1e-9  # float slack in the admission tests (a refill computed to 0.9999999 token)


# -- the models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelParams:
    """A model and its parameters: ``rate`` (R/s) and ``burst`` (B) for tb/gcra/leaky,
    ``limit`` (L) and ``window`` (W s) for fixed/sliding."""

    algorithm: str = "tb"
    rate: float = 200.0
    burst: int = 10
    limit: int = 200
    window: float = 1.0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}")
        if self.algorithm in ("fixed", "sliding"):
            if self.limit < 1 or self.window <= 0:
                raise ValueError("fixed/sliding need --limit >= 1 and --window > 0")
        elif self.rate <= 0 or self.burst < (0 if self.algorithm == "leaky" else 1):
            raise ValueError("tb/gcra need --rate > 0 and --burst >= 1 (leaky: >= 0)")

    @property
    def windowed(self) -> bool:
        return self.algorithm in ("fixed", "sliding")

    def stated(self) -> tuple[int, float]:
        """The stated quota as (L, W): L requests per W seconds, L a whole number."""
        if self.windowed:
            return self.limit, self.window
        for w in range(1, 3601):
            if abs(self.rate * w - round(self.rate * w)) < 1e-9:
                return round(self.rate * w), float(w)
        return max(1, round(self.rate)), 1.0

    @property
    def cap(self) -> int:
        """The most requests admitted at once from a fresh state (``x-next``'s cap)."""
        return self.limit if self.windowed else self.burst


@dataclass(frozen=True)
class Decision:
    """A model's answer: admitted or not; ``delay`` until the response (``leaky``: the
    slot), ``retry_in`` until the next request would be admitted (when refused)."""

    admitted: bool
    delay: float = 0.0
    retry_in: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """The model's state as the headers render it (see the module docstring)."""

    limit: int
    window: float
    remaining: int
    reset: float  # seconds until the quota is fully available again
    next: float  # seconds until the next request would be admitted (0: now)


class TokenBucket:
    """Capacity B, refilled continuously at R/s, starts full."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self.rate, self.capacity = params.rate, float(params.burst)
        self.tokens = self.capacity
        self.last: float | None = None

    def _refill(self, now: float) -> None:
        if self.last is not None and now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        if self.last is None or now > self.last:
            self.last = now

    def _next(self) -> float:
        return 0.0 if self.tokens >= 1 - EPS else (1 - self.tokens) / self.rate

    def admit(self, now: float) -> Decision:
        self._refill(now)
        if self.tokens >= 1 - EPS:
            self.tokens = max(0.0, self.tokens - 1)
            return Decision(True)
        return Decision(False, retry_in=self._next())

    def snapshot(self, now: float) -> Snapshot:
        self._refill(now)
        limit, window = self.params.stated()
        return Snapshot(limit, window, math.floor(self.tokens + EPS),
                        max(0.0, (self.capacity - self.tokens) / self.rate), self._next())


class Gcra:
    """GCRA: emission interval T = 1/R, burst B, a theoretical arrival time (TAT)."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self.t = 1.0 / params.rate
        self.burst = params.burst
        self.tat: float | None = None  # None: fresh (a TAT in the past)

    def _allow_at(self) -> float:
        return -math.inf if self.tat is None else self.tat - (self.burst - 1) * self.t

    def admit(self, now: float) -> Decision:
        allow_at = self._allow_at()
        if now >= allow_at - EPS:
            self.tat = max(self.tat if self.tat is not None else now, now) + self.t
            return Decision(True)
        return Decision(False, retry_in=allow_at - now)

    def snapshot(self, now: float) -> Snapshot:
        limit, window = self.params.stated()
        tat = now if self.tat is None else max(self.tat, now)
        remaining = min(self.burst, max(0, math.floor((now - tat) / self.t + EPS) + self.burst))
        return Snapshot(limit, window, remaining, tat - now, max(0.0, self._allow_at() - now))


class FixedWindow:
    """L per W seconds; the window opens at the first request after the last one ended
    (``INCR`` + ``EXPIRE`` on the first ``INCR``); refused requests count too."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self.start: float | None = None
        self.count = 0

    def _roll(self, now: float) -> None:
        if self.start is not None and now >= self.start + self.params.window - EPS:
            self.start, self.count = None, 0

    def admit(self, now: float) -> Decision:
        self._roll(now)
        if self.start is None:
            self.start = now
        self.count += 1
        if self.count <= self.params.limit:
            return Decision(True)
        return Decision(False, retry_in=self.start + self.params.window - now)

    def snapshot(self, now: float) -> Snapshot:
        self._roll(now)
        limit, window = self.params.limit, self.params.window
        reset = 0.0 if self.start is None else self.start + window - now
        remaining = max(0, limit - self.count)
        return Snapshot(limit, window, remaining, reset, 0.0 if remaining else reset)


class SlidingLog:
    """At most L admitted requests in any trailing W seconds (a log of their times)."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self.log: deque[float] = deque()

    def _purge(self, now: float) -> None:
        while self.log and self.log[0] <= now - self.params.window + EPS:
            self.log.popleft()

    def admit(self, now: float) -> Decision:
        self._purge(now)
        if len(self.log) < self.params.limit:
            self.log.append(now)
            return Decision(True)
        return Decision(False, retry_in=self.log[0] + self.params.window - now)

    def snapshot(self, now: float) -> Snapshot:
        self._purge(now)
        limit, window = self.params.limit, self.params.window
        oldest = self.log[0] + window - now if self.log else 0.0
        remaining = limit - len(self.log)
        return Snapshot(limit, window, remaining, oldest, 0.0 if remaining else oldest)


class LeakyQueue:
    """Served one every 1/R s in arrival order; at most B wait, more get 429 at once."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self.t = 1.0 / params.rate
        self.free_at = -math.inf  # the earliest slot for the next request
        self.waiting: deque[float] = deque()  # slots later than now, in order

    def _purge(self, now: float) -> None:
        while self.waiting and self.waiting[0] <= now + EPS:
            self.waiting.popleft()

    def admit(self, now: float) -> Decision:
        self._purge(now)
        slot = max(now, self.free_at)
        if slot > now + EPS:
            if len(self.waiting) >= self.params.burst:
                return Decision(False, retry_in=self.waiting[0] - now if self.waiting
                                else slot - now)
            self.waiting.append(slot)
        self.free_at = slot + self.t
        return Decision(True, delay=slot - now)

    def snapshot(self, now: float) -> Snapshot:
        self._purge(now)
        limit, window = self.params.stated()
        remaining = max(0, self.params.burst - len(self.waiting))
        drained = max(0.0, self.free_at - now)  # until the last slot has been served
        if self.free_at <= now + EPS or remaining:
            nxt = 0.0
        else:
            nxt = self.waiting[0] - now if self.waiting else self.free_at - now
        return Snapshot(limit, window, remaining, drained, nxt)


Model = TokenBucket | Gcra | FixedWindow | SlidingLog | LeakyQueue
_CLASSES: dict[str, type[Model]] = {
    "tb": TokenBucket, "gcra": Gcra, "fixed": FixedWindow, "sliding": SlidingLog,
    "leaky": LeakyQueue,
}


def make_model(params: ModelParams) -> Model:
    """A fresh model (the server's, or one for the harness's own simulation)."""
    return _CLASSES[params.algorithm](params)


def ideal_seconds(params: ModelParams, n: int, concurrency: int = 1) -> float:
    """The earliest time at which ``n`` requests could all have been admitted (``leaky``:
    served), by a perfectly greedy, infinitely fast client with ``concurrency``
    connections against a fresh model from t = 0. It sends a request only when the model
    would admit it (it never collects a 429); a connection is busy until its response.

    tb/gcra: ``(n - B)/R``; fixed/sliding: ``(ceil(n/L) - 1)·W``; leaky: ``(n - 1)/R``.
    """
    if n <= 0:
        return 0.0
    model = make_model(params)
    busy: list[float] = []  # response times of the requests in flight (a heap)
    now, done, last = 0.0, 0, 0.0
    while done < n:
        while busy and busy[0] <= now + EPS:
            heapq.heappop(busy)
        if len(busy) < concurrency and model.snapshot(now).next <= EPS:
            decision = model.admit(now)
            if not decision.admitted:  # pragma: no cover - snapshot said it would be
                raise RuntimeError(f"{params}: refused at {now} after a zero wait")
            done += 1
            last = max(last, now + decision.delay)
            if decision.delay > EPS:
                heapq.heappush(busy, now + decision.delay)
            continue
        wait = model.snapshot(now).next if len(busy) < concurrency else math.inf
        if busy:
            wait = min(wait, busy[0] - now)
        now += max(wait, EPS)
    return last


# -- the header dialects -------------------------------------------------------------------


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def go_duration(seconds: float) -> str:
    """``seconds`` to the millisecond, as Go's ``time.Duration.String()`` prints it."""
    ms = max(0, round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}.{rest % 1000:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs


def render_headers(dialect: str, snap: Snapshot, params: ModelParams,
                   epoch: float) -> list[tuple[str, str]]:
    """The rate-limit headers of ``dialect`` for ``snap`` (``epoch``: ``time.time()``)."""
    limit, rem = snap.limit, snap.remaining
    reset_int = math.ceil(snap.reset - EPS)
    if dialect in ("ietf", "ietf-now"):
        policy = f'"default";q={limit}' + (f";w={_num(snap.window)}" if dialect == "ietf"
                                            else "")
        return [("RateLimit-Policy", policy), ("RateLimit", f'"default";r={rem};t={reset_int}')]
    if dialect == "legacy":
        return [("RateLimit-Limit", str(limit)), ("RateLimit-Remaining", str(rem)),
                ("RateLimit-Reset", str(reset_int))]
    if dialect == "x-delta":
        return [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(rem)),
                ("X-RateLimit-Reset", str(reset_int))]
    if dialect == "x-epoch":
        return [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(rem)),
                ("X-RateLimit-Reset", str(math.ceil(epoch + snap.reset)))]
    if dialect == "x-next":
        return [("X-RateLimit-Limit", str(limit)),
                ("X-RateLimit-Remaining", str(min(rem, params.cap))),
                ("X-RateLimit-Reset", str(math.ceil(epoch + snap.next)))]
    if dialect == "github":
        return [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(rem)),
                ("X-RateLimit-Used", str(max(0, limit - rem))),
                ("X-RateLimit-Reset", str(math.ceil(epoch + snap.reset))),
                ("X-RateLimit-Resource", "core")]
    if dialect == "discord":
        return [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(rem)),
                ("X-RateLimit-Reset", f"{epoch + snap.reset:.3f}"),
                ("X-RateLimit-Reset-After", f"{snap.reset:.3f}"),
                ("X-RateLimit-Bucket", "abc123")]
    if dialect == "openai":
        return [("x-ratelimit-limit-requests", str(limit)),
                ("x-ratelimit-remaining-requests", str(rem)),
                ("x-ratelimit-reset-requests", go_duration(snap.reset))]
    if dialect == "none":
        return []
    raise ValueError(f"unknown dialect {dialect!r}")


def retry_after(mode: str, seconds: float) -> list[tuple[str, str]]:
    """The ``Retry-After`` of a 429 that comes ``seconds`` before the next admission."""
    if mode == "int":
        return [("Retry-After", str(max(1, math.ceil(seconds - EPS))))]
    if mode == "frac":
        return [("Retry-After", f"{max(0.0, seconds):.3f}")]
    if mode == "none":
        return []
    raise ValueError(f"unknown --retry-after {mode!r}")


# -- the server ----------------------------------------------------------------------------

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            429: "Too Many Requests", 503: "Service Unavailable"}


class QuotaServer:
    """The model, the counters and the outage, behind the HTTP endpoints."""

    def __init__(self, params: ModelParams, dialect: str, retry_after_mode: str) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}")
        if retry_after_mode not in RETRY_AFTER:
            raise ValueError(f"unknown --retry-after {retry_after_mode!r}")
        self.params, self.dialect, self.retry_after = params, dialect, retry_after_mode
        self.reset()

    def reset(self) -> None:
        self.model = make_model(self.params)
        self.outage_until = -math.inf
        self.requests = 0
        self.statuses = {"200": 0, "429": 0, "503": 0}
        self.per_client: dict[str, dict[str, int]] = {}

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "statuses": dict(self.statuses),
                "per_client": {k: dict(v) for k, v in self.per_client.items()}}

    def _count(self, client: str, status: int) -> None:
        self.requests += 1
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        mine = self.per_client.setdefault(client, {"requests": 0, "429": 0})
        mine["requests"] += 1
        if status == 429:
            mine["429"] += 1

    def _rate_headers(self) -> list[tuple[str, str]]:
        snap = self.model.snapshot(time.monotonic())
        return render_headers(self.dialect, snap, self.params, time.time())

    async def limited(self, client: str) -> tuple[int, list[tuple[str, str]], bytes]:
        now = time.monotonic()
        if now < self.outage_until:
            self._count(client, 503)
            return 503, [("Retry-After", "1")], b"outage\n"
        decision = self.model.admit(now)
        if not decision.admitted:
            self._count(client, 429)
            headers = self._rate_headers() + retry_after(self.retry_after, decision.retry_in)
            return 429, headers, b"too many requests\n"
        self._count(client, 200)
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        return 200, self._rate_headers(), b"ok\n"

    async def dispatch(self, method: str, target: str,
                       headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        path = parts.path
        if path == "/q":
            if method not in ("GET", "HEAD"):
                return 405, [], b"method not allowed\n"
            return await self.limited(headers.get("x-client-id", "-"))
        if path == "/stats" and method == "GET":
            return 200, [("Content-Type", "application/json")], json.dumps(self.stats()).encode()
        if path == "/reset" and method == "POST":
            self.reset()
            return 200, [], b"reset\n"
        if path == "/outage" and method == "POST":
            try:
                seconds = float(parse_qs(parts.query).get("seconds", ["0"])[0])
            except ValueError:
                return 400, [], b"bad seconds\n"
            self.outage_until = time.monotonic() + seconds
            return 200, [], b"outage\n"
        return 404, [], b"not found\n"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests one after another (keep-alive) until it closes."""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                status, extra, body = await self.dispatch(method, target, headers)
                connection = headers.get("connection", "").lower()
                close = connection == "close" or (version == "HTTP/1.0"
                                                  and connection != "keep-alive")
                out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                       f"Content-Length: {len(body)}"]
                out.extend(f"{k}: {v}" for k, v in extra)
                if close:
                    out.append("Connection: close")
                payload = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
                writer.write(payload if method == "HEAD" else payload + body)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def serve(server: QuotaServer, host: str, port: int) -> None:
    listener = await asyncio.start_server(server.handle, host, port, backlog=2048,
                                          reuse_address=True)
    bound = listener.sockets[0].getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    async with listener:
        await listener.serve_forever()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="tb")
    parser.add_argument("--rate", type=float, default=200.0, help="R, per second (tb/gcra/leaky)")
    parser.add_argument("--burst", type=int, default=10,
                        help="B: bucket size (tb/gcra), queue places (leaky)")
    parser.add_argument("--limit", type=int, default=200, help="L per window (fixed/sliding)")
    parser.add_argument("--window", type=float, default=1.0, help="W seconds (fixed/sliding)")
    parser.add_argument("--dialect", choices=DIALECTS, default="ietf")
    parser.add_argument("--retry-after", choices=RETRY_AFTER, default="int")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    return parser.parse_args(argv)


def params_from(args: argparse.Namespace) -> ModelParams:
    return ModelParams(algorithm=args.algorithm, rate=args.rate, burst=args.burst,
                       limit=args.limit, window=args.window)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = QuotaServer(params_from(args), args.dialect, args.retry_after)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(server, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
