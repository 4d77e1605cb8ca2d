"""Refresh storm: 4 processes x 64 threads share one token, and it expires.

The sandbox runs in a subprocess and counts the token requests it answers (``GET /stats``:
``tokens_issued``); a redis-server is started on a free port. Each contender runs in 4
worker processes (spawned) of 64 threads. Every thread keeps one keep-alive connection to
the sandbox and, in each round, gets a token and calls ``GET /protected`` with it; on a
401 it asks for a new token once and calls again. A round ends when every thread is done.

What makes the token expire, every round:

* round 1: the shared store holds an expired token (the tutorial: a token file with an
  expired token) when the processes start;
* later rounds: the token's lifetime is over on both sides at once: the sandbox forgets
  every token (``POST /admin/revoke-tokens``, so an old token gets 401) and the workers'
  clocks move one token lifetime (3600 s) forward, so the token cached in memory and in
  the store is expired too. (Waiting out a real lifetime would give the same picture.)

Contenders, one after another in the same run against the same sandbox:

* ``tutorial`` — a re-creation of the tutorial's token manager (``AuthenticationManager``):
  per process, "if no token, fetch one" without a lock, a token file written in place,
  and on 401 "forget the token, fetch again";
* ``surefoot_file`` — ``TokenCache`` over ``FileTokenStore`` (one host: flock lease);
* ``surefoot_sqlite`` — ``TokenCache`` over ``SQLiteTokenStore`` (one host);
* ``surefoot_redis`` — ``TokenCache`` over ``RedisTokenStore`` (a fleet).

Target: exactly 1 token request per expiry, and every call answered 200.

    .venv/bin/python bench/refresh_storm.py [--quick] [--rounds N] [--processes P]
                                            [--threads T] [--contenders a,b]

Writes ``bench/results/refresh_storm.json``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.client
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import surefoot
from _env import output, source_state
from _env import version as _version
from _sandbox_process import SandboxProcess
from surefoot.sandbox import RedisServer
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis._connection import RedisConnection
from surefoot.stores._redis._tokens import RedisTokenStore
from surefoot.stores._sqlite._connection import SQLiteConnection
from surefoot.stores._sqlite._tokens import SQLiteTokenStore

RESULTS = Path(__file__).resolve().parent / "results"
CONTENDERS = ("tutorial", "surefoot_file", "surefoot_sqlite", "surefoot_redis")
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"
LIFETIME = 3600.0  # the sandbox's token lifetime; the clocks jump this far (+5 s) a round
DEADLINE = 30.0  # of one thread's call, seconds


# -- the tutorial's token manager, re-created -------------------------------------------


class TutorialTokenManager:
    """What the tutorial's ``AuthenticationManager`` does, for a real token endpoint:
    the token file is read once at start (an expired token counts as none); ``get``
    fetches when it holds no token (check-then-fetch, no lock, nothing shared between
    processes but the file it writes in place); ``invalidate`` (after a 401) forgets the
    token and empties the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.token: str | None = None
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if data.get("expires_at", 0) > time.time():
                self.token = data.get("access_token")
        except (FileNotFoundError, ValueError):
            pass

    def get(self, conn: Connection) -> str:
        if not self.token:
            token, lifetime = conn.fetch_token()
            with open(self.path, "w", encoding="utf-8") as handle:
                json.dump({"access_token": token, "expires_at": time.time() + lifetime}, handle)
            self.token = token
        return self.token

    def invalidate(self) -> None:
        self.token = None
        with contextlib.suppress(OSError), open(self.path, "w", encoding="utf-8") as handle:
            json.dump({}, handle)


# -- one thread's keep-alive connection -------------------------------------------------


class Connection:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=DEADLINE)
        self.conn.connect()

    def request(self, method: str, path: str, headers: dict[str, str],
                body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):  # one reconnect if the keep-alive connection was dropped
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=DEADLINE)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def protected(self, token: str) -> int:
        status, _ = self.request("GET", "/protected", {"Authorization": f"Bearer {token}"})
        return status

    def fetch_token(self) -> tuple[str, float]:
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        status, body = self.request(
            "POST", "/oauth/token",
            {"Authorization": f"Basic {basic}",
             "Content-Type": "application/x-www-form-urlencoded"},
            urlencode({"grant_type": "client_credentials"}).encode(),
        )
        if status != 200:
            raise RuntimeError(f"token endpoint answered {status}")
        data = json.loads(body)
        return data["access_token"], float(data["expires_in"])


# -- surefoot's side ----------------------------------------------------------------------


class OffsetClock:
    """The real clock, with wall time moved forward by the round's offset."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset  # a multiprocessing Value, set by the parent per round

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time() + self.offset.value

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:  # pragma: no cover - not used here
        raise NotImplementedError


def make_store(contender: str, where: dict[str, str]) -> Any:
    if contender == "surefoot_file":
        return surefoot.stores.FileTokenStore(where["file"])
    failure = FailureMode("closed", contender)
    if contender == "surefoot_sqlite":
        return SQLiteTokenStore(SQLiteConnection(where["sqlite"]), failure)
    if contender == "surefoot_redis":
        return RedisTokenStore(RedisConnection(where["redis"]), failure)
    raise ValueError(contender)


def cache_key(base_url: str) -> str:
    return f"client_credentials:{CLIENT_ID}@{base_url}/oauth/token"


# -- the worker process -----------------------------------------------------------------


def worker(contender: str, where: dict[str, str], base_url: str, threads: int,
           rounds: int, offset: Any, barrier: Any, results: Any) -> None:
    try:
        conns = [Connection(base_url) for _ in range(threads)]
        if contender == "tutorial":
            manager: Any = TutorialTokenManager(where["tutorial"])
        else:
            grant = surefoot.oauth.ClientCredentials(
                token_url=f"{base_url}/oauth/token", client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET)
            manager = surefoot.oauth.TokenCache(grant, store=make_store(contender, where),
                                          clock=OffsetClock(offset), hook=lambda e: None)
            manager.peek()  # loads the stored (expired) token, as a running worker has it
    except BaseException:
        results.put({"error": traceback.format_exc()})
        barrier.abort()
        raise
    for _ in range(rounds):
        barrier.wait(120)  # the parent has expired the token
        outcome = storm(contender, manager, conns)
        results.put(outcome)
        barrier.wait(120)  # everyone is done: the parent counts
    for conn in conns:
        conn.conn.close()


def storm(contender: str, manager: Any, conns: list[Connection]) -> dict[str, Any]:
    n = len(conns)
    start = threading.Barrier(n)
    latencies: list[float] = [0.0] * n
    statuses: list[int] = [0] * n
    unauthorized = [0] * n
    errors: list[str] = []

    def call(i: int) -> None:
        conn = conns[i]
        try:
            start.wait(60)
            t0 = time.perf_counter()
            if contender == "tutorial":
                status = conn.protected(manager.get(conn))
                if status == 401:
                    unauthorized[i] += 1
                    manager.invalidate()
                    status = conn.protected(manager.get(conn))
            else:
                deadline = time.monotonic() + DEADLINE
                token = manager.get(deadline=deadline)
                status = conn.protected(token.access_token)
                if status == 401:
                    unauthorized[i] += 1
                    token = manager.refresh_if_current(token, deadline=deadline)
                    status = conn.protected(token.access_token)
            latencies[i] = time.perf_counter() - t0
            statuses[i] = status
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])

    pool = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(DEADLINE * 2)
    return {"latencies": latencies, "statuses": statuses,
            "unauthorized": sum(unauthorized), "errors": errors}


# -- the parent -------------------------------------------------------------------------


def sandbox_post(base_url: str, path: str) -> None:
    conn = Connection(base_url)
    try:
        status, _ = conn.request("POST", path, {"Content-Length": "0"})
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    finally:
        conn.conn.close()


def tokens_issued(base_url: str) -> int:
    conn = Connection(base_url)
    try:
        _, body = conn.request("GET", "/stats", {})
    finally:
        conn.conn.close()
    return int(json.loads(body)["tokens_issued"])


def seed_expired(contender: str, where: dict[str, str], base_url: str) -> None:
    """The shared state holds an expired token when the processes start."""
    past = time.time() - 60
    if contender == "tutorial":
        with open(where["tutorial"], "w", encoding="utf-8") as handle:
            json.dump({"access_token": "expired-token", "expires_at": past}, handle)
        return
    store = make_store(contender, where)
    store.save(cache_key(base_url), surefoot.oauth.Token(
        access_token="expired-token", expires_at=past, obtained_at=past - LIFETIME))


def run_contender(contender: str, where: dict[str, str], base_url: str, *, processes: int,
                  threads: int, rounds: int, log: Any) -> dict[str, Any]:
    sandbox_post(base_url, "/admin/reset")
    seed_expired(contender, where, base_url)
    ctx = multiprocessing.get_context("spawn")
    offset = ctx.Value("d", 0.0)
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(contender, where, base_url, threads, rounds,
                                                  offset, barrier, results))
             for _ in range(processes)]
    for p in procs:
        p.start()
    per_round: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            if r > 0:  # the token's lifetime is over: server side and client side
                sandbox_post(base_url, "/admin/revoke-tokens")
                offset.value = r * (LIFETIME + 5.0)
            before = tokens_issued(base_url)
            t0 = time.perf_counter()
            try:
                barrier.wait(180)
                outcomes = [results.get(timeout=180) for _ in procs]
                wall = time.perf_counter() - t0
                barrier.wait(60)
            except threading.BrokenBarrierError:
                try:
                    reason = results.get(timeout=5).get("error", "?")
                except Exception:
                    reason = "(no report)"
                raise RuntimeError(f"a {contender} worker failed:\n{reason}") from None
            failed = [o["error"] for o in outcomes if "error" in o]
            if failed:
                raise RuntimeError(f"a worker failed:\n{failed[0]}")
            issued = tokens_issued(base_url) - before
            latencies = [x for o in outcomes for x in o["latencies"]]
            statuses = [s for o in outcomes for s in o["statuses"]]
            errors = [e for o in outcomes for e in o["errors"]]
            per_round.append({
                "token_requests": issued,
                "calls": len(statuses),
                "ok": sum(1 for s in statuses if s == 200),
                "unauthorized_seen": sum(o["unauthorized"] for o in outcomes),
                "errors": len(errors),
                "error_samples": errors[:3],
                "p50_ms": 1000 * statistics.median(latencies),
                "p99_ms": 1000 * _quantile(latencies, 0.99),
                "max_ms": 1000 * max(latencies),
                "round_s": wall,
            })
            log(f"  {contender:16s} round {r + 1}: {issued:4d} token requests, "
                f"{per_round[-1]['ok']}/{len(statuses)} ok, "
                f"p99 {per_round[-1]['p99_ms']:.0f} ms")
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join(5)
    requests_ = [x["token_requests"] for x in per_round]
    calls = sum(x["calls"] for x in per_round)
    ok = sum(x["ok"] for x in per_round)
    return {
        "rounds": per_round,
        "token_requests_per_expiry_mean": statistics.fmean(requests_),
        "token_requests_per_expiry_max": max(requests_),
        "token_requests_total": sum(requests_),
        "calls": calls,
        "ok": ok,
        "ok_ratio": ok / calls,
        "unauthorized_seen": sum(x["unauthorized_seen"] for x in per_round),
        "errors": sum(x["errors"] for x in per_round),
        "p50_ms": statistics.median(x["p50_ms"] for x in per_round),
        "p99_ms_max": max(x["p99_ms"] for x in per_round),
        "max_ms": max(x["max_ms"] for x in per_round),
        "target_met": all(x == 1 for x in requests_) and ok == calls,
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def print_table(figures: dict[str, dict[str, Any]], rounds: int) -> None:
    print()
    header = (f"{'contender':16s} {'tok req/expiry':>15s} {'max':>5s} {'ok':>11s} "
              f"{'401s':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s}  target")
    print(header)
    print("-" * len(header))
    for name, f in figures.items():
        print(f"{name:16s} {f['token_requests_per_expiry_mean']:15.2f} "
              f"{f['token_requests_per_expiry_max']:5d} "
              f"{f['ok']:5d}/{f['calls']:<5d} {f['unauthorized_seen']:6d} "
              f"{f['p50_ms']:7.1f} {f['p99_ms_max']:7.1f} {f['max_ms']:7.1f}  "
              f"{'met' if f['target_met'] else 'MISSED'}")
    print(f"\n{rounds} expiries each; target: exactly 1 token request per expiry, all calls 200")


def machine_info(redis_binary: str) -> dict[str, Any]:
    redis_version = output(redis_binary, "--version", check=False)
    return {
        **source_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "surefoot": surefoot.__version__,
        "redis-py": _version("redis"),
        "redis-server": redis_version,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 expiries per contender (< 1 min)")
    parser.add_argument("--rounds", type=int, default=None, help="expiries per contender (10)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=64, help="threads per process")
    parser.add_argument("--contenders", default="",
                        help=f"comma-separated subset of {', '.join(CONTENDERS)}")
    parser.add_argument("--output", type=Path, default=RESULTS / "refresh_storm.json")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 10
    chosen = [c for c in args.contenders.split(",") if c] or list(CONTENDERS)
    unknown = [c for c in chosen if c not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contenders {unknown}")
    args.contender_list = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with RedisServer() as redis_server, SandboxProcess() as sandbox, \
            tempfile.TemporaryDirectory(prefix="refresh-storm-") as tmp:
        info = machine_info(redis_server.binary)
        print(f"surefoot at {info['commit']}" + (" (src/ modified)" if info["src_modified"]
                                                 else ""))
        print(f"python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs; "
              f"{info['redis-server']}")
        print(f"{args.processes} processes x {args.threads} threads, {args.rounds} expiries "
              "per contender\n")
        where = {
            "tutorial": os.path.join(tmp, "auth_token.json"),
            "file": os.path.join(tmp, "tokens.json"),
            "sqlite": os.path.join(tmp, "state.db"),
            "redis": redis_server.url,
        }
        figures: dict[str, dict[str, Any]] = {}
        for contender in args.contender_list:
            figures[contender] = run_contender(
                contender, where, sandbox.url, processes=args.processes,
                threads=args.threads, rounds=args.rounds, log=print)
    print_table(figures, args.rounds)
    elapsed = time.monotonic() - started
    print(f"({elapsed:.1f} s)")
    result = {
        "machine": info,
        "parameters": {
            "processes": args.processes, "threads": args.threads, "rounds": args.rounds,
            "quick": args.quick, "contenders": args.contender_list,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(elapsed, 1),
        },
        "target": "exactly 1 token request per expiry; every call answered 200",
        "results": _round(figures),
        "targets_met": {name: f["target_met"] for name, f in figures.items()
                        if name.startswith("surefoot")},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(result["targets_met"].values()) else 1


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
