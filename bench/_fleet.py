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
from _hosts import (
    REAL_CLOCKS,
    BoundQuotaSandbox,
    HostsEnv,
    Launchers,
    LogTally,
    RedisCosts,
    clock_skew,
    cost_figures,
    machine_busy,
    merge_tallies,
    process_cpu,
    proxy_figures,
    spread,
    surefoot_imported_before_skew,
)
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
    fmt,
    meets,
    plot,
    print_closed_rows,
    print_failures,
    round_figures,
)
from _sandbox_process import QuotaSandbox, SandboxProcess
from _stats import jain

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


def fleet_scenario(*, quick: bool, processes: int | None = None, threads: int | None = None,
                   rate: float | None = None, burst: int | None = None,
                   n: int | None = None) -> FleetScenario:
    """quota.py --fleet's scenario; ``None``: the default (4 x 16, R=200/s, B=10, N=3000,
    ``quick``: N=600 time-boxed)."""
    n = n if n is not None else (600 if quick else 3000)
    rate = rate if rate is not None else 200.0
    burst = burst if burst is not None else 10
    return FleetScenario(
        n=n, processes=processes or PROCESSES, threads=threads or THREADS, rate=rate,
        burst=burst, time_box=round(QUICK_BOX * (n - burst) / rate, 3) if quick else None,
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
    return merge_reports(name, reports)


def merge_reports(name: str, reports: list[dict[str, Any]]) -> Run:
    """One timeline: every process's times re-based on the first process's start (one
    CLOCK_MONOTONIC for all processes of the machine; a skewed host reports its ``t0``
    on the real clock)."""
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

    scen = fleet_scenario(quick=args.quick, processes=args.processes, threads=args.threads,
                          rate=args.rate, burst=args.burst, n=args.requests)
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
    _report(args, info, output, started, scen, runs, figures, clients, TARGETS)
    return 0


# -- the hosts mode: quota.py --fleet --hosts H ---------------------------------------------

#: The clients the hosts mode can run (SQLite needs a file all hosts share: not here).
HOSTS_CLIENTS = ("surefoot_redis", "surefoot_unshared", "pyrate_redis", "pyrate_redis_window",
                 "tenacity")
HOSTS_DEFAULT_CLIENTS = ("surefoot_redis", "surefoot_unshared", "pyrate_redis")
#: issue 16's targets, for surefoot_redis
HOSTS_TARGETS = {
    "efficiency": (">=", 0.95),
    "429s_per_N": ("<=", 0.005),
    "jain_processes": (">=", 0.95),
    "redis_round_trips_per_request": ("<=", 1.0),
    "added_latency_p99_ms": ("<=", 2.0),
}
HOSTS = 4
HOSTS_PROCESSES, HOSTS_PROCESSES_QUICK = 100, 20
HOSTS_THREADS = 2
HOSTS_RATE, HOSTS_BURST = 1000.0, 20
HOSTS_N, HOSTS_N_QUICK = 20000, 3000
#: The bench's own Redis commands (admin connection), left out of the counts.
ADMIN_COMMANDS = ("info", "flushall", "config")
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def hosts_scenario(args: Any) -> FleetScenario:
    quick = args.quick
    n = args.requests or (HOSTS_N_QUICK if quick else HOSTS_N)
    rate = args.rate if args.rate is not None else HOSTS_RATE
    burst = args.burst if args.burst is not None else HOSTS_BURST
    return FleetScenario(
        n=n,
        processes=args.processes or (HOSTS_PROCESSES_QUICK if quick else HOSTS_PROCESSES),
        threads=args.threads or HOSTS_THREADS,
        rate=rate,
        burst=burst,
        time_box=round(QUICK_BOX * (n - burst) / rate, 3) if quick else None,
    )


class _CostRecorder(Recorder):
    """quota.py's recorder; each ``ATTEMPT_DONE`` also closes the thread's Redis costs
    (everything the store did on this thread since its previous attempt ended)."""

    def __init__(self, costs: Any) -> None:
        super().__init__()
        self.costs = costs

    def __call__(self, event: surefoot.Event) -> None:
        super().__call__(event)
        if event.kind is surefoot.events.EventKind.ATTEMPT_DONE:
            self.costs.close_attempt()


def _host_process_main(
    index: int,
    name: str,
    scen_fields: dict[str, Any],
    base_url: str,
    redis_url: str,
    counters: str,
    barrier: Any,
    results: Any,
) -> None:
    """One process of a host (forked by the host's launcher, on its clock and network)."""
    from surefoot._core._clock import SystemClock

    scen = FleetScenario(**scen_fields)
    client = None
    try:
        costs = RedisCosts(counters)
        costs.install()
        tally = LogTally()
        recorder = _CostRecorder(costs)
        setup = Setup(
            base_url=base_url, path=scen.url_path, recorder=recorder,
            pool=scen.threads, deadline=scen.deadline, rate=scen.rate, unknown=False,
            outage=False,
        )
        client = _build(name, setup, redis_url, "")
        if isinstance(client, FleetSurefootClient):
            costs.wrap_state(client.client.adapter.pacer)
        _session_of(client).headers["X-Client-Id"] = f"p{index}"
        _open_redis_connections(client, scen.threads)
        barrier.wait(timeout=START_TIMEOUT)
        costs.reset()
        tally.reset()
        cpu = os.times()
        report = _run_share(index, client, scen, recorder)
        after = os.times()
        report["t0"] -= clock_skew()  # on the machine's one monotonic clock
        report.update({
            "skew": clock_skew(),
            "costs": costs.samples if isinstance(client, FleetSurefootClient) else [],
            "round_trips_client": costs.round_trips,
            "cpu_s": (after.user - cpu.user) + (after.system - cpu.system),
            # what surefoot's own clock reads, against the real one (the skew, if applied)
            "surefoot_wall_offset": SystemClock().wall() - REAL_CLOCKS["time"](),
            "netns": os.readlink("/proc/self/ns/net"),
            "surefoot_imported_before_skew": surefoot_imported_before_skew(),
            "log": {"counts": tally.counts, "samples": tally.samples},
        })
        results.put(report)
    except BaseException:
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put({"process": index, "error": traceback.format_exc()})
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _open_redis_connections(client: Any, threads: int) -> None:
    """Before the barrier, open the connections to Redis the process's ``threads``
    workers will use (a connection pool opens them on first use). Connecting (TCP
    through the host's proxy, ``HELLO``, the client's ``CLIENT SETINFO``) is paid once
    per connection, not per attempt: 200 workers paying it at the barrier at once
    made the first tenth of the attempts' Redis time, and so its p99."""
    if isinstance(client, FleetSurefootClient):
        redis_client = client.store._conn.client
    elif isinstance(client, PyrateRedisClient):
        redis_client = client.redis
    else:
        return
    pool = redis_client.connection_pool
    connections = []
    try:
        for _ in range(threads):
            try:
                connection = pool.get_connection()
            except TypeError:  # redis-py < 5.3 asks for a command name
                connection = pool.get_connection("PING")
            connections.append(connection)
            connection.send_command("PING")
            connection.read_response()
    finally:
        for connection in connections:
            pool.release(connection)


def _warm_host(base_url: str, redis_url: str) -> None:
    """In a host's launcher, before it forks its workers: build (and close, unused) a
    surefoot client and a Redis store, which import most of what surefoot loads lazily
    (~0.2 s of CPU each time here: once per host instead of once per worker)."""
    setup = Setup(base_url=base_url, path="limited/x", recorder=Recorder(), pool=1,
                  deadline=1.0, rate=1.0, unknown=False, outage=False)
    SurefootClient("warm-up", setup, surefoot.PacingPolicy()).close()
    store = surefoot.stores.RedisStore(redis_url)  # connects on first use only
    surefoot.Pacer(surefoot.PacingPolicy(), store=store)
    store.close()


def run_hosts_client(name: str, scen: FleetScenario, env: Any, base_url: str
                     ) -> tuple[Run, list[dict[str, Any]], dict[str, Any]]:
    """Start the fleet for one client over the hosts (process i on host i % H), wait for
    it, merge what its processes did; also the machine's CPU from the start (the barrier)
    to the last process's report."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(scen.processes + 1)
    results = ctx.Queue()
    fields = asdict(scen)
    jobs: list[list[tuple[Any, ...]]] = [[] for _ in env.hosts]
    for index, h in enumerate(spread(scen.processes, len(env.hosts))):
        host = env.hosts[h]
        jobs[h].append((index, name, fields, base_url, host.redis_url, host.counters,
                        barrier, results))
    launchers = Launchers(env, ("_fleet", "_host_process_main"), jobs, name=f"fleet-{name}",
                          light_main=True,
                          warm=lambda host: (("_fleet", "_warm_host"), (base_url, host.redis_url)))
    reports: list[dict[str, Any]] = []
    phase: dict[str, Any] = {}
    try:
        with contextlib.suppress(threading.BrokenBarrierError):  # a process failed: its
            barrier.wait(timeout=START_TIMEOUT)  # error is in the queue
        phase["start"], phase["t_start"] = machine_busy(), time.monotonic()
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
        phase["end"], phase["t_end"] = machine_busy(), time.monotonic()
    finally:
        launchers.stop(timeout=30.0 if len(reports) == scen.processes else 0.0)
    return merge_reports(name, reports), reports, phase


def jain_while_all_active(run: Run, scen: FleetScenario) -> tuple[float | None, float | None]:
    """Jain's index over the processes' successful requests completed before the first
    process finished its share (or the time box cut the run): each process's rate while
    all were running. Also the spread of the processes' finish times (s)."""
    last: dict[int, float] = {}
    for _, ended, _, worker in run.requests:
        process = worker // scen.threads
        last[process] = max(last.get(process, 0.0), ended)
    if not last:
        return None, None
    window = min(last.values())
    if run.cut_at is not None:
        window = min(window, run.cut_at)
    counts = [0.0] * scen.processes
    for _, ended, verdict, worker in run.requests:
        if verdict == OK and ended <= window:
            counts[worker // scen.threads] += 1
    return jain(counts), max(last.values()) - min(last.values())


def _server_snapshot(admin: Any, env: Any, sandbox: Any) -> dict[str, Any]:
    stats = admin.info("commandstats")
    commands: dict[str, int] = {}
    for key, value in stats.items():
        command = key.removeprefix("cmdstat_")
        commands[command] = int(value["calls"] if isinstance(value, dict) else value)
    cpu = admin.info("cpu")
    return {
        "commands": commands,
        "redis_cpu": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        "sandbox_cpu": process_cpu(sandbox.process.pid) if sandbox.process else None,
        "proxies_cpu": sum(process_cpu(pid) or 0.0 for pid in env.proxy_pids()),
        "proxies": env.snapshot(),
        "load_1min": os.getloadavg()[0],
        "wall": time.monotonic(),
    }


def hosts_metrics(run: Run, scen: FleetScenario, reports: list[dict[str, Any]],
                  before: dict[str, Any], after: dict[str, Any], phase: dict[str, Any]
                  ) -> dict[str, Any]:
    metrics = fleet_metrics(run, scen)
    n = max(run.started, 1)
    per_1000 = 1000 / n
    jain_p, finish_spread = jain_while_all_active(run, scen)
    deltas = {c: after["commands"].get(c, 0) - before["commands"].get(c, 0)
              for c in after["commands"]}
    own = {c: v for c, v in deltas.items() if v and c.split("|")[0] not in ADMIN_COMMANDS}
    proxies = proxy_figures(before["proxies"], after["proxies"])
    wall = after["wall"] - before["wall"]
    samples = [s for r in reports for s in r.get("costs", [])]
    client_cpu = sum(r["cpu_s"] for r in reports)
    redis_cpu = after["redis_cpu"] - before["redis_cpu"]
    sandbox_cpu = (after["sandbox_cpu"] - before["sandbox_cpu"]
                   if after["sandbox_cpu"] is not None and before["sandbox_cpu"] is not None
                   else None)
    proxies_cpu = after["proxies_cpu"] - before["proxies_cpu"]
    # the machine's CPU while the fleet ran (the barrier to the last report), in cores:
    # all of it, this benchmark's (its clients, redis-server, sandbox, proxies), the rest
    phase_s = phase["t_end"] - phase["t_start"]
    busy_cores = (phase["end"][0] - phase["start"][0]) / phase_s if phase_s > 0 else None
    own_cores = ((client_cpu + redis_cpu + (sandbox_cpu or 0.0) + proxies_cpu) / phase_s
                 if phase_s > 0 else None)
    skews = sorted({round(r["skew"], 3) for r in reports})
    offsets = [r["surefoot_wall_offset"] - r["skew"] for r in reports]
    metrics.update({
        "host_clock_skews_s": skews,
        "surefoot_clock_matches_skew": max(abs(o) for o in offsets) < 0.05,
        "surefoot_imported_before_skew": any(r["surefoot_imported_before_skew"]
                                             for r in reports),
        "network_namespaces": len({r["netns"] for r in reports}),
        # surefoot's warnings and errors in the workers (a store failing open, ...)
        "surefoot_log": merge_tallies([r["log"] for r in reports]),
        "fail_open_episodes": sum(c for r in reports for k, c in r["log"]["counts"].items()
                                  if "FAILING OPEN" in k),
        "jain_processes": jain_p,
        "process_finish_spread_s": finish_spread,
        "redis_round_trips_per_request": proxies["round_trips"] / n,
        "redis_round_trips_client_per_request":
            sum(r["round_trips_client"] for r in reports) / n,
        "redis_commands_per_request": sum(own.values()) / n,
        "redis_scripts_per_request": sum(v for c, v in own.items() if c in SCRIPT_COMMANDS) / n,
        "redis_commands": dict(sorted(own.items(), key=lambda kv: -kv[1])),
        "redis_cpu_s_per_1000": redis_cpu * per_1000,
        "client_cpu_s_per_1000": client_cpu * per_1000,
        "sandbox_cpu_s_per_1000": None if sandbox_cpu is None else sandbox_cpu * per_1000,
        "proxies_cpu_s_per_1000": proxies_cpu * per_1000,
        "redis_cpu_cores": redis_cpu / wall if wall > 0 else None,
        "sandbox_cpu_cores": None if sandbox_cpu is None or wall <= 0 else sandbox_cpu / wall,
        "machine_busy": None if busy_cores is None else busy_cores / (os.cpu_count() or 1),
        "machine_cpu_cores": busy_cores,
        "bench_cpu_cores": own_cores,
        "other_cpu_cores": None if busy_cores is None or own_cores is None
        else busy_cores - own_cores,
        "load_1min_before": before["load_1min"],
        "run_phase_s": phase_s,
        "run_wall_s": wall,
        "proxy": proxies,
        **cost_figures(samples),
    })
    return metrics


def print_hosts_table(scen: FleetScenario, env: Any, figures: dict[str, dict[str, Any]]) -> None:
    print(f"\nfleet over {len(env.hosts)} hosts: {scen.processes} processes x {scen.threads} "
          f"threads share one quota, dialect={scen.dialect}, N={scen.n}, R={scen.rate:g}/s, "
          f"B={scen.burst}, ideal {scen.ideal_s:.2f} s")
    print_closed_rows(figures, scen.box)
    print(f"\n{'client':<21} {'jainP':>6} {'RT/req':>7} {'cmd/req':>7} {'scr/req':>7} "
          f"{'redisCPU':>8} {'cliCPU':>7} {'sbxCPU':>7} {'busy':>5} {'add50':>6} {'add99':>6} "
          f"{'lat99':>6} {'set99':>6} {'rds50':>6} {'rds99':>6} {'cpu99':>6} {'call/a':>6} "
          f"{'RT/a':>5}")
    for name, m in figures.items():
        print(f"{name:<21} {fmt(m['jain_processes'], '6.3f')} "
              f"{fmt(m['redis_round_trips_per_request'], '7.2f')} "
              f"{fmt(m['redis_commands_per_request'], '7.2f')} "
              f"{fmt(m['redis_scripts_per_request'], '7.2f')} "
              f"{fmt(m['redis_cpu_s_per_1000'], '8.3f')} "
              f"{fmt(m['client_cpu_s_per_1000'], '7.2f')} "
              f"{fmt(m['sandbox_cpu_s_per_1000'], '7.3f')} {fmt(m['machine_busy'], '5.0%')} "
              f"{fmt(m.get('added_latency_p50_ms'), '6.2f')} "
              f"{fmt(m.get('added_latency_p99_ms'), '6.2f')} "
              f"{fmt(m.get('added_latency_later_p99_ms'), '6.2f')} "
              f"{fmt(m.get('added_latency_settled_p99_ms'), '6.2f')} "
              f"{fmt(m.get('redis_time_p50_ms'), '6.2f')} "
              f"{fmt(m.get('redis_time_p99_ms'), '6.2f')} "
              f"{fmt(m.get('redis_cpu_p99_ms'), '6.2f')} "
              f"{fmt(m.get('redis_calls_per_attempt'), '6.2f')} "
              f"{fmt(m.get('round_trips_per_attempt'), '5.2f')}")
    print("(jainP: Jain over the processes while all ran; RT/req: Redis round trips per "
          "request, counted by the proxies; cmd/req: INFO commandstats calls per request "
          "(script-invoked commands included); scr/req: EVAL/EVALSHA/FCALL per request; "
          "redisCPU, cliCPU, sbxCPU: CPU s per 1000 requests of redis-server, all client "
          "processes, the sandbox; busy: the machine's CPU use; add50/add99: added latency "
          "per attempt, ms (Redis time minus the proxies' hold); lat99: the same p99 over each "
          "thread's attempts after its first (which meets the fleet's cold start); set99: "
          "over the attempts that ended 5 s or more after the start; "
          "rds50/rds99: Redis time per attempt, ms; cpu99: the thread's CPU time in those "
          "calls, p99, ms; call/a, RT/a: Redis calls and round trips per attempt)")
    for name, m in figures.items():
        print(f"  {name}: CPU while it ran {fmt(m['machine_cpu_cores'], '.2f')} of "
              f"{os.cpu_count()} cores, this benchmark's {fmt(m['bench_cpu_cores'], '.2f')}"
              f" (other processes: {fmt(m['other_cpu_cores'], '.2f')})")
        print(f"  {name}: {m['network_namespaces']} network namespace(s), host clocks "
              f"{', '.join(f'{x:+g}' for x in m['host_clock_skews_s'])} s, surefoot's clock "
              + ("skewed as planned" if m["surefoot_clock_matches_skew"] else "NOT SKEWED")
              + (" (surefoot imported before the skew)" if m["surefoot_imported_before_skew"]
                 else " (skewed before surefoot was imported)"))
        p = m["proxy"]
        if p["round_trips"]:
            print(f"  {name} proxies: {p['round_trips']} round trips, one-way delay drawn "
                  f"{fmt(p['mean_nominal_one_way_ms'], '.3f')} ms, held "
                  f"{fmt(p['mean_held_one_way_ms'], '.3f')} ms on average, written late by "
                  f"p50 {fmt(p['late_p50_ms'], '.2f')} / p99 {fmt(p['late_p99_ms'], '.2f')} ms")
    for name, m in figures.items():
        for entry in list(m["surefoot_log"].values())[:3]:
            print(f"  {name} logged {entry['count']}x in {entry['processes']} processes: "
                  f"{entry['sample'][:160]}")
    print_failures(figures)


def hosts_main(args: Any, info: dict[str, Any]) -> int:
    """``quota.py --fleet --hosts H``: the fleet spread over simulated hosts (``_hosts``)."""
    from surefoot.sandbox import RedisServer

    scen = hosts_scenario(args)
    clients = [c for c in HOSTS_CLIENTS if c in (args.client_list or HOSTS_DEFAULT_CLIENTS)]
    info = {**info, "redis": _version("redis"), "redis-server": _redis_server_version(),
            "surefoot_path": os.path.dirname(surefoot.__file__)}
    print(f"redis-py {info['redis']}, redis-server {info['redis-server']}; surefoot from "
          f"{info['surefoot_path']}")
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs: dict[str, Run] = {}
    figures: dict[str, dict[str, Any]] = {}
    with RedisServer() as server:
        upstream = server.url.split("://", 1)[1].split("/", 1)[0]
        with HostsEnv(args.hosts, upstream, latency_ms=args.latency_ms, skew_s=args.skew_s,
                      netns=args.netns, seed=args.seed) as env:
            sandbox = BoundQuotaSandbox(scen.rate, scen.burst, env.sandbox_bind)
            sandbox.options += ["--quota-partition", "global"]
            with sandbox:
                admin = redis.Redis.from_url(server.url)
                assert sandbox.process is not None
                env.prioritize_servers([sandbox.process.pid,
                                        int(admin.info("server")["process_id"])])
                print(f"\n== fleet over hosts ({', '.join(clients)})")
                print(f"sandbox (subprocess) at {sandbox.url}, rate {scen.rate:g}/s, burst "
                      f"{scen.burst}, one global quota; redis-server at {server.url}; "
                      f"priorities: {env.priorities()}")
                for line in env.describe():
                    print(f"  {line}")
                for name in clients:
                    sandbox.reset()
                    admin.flushall()
                    before = _server_snapshot(admin, env, sandbox)
                    run, reports, phase = run_hosts_client(name, scen, env, sandbox.url)
                    after = _server_snapshot(admin, env, sandbox)
                    run.stats = sandbox.stats()
                    runs[name] = run
                    figures[name] = hosts_metrics(run, scen, reports, before, after, phase)
                    print(f"  {name:<20} done in {after['wall'] - before['wall']:5.1f} s"
                          + (f"  ({run.unfinished} unfinished)" if run.unfinished else ""))
                admin.close()
            hosts_info = env.info()
    print_hosts_table(scen, env, figures)
    _report(args, info, output, started, scen, runs, figures, clients, HOSTS_TARGETS,
            hosts=hosts_info)
    return 0


def _report(
    args: Any,
    info: dict[str, Any],
    output: Path,
    started: float,
    scen: Any,
    runs: dict[str, Any],
    figures: dict[str, dict[str, Any]],
    clients: list[str],
    targets: dict[str, tuple[str, float]],
    **parameters: Any,
) -> None:
    """Both modes' ending: the targets' verdicts, the plot and the JSON (``parameters``:
    what the mode adds to the JSON's parameters)."""
    checks = {c: meets(targets, figures[c]) for c in figures if c == TARGET_CLIENT}
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
        **parameters,
    }
    result["machine"] = info
    result["targets"] = {m: list(v) for m, v in targets.items()}
    result["targets_met"] = checks
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {output} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":  # pragma: no cover - run through quota.py --fleet
    sys.exit("run: .venv/bin/python bench/quota.py --fleet [--quick]")
