"""Throughput of surefoot under concurrency: 64 threads (or 64 asyncio tasks) sharing one
client, against an unthrottled loopback server, compared with the bare transport.

Each contender is one client (``requests.Session``, ``httpx.Client`` or
``httpx.AsyncClient``, bare or surefoot's) shared by 64 threads (tasks for the async
ones), each sending GETs in a loop for a fixed time. The server is
``bench/_raw_server.py`` (raw asyncio, no surefoot code) in a subprocess, answering
``/quota`` with quota headers announcing far more than is sent: the surefoot clients
learn the quota and pace with it, but never have to wait. Rounds run every contender once
in a shuffled order; a contender's ratio is the median across rounds of its throughput
over its bare stack's in the same round.

    .venv/bin/python bench/throughput.py [--seconds S] [--rounds R] [--quick]

Writes ``bench/results/throughput.json`` (see ``bench/README.md``). Exits with status 1
when any request failed (an exception or a status other than 200).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import requests
import requests.adapters

import surefoot
import surefoot.httpx
from _env import machine_info, source_state
from _sandbox_process import RawServerProcess
from _stats import quartiles
from surefoot.pacing import BreakerPolicy

RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"
#: Threads (or tasks) sharing one client.
CONCURRENCY = 64
#: Connections each client may keep open: one per worker, so none is ever refused a
#: pooled connection (requests' default pool keeps 10, httpx's keeps 20 alive).
POOL = CONCURRENCY
PATH = "/quota"
#: Before each run every worker sends one request here, all at once: the server answers it
#: late (``_raw_server.SLOW``), so each needs a connection of its own and every pool starts
#: the run with one open connection per worker. Without it, the number of connections an
#: httpx pool holds depends on the run's history (idle ones expire after 5 s; a pool grows
#: only when a request finds none idle), and httpcore's pool bookkeeping, which walks
#: every connection for every request, costs several times more with 64 than with 15.
PRIME_PATH = "/slow"
#: Issue 14's target: with every policy on, at least this fraction of the bare stack's rate.
TARGET = 0.95
STACKS = ("requests", "httpx_sync", "httpx_async")
#: The headline keys: (stack, kind) -> key.
RATIO_KEYS = {
    ("requests", "defaults"): "ratio_requests",
    ("httpx_sync", "defaults"): "ratio_httpx_sync",
    ("httpx_async", "defaults"): "ratio_httpx_async",
    ("requests", "all"): "ratio_requests_all",
    ("httpx_sync", "all"): "ratio_httpx_sync_all",
    ("httpx_async", "all"): "ratio_httpx_async_all",
}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- clients -------------------------------------------------------------------------------


def _no_hook(event: surefoot.Event) -> None:
    """A hook that ignores every event."""


def every_policy() -> dict[str, Any]:
    """The options of a surefoot client with every policy on (a fresh pacer each call), as
    in ``overhead.py``: pacing that learns the quota from the headers, with its retry
    budget (on by default) and a circuit breaker (off by default: turned on here), HMAC
    signing (the server does not verify), a hook that does nothing, the default
    ``RetryPolicy``."""
    return {
        "pacing": surefoot.Pacer(surefoot.PacingPolicy(breaker=BreakerPolicy())),
        "auth": surefoot.SigningAuth.hmac("demo-key", "demo-secret"),
        "hook": _no_hook,
    }


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)


def bare_requests() -> requests.Session:
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=POOL))
    return session


def surefoot_requests(base_url: str, **options: Any) -> surefoot.Client:
    """``surefoot.Client(base_url, **options)`` with a pool of ``POOL`` connections."""
    return surefoot.Client(base_url, pool_maxsize=POOL, **options)


def build_contenders(base_url: str) -> list[Contender]:
    """All contenders, in reporting order: per stack, bare, surefoot's defaults and
    surefoot with every policy on."""
    url = f"{base_url}{PATH}"
    sf = surefoot.httpx
    return [
        ThreadedContender("bare_requests", "requests", "bare", url, bare_requests),
        ThreadedContender("surefoot_requests", "requests", "defaults", PATH,
                          lambda: surefoot_requests(base_url)),
        ThreadedContender("surefoot_requests_all", "requests", "all", PATH,
                          lambda: surefoot_requests(base_url, **every_policy())),
        ThreadedContender("bare_httpx_sync", "httpx_sync", "bare", url,
                          lambda: httpx.Client(limits=_limits())),
        ThreadedContender("surefoot_httpx_sync", "httpx_sync", "defaults", PATH,
                          lambda: sf.Client(base_url,
                                            transport=httpx.HTTPTransport(limits=_limits()))),
        ThreadedContender("surefoot_httpx_sync_all", "httpx_sync", "all", PATH,
                          lambda: sf.Client(base_url,
                                            transport=httpx.HTTPTransport(limits=_limits()),
                                            **every_policy())),
        AsyncContender("bare_httpx_async", "httpx_async", "bare", url,
                       lambda: httpx.AsyncClient(limits=_limits())),
        AsyncContender("surefoot_httpx_async", "httpx_async", "defaults", PATH,
                       lambda: sf.AsyncClient(
                           base_url, transport=httpx.AsyncHTTPTransport(limits=_limits()))),
        AsyncContender("surefoot_httpx_async_all", "httpx_async", "all", PATH,
                       lambda: sf.AsyncClient(
                           base_url, transport=httpx.AsyncHTTPTransport(limits=_limits()),
                           **every_policy())),
    ]


# -- running -------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run of a contender: completed requests, failures, and CPU use."""

    ok: int
    errors: int
    seconds: float
    #: CPU seconds of this process (the client) and of the server, per second of the run.
    client_cpu: float
    server_cpu: float | None
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (``None``: not readable)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class _Meter:
    """Wall clock and the CPU time of the client (this process) and the server."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.server = _process_cpu(server_pid) if server_pid else None
        self.client = time.process_time()
        self.wall = time.perf_counter()

    def stop(self, ok: int, errors: int, first_error: str) -> Run:
        wall = time.perf_counter() - self.wall
        client = (time.process_time() - self.client) / wall
        server_now = _process_cpu(self.server_pid) if self.server_pid else None
        server = None
        if server_now is not None and self.server is not None:
            server = (server_now - self.server) / wall
        return Run(ok, errors, wall, client, server, first_error)


@dataclass
class _Tally:
    """What the workers of one run counted (each worker adds its own totals once)."""

    ok: int = 0
    errors: int = 0
    first_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ok: int, errors: int, first_error: str) -> None:
        with self.lock:
            self.ok += ok
            self.errors += errors
            self.first_error = self.first_error or first_error


class _Count:
    """One worker's own counts (no lock: added to the run's :class:`_Tally` once)."""

    __slots__ = ("errors", "first", "ok")

    def __init__(self) -> None:
        self.ok = self.errors = 0
        self.first = ""

    def answered(self, status: int, prefix: str = "") -> None:
        if status == 200:
            self.ok += 1
        else:
            self.errors += 1
            self.first = self.first or f"{prefix}HTTP {status}"

    def failed(self, exc: Exception, prefix: str = "") -> None:
        self.errors += 1
        self.first = self.first or f"{prefix}{type(exc).__name__}: {exc}"


def _prime(target: str) -> str:
    """The priming request's target: ``target`` with ``PATH`` replaced by ``PRIME_PATH``."""
    assert target.endswith(PATH)
    return target[: -len(PATH)] + PRIME_PATH


@dataclass
class ThreadedContender:
    """One sync client from ``factory``, shared by ``workers`` threads each doing
    ``client.get(target)`` in a loop until the run's time is up."""

    name: str
    stack: str
    kind: str  # "bare", "defaults" or "all"
    target: str
    factory: Callable[[], Any]
    client: Any = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        self.client = self.factory()
        response = self.client.get(self.target)
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status_code}")

    def run(self, seconds: float, workers: int, server_pid: int | None) -> Run:
        get, target = self.client.get, self.target
        tally = _Tally()
        primed, start = threading.Barrier(workers + 1), threading.Barrier(workers + 1)
        deadline = 0.0

        prime = _prime(target)

        def work() -> None:
            count = _Count()
            clock = time.perf_counter
            try:
                status = get(prime).status_code
                if status != 200:  # (a primed worker counts nothing)
                    count.answered(status, "priming: ")
            except Exception as exc:
                count.failed(exc, "priming: ")
            primed.wait()
            start.wait()
            while clock() < deadline:
                try:
                    status = get(target).status_code
                except Exception as exc:
                    count.failed(exc)
                    continue
                count.answered(status)
            tally.add(count.ok, count.errors, count.first)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        primed.wait()  # every worker has had its priming answer
        meter = _Meter(server_pid)
        deadline = time.perf_counter() + seconds
        start.wait()
        for thread in threads:
            thread.join()
        return meter.stop(tally.ok, tally.errors, tally.first_error)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


@dataclass
class AsyncContender:
    """One async client from ``factory`` (built in the contender's own event loop),
    shared by ``workers`` tasks each awaiting ``client.get(target)`` in a loop until the
    run's time is up."""

    name: str
    stack: str
    kind: str
    target: str
    factory: Callable[[], Any]
    client: Any = field(default=None, init=False, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()

        async def build() -> None:
            self.client = self.factory()
            response = await self.client.get(self.target)
            if response.status_code != 200:
                raise RuntimeError(f"{self.name}: HTTP {response.status_code}")

        self.loop.run_until_complete(build())

    async def _run(self, seconds: float, workers: int, server_pid: int | None) -> Run:
        get, target = self.client.get, self.target
        tally = _Tally()
        clock = time.perf_counter
        deadline = 0.0

        async def work() -> None:
            count = _Count()
            while clock() < deadline:
                try:
                    status = (await get(target)).status_code
                except Exception as exc:
                    count.failed(exc)
                    continue
                count.answered(status)
            tally.add(count.ok, count.errors, count.first)

        primed = await asyncio.gather(*(get(_prime(target)) for _ in range(workers)),
                                      return_exceptions=True)
        for response in primed:
            if isinstance(response, BaseException) or response.status_code != 200:
                tally.add(0, 1, f"priming: {response!r}")
        meter = _Meter(server_pid)
        deadline = clock() + seconds
        await asyncio.gather(*(work() for _ in range(workers)))
        return meter.stop(tally.ok, tally.errors, tally.first_error)

    def run(self, seconds: float, workers: int, server_pid: int | None) -> Run:
        assert self.loop is not None
        run: Run = self.loop.run_until_complete(self._run(seconds, workers, server_pid))
        return run

    def close(self) -> None:
        if self.loop is None:
            return
        try:
            if self.client is not None:
                self.loop.run_until_complete(self.client.aclose())
        finally:
            self.client = None
            self.loop.close()
            self.loop = None


Contender = ThreadedContender | AsyncContender


def measure(
    contenders: list[Contender],
    *,
    seconds: float,
    warmup: float,
    rounds: int,
    rng: random.Random,
    server_pid: int | None,
) -> dict[str, list[Run]]:
    """Each contender's runs, one per round, in a shuffled order per round."""
    if warmup > 0:
        for contender in contenders:  # warms the code paths at full concurrency
            contender.run(warmup, CONCURRENCY, server_pid)
    gc.collect()
    gc.freeze()  # later collections skip everything built so far
    runs: dict[str, list[Run]] = {c.name: [] for c in contenders}
    order = list(contenders)
    try:
        for index in range(rounds):
            rng.shuffle(order)
            for contender in order:
                gc.collect()
                run = contender.run(seconds, CONCURRENCY, server_pid)
                runs[contender.name].append(run)
            print(f"  round {index + 1}/{rounds}: "
                  + ", ".join(f"{c.name} {runs[c.name][-1].rate:,.0f}/s" for c in order),
                  flush=True)
    finally:
        gc.unfreeze()
    return runs


def scaling(
    contenders: list[Contender], seconds: float, server_pid: int | None
) -> dict[str, dict[int, dict[str, float | None]]]:
    """The bare clients' rate with 1 to ``CONCURRENCY`` workers, and what the client and
    the server spent: shows which side limits the rate."""
    out: dict[str, dict[int, dict[str, float | None]]] = {}
    for contender in contenders:
        if contender.kind != "bare":
            continue
        out[contender.name] = {}
        for workers in (1, 4, 16, CONCURRENCY):
            run = contender.run(seconds, workers, server_pid)
            out[contender.name][workers] = {
                "requests_per_s": round(run.rate, 1),
                "client_cpu": round(run.client_cpu, 3),
                "server_cpu": None if run.server_cpu is None else round(run.server_cpu, 3),
                "errors": run.errors,
            }
    return out


# -- reporting -----------------------------------------------------------------------------


def summarize(contenders: list[Contender], runs: dict[str, list[Run]]) -> dict[str, Any]:
    bare = {c.stack: c.name for c in contenders if c.kind == "bare"}
    out: dict[str, Any] = {}
    for contender in contenders:
        mine, base = runs[contender.name], runs[bare[contender.stack]]
        ratios = [m.rate / b.rate for m, b in zip(mine, base, strict=True)]
        server = [r.server_cpu for r in mine if r.server_cpu is not None]
        out[contender.name] = {
            "stack": contender.stack,
            "kind": contender.kind,
            "baseline": bare[contender.stack],
            "requests_per_s": round(statistics.median(r.rate for r in mine), 1),
            "ratio_vs_bare": round(statistics.median(ratios), 4),
            "ratio_vs_bare_iqr": [round(x, 4) for x in quartiles(ratios)],
            "requests": sum(r.ok for r in mine),
            "errors": sum(r.errors for r in mine),
            "first_error": next((r.first_error for r in mine if r.first_error), ""),
            "client_cpu": round(statistics.median(r.client_cpu for r in mine), 3),
            "server_cpu": round(statistics.median(server), 3) if server else None,
            "per_round_requests_per_s": [round(r.rate, 1) for r in mine],
        }
    return out


def print_table(figures: dict[str, Any]) -> None:
    header = (
        f"{'contender':<26} {'req/s':>8} {'x bare':>7} {'x bare IQR':>13} {'errors':>6} "
        f"{'client CPU':>10} {'server CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, f in figures.items():
        low, high = f["ratio_vs_bare_iqr"]
        server = "-" if f["server_cpu"] is None else f"{f['server_cpu']:.0%}"
        ratio = "(bare)" if f["kind"] == "bare" else f"{f['ratio_vs_bare']:.3f}"
        iqr = "" if f["kind"] == "bare" else f"{low:.3f}-{high:.3f}"
        print(
            f"{name:<26} {f['requests_per_s']:>8,.0f} {ratio:>7} {iqr:>13} {f['errors']:>6} "
            f"{f['client_cpu']:>10.0%} {server:>10}"
        )


def print_scaling(table: dict[str, dict[int, dict[str, float | None]]]) -> None:
    print("bare clients, 1 to 64 workers (req/s; client CPU, server CPU per second):")
    for name, rows in table.items():
        cells = []
        for workers, row in rows.items():
            server = "-" if row["server_cpu"] is None else f"{row['server_cpu']:.0%}"
            cells.append(f"{workers}: {row['requests_per_s']:,.0f} "
                         f"({row['client_cpu']:.0%}, {server})")
        print(f"  {name:<18} " + "; ".join(cells))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="seconds per contender per round (3)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds (8)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of warm-up per contender (1; 0: none)")
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure the bare clients at 1, 4, 16, 64 workers "
                             "(default: on, off with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 rounds of 0.5 s, no warm-up, no scaling (under 30 s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON path ({RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.warmup = 0.5, 2, 0.0
    if args.scaling is None:
        args.scaling = not args.quick
    if args.seconds <= 0 or args.rounds < 1 or args.warmup < 0:
        parser.error("--seconds must be positive, --rounds at least 1, --warmup 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info("requests", "urllib3", "httpx")
    print(
        f"python {info['python']} ({info['implementation']}) on {info['platform']}, "
        f"{info['cpu_count']} CPUs; requests {info['requests']}, urllib3 {info['urllib3']}, "
        f"httpx {info['httpx']}, surefoot {info['surefoot']}"
    )
    print(f"{CONCURRENCY} threads (or tasks) sharing one client, GET {PATH}; {args.rounds} "
          f"rounds x {args.seconds:g} s per contender, shuffled order per round")
    with RawServerProcess() as server:
        pid = server.process.pid if server.process is not None else None
        print(f"raw server (subprocess) at {server.url}")
        contenders = build_contenders(server.url)
        ready: list[Contender] = []
        try:
            for contender in contenders:
                contender.setup()
                ready.append(contender)
            runs = measure(ready, seconds=args.seconds, warmup=args.warmup,
                           rounds=args.rounds, rng=random.Random(args.seed), server_pid=pid)
            scaled = scaling(ready, min(args.seconds, 2.0), pid) if args.scaling else {}
        finally:
            for contender in ready:
                contender.close()
    figures = summarize(contenders, runs)
    by_name = {c.name: c for c in contenders}
    result: dict[str, Any] = {
        key: figures[name]["ratio_vs_bare"]
        for name, c in by_name.items()
        if (key := RATIO_KEYS.get((c.stack, c.kind)))
    }
    result["targets"] = {
        key: {"value": result[key], "limit": TARGET, "met": result[key] >= TARGET}
        for key in result
        if key.endswith("_all")
    }
    errors = sum(f["errors"] for f in figures.values())
    result.update(
        {
            "errors": errors,
            "contenders": figures,
            "scaling": scaled,
            "concurrency": CONCURRENCY,
            "pool": POOL,
            "path": PATH,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "python": info["python"],
            "cpu_count": info["cpu_count"],
            "machine": info,
            "source": source_state(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    print()
    print_table(figures)
    if scaled:
        print()
        print_scaling(scaled)
    print()
    for key, target in result["targets"].items():
        name = next(n for n, c in by_name.items() if RATIO_KEYS.get((c.stack, c.kind)) == key)
        low, high = figures[name]["ratio_vs_bare_iqr"]
        verdict = "met" if target["met"] else "MISSED"
        print(f"{key:<22} {target['value']:.3f} (IQR {low:.3f}-{high:.3f})  "
              f"target ≥ {TARGET:.2f}: {verdict}")
    print(f"errors: {errors}" + ("" if not errors else "  (must be 0: "
          + "; ".join(f"{n}: {f['first_error']}" for n, f in figures.items() if f["errors"])
          + ")"))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
