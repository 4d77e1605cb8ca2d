"""``bench/quota.py --fleet``: a fleet of processes sharing ONE quota.

P processes (4) x T worker threads (16) send ``GET /limited/x?dialect=ietf`` to the
sandbox subprocess, started with ``--rate R --burst B --quota-partition global``: the
whole fleet is one client with one quota, as a real API sees one account. N requests in
all; process ``p`` does its share (N/P), taken from a counter of its own by its T threads.
The processes are ``spawn``-ed, build their client, then all start together (a barrier).

Clients, side by side in one run, one after another against the same sandbox (reset
before each) and the same ``redis-server`` (flushed before each):

* ``surefoot_redis``: every process has a ``Pacer(PacingPolicy(), store=RedisStore(url))``:
  one shared limiter (GCRA slots, the quota learned from the RateLimit headers, pauses)
  and one retry budget;
* ``surefoot_sqlite``: the same through ``SQLiteStore(path)`` (a new file per run);
* ``surefoot_unshared``: each process with its own in-memory ``PacingPolicy()`` (what a fleet
  gets without a store: every process paces itself at the full quota);
* ``tenacity``: quota.py's tenacity client (``_quota_clients``), one per process;
* ``pyrate_redis``: quota.py's naive loop with a blocking ``Limiter.try_acquire`` before
  every attempt, on pyrate-limiter's token bucket with a Redis state store,
  ``StateBucket([Rate(1, 1000/R ms)], algorithm=TokenBucket(), store=RedisStateStore(...))``
  shared by the fleet;
* ``pyrate_redis_window``: the same on its sliding-window-log ``RedisBucket``.

Every process timestamps every attempt and every logical request; the sandbox's
``/stats`` counts the attempts and 429s (in all, and per process by ``X-Client-Id``).

The clients and the recorder are quota.py's (``_quota_clients``), and so are the bounds,
metrics, table and plot (``_quota_metrics``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyrate_limiter
import redis

import surefoot
from _env import output
from _env import version as _version
from _quota_clients import (
    NaiveClient,
    Recorder,
    Setup,
    SurefootClient,
    TenacityClient,
    join_all,
    pyrate_rate,
    safe_request,
)
from _quota_metrics import (
    OK,
    QUICK_BOX,
    ClosedScenario,
    Run,
    closed_metrics,
    meets,
    plot,
    print_closed_rows,
    print_failures,
    round_figures,
)
from _sandbox_process import QuotaSandbox, SandboxProcess

FLEET_CLIENTS = (
    "surefoot_redis",
    "surefoot_sqlite",
    "surefoot_unshared",
    "tenacity",
    "pyrate_redis",
    "pyrate_redis_window",
)
TARGET_CLIENT = "surefoot_redis"
TARGETS = {
    "efficiency": (">=", 0.97),
    "429s_per_N": ("<=", 0.005),
    "attempts_per_N": ("<=", 1.005),
    "jain": (">=", 0.95),
}
PROCESSES = 4
THREADS = 16
START_TIMEOUT = 120.0  # for every process to build its client and reach the barrier


@dataclass(frozen=True)
class FleetScenario:
    n: int
    processes: int
    threads: int
    rate: float
    burst: int
    dialect: str = "ietf"
    deadline: float = 120.0
    #: ``--quick``: no request is started after this many seconds (None: all N)
    time_box: float | None = None
    #: the request's path (None: the sandbox's ``limited/x?dialect=...``)
    path: str | None = None

    @property
    def url_path(self) -> str:
        return self.path if self.path is not None else f"limited/x?dialect={self.dialect}"

    @property
    def workers(self) -> int:
        return self.processes * self.threads

    @property
    def ideal_s(self) -> float:
        return (self.n - self.burst) / self.rate

    @property
    def box(self) -> float:
        """No request is started after this (quota.py's bound: 10x ideal + 30 s)."""
        return self.closed().box

    def share(self, process: int) -> int:
        base, extra = divmod(self.n, self.processes)
        return base + (process < extra)

    def closed(self) -> ClosedScenario:
        """The same run seen as quota.py's closed loop (for its metrics and plot)."""
        return ClosedScenario(name="fleet", dialect=self.dialect, n=self.n,
                              workers=self.workers, rate=self.rate, burst=self.burst,
                              deadline=self.deadline, time_box=self.time_box)


def fleet_scenario(*, quick: bool) -> FleetScenario:
    n, rate, burst = (600 if quick else 3000), 200.0, 10
    return FleetScenario(
        n=n, processes=PROCESSES, threads=THREADS, rate=rate, burst=burst,
        time_box=round(QUICK_BOX * (n - burst) / rate, 3) if quick else None,
    )


# -- the clients (built in each process) ---------------------------------------------------


class PyrateRedisClient(NaiveClient):
    """quota.py's ``PyrateClient`` with its bucket in Redis, shared by the fleet."""

    def __init__(self, name: str, setup: Setup, redis_url: str) -> None:
        super().__init__(setup)
        self.name = name
        self.redis = redis.Redis.from_url(redis_url)
        rate = pyrate_rate(setup.rate)
        bucket: pyrate_limiter.AbstractBucket
        if name == "pyrate_redis":  # token bucket (GCRA), its state in a Redis hash
            store = pyrate_limiter.RedisStateStore(self.redis, key="pyrate:fleet")
            bucket = pyrate_limiter.StateBucket(
                [rate], algorithm=pyrate_limiter.TokenBucket(), store=store
            )
        else:  # sliding-window log in a Redis sorted set
            bucket = pyrate_limiter.RedisBucket.init([rate], self.redis, "pyrate:fleet-window")
        self.limiter = pyrate_limiter.Limiter(bucket)

    def before_attempt(self, deadline_at: float) -> bool:
        left = deadline_at - time.monotonic()
        return left > 0 and bool(self.limiter.try_acquire("quota", timeout=left))

    def close(self) -> None:
        super().close()
        self.limiter.close()
        self.redis.close()


class FleetSurefootClient(SurefootClient):
    """quota.py's ``SurefootClient`` on a ``Pacer`` shared through a store."""

    def __init__(self, name: str, setup: Setup, store: Any) -> None:
        self.store = store
        pacer = surefoot.Pacer(surefoot.PacingPolicy(), store=store)
        super().__init__(name, setup, pacer)  # type: ignore[arg-type]

    def close(self) -> None:
        super().close()
        self.store.close()


def _build(name: str, setup: Setup, redis_url: str, sqlite_path: str) -> Any:
    if name == "surefoot_redis":
        return FleetSurefootClient(name, setup, surefoot.stores.RedisStore(redis_url))
    if name == "surefoot_sqlite":
        return FleetSurefootClient(name, setup, surefoot.stores.SQLiteStore(sqlite_path))
    if name == "surefoot_unshared":
        return SurefootClient(name, setup, surefoot.PacingPolicy())
    if name == "tenacity":
        return TenacityClient(setup)
    if name in ("pyrate_redis", "pyrate_redis_window"):
        return PyrateRedisClient(name, setup, redis_url)
    raise ValueError(f"unknown fleet client {name!r}")


def _session_of(client: Any) -> Any:
    inner = getattr(client, "client", None)
    return inner.session if inner is not None else client.session


# -- one process of the fleet --------------------------------------------------------------


def _process_main(
    index: int,
    name: str,
    scen: FleetScenario,
    base_url: str,
    redis_url: str,
    sqlite_path: str,
    barrier: Any,
    results: Any,
) -> None:
    """Build the client, wait for the others, run this process's share, report."""
    client = None
    if os.environ.get("SUREFOOT_BENCH_LOG"):  # debugging: surefoot's own log, per process
        import logging

        logging.basicConfig(level=os.environ["SUREFOOT_BENCH_LOG"],
                            format=f"p{index} %(relativeCreated)d %(levelname)s %(message)s")
    try:
        recorder = Recorder()
        setup = Setup(
            base_url=base_url, path=scen.url_path, recorder=recorder,
            pool=scen.threads, deadline=scen.deadline, rate=scen.rate, unknown=False,
            outage=False,
        )
        client = _build(name, setup, redis_url, sqlite_path)
        _session_of(client).headers["X-Client-Id"] = f"p{index}"  # per-process /stats
        barrier.wait(timeout=START_TIMEOUT)
        results.put(_run_share(index, client, scen, recorder))
    except BaseException:
        with contextlib.suppress(Exception):
            barrier.abort()  # the others must not wait for this one
        results.put({"process": index, "error": traceback.format_exc()})
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _run_share(index: int, client: Any, scen: FleetScenario, recorder: Recorder) -> dict[str, Any]:
    share = scen.share(index)
    lock = threading.Lock()
    taken = [0]
    stop = threading.Event()
    requests_done: list[tuple[float, float, str, int]] = []

    def worker(worker_id: int) -> None:
        recorder.bind(worker_id)
        while not stop.is_set():
            with lock:
                if taken[0] >= share:
                    return
                taken[0] += 1
            started = time.monotonic() - recorder.t0
            verdict = safe_request(client)
            ended = time.monotonic() - recorder.t0
            with lock:
                requests_done.append((started, ended, verdict, worker_id))

    threads = [
        threading.Thread(target=worker, args=(index * scen.threads + i,), daemon=True,
                         name=f"fleet-{index}-{i}")
        for i in range(scen.threads)
    ]
    recorder.start()
    for thread in threads:
        thread.start()
    cut_at = None
    unfinished = 0
    if join_all(threads, recorder.t0 + scen.box):
        stop.set()
        cut_at = scen.box
        unfinished = join_all(threads, time.monotonic() + scen.deadline + 30)
    with lock:
        return {
            "process": index,
            "t0": recorder.t0,
            "requests": list(requests_done),
            "attempts": list(recorder.attempts),
            "started": taken[0],
            "unfinished": unfinished,
            "cut_at": cut_at,
        }


# -- the parent ----------------------------------------------------------------------------


def run_fleet_client(
    name: str, scen: FleetScenario, sandbox: SandboxProcess, redis_url: str, workdir: str
) -> Run:
    """Start the fleet for one client, wait for it, merge what its processes did
    (``sandbox``: the server subprocess, the sandbox or the matrix's model server)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(scen.processes + 1)
    results = ctx.Queue()
    sqlite_path = os.path.join(workdir, f"{name}.db")
    processes = [
        ctx.Process(target=_process_main, name=f"fleet-{name}-{i}",
                    args=(i, name, scen, sandbox.url, redis_url, sqlite_path, barrier, results))
        for i in range(scen.processes)
    ]
    for process in processes:
        process.start()
    try:
        with contextlib.suppress(threading.BrokenBarrierError):  # a process failed: its
            barrier.wait(timeout=START_TIMEOUT)  # error is in the queue
        reports: list[dict[str, Any]] = []
        give_up = time.monotonic() + START_TIMEOUT + scen.box + scen.deadline + 60
        while len(reports) < scen.processes:
            try:
                reports.append(results.get(timeout=max(0.1, give_up - time.monotonic())))
            except queue.Empty:
                raise RuntimeError(f"{name}: {scen.processes - len(reports)} processes did not "
                                   "report") from None
            if "error" in reports[-1]:
                raise RuntimeError(f"{name}: process {reports[-1]['process']} failed:\n"
                                   + reports[-1]["error"])
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    # One timeline: every process's times re-based on the first process's start (one
    # CLOCK_MONOTONIC for all processes of the host).
    t0 = min(r["t0"] for r in reports)
    run = Run(name)
    for r in sorted(reports, key=lambda r: r["process"]):
        shift = r["t0"] - t0
        run.requests.extend((s + shift, e + shift, v, w) for s, e, v, w in r["requests"])
        run.attempts.extend([t + shift, status, w] for t, status, w in r["attempts"])
        run.started += r["started"]
        run.unfinished += r["unfinished"]
        if r["cut_at"] is not None:
            run.cut_at = r["cut_at"]
    run.requests.sort()
    run.attempts.sort(key=lambda a: a[0])
    return run


def fleet_metrics(run: Run, scen: FleetScenario) -> dict[str, Any]:
    metrics = closed_metrics(run, scen.closed())
    ok = sum(1 for r in run.requests if r[2] == OK)
    if not metrics["time_boxed"] and metrics["elapsed_s"] and ok < scen.n:
        # quota.py divides the ideal time of all N by the time to the last completion; a
        # request that failed (say, its retry refused by the retry budget) would then
        # count as done: the ideal time of the successes only.
        metrics["efficiency"] = max(ok - scen.burst, 0) / scen.rate / metrics["elapsed_s"]
    clients = run.stats.get("clients", {})
    metrics["per_process"] = {
        f"p{i}": {
            "ok": clients.get(f"p{i}", {}).get("ok", 0),
            "429s": clients.get(f"p{i}", {}).get("429s", 0),
            "completions": sum(1 for r in run.requests
                               if r[2] == OK and r[3] // scen.threads == i),
        }
        for i in range(scen.processes)
    }
    return metrics


def print_table(scen: FleetScenario, figures: dict[str, dict[str, Any]]) -> None:
    print(f"\nfleet: {scen.processes} processes x {scen.threads} threads share one quota, "
          f"dialect={scen.dialect}, N={scen.n}, R={scen.rate:g}/s, B={scen.burst}, "
          f"ideal {scen.ideal_s:.2f} s")
    print_closed_rows(figures, scen.box)
    print_failures(figures)


def _redis_server_version() -> str | None:
    binary = os.environ.get("SUREFOOT_REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        return None
    out = output(binary, "--version")
    if out is None:
        return None
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out or None


def main(args: Any, info: dict[str, Any]) -> int:
    """``quota.py --fleet`` (``info``: quota.py's machine_info, already printed)."""
    from surefoot.sandbox import RedisServer

    scen = fleet_scenario(quick=args.quick)
    clients = [c for c in FLEET_CLIENTS if not args.client_list or c in args.client_list]
    info = {**info, "redis": _version("redis"), "redis-server": _redis_server_version()}
    print(f"redis-py {info['redis']}, redis-server {info['redis-server']}")
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs: dict[str, Run] = {}
    workdir = tempfile.mkdtemp(prefix="surefoot-fleet-")
    sandbox = QuotaSandbox(scen.rate, scen.burst)
    sandbox.options += ["--quota-partition", "global"]
    try:
        with RedisServer() as server, sandbox:
            admin = redis.Redis.from_url(server.url)
            print(f"\n== fleet ({', '.join(clients)})")
            print(f"sandbox (subprocess) at {sandbox.url}, rate {scen.rate:g}/s, burst "
                  f"{scen.burst}, one global quota; redis-server at {server.url}")
            for name in clients:
                sandbox.reset()
                admin.flushall()
                wall = time.monotonic()
                run = run_fleet_client(name, scen, sandbox, server.url, workdir)
                run.stats = sandbox.stats()
                print(f"  {name:<20} done in {time.monotonic() - wall:5.1f} s"
                      + (f"  ({run.unfinished} unfinished)" if run.unfinished else ""))
                runs[name] = run
            admin.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures = {c: fleet_metrics(run, scen) for c, run in runs.items()}
    print_table(scen, figures)
    checks = {c: meets(TARGETS, figures[c]) for c in figures if c == TARGET_CLIENT}
    for client, check in checks.items():
        verdicts = ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in check.items())
        print(f"  targets ({client}): {verdicts}")
    png = output.with_suffix(".png")
    plot(scen.closed(), runs, png)
    print(f"wrote {png}")
    result: dict[str, Any] = {name: round_figures(m) for name, m in figures.items()}
    result["parameters"] = {
        **asdict(scen),
        "workers": scen.workers,
        "ideal_s": scen.ideal_s,
        "quota_partition": "global",
        "quick": args.quick,
        "commit": info["commit"],
        "src_modified": info["src_modified"],
        "clients": clients,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "plot": png.name,
    }
    result["machine"] = info
    result["targets"] = {m: list(v) for m, v in TARGETS.items()}
    result["targets_met"] = checks
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {output} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover - run through quota.py --fleet
    sys.exit("run: .venv/bin/python bench/quota.py --fleet [--quick]")
