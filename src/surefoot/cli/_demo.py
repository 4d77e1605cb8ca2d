"""``surefoot demo``: the tutorial's three scenarios, done right, against the sandbox.

It starts the sandbox in-process on a free port, narrates every attempt, wait and
refresh, and proves each outcome with the server's own ``/stats`` counters. Any
expectation that does not hold makes it exit 1.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import requests

from surefoot._core._policy import RetryPolicy
from surefoot.errors import RetryAfterTooLong, TransportError
from surefoot.events import Event, EventKind
from surefoot.oauth._auth import BearerAuth
from surefoot.pacing._config import PacingPolicy
from surefoot.pacing._pacer import Pacer
from surefoot.requests import Client
from surefoot.sandbox import Sandbox
from surefoot.signing._auth import SigningAuth
from surefoot.signing._rfc9421 import SignatureKey
from surefoot.stores._file import FileTokenStore
from surefoot.stores._sqlite import SQLiteStore

__all__ = ["run_demo"]


class _Narrator:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.failures: list[str] = []
        self.checks = 0

    def say(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)

    def title(self, text: str) -> None:
        self.say()
        self.say(f"== {text}")

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        self.checks += 1
        mark = "ok  " if ok else "FAIL"
        line = f"   [{mark}] {what}" + (f" — {detail}" if detail else "")
        if not ok:
            self.failures.append(what)
            print(line, flush=True)
        else:
            self.say(line)

    def hook(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.ATTEMPT_SENT:
            self.say(f"     → attempt {event.attempt}: {event.method} {_path(event.url)}")
        elif kind is EventKind.ATTEMPT_DONE:
            what = f"HTTP {event.status}" if event.status is not None else f"{event.error} error"
            self.say(f"     ← {what} ({(event.elapsed or 0) * 1000:.0f} ms)")
        elif kind is EventKind.RETRY_SCHEDULED:
            self.say(f"     … wait {event.wait:.2f} s — {event.reason}")
        elif kind is EventKind.GAVE_UP:
            self.say(f"     ✗ gave up — {event.reason}")
        elif kind in (EventKind.TOKEN_REFRESHED, EventKind.TOKEN_INVALIDATED):
            self.say(f"     ⟳ {kind.value.replace('_', ' ')} — {event.reason}")
        elif kind is EventKind.CREDENTIALS_WITHHELD:
            self.say(f"     ⚠ credentials withheld — {event.reason}")


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url


def _stats(base: str) -> dict[str, Any]:
    data: dict[str, Any] = requests.get(base + "/stats", timeout=5).json()
    return data


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def _scenario_signing(n: _Narrator, base: str) -> None:
    n.title("1. Signed requests: HMAC-SHA256 over method, path, query, host, time, nonce, body")
    hook = n.hook
    with Client(base, auth=SigningAuth.hmac("demo-key", "demo-secret"), hook=hook) as client:
        response = client.post("/signed/payments", json={"amount": 100, "currency": "EUR"})
    n.check("a signed POST is accepted", response.status_code == 200,
            f"HTTP {response.status_code}")
    sent = response.request
    headers = dict(sent.headers)
    shown = ", ".join(k for k in headers if k.lower().startswith("x-"))
    n.say(f"   signed headers sent: {shown}")

    n.say("   replaying the captured request byte for byte:")
    replay = requests.post(str(sent.url), data=sent.body, headers=headers, timeout=5)
    reason = replay.json().get("reason") if replay.status_code == 401 else None
    n.check("its replay is rejected", replay.status_code == 401 and reason == "replayed_nonce",
            f"HTTP {replay.status_code} {reason}")

    n.say("   the same signature on a tampered body:")
    forged = requests.post(str(sent.url), data=b'{"amount": 100000, "currency": "EUR"}',
                           headers=headers, timeout=5)
    reason = forged.json().get("reason") if forged.status_code == 401 else None
    n.check("a tampered request is rejected", forged.status_code == 401
            and reason in ("body_digest_mismatch", "bad_signature"),
            f"HTTP {forged.status_code} {reason}")
    stats = _stats(base)
    n.say(f"   /stats: signature_rejections={stats['signature_rejections']} "
          f"replays={stats['replays']}")
    n.check("the server counted one replay", stats["replays"] == 1, str(stats["replays"]))

    n.say("   a redirect to another origin does not carry the credentials:")
    other = base.replace("127.0.0.1", "localhost")
    with Client(base, auth=SigningAuth.hmac("demo-key", "demo-secret"), hook=hook) as client:
        hop = client.get("/redirect-to", params={"url": other + "/headers"})
    echoed = hop.json().get("headers", {})
    leaked = [h for h in ("X-Api-Key", "X-Signature", "X-Nonce") if h in echoed]
    n.check("no X-API-Key / X-Signature reached the other origin", hop.ok and not leaked,
            f"leaked: {leaked or 'none'}")


def _scenario_rate_limits(n: _Narrator, base: str) -> None:
    n.title("2. 429 and Retry-After: honoured, capped, no sleep after the last attempt")
    policy = RetryPolicy(max_attempts=3, backoff_initial=0.2, backoff_max=2.0)
    with Client(base, retry=policy, hook=n.hook) as client:
        n.say("   /status/429 with Retry-After: 1, three attempts:")
        response, took = _timed(lambda: client.get("/status/429", params={"retry_after": "1"}))
        n.check("two waits of 1 s, then the 429 is returned at once",
                response.status_code == 429 and 1.9 <= took < 3.0,
                f"HTTP {response.status_code} after {took:.2f} s (the tutorial slept 3 s)")

        n.say("   Retry-After as an HTTP-date, 1 s ahead:")
        date = formatdate(time.time() + 1.5, usegmt=True)
        response, took = _timed(
            lambda: client.get("/flaky/dated", params={"fault": "503", "fail": "1",
                                                       "retry_after": date})
        )
        n.check("the HTTP-date form is understood", response.status_code == 200,
                f"HTTP {response.status_code} after {took:.2f} s")

        n.say("   /status/429 with Retry-After: 3600 (cap is 120 s):")
        start = time.monotonic()
        try:
            client.get("/status/429", params={"retry_after": "3600"})
            n.check("an over-cap Retry-After fails fast", False, "no error raised")
        except RetryAfterTooLong as exc:
            took = time.monotonic() - start
            n.check("an over-cap Retry-After fails fast with the requested wait",
                    exc.requested_wait == 3600 and took < 1.0,
                    f"RetryAfterTooLong(requested_wait={exc.requested_wait:g}) in {took:.2f} s")

    n.say("   a real quota (burst 5, 10/s) hit by 8 quick requests:")
    before = _stats(base)["429s"]
    with Client(base, auth=SigningAuth.hmac("quota-demo", "quota-secret"),
                retry=RetryPolicy(max_attempts=5), hook=n.hook) as client:
        codes = [client.get("/limited/items", params={"dialect": "ietf"}).status_code
                 for _ in range(8)]
    got_429 = _stats(base)["429s"] - before
    n.check("every request eventually succeeded", codes == [200] * 8, f"{codes}")
    n.say(f"   /stats: 429s answered={got_429} (each honoured via Retry-After)")


def _scenario_tokens(n: _Narrator, base: str, tmp: Path) -> None:
    n.title("3. OAuth2 tokens persisted to a file, refresh once on 401, safe retries")
    token_file = tmp / "token.json"

    def auth() -> BearerAuth:
        return BearerAuth.client_credentials(
            base + "/oauth/token", "demo-client", "demo-secret",
            store=FileTokenStore(token_file), hook=n.hook,
        )

    policy = RetryPolicy(max_attempts=4, backoff_initial=0.1, backoff_max=1.0,
                         idempotency_keys="auto")
    with Client(base, auth=auth(), retry=policy, hook=n.hook) as client:
        response = client.get("/protected")
        n.check("the first call fetches a token and succeeds", response.status_code == 200,
                f"HTTP {response.status_code}")
    mode = stat.S_IMODE(os.stat(token_file).st_mode)
    n.check("the token file is private", mode == 0o600, f"mode {mode:o}")

    n.say("   a second client (think: a new process) reuses the token on disk:")
    with Client(base, auth=auth(), retry=policy, hook=n.hook) as client:
        client.get("/protected")
        issued = _stats(base)["tokens_issued"]
        n.check("no new token was requested", issued == 1, f"tokens_issued={issued}")

        n.say("   the server revokes every token; the next call gets 401:")
        requests.post(base + "/admin/revoke-tokens", timeout=5)
        response = client.get("/protected")
        issued = _stats(base)["tokens_issued"]
        n.check("one refresh and one replay (the tutorial made 3 refreshes and 4 calls)",
                response.status_code == 200 and issued == 2,
                f"HTTP {response.status_code}, tokens_issued={issued}")

        n.say("   a 5xx twice, then success:")
        response = client.get("/flaky/report", params={"fault": "503", "fail": "2"})
        n.check("5xx is retried with backoff", response.status_code == 200,
                f"HTTP {response.status_code}")
        n.say("   a connection reset, then success:")
        response = client.get("/flaky/feed", params={"fault": "reset", "fail": "1"})
        n.check("a reset is retried for GET", response.status_code == 200,
                f"HTTP {response.status_code}")

        n.say("   POST /orders: the server commits, then drops the connection:")
        before = _stats(base)["orders_created"]
        response = client.post("/orders", params={"fail_after_commit": "1"},
                               json={"sku": "book", "qty": 1})
        created = _stats(base)["orders_created"] - before
        n.check("with an Idempotency-Key, the retry returns the same order: exactly one created",
                response.ok and created == 1,
                f"HTTP {response.status_code}, orders_created +{created}")

    n.say("   the same POST without an Idempotency-Key:")
    plain = RetryPolicy(max_attempts=4, backoff_initial=0.1)
    with Client(base, auth=auth(), retry=plain, hook=n.hook) as client:
        before = _stats(base)["orders_created"]
        try:
            client.post("/orders", params={"fail_after_commit": "1"}, json={"sku": "pen"})
            n.check("a POST that may have been processed is not retried", False, "no error")
        except TransportError as exc:
            created = _stats(base)["orders_created"] - before
            n.check("a POST that may have been processed is not retried (no duplicate)",
                    exc.attempts == 1 and created == 1,
                    f"{exc.kind} after {exc.attempts} attempt, orders_created +{created}")


def _scenario_standards_and_sharing(n: _Narrator, base: str, tmp: Path) -> None:
    n.title("4. RFC 9421 message signatures; two clients pacing through one shared store")
    key = SignatureKey("hmac-sha256", b"demo-secret", key_id="demo-rfc9421")
    with Client(base, auth=SigningAuth.rfc9421(key), hook=n.hook) as client:
        response = client.post("/signed-rfc9421/orders", json={"sku": "book"})
    covered = response.json().get("covered") if response.ok else None
    n.check("an RFC 9421-signed POST (with Content-Digest) is accepted",
            response.status_code == 200, f"HTTP {response.status_code}, covered {covered}")
    sent = response.request
    replay = requests.post(str(sent.url), data=sent.body, headers=dict(sent.headers), timeout=5)
    reason = replay.json().get("reason") if replay.status_code == 401 else None
    n.check("its replay is rejected", replay.status_code == 401, f"HTTP {replay.status_code} "
            f"{reason}")

    n.say("   two clients, each with its own Pacer on one SQLite store, call a quota of")
    n.say("   10/s (burst 5) in turns; they learn it together and stay under it together:")
    before = _stats(base)["429s"]
    store = SQLiteStore(tmp / "state.db", on_failure="closed")
    clients = [Client(base, pacing=Pacer(PacingPolicy(), store=store)) for _ in range(2)]
    try:
        (codes, took) = _timed(
            lambda: [c.get("/limited/shared").status_code for _ in range(8) for c in clients]
        )
    finally:
        for c in clients:
            c.close()
        store.close()
    throttled = _stats(base)["429s"] - before
    n.check("16 calls, all 200, no 429 between the two clients",
            codes == [200] * 16 and throttled == 0, f"429s={throttled}, {took:.2f} s")


def run_demo(*, quiet: bool = False) -> int:
    n = _Narrator(quiet)
    started = time.monotonic()
    keys = {"demo-key": "demo-secret", "quota-demo": "quota-secret"}
    with Sandbox(rate=10.0, burst=5, hmac_keys=keys) as sandbox,\
            tempfile.TemporaryDirectory(prefix="surefoot-demo-") as tmp:
        n.say(f"surefoot demo — sandbox API running at {sandbox.url}")
        _scenario_signing(n, sandbox.url)
        _scenario_rate_limits(n, sandbox.url)
        _scenario_tokens(n, sandbox.url, Path(tmp))
        _scenario_standards_and_sharing(n, sandbox.url, Path(tmp))
        stats = _stats(sandbox.url)
    took = time.monotonic() - started
    print()
    print(f"server /stats: requests={stats['requests']} 429s={stats['429s']} "
          f"tokens_issued={stats['tokens_issued']} orders_created={stats['orders_created']} "
          f"signature_rejections={stats['signature_rejections']} replays={stats['replays']}")
    if n.failures:
        print(f"demo FAILED: {len(n.failures)} of {n.checks} checks failed in {took:.1f} s",
              file=sys.stderr)
        return 1
    print(f"demo passed: {n.checks} checks in {took:.1f} s")
    return 0
