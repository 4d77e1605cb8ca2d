"""Soak: 10,000 logical requests through surefoot's three stacks, ~30 % of attempts faulted.

GET, PUT, POST with an ``Idempotency-Key`` (added by surefoot: ``idempotency_keys="auto"``)
and POST without one, sent concurrently through ``surefoot.Client`` (requests, threads),
``surefoot.httpx.Client`` (threads) and ``surefoot.httpx.AsyncClient`` (tasks on one event
loop), all at the same time, against the sandbox in a subprocess. Every attempt is
faulted with probability 0.3 (the sandbox's seeded dice, one stream per logical
request); each logical request has one fault kind:

* ``503`` and ``503_retry_after`` (``Retry-After: 1``), ``reset`` (the connection reset
  before any answer; on ``/orders`` before the order is stored), ``timeout`` (the answer
  comes 1.5 s late), ``truncate`` (half the body, then the connection closes) and
  ``slow`` (the body trickled over 1.5 s, every piece well within a read timeout);
* on ``/orders`` also ``reset_after_commit``, and there ``timeout``, ``truncate`` and
  ``slow`` happen AFTER the order is stored: the side effect happened and the client sees
  a failure. A keyed POST must then be replayed, never duplicated; an unkeyed POST must
  not be retried at all.

Plus 3 % of probes that are designed to fail, on a client with a 2 s deadline: every
attempt hangs or trickles for 5 s (GET, and a keyed POST), so the call fails AT its
deadline (the deadline overrun is measured on these and on any other call that ran to its
deadline), or the server asks for ``Retry-After: 30``, above the cap (``RetryAfterTooLong``
at once, no wait).

Targets (printed met/MISSED, per stack and overall): idempotent requests (GET, PUT, keyed
POST) 100 % successful; 0 orders created twice for one logical request (the sandbox's
orders, by the logical request's id); every failure a surefoot error (anything else, and
a "success" with a wrong body, counts against it); no wait above ``retry_after_cap``; the
deadline overrun p100 <= 50 ms; no unkeyed POST retried after it reached the server; every
probe failing the way it should. The controls for the overrun are printed beside it: how
late a plain sleeping thread, and a task on the async stack's loop, wake up meanwhile, and
the garbage collector's pauses; each of the latest calls at their deadline is shown with
the worst of these around its deadline.

Topology: by default the three stacks run in this one process (64 threads and one event
loop sharing its GIL: a stress the async stack, whose loop must win the GIL for every
socket operation of its 32 tasks, feels most). ``--processes`` runs each stack in its own
process, as separate services would; the overrun is measured the same way, each stack's
controls are its own process's (each process warms up with a few uncounted requests
before it starts: three interpreters start cold at the same moment).

The store-fault phase (``--store-faults``; ``--quick`` runs it briefly after the soak): the
three stacks at once, each with its own store object (as three processes would have) on
one shared backend, keep their pacing state (``Pacer(PacingPolicy(), store=store)``) and
their OAuth2 token (``BearerAuth.client_credentials(.../oauth/token, store=store)``, the
sandbox's tokens living 2-3 s, so they are refreshed during the outage) in it, and send
``GET /protected`` (the token must be valid), ``GET /limited/...`` (the quota the pacer
learns) and ``GET /flaky/...`` (503 and resets, p = 0.2). The store fails under them: a
``redis-server`` started by the bench is killed (SIGKILL) and restarted on the same port
a few seconds later, or another connection holds the SQLite file with ``BEGIN
EXCLUSIVE`` for a few seconds; each with ``on_failure="open"`` and ``"closed"``. Targets
per scenario: no call longer than its deadline + 50 ms and no worker stuck; fail-open:
100 % of the (idempotent) calls succeed, "FAILING OPEN" logged once per store object;
fail-closed: every failure during the outage is ``StoreUnavailable``, and every call
started a second after recovery succeeds; no lost token: after recovery the store holds a
valid token (the sandbox accepts it), and the token requests during the outage stay
within one per store object per token lifetime (not one per request).

    .venv/bin/python bench/soak.py [--quick] [--requests N] [--workers W] [--seed S]
                                   [--stacks a,b] [--processes] [--output PATH]
    .venv/bin/python bench/soak.py --store-faults [--quick] [--stores redis,sqlite]
                                   [--modes open,closed] [--store-workers W]

Writes ``bench/results/soak.json`` (``--processes``: ``soak_processes.json``; ``--quick``:
``soak_quick.json`` / ``soak_processes_quick.json``, with the brief
store-fault phase under ``store_faults``; ``--store-faults``: the phase alone,
``soak_store_faults.json``, ``--quick``: ``soak_store_faults_quick.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime as dt
import gc
import itertools
import json
import logging
import math
import multiprocessing
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

import surefoot
import surefoot.httpx
import surefoot.stores
from _env import output, platform_info, source_state
from _env import version as _version
from _sandbox_process import SandboxProcess
from _stats import nearest_rank
from surefoot.errors import RequestFailed, TransportError
from surefoot.events import Event, EventKind

RESULTS = Path(__file__).resolve().parent / "results"
STACKS = ("requests", "httpx_sync", "httpx_async")

# -- the load ----------------------------------------------------------------------------

FAULT_P = 0.3  # per attempt
HANG = 1.5  # a timeout fault answers this late; a slow body takes this long
RETRY_AFTER = "1"
PROBE_HANG = 5.0  # > the probes' deadline: every probe attempt runs out of time
CAP_PROBE_RETRY_AFTER = "30"  # > retry_after_cap

#: Share of the logical requests, by kind.
MIX = (("get", 0.35), ("put", 0.20), ("post_keyed", 0.27), ("post_plain", 0.15),
       ("probe", 0.03))
IDEMPOTENT = ("get", "put", "post_keyed")
POSTS = ("post_keyed", "post_plain", "probe_post")
PROBES = ("probe_timeout", "probe_slow", "probe_post", "probe_cap")
FLAKY_FAULTS = ("503", "503_retry_after", "reset", "timeout", "truncate", "slow")
ORDER_FAULTS = ("503", "503_retry_after", "reset", "reset_after_commit", "timeout",
                "truncate", "slow")
#: How an attempt that reached the server can fail below HTTP (FailureKind values).
SENT_FAILURES = ("write_timeout", "read_timeout", "reset", "truncated", "other")
TIMEOUT_FAILURES = ("read_timeout", "write_timeout", "pool_timeout", "connect")

# -- the policies ------------------------------------------------------------------------

#: 0.3**12 per request of all attempts faulted; a 10 s deadline holds about ten faults of
#: the dearest kinds (a 1 s Retry-After, a 0.5 s attempt timeout plus backoff).
POLICY = surefoot.RetryPolicy(
    max_attempts=12,
    deadline=10.0,
    attempt_timeout=0.5,
    backoff_initial=0.05,
    backoff_max=0.5,
    retry_after_cap=2.0,
    idempotency_keys="auto",
    on_exhausted="raise",
)
PLAIN_POLICY = POLICY.replace(idempotency_keys="off")
PROBE_POLICY = POLICY.replace(deadline=2.0)
POLICIES = {"main": POLICY, "plain": PLAIN_POLICY, "probe": PROBE_POLICY}

# -- targets -----------------------------------------------------------------------------

OVERRUN_TARGET_MS = 50.0
TARGETS = {
    "idempotent_success_ratio": "== 1.0 (GET, PUT, keyed POST)",
    "duplicated_side_effects": "== 0 (orders created twice for one logical request)",
    "untyped_failures": "== 0 (failures that are not surefoot errors, wrong bodies)",
    "max_wait_s": f"<= retry_after_cap ({POLICY.retry_after_cap:g} s)",
    "deadline_overrun_p100_ms": f"<= {OVERRUN_TARGET_MS:g}",
    "plain_posts_retried_after_send": "== 0",
    "probes_as_expected_ratio": "== 1.0",
}
#: Missing one of these is a bug whatever the machine: the exit status is 1.
INVARIANTS = ("duplicated_side_effects", "untyped_failures", "plain_posts_retried_after_send")


# -- logical requests --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    index: int
    stack: str
    kind: str  # get, put, post_keyed, post_plain or a probe
    fault: str  # one of FLAKY_FAULTS / ORDER_FAULTS, or the probe's
    seed: int

    @property
    def soak_id(self) -> str:
        return f"soak-{self.index}"

    @property
    def client(self) -> str:
        if self.kind.startswith("probe"):
            return "probe"
        return "plain" if self.kind == "post_plain" else "main"

    @property
    def deadline(self) -> float:
        deadline = POLICIES[self.client].deadline
        assert deadline is not None
        return deadline

    def request(self) -> tuple[str, str, dict[str, Any]]:
        """(method, path, keyword arguments) of the call."""
        body = {"soak_id": self.soak_id, "stack": self.stack, "kind": self.kind,
                "fault": self.fault}
        if self.kind == "probe_cap":
            return "GET", "/flaky/probe?" + urlencode(
                {"fault": "503", "p": 1, "retry_after": CAP_PROBE_RETRY_AFTER}), {}
        if self.kind in ("probe_timeout", "probe_slow"):
            fault = self.kind.removeprefix("probe_")
            return "GET", "/flaky/probe?" + urlencode(
                {"fault": fault, "p": 1, "hang": PROBE_HANG}), {}
        if self.kind == "probe_post":
            return "POST", "/orders?" + urlencode(
                {"fault": "timeout", "p": 1, "hang": PROBE_HANG}), {"json": body}
        query = self._fault_query()
        if self.kind == "get":
            return "GET", f"/flaky/get-{self.index}?{query}", {}
        if self.kind == "put":
            return "PUT", f"/flaky/put-{self.index}?{query}", {"json": body}
        return "POST", f"/orders?{query}", {"json": body}

    def _fault_query(self) -> str:
        if self.fault == "reset_after_commit":
            return urlencode({"fail_after_commit": FAULT_P, "seed": self.seed})
        params: dict[str, Any] = {"fault": self.fault, "p": FAULT_P, "seed": self.seed,
                                  "hang": HANG}
        if self.fault == "503_retry_after":
            params.update(fault="503", retry_after=RETRY_AFTER)
        return urlencode(params)


def plan(n: int, seed: int) -> dict[str, list[Job]]:
    """The logical requests, dealt round-robin to the stacks."""
    rng = random.Random(seed)
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    jobs: dict[str, list[Job]] = {stack: [] for stack in STACKS}
    for index in range(n):
        stack = STACKS[index % len(STACKS)]
        kind = rng.choices(kinds, weights)[0]
        if kind == "probe":
            kind = rng.choice(PROBES)
            fault = kind.removeprefix("probe_")
        else:
            fault = rng.choice(FLAKY_FAULTS if kind in ("get", "put") else ORDER_FAULTS)
        jobs[stack].append(Job(index, stack, kind, fault, seed * 1_000_003 + index))
    return jobs


# -- what each call did ------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    job: Job
    ok: bool  # a 2xx with the right body
    outcome: str  # "ok", "wrong_body", or the error's type (TransportError(kind))
    typed: bool  # ok, or failed with a surefoot error
    wall: float  # seconds, the whole call
    attempts: int
    max_gap: float  # the longest time between two attempts (from the history)
    at_deadline: bool = False  # failed at (not before) its deadline
    plain_retried_after_send: bool = False
    replayed: bool = False
    detail: str = ""
    trail: tuple[str, ...] = ()  # each attempt's status or failure kind
    ended: float = 0.0  # time.monotonic() when the call returned or raised


def _trail(history: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(a.status) if a.status is not None else str(a.error) for a in history)


def _history_figures(history: tuple[Any, ...]) -> tuple[int, float]:
    gaps = [b.started - (a.started + a.elapsed) for a, b in itertools.pairwise(history)]
    return len(history), max(gaps, default=0.0)


def _retried_after_send(job: Job, history: tuple[Any, ...]) -> bool:
    """An unkeyed POST attempted again after an attempt that reached the server."""
    if job.kind != "post_plain":
        return False
    return any(a.status is not None or a.error in SENT_FAILURES for a in history[:-1])


def judge_response(job: Job, status: int, headers: Any, content: bytes,
                   history: tuple[Any, ...], wall: float) -> Record:
    attempts, gap = _history_figures(history)
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if job.kind in POSTS:
        right = status in (200, 201) and isinstance(body, dict) and (
            body.get("soak_id") == job.soak_id and str(body.get("id", "")).startswith("ord_"))
    else:
        right = 200 <= status < 300 and isinstance(body, dict) and body.get("ok") is True
    return Record(
        job, ok=right, outcome="ok" if right else "wrong_body", typed=right, wall=wall,
        attempts=attempts, max_gap=gap,
        plain_retried_after_send=_retried_after_send(job, history),
        replayed=headers.get("Idempotent-Replayed") == "true",
        detail="" if right else f"status {status}, {len(content)} bytes: {content[:80]!r}",
        trail=_trail(history),
    )


def judge_error(job: Job, exc: BaseException, t0: float, wall: float) -> Record:
    history: tuple[Any, ...] = tuple(exc.history) if isinstance(exc, RequestFailed) else ()
    attempts, gap = _history_figures(history)
    typed = isinstance(exc, surefoot.SurefootError)
    name = type(exc).__name__
    if isinstance(exc, TransportError):
        name = f"TransportError({exc.kind})"
    deadline = job.deadline
    at_deadline = wall >= deadline
    if not at_deadline and history:
        last = history[-1]
        # its timeout was cut to what was left of the deadline, and it timed out
        at_deadline = last.error in TIMEOUT_FAILURES and (
            t0 + deadline - last.started < POLICIES[job.client].attempt_timeout)
    return Record(
        job, ok=False, outcome=name, typed=typed, wall=wall, attempts=attempts,
        max_gap=gap, at_deadline=at_deadline,
        plain_retried_after_send=_retried_after_send(job, history),
        detail="" if typed else "".join(traceback.format_exception(exc))[-1500:],
        trail=_trail(history),
    )


def probe_as_expected(record: Record) -> bool:
    """``probe_cap``: refused at once. The others: ``DeadlineExceeded``, at the deadline
    (an attempt cut to what was left of it) or before it (the next wait would overrun it);
    how late is the overrun's business."""
    if record.job.kind == "probe_cap":
        return record.outcome == "RetryAfterTooLong" and record.attempts == 1
    return record.outcome == "DeadlineExceeded"


# -- the event hook ----------------------------------------------------------------------


class WaitRecorder:
    """The hook of every client of a stack: the waits it schedules, by source."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waits: dict[str, list[float]] = {"Retry-After": [], "backoff": []}
        self.gave_up: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        if event.kind is EventKind.RETRY_SCHEDULED and event.wait is not None:
            source = "Retry-After" if "(Retry-After)" in event.reason else "backoff"
            with self.lock:
                self.waits[source].append(event.wait)
        elif event.kind is EventKind.GAVE_UP:
            with self.lock:
                self.gave_up[event.reason.split(":")[0][:60]] += 1


# -- the stacks ----------------------------------------------------------------------------


def requests_clients(base_url: str, hook: WaitRecorder, workers: int) -> dict[str, Any]:
    clients = {}
    for name, policy in POLICIES.items():
        client = surefoot.Client(base_url, retry=policy, hook=hook, pacing=None)
        client.session.trust_env = False  # 127.0.0.1 only: no proxy from the environment
        # a pool as large as the concurrency (the docs' many-threads recipe)
        client.session.mount("http://", surefoot.requests.SurefootAdapter(
            retry=policy, hook=hook, pacing=None, pool_maxsize=workers))
        clients[name] = client
    return clients


def httpx_clients(base_url: str, hook: WaitRecorder, workers: int) -> dict[str, Any]:
    return {name: surefoot.httpx.Client(base_url, retry=policy, hook=hook, pacing=None)
            for name, policy in POLICIES.items()}


def call_sync(client: Any, job: Job) -> Record:
    method, path, kwargs = job.request()
    t0 = time.monotonic()
    try:
        response = client.request(method, path, **kwargs)
    except Exception as exc:  # a failed logical request is a data point
        ended = time.monotonic()
        record = judge_error(job, exc, t0, ended - t0)
    else:
        ended = time.monotonic()
        record = judge_response(job, response.status_code, response.headers,
                                response.content, surefoot.history_of(response), ended - t0)
    record.ended = ended
    return record


async def call_async(client: Any, job: Job) -> Record:
    method, path, kwargs = job.request()
    t0 = time.monotonic()
    try:
        response = await client.request(method, path, **kwargs)
    except Exception as exc:
        ended = time.monotonic()
        record = judge_error(job, exc, t0, ended - t0)
    else:
        ended = time.monotonic()
        record = judge_response(job, response.status_code, response.headers,
                                response.content, surefoot.history_of(response), ended - t0)
    record.ended = ended
    return record


CANARY_SLEEP = 0.01


class Canary:
    """How late a sleeper wakes up in this process while the stacks run: a thread that
    ``time.sleep``s, or a task that ``asyncio.sleep``s on the async stack's loop, 10 ms
    at a time. The control for the deadline overrun: a call that failed at its deadline
    also needs its thread (or its loop) to be scheduled again to end. Each lag is kept
    with the instant it was measured (``time.monotonic()``, the same in every process),
    so that a late call can be set beside the lag around its deadline."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.times: list[float] = []
        self.stop = threading.Event()

    def _sample(self, t0: float) -> None:
        now = time.monotonic()
        self.times.append(now)
        self.lags.append(now - t0 - CANARY_SLEEP)

    def run_thread(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            time.sleep(CANARY_SLEEP)
            self._sample(t0)

    async def run_task(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            await asyncio.sleep(CANARY_SLEEP)
            self._sample(t0)

    def figures(self) -> dict[str, float | None]:
        return {"p50_ms": _ms(nearest_rank(self.lags, 0.50)),
                "p99_ms": _ms(nearest_rank(self.lags, 0.99)),
                "max_ms": _ms(max(self.lags, default=None))}

    def worst_between(self, start: float, end: float) -> float | None:
        """The largest lag measured between ``start`` and ``end`` (a sleep that ended in
        that window), seconds."""
        lo = bisect.bisect_left(self.times, start)
        hi = bisect.bisect_right(self.times, end)
        return max(self.lags[lo:hi], default=None)

    def state(self) -> dict[str, list[float]]:
        return {"lags": self.lags, "times": self.times}

    @classmethod
    def from_state(cls, state: dict[str, list[float]]) -> Canary:
        canary = cls()
        canary.lags, canary.times = state["lags"], state["times"]
        return canary


class GcPauses:
    """The garbage collector's pauses in this process (every thread and the event loop
    stop meanwhile): another control for the overrun."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation)
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.monotonic()
        else:
            self.pauses.append((self._start, time.monotonic() - self._start,
                                int(info["generation"])))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def figures(self) -> dict[str, Any]:
        return {"collections": len(self.pauses),
                "full_collections": sum(g == 2 for _, _, g in self.pauses),
                "max_ms": _ms(max((d for _, d, _ in self.pauses), default=None)),
                "total_ms": _ms(sum(d for _, d, _ in self.pauses))}

    def worst_between(self, start: float, end: float) -> float | None:
        return max((d for t, d, _ in self.pauses if t + d >= start and t <= end),
                   default=None)


@dataclass
class StackRun:
    name: str
    jobs: list[Job]
    hook: WaitRecorder = field(default_factory=WaitRecorder)
    records: list[Record] = field(default_factory=list)
    seconds: float = 0.0
    crash: str = ""
    loop_canary: Canary = field(default_factory=Canary)  # httpx_async only
    #: --processes: the stack's own process (its thread canary, its collector's pauses,
    #: its CPU time); in one process these are the process's, shared by the stacks
    thread_canary: Canary | None = None
    gc: GcPauses | None = None
    cpu_s: float = 0.0


def run_sync_stack(run: StackRun, base_url: str, workers: int) -> None:
    build = requests_clients if run.name == "requests" else httpx_clients
    clients = build(base_url, run.hook, workers)
    jobs: Iterator[Job] = iter(run.jobs)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                job = next(jobs, None)
            if job is None:
                return
            run.records.append(call_sync(clients[job.client], job))

    started = time.monotonic()
    try:
        threads = [threading.Thread(target=worker, name=f"{run.name}-{i}")
                   for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        run.seconds = time.monotonic() - started
        for client in clients.values():
            client.close()


async def _run_async_stack(run: StackRun, base_url: str, workers: int) -> None:
    clients = {name: surefoot.httpx.AsyncClient(base_url, retry=policy, hook=run.hook,
                                                pacing=None)
               for name, policy in POLICIES.items()}
    jobs = iter(run.jobs)

    async def worker() -> None:
        for job in jobs:  # one event loop: next() is never run concurrently
            run.records.append(await call_async(clients[job.client], job))

    canary = asyncio.create_task(run.loop_canary.run_task())
    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        run.loop_canary.stop.set()
        await canary
        for client in clients.values():
            await client.aclose()


def run_async_stack(run: StackRun, base_url: str, workers: int) -> None:
    started = time.monotonic()
    try:
        asyncio.run(_run_async_stack(run, base_url, workers))
    finally:
        run.seconds = time.monotonic() - started


def run_all(jobs: dict[str, list[Job]], base_url: str, workers: int,
            log: Callable[[str], None], canary: Canary) -> dict[str, StackRun]:
    """Every stack at once, each with ``workers`` threads or tasks; ``canary``'s thread
    alongside."""
    runs = {name: StackRun(name, jobs[name]) for name in STACKS}

    def guarded(run: StackRun) -> None:
        try:
            (run_async_stack if run.name == "httpx_async" else run_sync_stack)(
                run, base_url, workers)
        except BaseException:
            run.crash = traceback.format_exc()

    threads = [threading.Thread(target=guarded, args=(run,), name=f"stack-{run.name}")
               for run in runs.values()]
    threads.append(threading.Thread(target=canary.run_thread, name="canary", daemon=True))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    threads.pop()  # the canary runs until the stacks are done
    total = sum(len(j) for j in jobs.values())
    next_report = started + 10.0
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(0.2)
        if time.monotonic() >= next_report:
            done = sum(len(run.records) for run in runs.values())
            log(f"  {done}/{total} done after {time.monotonic() - started:.0f} s")
            next_report += 10.0
    canary.stop.set()
    for run in runs.values():
        if run.crash:
            raise RuntimeError(f"the {run.name} stack crashed:\n{run.crash}")
    return runs


def _stack_process(name: str, jobs: list[Job], base_url: str, workers: int,
                   origin: float) -> dict[str, Any]:
    """``--processes``: one stack in this (child) process, with its own thread canary
    and collector's pauses; what the parent needs back, picklable."""
    for key in [k for k in os.environ if k.lower() in ("http_proxy", "https_proxy",
                                                        "all_proxy")]:
        del os.environ[key]
    _warm_up(name, base_url)
    run = StackRun(name, jobs)
    canary = Canary()
    thread = threading.Thread(target=canary.run_thread, name="canary", daemon=True)
    before = os.times()
    with GcPauses() as pauses:
        thread.start()
        stop_report = threading.Event()

        def report() -> None:
            while not stop_report.wait(10.0):
                print(f"  [{name}] {len(run.records)}/{len(jobs)} done after "
                      f"{time.monotonic() - origin:.0f} s", flush=True)

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            (run_async_stack if name == "httpx_async" else run_sync_stack)(
                run, base_url, workers)
        except BaseException:
            run.crash = traceback.format_exc()
        finally:
            stop_report.set()
            canary.stop.set()
            thread.join()
    return {
        "records": run.records, "seconds": run.seconds, "crash": run.crash,
        "waits": run.hook.waits, "gave_up": run.hook.gave_up,
        "loop_canary": run.loop_canary.state(), "thread_canary": canary.state(),
        "gc": pauses.pauses, "cpu_s": _cpu(os.times(), before),
    }


def _warm_up(name: str, base_url: str) -> None:
    """A fresh interpreter's first requests import and set up what the stack needs (on
    the async stack: on its loop). The three processes start cold at the same moment, on
    the sandbox's cores: a throwaway client of the stack's kind sends a few requests
    first, uncounted. (In one process the stacks share the modules the parent imported.)"""
    policy = surefoot.RetryPolicy(max_attempts=3, deadline=10.0, on_exhausted="raise")
    if name == "httpx_async":
        async def warm() -> None:
            async with surefoot.httpx.AsyncClient(base_url, retry=policy, pacing=None,
                                                  hook=WaitRecorder()) as client:
                for _ in range(3):
                    await client.get("/get")
        asyncio.run(warm())
        return
    client: Any = (surefoot.Client(base_url, retry=policy, pacing=None, hook=WaitRecorder())
                   if name == "requests" else
                   surefoot.httpx.Client(base_url, retry=policy, pacing=None,
                                         hook=WaitRecorder()))
    if name == "requests":
        client.session.trust_env = False
    try:
        for _ in range(3):
            client.get("/get")
    finally:
        client.close()


def run_all_processes(jobs: dict[str, list[Job]], base_url: str,
                      workers: int) -> dict[str, StackRun]:
    """``--processes``: every stack at once, each in its own process (as three services
    would run them: the async stack's loop does not share a GIL with 64 threads)."""
    names = [name for name in STACKS if jobs[name]]
    context = multiprocessing.get_context("spawn")
    origin = time.monotonic()
    with context.Pool(len(names)) as pool:
        pending = {name: pool.apply_async(_stack_process,
                                          (name, jobs[name], base_url, workers, origin))
                   for name in names}
        results = {name: result.get() for name, result in pending.items()}
    runs = {name: StackRun(name, jobs[name]) for name in STACKS}
    for name, got in results.items():
        if got["crash"]:
            raise RuntimeError(f"the {name} stack crashed:\n{got['crash']}")
        run = runs[name]
        run.records, run.seconds, run.cpu_s = got["records"], got["seconds"], got["cpu_s"]
        run.hook.waits, run.hook.gave_up = got["waits"], got["gave_up"]
        run.loop_canary = Canary.from_state(got["loop_canary"])
        run.thread_canary = Canary.from_state(got["thread_canary"])
        run.gc = GcPauses()
        run.gc.pauses = got["gc"]
    return runs


# -- the server's side -------------------------------------------------------------------


def server_counts(base_url: str) -> tuple[dict[str, Any], Counter[str]]:
    """The sandbox's ``/stats`` and its orders, per logical request id."""
    with requests.Session() as admin:
        admin.trust_env = False
        stats = admin.get(f"{base_url}/stats", timeout=30).json()
        orders = admin.get(f"{base_url}/orders", timeout=60).json()["orders"]
    return stats, Counter(order.get("soak_id", "?") for order in orders)


# -- figures -----------------------------------------------------------------------------


def _ms(value: float | None) -> float | None:
    return None if value is None else round(1000 * value, 1)


def figures(records: list[Record], hooks: Iterable[WaitRecorder],
            orders: Counter[str],
            context: Callable[[Record], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The figures of ``records``; ``context``: what to add to each of the latest calls
    at their deadline (the scheduling lag and collector's pauses around it)."""
    idem = [r for r in records if r.job.kind in IDEMPOTENT]
    plain = [r for r in records if r.job.kind == "post_plain"]
    probes = [r for r in records if r.job.kind in PROBES]
    posts = [r for r in records if r.job.kind in POSTS]
    duplicates = dict.fromkeys(POSTS, 0)
    created_by_kind = dict.fromkeys(POSTS, 0)
    for r in posts:
        created = orders.get(r.job.soak_id, 0)
        created_by_kind[r.job.kind] += created
        duplicates[r.job.kind] += max(0, created - 1)
    lost = sum(1 for r in posts if r.ok and orders.get(r.job.soak_id, 0) == 0)
    untyped = [r for r in records if not r.typed]
    overruns = sorted(r.wall - r.job.deadline for r in records if r.at_deadline)
    waits: dict[str, list[float]] = {"Retry-After": [], "backoff": []}
    for hook in hooks:
        for source, values in hook.waits.items():
            waits[source].extend(values)
    scheduled = max((w for values in waits.values() for w in values), default=0.0)
    observed = max((r.max_gap for r in records), default=0.0)
    return {
        "logical_requests": len(records),
        "idempotent": len(idem),
        "idempotent_ok": sum(r.ok for r in idem),
        "idempotent_success_ratio": (sum(r.ok for r in idem) / len(idem)) if idem else None,
        "plain_posts": len(plain),
        "plain_posts_ok": sum(r.ok for r in plain),
        "plain_post_success_ratio": (sum(r.ok for r in plain) / len(plain)) if plain else None,
        "orders_created": created_by_kind,
        "duplicated_side_effects": sum(duplicates.values()),
        "duplicates_by_kind": duplicates,
        "ok_posts_without_an_order": lost,
        "replayed_responses": sum(r.replayed for r in records),
        "untyped_failures": len(untyped),
        "untyped_by_outcome": dict(Counter(r.outcome for r in untyped)),
        "max_wait_s": round(max(scheduled, observed), 4),
        "max_scheduled_wait_s": {k: round(max(v, default=0.0), 4) for k, v in waits.items()},
        "max_gap_between_attempts_s": round(observed, 4),
        "retries_scheduled": {k: len(v) for k, v in waits.items()},
        "calls_at_deadline": len(overruns),
        "deadline_overrun_p50_ms": _ms(nearest_rank(overruns, 0.50)),
        "deadline_overrun_p99_ms": _ms(nearest_rank(overruns, 0.99)),
        "deadline_overrun_p100_ms": _ms(overruns[-1] if overruns else None),
        "max_wall_minus_deadline_ms": _ms(max((r.wall - r.job.deadline for r in records),
                                              default=None)),
        "plain_posts_retried_after_send": sum(r.plain_retried_after_send for r in records),
        "probes": len(probes),
        "probes_as_expected": sum(probe_as_expected(r) for r in probes),
        "probes_as_expected_ratio": (sum(probe_as_expected(r) for r in probes) / len(probes)
                                     if probes else None),
        "attempts": sum(r.attempts for r in records),
        "attempts_per_request": (sum(r.attempts for r in records) / len(records)
                                 if records else None),
        "outcomes": dict(Counter(r.outcome for r in records)),
        "attempt_outcomes": dict(Counter(t for r in records for t in r.trail).most_common()),
        "latest_at_deadline": [
            {"stack": r.job.stack, "kind": r.job.kind, "overrun_ms": _ms(r.wall - r.job.deadline),
             "outcome": r.outcome, "attempts": list(r.trail),
             **(context(r) if context is not None else {})}
            for r in sorted((r for r in records if r.at_deadline),
                            key=lambda r: r.job.deadline - r.wall)[:10]
        ],
    }


def check(f: dict[str, Any]) -> dict[str, bool | None]:
    """Each target: met (True), missed (False) or not measured (None)."""
    cap = POLICY.retry_after_cap
    assert cap is not None
    p100 = f["deadline_overrun_p100_ms"]
    ratio = f["idempotent_success_ratio"]
    probes = f["probes_as_expected_ratio"]
    return {
        "idempotent_success_ratio": None if ratio is None else ratio == 1.0,
        "duplicated_side_effects": f["duplicated_side_effects"] == 0,
        "untyped_failures": f["untyped_failures"] == 0,
        "max_wait_s": f["max_wait_s"] <= cap,
        "deadline_overrun_p100_ms": None if p100 is None else p100 <= OVERRUN_TARGET_MS,
        "plain_posts_retried_after_send": f["plain_posts_retried_after_send"] == 0,
        "probes_as_expected_ratio": None if probes is None else probes == 1.0,
    }


def by_kind_and_fault(records: list[Record], orders: Counter[str]) -> dict[str, Any]:
    """Per kind and fault: calls, successes, attempts, duplicates and how they failed."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.job.kind, r.job.fault)].append(r)
    out: dict[str, Any] = {}
    for (kind, fault), rs in sorted(groups.items()):
        out[f"{kind}/{fault}"] = {
            "n": len(rs),
            "ok": sum(r.ok for r in rs),
            "attempts_per_request": round(sum(r.attempts for r in rs) / len(rs), 2),
            "duplicates": sum(max(0, orders.get(r.job.soak_id, 0) - 1) for r in rs
                              if kind in POSTS),
            "failures": dict(Counter(r.outcome for r in rs if not r.ok).most_common()),
        }
    return out


# -- printing ----------------------------------------------------------------------------


def _pct(ok: int, n: int) -> str:
    return f"{ok}/{n} {100 * ok / n:6.2f}%" if n else "-"


def _overrun(f: dict[str, Any]) -> str:
    if not f["calls_at_deadline"]:
        return "- (0)"
    return (f"{f['deadline_overrun_p50_ms']:.0f}/{f['deadline_overrun_p99_ms']:.0f}/"
            f"{f['deadline_overrun_p100_ms']:.0f} ({f['calls_at_deadline']})")


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    header = (f"{'stack':12s} {'logical':>7s} {'idempotent ok':>19s} {'unkeyed POST ok':>17s} "
              f"{'dup':>4s} {'untyped':>7s} {'max wait s':>10s} "
              f"{'overrun ms p50/p99/p100 (n)':>28s} {'probes ok':>10s} {'att/req':>7s}")
    print(header)
    print("-" * len(header))
    for name, f in rows.items():
        print(f"{name:12s} {f['logical_requests']:7d} "
              f"{_pct(f['idempotent_ok'], f['idempotent']):>19s} "
              f"{_pct(f['plain_posts_ok'], f['plain_posts']):>17s} "
              f"{f['duplicated_side_effects']:4d} {f['untyped_failures']:7d} "
              f"{f['max_wait_s']:10.3f} {_overrun(f):>28s} "
              f"{f['probes_as_expected']:>4d}/{f['probes']:<5d} "
              f"{f['attempts_per_request']:7.2f}")


def print_targets(rows: dict[str, dict[str, Any]], checks: dict[str, dict[str, Any]]) -> None:
    figures_of = {
        "idempotent_success_ratio":
            lambda f: _pct(f["idempotent_ok"], f["idempotent"]).split(" ", 1)[-1].strip()
            + f" ({f['idempotent_ok']}/{f['idempotent']})",
        "duplicated_side_effects": lambda f: f"{f['duplicated_side_effects']} "
            f"(keyed {f['duplicates_by_kind']['post_keyed']}, unkeyed "
            f"{f['duplicates_by_kind']['post_plain']}, probes "
            f"{f['duplicates_by_kind']['probe_post']})",
        "untyped_failures": lambda f: f"{f['untyped_failures']} {f['untyped_by_outcome'] or ''}",
        "max_wait_s": lambda f: f"{f['max_wait_s']:.3f} s (scheduled: Retry-After "
            f"{f['max_scheduled_wait_s']['Retry-After']:.3f}, backoff "
            f"{f['max_scheduled_wait_s']['backoff']:.3f}; longest gap between attempts "
            f"{f['max_gap_between_attempts_s']:.3f})",
        "deadline_overrun_p100_ms": lambda f: (
            f"{f['deadline_overrun_p100_ms']} ms (p50 {f['deadline_overrun_p50_ms']}, p99 "
            f"{f['deadline_overrun_p99_ms']}; {f['calls_at_deadline']} calls at the deadline)"),
        "plain_posts_retried_after_send": lambda f: str(f["plain_posts_retried_after_send"]),
        "probes_as_expected_ratio": lambda f: f"{f['probes_as_expected']}/{f['probes']}",
    }
    print("\ntargets:")
    for target, what in TARGETS.items():
        verdicts = []
        for name in rows:
            met = checks[name][target]
            verdicts.append(f"{name} {'-' if met is None else 'met' if met else 'MISSED'}")
        overall = checks["overall"][target]
        mark = "not measured" if overall is None else "met" if overall else "MISSED"
        print(f"  {target} {what}: {figures_of[target](rows['overall'])}  -> {mark}")
        missed = [v for v in verdicts if v.endswith("MISSED")]
        if missed:
            print(f"      per stack: {', '.join(verdicts)}")
            for name, f in rows.items():
                if name != "overall" and checks[name][target] is False:
                    print(f"      {name}: {figures_of[target](f)}")


def print_controls(rows: dict[str, dict[str, Any]], lag: dict[str, Any],
                   gc_figures: dict[str, Any], processes: bool) -> None:
    """The deadline overrun of each stack beside its controls: how late a plain sleeping
    thread (and a task on the async stack's loop) woke up meanwhile, and the garbage
    collector's pauses (everything stops) in the same process."""
    def fmt(f: dict[str, Any] | None) -> str:
        return "-" if not f else f"{f['p50_ms']}/{f['p99_ms']}/{f['max_ms']}"

    def gc_fmt(g: dict[str, Any] | None) -> str:
        return "-" if not g else (f"max {g['max_ms']} ms, {g['full_collections']} full of "
                                  f"{g['collections']}, {g['total_ms']} ms in all")

    print("deadline overrun beside its controls (p50/p99/max ms; a 10 ms sleep woke up late "
          "by):")
    for name, f in rows.items():
        if name == "overall":
            continue
        mine = lag[name] if processes else lag
        loop = fmt(mine.get("event_loop")) if name == "httpx_async" else "-"
        gc_of = gc_figures.get(name) if processes else gc_figures
        print(f"  {name:12s} overrun {_overrun(f):>22s}   thread lag {fmt(mine['thread']):>16s}"
              f"   loop lag {loop:>16s}   gc {gc_fmt(gc_of)}")
    if not processes:
        print("  (one process: the stacks share these controls)")


def print_breakdown(table: dict[str, Any]) -> None:
    print("\nby kind and fault (all stacks): n, ok, attempts/request, duplicates, failures")
    for key, f in table.items():
        failures = ", ".join(f"{k} {v}" for k, v in f["failures"].items())
        dup = f"  dup {f['duplicates']}" if f["duplicates"] else ""
        print(f"  {key:32s} {f['n']:5d} {_pct(f['ok'], f['n']):>16s} "
              f"{f['attempts_per_request']:5.2f}{dup}  {failures}")


def print_samples(records: list[Record]) -> list[dict[str, Any]]:
    """Print (once per outcome) what a failure that is not a surefoot error looked like."""
    shown: dict[str, Record] = {}
    for r in records:
        if not r.typed and r.outcome not in shown:
            shown[r.outcome] = r
    samples = []
    for outcome, r in shown.items():
        print(f"\nuntyped failure {outcome} ({r.job.stack} {r.job.kind}/{r.job.fault}):",
              file=sys.stderr)
        print(r.detail, file=sys.stderr)
        samples.append({"outcome": outcome, "stack": r.job.stack, "kind": r.job.kind,
                        "fault": r.job.fault, "detail": r.detail})
    return samples


# -- the store-fault phase ---------------------------------------------------------------
#
# Three stacks at once, each with its own store object on one backend (as three processes
# of a fleet would have): pacing state and the OAuth2 token in the store. The backend
# fails mid-run: Redis killed and restarted empty on the same port, or the SQLite file
# held by another connection's BEGIN EXCLUSIVE. Every call is a GET (idempotent).

STORE_BACKENDS = ("redis", "sqlite")
FAILURE_MODES = ("open", "closed")
#: Share of the calls, by kind: the token must be valid (``/protected``), the quota the
#: pacer learns and paces the host at (``/limited``), HTTP faults on top (``/flaky``).
STORE_MIX = (("protected", 0.4), ("limited", 0.3), ("flaky", 0.3))
STORE_HTTP_FAULTS = ("503", "reset")
STORE_FAULT_P = 0.2
STORE_RATE = 100.0  # the sandbox's /limited quota per second (one partition: the client)
STORE_BURST = 20
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"  # the sandbox's default client
#: A fail-open store skips its backend for a second after a failure
#: (``surefoot.stores._failure.RETRY_BACKEND_AFTER``): calls started this long after
#: recovery are judged as "after".
RECOVERY_GRACE = 1.0
#: A token is refreshed once it is within a second of its expiry (``freshness``).
TOKEN_EXPIRY_MARGIN = 1.0

#: Every store wait is bounded by half of what is left of this deadline.
STORE_POLICY = surefoot.RetryPolicy(
    max_attempts=8,
    deadline=3.0,
    attempt_timeout=0.5,
    backoff_initial=0.05,
    backoff_max=0.3,
    retry_after_cap=2.0,
    on_exhausted="raise",
)


@dataclass(frozen=True, slots=True)
class StoreSchedule:
    before: float  # seconds of traffic before the fault
    outage: float  # Redis dead / the SQLite file locked
    after: float  # seconds of traffic after recovery
    token_ttl: int  # the sandbox's access-token lifetime, whole seconds

    @property
    def token_lifetime(self) -> float:
        """How long a token is used before it is refreshed."""
        return self.token_ttl - TOKEN_EXPIRY_MARGIN


STORE_SCHEDULES = {
    "quick": StoreSchedule(before=1.0, outage=2.0, after=3.0, token_ttl=2),
    "full": StoreSchedule(before=3.0, outage=5.0, after=6.0, token_ttl=3),
}

STORE_TARGETS = {
    "no_hang": f"every call ends by its deadline + {OVERRUN_TARGET_MS:g} ms; no worker stuck",
    "untyped_failures": "== 0 (failures that are not surefoot errors, wrong bodies)",
    "open_success_ratio": "fail-open: == 1.0 (every call, through the outage)",
    "failing_open_logged": "fail-open: \"FAILING OPEN\" logged once per store object",
    "closed_outage_failures": "fail-closed: every failure during the outage is "
                              "StoreUnavailable",
    "closed_recovered": f"fail-closed: == 1.0 of the calls started {RECOVERY_GRACE:g} s "
                        "after recovery",
    "token_failures": "== 0 (calls failed for their token: 401 after the refresh, token "
                      "errors, a wait for the token that ran out)",
    "token_in_store": "after recovery the store holds a valid token (the sandbox accepts it)",
    "token_requests_outage": "<= one per store object per token lifetime of the outage "
                             "(+1 each)",
}
#: Missing one of these is a bug whatever the machine: the exit status is 1.
STORE_INVARIANTS = ("untyped_failures", "closed_outage_failures", "token_failures")


def store_request(index: int, seed: int) -> tuple[str, str]:
    """(kind, path) of the store phase's call ``index``."""
    call_seed = seed * 1_000_003 + index
    rng = random.Random(call_seed)
    kind = rng.choices([k for k, _ in STORE_MIX], [w for _, w in STORE_MIX])[0]
    if kind == "protected":
        return kind, "/protected"
    if kind == "limited":
        return kind, f"/limited/store-{index}"
    return kind, f"/flaky/store-{index}?" + urlencode(
        {"fault": rng.choice(STORE_HTTP_FAULTS), "p": STORE_FAULT_P, "seed": call_seed})


@dataclass(slots=True)
class StoreCall:
    stack: str
    kind: str
    t0: float  # started, seconds since the scenario began
    wall: float
    ok: bool
    outcome: str
    typed: bool
    attempts: int
    throttled: int  # attempts answered 429
    unauthorized: int  # attempts answered 401 (the token refreshed and the call replayed)
    detail: str = ""

    @property
    def t1(self) -> float:
        return self.t0 + self.wall


def judge_store_response(stack: str, kind: str, t0: float, wall: float, status: int,
                         content: bytes, history: tuple[Any, ...]) -> StoreCall:
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    right = status == 200 and isinstance(body, dict) and body.get("ok") is True
    if kind == "protected":  # only a valid token gets this
        right = right and body.get("client_id") == CLIENT_ID
    elif kind == "limited":  # partitioned by the token's client when the token is valid
        right = right and body.get("partition") == CLIENT_ID
    return StoreCall(stack, kind, t0, wall, right, "ok" if right else f"wrong_body({status})",
                     right, len(history), _throttled(history), _unauthorized(history),
                     "" if right else f"status {status}: {content[:120]!r}")


def judge_store_error(stack: str, kind: str, t0: float, wall: float,
                      exc: BaseException) -> StoreCall:
    history = tuple(exc.history) if isinstance(exc, RequestFailed) else ()
    name = type(exc).__name__
    if isinstance(exc, TransportError):
        name = f"TransportError({exc.kind})"
    typed = isinstance(exc, surefoot.SurefootError)
    detail = str(exc)[:300] if typed else "".join(traceback.format_exception(exc))[-1500:]
    return StoreCall(stack, kind, t0, wall, False, name, typed, len(history),
                     _throttled(history), _unauthorized(history), detail)


def _throttled(history: tuple[Any, ...]) -> int:
    return sum(a.status == 429 for a in history)


def _unauthorized(history: tuple[Any, ...]) -> int:
    return sum(a.status == 401 for a in history)


#: How a call fails for its token: a 401 after the one refresh, a token error, a wait for
#: the token (or for another process's refresh) that ran out, a 401 answered as such.
TOKEN_FAILURES = ("Unauthorized", "TokenError", "TokenEndpointError", "InvalidClient",
                  "InvalidGrant", "TokenResponseError", "wrong_body(401)")


def token_failure(call: StoreCall) -> bool:
    return call.outcome in TOKEN_FAILURES or (
        call.outcome == "DeadlineExceeded" and "token" in call.detail)


class TokenRequests:
    """The token endpoint's sender of one stack, counting its requests (when, per stack)."""

    def __init__(self) -> None:
        from surefoot.oauth._sender import send  # the default sender of a TokenCache

        self._send = send
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, request: Any, timeout: float | None) -> Any:
        with self.lock:
            self.times.append(time.monotonic())
        return self._send(request, timeout)


class StoreLog(logging.Handler):
    """The ``surefoot`` logger's records during a scenario, by kind and by stack (the
    thread that logged: the stacks' worker threads are named after them, the async
    stack's store calls run in its loop's ``asyncio_N`` threads)."""

    KINDS = (("FAILING OPEN", "failing_open"), ("available again", "available_again"),
             ("could not be stored", "token_not_stored"))

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        kind = next((k for text, k in self.KINDS if text in message), "other")
        thread = record.threadName or ""
        stack = next((s for s in ("requests", "httpx_sync") if thread.startswith(s)),
                     "httpx_async" if thread.startswith("asyncio") else f"other({thread})")
        with self.lock_:
            self.records.append({"t": time.monotonic(), "kind": kind, "stack": stack,
                                 "level": record.levelname, "message": message[:300]})


class StoreHook(WaitRecorder):
    """The waits, and the token cache's failed refreshes (by reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.token_failures = 0
        self.token_failure_reasons: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        if event.kind is EventKind.TOKEN_REFRESH_FAILED:
            with self.lock:
                self.token_failures += 1
                self.token_failure_reasons[event.reason[:80]] += 1
        else:
            super().__call__(event)


@dataclass
class StoreStack:
    name: str
    store: Any
    auth: Any
    client: Any
    tokens: TokenRequests
    hook: StoreHook
    calls: list[StoreCall] = field(default_factory=list)
    crash: str = ""
    loop_canary: Canary = field(default_factory=Canary)


def open_store(backend: str, where: str, mode: str) -> Any:
    if backend == "redis":
        return surefoot.stores.RedisStore(where, on_failure=mode)
    return surefoot.stores.SQLiteStore(where, on_failure=mode)


def build_store_stack(name: str, backend: str, where: str, mode: str, base_url: str,
                      workers: int) -> StoreStack:
    """One stack with its own store object, pacer and token cache (one process's worth)."""
    hook = StoreHook()
    tokens = TokenRequests()
    store = open_store(backend, where, mode)
    pacer = surefoot.Pacer(surefoot.PacingPolicy(), store=store)
    auth = surefoot.BearerAuth.client_credentials(
        f"{base_url}/oauth/token", CLIENT_ID, CLIENT_SECRET, store=store, hook=hook,
        sender=tokens)
    client: Any
    if name == "requests":
        client = surefoot.Client(base_url, retry=STORE_POLICY, hook=hook, pacing=pacer,
                                 auth=auth)
        client.session.trust_env = False
        client.session.mount("http://", surefoot.requests.SurefootAdapter(
            retry=STORE_POLICY, hook=hook, pacing=pacer, auth=auth, pool_maxsize=workers,
            credential_origins=[base_url]))
    elif name == "httpx_sync":
        client = surefoot.httpx.Client(base_url, retry=STORE_POLICY, hook=hook, pacing=pacer,
                                       auth=auth)
    else:
        client = surefoot.httpx.AsyncClient(base_url, retry=STORE_POLICY, hook=hook,
                                            pacing=pacer, auth=auth)
    return StoreStack(name, store, auth, client, tokens, hook)


def store_call_sync(stack: StoreStack, index: int, seed: int, origin: float) -> StoreCall:
    kind, path = store_request(index, seed)
    t0 = time.monotonic()
    try:
        response = stack.client.get(path)
    except Exception as exc:
        return judge_store_error(stack.name, kind, t0 - origin, time.monotonic() - t0, exc)
    return judge_store_response(stack.name, kind, t0 - origin, time.monotonic() - t0,
                                response.status_code, response.content,
                                surefoot.history_of(response))


async def store_call_async(stack: StoreStack, index: int, seed: int,
                           origin: float) -> StoreCall:
    kind, path = store_request(index, seed)
    t0 = time.monotonic()
    try:
        response = await stack.client.get(path)
    except Exception as exc:
        return judge_store_error(stack.name, kind, t0 - origin, time.monotonic() - t0, exc)
    return judge_store_response(stack.name, kind, t0 - origin, time.monotonic() - t0,
                                response.status_code, response.content,
                                surefoot.history_of(response))


def run_store_stack(stack: StoreStack, workers: int, counter: Iterator[int], seed: int,
                    origin: float, stop: threading.Event) -> None:
    """The stack's workers call until ``stop`` is set (each finishes its call)."""
    if stack.name == "httpx_async":
        asyncio.run(_run_store_async(stack, workers, counter, seed, origin, stop))
        return

    def worker() -> None:
        while not stop.is_set():
            stack.calls.append(store_call_sync(stack, next(counter), seed, origin))

    threads = [threading.Thread(target=worker, name=f"{stack.name}-store-{i}", daemon=True)
               for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def _run_store_async(stack: StoreStack, workers: int, counter: Iterator[int],
                           seed: int, origin: float, stop: threading.Event) -> None:
    async def worker() -> None:
        while not stop.is_set():
            stack.calls.append(await store_call_async(stack, next(counter), seed, origin))

    canary = asyncio.create_task(stack.loop_canary.run_task())
    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        stack.loop_canary.stop.set()
        await canary
        await stack.client.aclose()  # on its own loop


class SQLiteLocker:
    """Another connection that holds the database with ``BEGIN EXCLUSIVE`` (in WAL mode,
    as surefoot's store runs it, that stops every writer; readers go on)."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)

    def lock(self) -> None:
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


def check_stored_token(backend: str, where: str, key: str, base_url: str,
                       stacks: list[StoreStack]) -> dict[str, Any]:
    """After the run: the token the store holds (read by a new store object, failing
    closed), whether the sandbox accepts it, and which stacks' caches hold it."""
    store = open_store(backend, where, "closed")
    try:
        token = store.tokens.load(key)
    except surefoot.SurefootError as exc:
        return {"present": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        store.close()
    if token is None:
        return {"present": False, "accepted": False, "caches_holding_it": 0}
    with requests.Session() as session:
        session.trust_env = False
        status = session.get(f"{base_url}/protected", timeout=10, headers={
            "Authorization": f"Bearer {token.access_token}"}).status_code
    held = [s.name for s in stacks
            if (mine := s.auth.cache.peek()) is not None
            and mine.access_token == token.access_token]
    return {
        "present": True,
        "accepted": status == 200,
        "status": status,
        "version": token.version,
        "expires_in_s": None if token.expires_at is None else token.expires_at - time.time(),
        "caches_holding_it": len(held),
        "stacks_holding_it": held,
    }


def run_store_scenario(backend: str, mode: str, schedule: StoreSchedule, seed: int,
                       workers: int, redis_server: Any, tmp: Path) -> dict[str, Any]:
    """One scenario: traffic, the fault, recovery, more traffic; then the checks."""
    options = ["--seed", str(seed), "--token-ttl", str(schedule.token_ttl),
               "--rate", repr(STORE_RATE), "--burst", str(STORE_BURST)]
    with SandboxProcess(options) as sandbox:
        if backend == "redis":
            where = redis_server.url
            import redis as redis_py

            with redis_py.Redis.from_url(where) as admin:
                admin.flushall()
        else:
            where = str(tmp / f"store-{mode}.db")
        stacks = [build_store_stack(name, backend, where, mode, sandbox.url, workers)
                  for name in STACKS]
        # the database exists (and is in WAL mode) before the locker opens it
        if backend == "sqlite":
            stacks[0].store.tokens.load("warm-up")
        locker = SQLiteLocker(where) if backend == "sqlite" else None
        handler = StoreLog()
        logger = logging.getLogger("surefoot")
        propagate = logger.propagate
        logger.addHandler(handler)
        logger.propagate = False  # counted here; a sample of each kind is printed
        counter = itertools.count()
        stop = threading.Event()
        canary = Canary()
        origin = time.monotonic()

        def guarded(stack: StoreStack) -> None:
            try:
                run_store_stack(stack, workers, counter, seed, origin, stop)
            except BaseException:
                stack.crash = traceback.format_exc()

        threads = [threading.Thread(target=guarded, args=(s,), name=f"store-{s.name}",
                                    daemon=True) for s in stacks]
        threads.append(threading.Thread(target=canary.run_thread, name="canary",
                                        daemon=True))
        try:
            for thread in threads:
                thread.start()
            time.sleep(schedule.before)
            fault_start = time.monotonic()
            if locker is not None:
                locker.lock()
                fault_start = time.monotonic()  # held from now on
            else:
                redis_server.kill()
            time.sleep(schedule.outage)
            if locker is not None:
                locker.release()
            else:
                redis_server.start()  # same port, empty; returns once it answers PING
            fault_end = time.monotonic()
            time.sleep(schedule.after)
            stop.set()
            join_by = time.monotonic() + (STORE_POLICY.deadline or 0.0) + 10.0
            for thread in threads[:-1]:
                thread.join(max(join_by - time.monotonic(), 0.0))
            ended = time.monotonic()
            hung = [t.name for t in threads[:-1] if t.is_alive()]
            canary.stop.set()
        finally:
            stop.set()
            logger.removeHandler(handler)
            logger.propagate = propagate
            if locker is not None:
                locker.close()
            if backend == "redis" and not redis_server.running:
                redis_server.start()
        for stack in stacks:
            if stack.crash:
                raise RuntimeError(f"the {stack.name} stack crashed:\n{stack.crash}")
        key = stacks[0].auth.cache.key
        stored = check_stored_token(backend, where, key, sandbox.url, stacks)
        with requests.Session() as admin_session:
            admin_session.trust_env = False
            stats = admin_session.get(f"{sandbox.url}/stats", timeout=30).json()
        for stack in stacks:
            if stack.name != "httpx_async":  # closed on its loop
                stack.client.close()
            stack.store.close()
    window = {"fault_start": fault_start - origin, "fault_end": fault_end - origin,
              "end": ended - origin}
    return store_figures(backend, mode, schedule, stacks, handler, window, hung, stored,
                         stats, canary, origin)


def _period(call: StoreCall, window: dict[str, float]) -> str:
    if call.t1 <= window["fault_start"]:
        return "before"
    if call.t0 < window["fault_end"]:
        return "outage"  # overlapped it
    if call.t0 < window["fault_end"] + RECOVERY_GRACE:
        return "recovery"
    return "after"


PERIODS = ("before", "outage", "recovery", "after")


def store_figures(backend: str, mode: str, schedule: StoreSchedule, stacks: list[StoreStack],
                  log: StoreLog, window: dict[str, float], hung: list[str],
                  stored: dict[str, Any], stats: dict[str, Any], canary: Canary,
                  origin: float) -> dict[str, Any]:
    calls = [c for s in stacks for c in s.calls]
    deadline = STORE_POLICY.deadline
    assert deadline is not None
    start, end = window["fault_start"], window["fault_end"]
    by_period: dict[str, dict[str, Any]] = {}
    for period in PERIODS:
        cs = [c for c in calls if _period(c, window) == period]
        span = {"before": start, "outage": end - start, "recovery": RECOVERY_GRACE,
                "after": window["end"] - end - RECOVERY_GRACE}[period]
        by_period[period] = {
            "calls": len(cs), "ok": sum(c.ok for c in cs),
            "calls_per_s": round(len(cs) / span, 1) if span > 0 else None,
            "p50_wall_ms": _ms(nearest_rank([c.wall for c in cs], 0.5)),
            "max_wall_ms": _ms(max((c.wall for c in cs), default=None)),
            "attempts_429": sum(c.throttled for c in cs),
            "failures": dict(Counter(c.outcome for c in cs if not c.ok).most_common()),
            "failures_by_kind": {
                kind: dict(Counter(c.outcome for c in cs if not c.ok and c.kind == kind))
                for kind, _ in STORE_MIX if any(not c.ok and c.kind == kind for c in cs)},
        }
    overruns = sorted(c.wall - deadline for c in calls)
    outage_failures = [c for c in calls if _period(c, window) == "outage" and not c.ok]
    after = [c for c in calls if _period(c, window) == "after"]
    since_recovery = [c for c in calls if c.t0 >= end]
    failed_since = [c for c in since_recovery if not c.ok]
    ok_since = [c for c in since_recovery if c.ok]
    # token requests, on the clients' side (every attempt at the token endpoint)
    token_times = {s.name: [t - origin for t in s.tokens.times] for s in stacks}
    outage_window = (start, end + RECOVERY_GRACE)

    def count(lo: float, hi: float) -> int:
        return sum(lo <= t < hi for times in token_times.values() for t in times)

    bound = len(stacks) * (math.ceil((outage_window[1] - outage_window[0])
                                     / schedule.token_lifetime) + 1)
    logged: dict[str, Counter[str]] = defaultdict(Counter)
    samples: dict[str, str] = {}
    for record in log.records:
        logged[record["kind"]][record["stack"]] += 1
        samples.setdefault(record["kind"], f"[{record['level']}] {record['message']}")
    untyped = [c for c in calls if not c.typed]
    return {
        "backend": backend,
        "mode": mode,
        "window_s": {k: round(v, 3) for k, v in window.items()},
        "calls": len(calls),
        "ok": sum(c.ok for c in calls),
        "success_ratio": sum(c.ok for c in calls) / len(calls) if calls else None,
        "by_period": by_period,
        "by_stack": {s.name: {"calls": len(s.calls), "ok": sum(c.ok for c in s.calls)}
                     for s in stacks},
        "by_kind": {kind: {"calls": sum(c.kind == kind for c in calls),
                           "ok": sum(c.ok for c in calls if c.kind == kind)}
                    for kind, _ in STORE_MIX},
        "attempts_per_call": sum(c.attempts for c in calls) / len(calls) if calls else None,
        "max_over_deadline_ms": _ms(overruns[-1] if overruns else None),
        "calls_past_deadline": sum(o > 0 for o in overruns),
        "calls_past_deadline_50ms": sum(o > OVERRUN_TARGET_MS / 1000 for o in overruns),
        "max_wall_ms": _ms(max((c.wall for c in calls), default=None)),
        "hung_workers": hung,
        "untyped_failures": len(untyped),
        "untyped_by_outcome": dict(Counter(c.outcome for c in untyped)),
        "outage_failures": len(outage_failures),
        "outage_failures_by_outcome": dict(Counter(c.outcome for c in outage_failures)),
        "outage_failures_not_store_unavailable": sum(c.outcome != "StoreUnavailable"
                                                     for c in outage_failures),
        "after_calls": len(after),
        "after_ok": sum(c.ok for c in after),
        "after_success_ratio": sum(c.ok for c in after) / len(after) if after else None,
        "first_ok_after_recovery_s": (round(min(c.t1 for c in ok_since) - end, 3)
                                      if ok_since else None),
        "last_failure_after_recovery_s": (round(max(c.t1 for c in failed_since) - end, 3)
                                          if failed_since else None),
        "failures_started_after_recovery": dict(Counter(c.outcome for c in failed_since)),
        "token_requests": {
            "total": count(-math.inf, math.inf),
            "before": count(-math.inf, start),
            "outage_window": count(*outage_window),
            "after": count(outage_window[1], math.inf),
            "outage_bound": bound,
            "by_stack": {name: len(times) for name, times in token_times.items()},
            "server_tokens_issued": stats.get("tokens_issued"),
            "expected_without_outage": math.ceil(window["end"] / schedule.token_lifetime),
        },
        "token_failures": sum(token_failure(c) for c in calls),
        "token_failures_by_outcome": dict(Counter(c.outcome for c in calls
                                                  if token_failure(c))),
        "attempts_401": sum(c.unauthorized for c in calls),
        "token_refresh_failures": sum(s.hook.token_failures for s in stacks),
        "token_refresh_failure_reasons": dict(sum(
            (s.hook.token_failure_reasons for s in stacks), Counter()).most_common(5)),
        "stored_token": stored,
        "logged": {kind: dict(by_stack) for kind, by_stack in logged.items()},
        "log_samples": samples,
        "failing_open_by_stack": {s.name: logged["failing_open"].get(s.name, 0)
                                  for s in stacks},
        "scheduling_lag": {"thread": canary.figures(),
                           "event_loop": next(s.loop_canary.figures() for s in stacks
                                              if s.name == "httpx_async")},
        "failure_samples": {c.outcome: f"{c.stack} {c.kind} at {c.t0:.2f} s: {c.detail}"
                            for c in reversed(calls) if not c.ok},
    }


def store_check(f: dict[str, Any]) -> dict[str, bool | None]:
    """Each target of a scenario: met, missed, or not measured (None: the other mode)."""
    opened = f["mode"] == "open"
    over = f["max_over_deadline_ms"]
    tokens = f["token_requests"]
    return {
        "no_hang": not f["hung_workers"] and (over is None or over <= OVERRUN_TARGET_MS),
        "untyped_failures": f["untyped_failures"] == 0,
        "open_success_ratio": f["success_ratio"] == 1.0 if opened else None,
        "failing_open_logged": (all(n == 1 for n in f["failing_open_by_stack"].values())
                                if opened else None),
        "closed_outage_failures": (None if opened
                                   else f["outage_failures_not_store_unavailable"] == 0),
        "closed_recovered": None if opened else f["after_success_ratio"] == 1.0,
        "token_failures": f["token_failures"] == 0,
        "token_in_store": bool(f["stored_token"].get("accepted")),
        "token_requests_outage": tokens["outage_window"] <= tokens["outage_bound"],
    }


def _short_counts(counts: dict[str, int], limit: int = 3) -> str:
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return text + (", ..." if len(items) > limit else "") if text else "-"


def print_store_table(results: dict[str, dict[str, Any]]) -> None:
    header = (f"{'scenario':14s} {'calls':>6s} {'ok before':>15s} {'ok outage':>15s} "
              f"{'ok after +1s':>15s} {'max wall-deadline':>17s} "
              f"{'token req outage/bound, all, srv':>32s} {'FAILING OPEN':>12s} "
              f"{'stored token':>14s}")
    print(header)
    print("-" * len(header))
    for name, f in results.items():
        periods = f["by_period"]
        tokens = f["token_requests"]
        stored = f["stored_token"]
        token_text = ("valid" if stored.get("accepted") else
                      "REJECTED" if stored.get("present") else "none")
        over = f["max_over_deadline_ms"]
        token_req = (f"{tokens['outage_window']}/{tokens['outage_bound']}, {tokens['total']}, "
                     f"{tokens['server_tokens_issued']}")
        print(f"{name:14s} {f['calls']:6d} "
              f"{_pct(periods['before']['ok'], periods['before']['calls']):>15s} "
              f"{_pct(periods['outage']['ok'], periods['outage']['calls']):>15s} "
              f"{_pct(periods['after']['ok'], periods['after']['calls']):>15s} "
              f"{'-' if over is None else f'{over:+.0f} ms':>17s} "
              f"{token_req:>32s} "
              f"{'/'.join(str(n) for n in f['failing_open_by_stack'].values()):>12s} "
              f"{token_text:>14s}")


def print_store_details(results: dict[str, dict[str, Any]]) -> None:
    for name, f in results.items():
        w = f["window_s"]
        periods = f["by_period"]
        tokens = f["token_requests"]
        print(f"\n{name}: fault {w['fault_start']:.2f} -> {w['fault_end']:.2f} s, "
              f"end {w['end']:.2f} s; {f['attempts_per_call']:.2f} attempts/call; "
              f"max wall {f['max_wall_ms']} ms ({f['calls_past_deadline']} calls past the "
              f"deadline, {f['calls_past_deadline_50ms']} by > {OVERRUN_TARGET_MS:g} ms)")
        print("  calls/s " + ", ".join(f"{p} {periods[p]['calls_per_s']}" for p in PERIODS)
              + "; p50/max wall ms " + ", ".join(
                  f"{p} {periods[p]['p50_wall_ms']}/{periods[p]['max_wall_ms']}"
                  for p in PERIODS))
        print("  attempts answered 429 " + ", ".join(
            f"{p} {periods[p]['attempts_429']}" for p in PERIODS))
        for period in PERIODS:
            if periods[period]["failures"]:
                print(f"  failures {period}: " + "; ".join(
                    f"{kind}: {_short_counts(counts, 4)}"
                    for kind, counts in periods[period]["failures_by_kind"].items()))
        last = f["last_failure_after_recovery_s"]
        print(f"  since recovery: first success after {f['first_ok_after_recovery_s']} s, "
              + ("no failure" if last is None else
                 f"the last failure ended {last} s after "
                 f"({_short_counts(f['failures_started_after_recovery'])})"))
        print(f"  token: {f['attempts_401']} attempts answered 401 (refreshed and replayed),"
              f" {f['token_refresh_failures']} failed refreshes "
              f"{f['token_refresh_failure_reasons'] or ''}, {f['token_failures']} calls failed "
              "for their token")
        print(f"  token requests: {tokens['before']} before, {tokens['outage_window']} from "
              f"the fault to recovery + {RECOVERY_GRACE:g} s (bound {tokens['outage_bound']}),"
              f" {tokens['after']} after; per stack {tokens['by_stack']}; the sandbox issued "
              f"{tokens['server_tokens_issued']} (one per lifetime without an outage: "
              f"~{tokens['expected_without_outage']})")
        stored = f["stored_token"]
        print(f"  stored token: {'accepted' if stored.get('accepted') else 'NOT accepted'} "
              f"(/protected {stored.get('status')}), version {stored.get('version')}, "
              f"expires in {stored.get('expires_in_s') or 0:.2f} s; held by the caches of "
              f"{', '.join(stored.get('stacks_holding_it') or []) or 'none'} (a stack whose "
              "last call came before the last refresh holds the one before)"
              + (f"; {stored['error']}" if "error" in stored else ""))
        print(f"  logged: {f['logged'] or '-'}")
        for kind, sample in f["log_samples"].items():
            print(f"    {kind}: {sample[:240]}")
        lag = f["scheduling_lag"]
        print("  scheduling lag p50/p99/max ms: " + ", ".join(
            f"{k} {v['p50_ms']}/{v['p99_ms']}/{v['max_ms']}" for k, v in lag.items()))


def print_store_targets(results: dict[str, dict[str, Any]],
                        checks: dict[str, dict[str, bool | None]]) -> None:
    figure = {
        "no_hang": lambda f: f"max {f['max_over_deadline_ms']:+.0f} ms vs the deadline, "
                             f"hung {len(f['hung_workers'])}",
        "untyped_failures": lambda f: f"{f['untyped_failures']} "
                                      f"{f['untyped_by_outcome'] or ''}".strip(),
        "open_success_ratio": lambda f: _pct(f["ok"], f["calls"]),
        "failing_open_logged": lambda f: "/".join(
            str(n) for n in f["failing_open_by_stack"].values()),
        "closed_outage_failures": lambda f: (
            f"{f['outage_failures'] - f['outage_failures_not_store_unavailable']}/"
            f"{f['outage_failures']} StoreUnavailable"
            + (f" ({_short_counts(f['outage_failures_by_outcome'], 5)})"
               if f["outage_failures_not_store_unavailable"] else "")),
        "closed_recovered": lambda f: _pct(f["after_ok"], f["after_calls"]),
        "token_failures": lambda f: (f"{f['token_failures']} "
                                     f"{f['token_failures_by_outcome'] or ''}").strip(),
        "token_in_store": lambda f: ("accepted" if f["stored_token"].get("accepted")
                                     else str(f["stored_token"])),
        "token_requests_outage": lambda f: (f"{f['token_requests']['outage_window']} <= "
                                            f"{f['token_requests']['outage_bound']}"),
    }
    print("\nstore-fault targets:")
    for target, what in STORE_TARGETS.items():
        marks = []
        for name, f in results.items():
            met = checks[name][target]
            if met is None:
                continue
            marks.append(f"{name} {figure[target](f)} {'met' if met else 'MISSED'}")
        verdicts = [checks[n][target] for n in results if checks[n][target] is not None]
        overall = ("not measured" if not verdicts
                   else "met" if all(verdicts) else "MISSED")
        print(f"  {target} {what}  -> {overall}")
        for mark in marks:
            print(f"      {mark}")


def run_store_phase(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Every scenario (backend x failure mode) in turn; the phase's figures and checks."""
    schedule = STORE_SCHEDULES["quick" if args.quick else "full"]
    log(f"store-fault phase: {' + '.join(STACKS)} x {args.store_workers} workers, each stack "
        f"with its own store object; pacing and the token in the store; the fault after "
        f"{schedule.before:g} s, for {schedule.outage:g} s, then {schedule.after:g} s; "
        f"tokens live {schedule.token_ttl} s (refreshed after {schedule.token_lifetime:g} "
        f"s); deadline {STORE_POLICY.deadline:g} s, attempt_timeout "
        f"{STORE_POLICY.attempt_timeout:g} s, max_attempts {STORE_POLICY.max_attempts}; "
        f"/flaky p(fault) {STORE_FAULT_P} ({', '.join(STORE_HTTP_FAULTS)}); /limited "
        f"{STORE_RATE:g}/s")
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    started = time.monotonic()
    redis_server: Any = None
    with tempfile.TemporaryDirectory(prefix="soak-store-") as tmp:
        try:
            if "redis" in args.store_list:
                from surefoot.sandbox import RedisServer, RedisServerNotFound

                try:
                    redis_server = RedisServer().start()
                except RedisServerNotFound as exc:
                    skipped["redis"] = str(exc)
                    log(f"  Redis scenarios not run: {exc}")
            for backend in args.store_list:
                if backend in skipped:
                    continue
                for mode in args.mode_list:
                    name = f"{backend}/{mode}"
                    t0 = time.monotonic()
                    results[name] = run_store_scenario(
                        backend, mode, schedule, args.seed, args.store_workers, redis_server,
                        Path(tmp))
                    f = results[name]
                    log(f"  {name}: {f['calls']} calls, {f['ok']} ok, "
                        f"{f['outage_failures']} failed during the outage "
                        f"({time.monotonic() - t0:.1f} s)")
        finally:
            if redis_server is not None:
                redis_server.close()
    checks = {name: store_check(f) for name, f in results.items()}
    redis_version = (None if redis_server is None
                     else output(redis_server.binary, "--version", check=False))
    return {
        "parameters": {
            "schedule": asdict(schedule), "workers_per_stack": args.store_workers,
            "stores": args.store_list, "modes": args.mode_list, "mix": dict(STORE_MIX),
            "http_faults": list(STORE_HTTP_FAULTS), "fault_p": STORE_FAULT_P,
            "limited_rate": STORE_RATE, "limited_burst": STORE_BURST,
            "recovery_grace_s": RECOVERY_GRACE,
            "policy": {k: (sorted(v) if isinstance(v, frozenset) else v)
                       for k, v in asdict(STORE_POLICY).items()},
            "redis_server": redis_version, "redis-py": _version("redis"),
            "sqlite": sqlite3.sqlite_version,
            "run_s": round(time.monotonic() - started, 1),
        },
        "skipped": skipped,
        "targets": STORE_TARGETS,
        "scenarios": results,
        "targets_met": checks,
    }


def report_store_phase(phase: dict[str, Any]) -> None:
    results, checks = phase["scenarios"], phase["targets_met"]
    if not results:
        print("\nstore-fault phase: no scenario ran")
        return
    print("\nstore-fault phase (ok: calls answered 200 with the right body; periods: "
          f"before the fault, overlapping the outage, started >= {RECOVERY_GRACE:g} s after "
          "recovery; FAILING OPEN: records per stack's store object)")
    print_store_table(results)
    print_store_details(results)
    print_store_targets(results, checks)


def store_phase_failed(phase: dict[str, Any]) -> bool:
    """An invariant missed in some scenario."""
    return any(checks[t] is False for checks in phase["targets_met"].values()
               for t in STORE_INVARIANTS)


# -- main --------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        **source_state(),
        **platform_info(),
        "surefoot": surefoot.__version__,
        **{package: _version(package) for package in ("requests", "urllib3", "httpx",
                                                      "httpcore", "anyio")},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 600 logical requests, then the brief store-fault "
                        "phase (< 60 s)")
    parser.add_argument("--requests", type=int, default=None,
                        help="logical requests in all (10000; --quick 600)")
    parser.add_argument("--workers", type=int, default=32,
                        help="threads (tasks for httpx_async) per stack (32)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the plan and of the sandbox's dice (1)")
    parser.add_argument("--stacks", default=",".join(STACKS),
                        help="comma-separated stacks to run; each runs its share of the same "
                        "plan as in a run of all three (default: all)")
    parser.add_argument("--processes", action="store_true",
                        help="run each stack in its own process (as separate services "
                        "would), instead of all three in this one (64 threads and an event "
                        "loop sharing one GIL)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (bench/results/soak.json; --quick soak_quick.json; "
                        "--store-faults soak_store_faults.json, with --quick "
                        "soak_store_faults_quick.json)")
    parser.add_argument("--store-faults", action="store_true",
                        help="run the store-fault phase alone: Redis killed and restarted, "
                        "SQLite locked, each failing open and closed (~60 s; --quick ~30 s)")
    parser.add_argument("--no-store-faults", action="store_true",
                        help="--quick: skip the brief store-fault phase")
    parser.add_argument("--stores", default=",".join(STORE_BACKENDS),
                        help="store-fault phase: comma-separated backends (redis,sqlite)")
    parser.add_argument("--modes", default=",".join(FAILURE_MODES),
                        help="store-fault phase: comma-separated failure modes (open,closed)")
    parser.add_argument("--store-workers", type=int, default=8,
                        help="store-fault phase: threads (tasks) per stack (8)")
    args = parser.parse_args(argv)
    if args.store_faults and args.no_store_faults:
        parser.error("--store-faults and --no-store-faults exclude each other")
    if args.requests is None:
        args.requests = 600 if args.quick else 10_000
    if args.output is None:
        if args.store_faults:
            name = "soak_store_faults_quick.json" if args.quick else "soak_store_faults.json"
        else:
            name = "soak_quick.json" if args.quick else "soak.json"
            if args.processes:
                name = name.replace("soak", "soak_processes", 1)
        args.output = RESULTS / name
    #: the soak itself (not with --store-faults); the store-fault phase (--store-faults,
    #: and briefly after a --quick soak)
    args.run_soak = not args.store_faults
    args.run_store_phase = args.store_faults or (args.quick and not args.no_store_faults)
    args.store_list = [name for name in args.stores.split(",") if name]
    args.mode_list = [name for name in args.modes.split(",") if name]
    if (not args.store_list or not set(args.store_list) <= set(STORE_BACKENDS)
            or not args.mode_list or not set(args.mode_list) <= set(FAILURE_MODES)):
        parser.error(f"--stores: choose from {', '.join(STORE_BACKENDS)}; --modes: from "
                     f"{', '.join(FAILURE_MODES)}")
    if args.store_workers < 1:
        parser.error("--store-workers must be at least 1")
    if args.requests < 1 or args.workers < 1:
        parser.error("--requests and --workers must be at least 1")
    args.stack_list = [name for name in args.stacks.split(",") if name]
    unknown = [name for name in args.stack_list if name not in STACKS]
    if unknown or not args.stack_list:
        parser.error(f"--stacks: choose from {', '.join(STACKS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # 127.0.0.1 only: no proxy from the environment (httpx would mount a proxy transport
    # beside surefoot's for it)
    for name in [k for k in os.environ if k.lower() in ("http_proxy", "https_proxy",
                                                          "all_proxy")]:
        del os.environ[name]
    _ = surefoot.Client, surefoot.requests.SurefootAdapter, surefoot.httpx.Client
    info = machine_info()
    print(f"surefoot at {info['commit']}" + (" (src/ modified)" if info["src_modified"]
                                             else ""))
    print(f"python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs; "
          + ", ".join(f"{k} {info[k]}" for k in ("requests", "urllib3", "httpx", "httpcore")))
    started = time.monotonic()
    failed = False
    if args.run_soak:
        result, failed = soak(args, info)
    else:
        result = {"parameters": {"store_faults": True, "quick": args.quick, "seed": args.seed,
                                 "commit": info["commit"], "src_modified": info["src_modified"],
                                 "date": dt.datetime.now(dt.timezone.utc).isoformat(
                                     timespec="seconds")},
                  "machine": info}
    if args.run_store_phase:
        print()
        phase = run_store_phase(args, print)
        report_store_phase(phase)
        result["store_faults"] = phase
        failed = failed or store_phase_failed(phase)
    elapsed = time.monotonic() - started
    if not args.run_soak:
        result["parameters"]["elapsed_s"] = round(elapsed, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(_round(result), indent=2) + "\n")
    print(f"\nwrote {args.output} ({elapsed:.0f} s)")
    return 1 if failed else 0


def soak(args: argparse.Namespace, info: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The soak itself: its result, and whether an invariant was missed."""
    jobs = {name: (planned if name in args.stack_list else [])
            for name, planned in plan(args.requests, args.seed).items()}
    kinds = Counter(job.kind for stack in jobs.values() for job in stack)
    print(f"{sum(kinds.values())} logical requests "
          f"({', '.join(f'{k} {v}' for k, v in kinds.items())}), "
          f"{' + '.join(args.stack_list)} x {args.workers} workers at once, "
          f"p(fault) = {FAULT_P} per attempt")
    print(f"policy: max_attempts {POLICY.max_attempts}, deadline {POLICY.deadline:g} s "
          f"(probes {PROBE_POLICY.deadline:g} s), attempt_timeout {POLICY.attempt_timeout:g} s,"
          f" backoff {POLICY.backoff_initial:g}..{POLICY.backoff_max:g} s, retry_after_cap "
          f"{POLICY.retry_after_cap:g} s; pacing off\n")
    print("topology: " + ("each stack in its own process (--processes)" if args.processes
                          else "every stack in this one process (64 threads and one event "
                               "loop sharing its GIL)"))
    started = time.monotonic()
    before = os.times()
    canary = Canary()
    with SandboxProcess(["--seed", str(args.seed)]) as sandbox:
        if args.processes:
            runs = run_all_processes(jobs, sandbox.url, args.workers)
            pauses = None
        else:
            with GcPauses() as pauses:
                runs = run_all(jobs, sandbox.url, args.workers, print, canary)
        ran = time.monotonic() - started
        client_cpu = (sum(run.cpu_s for run in runs.values()) if args.processes
                      else _cpu(os.times(), before))
        # the server answers a hung attempt (and counts it) only when its hang is over
        time.sleep(PROBE_HANG + 0.5)
        stats, orders = server_counts(sandbox.url)
    elapsed = time.monotonic() - started
    after = os.times()  # the sandbox has exited: its CPU time is its parent's children's
    sandbox_cpu = (after.children_user + after.children_system
                   - before.children_user - before.children_system)
    if args.processes:  # the stacks' processes were children too
        sandbox_cpu -= client_cpu

    def controls(run: StackRun) -> tuple[Canary, GcPauses | None]:
        """The thread canary and the collector of the process ``run`` ran in."""
        if run.thread_canary is not None:
            return run.thread_canary, run.gc
        return canary, pauses

    def context(record: Record) -> dict[str, Any]:
        """The worst lag around a late call: from 100 ms before its deadline to its end."""
        run = runs[record.job.stack]
        thread_canary, gc_pauses = controls(run)
        start = record.ended - record.wall + record.job.deadline - 0.1
        window = (start, record.ended + CANARY_SLEEP)
        found = {"thread_lag_ms": _ms(thread_canary.worst_between(*window)),
                 "gc_pause_ms": _ms(gc_pauses.worst_between(*window)) if gc_pauses else None}
        if record.job.stack == "httpx_async":
            found["loop_lag_ms"] = _ms(run.loop_canary.worst_between(*window))
        return found

    records = [r for run in runs.values() for r in run.records]
    runs = {name: run for name, run in runs.items() if name in args.stack_list}
    rows = {name: figures(run.records, [run.hook], orders, context)
            for name, run in runs.items()}
    rows["overall"] = figures(records, [run.hook for run in runs.values()], orders, context)
    checks = {name: check(f) for name, f in rows.items()}
    table = by_kind_and_fault(records, orders)
    endpoints = stats.get("endpoints", {})
    server_attempts = sum(endpoints.get(e, {}).get("requests", 0) for e in ("/flaky", "/orders"))
    faults = stats.get("faults", {})

    print()
    print_table(rows)
    print(f"\nstacks ran {', '.join(f'{n} {r.seconds:.1f} s' for n, r in runs.items())}; "
          f"attempts: {rows['overall']['attempts']} in the clients' histories, "
          f"{server_attempts} seen by the sandbox, {sum(faults.values())} faulted "
          f"({sum(faults.values()) / max(server_attempts, 1):.1%})")
    if args.processes:
        print(f"CPU time: client processes {client_cpu:.1f} s ("
              + ", ".join(f"{n} {r.cpu_s:.1f}" for n, r in runs.items())
              + f") over the {ran:.1f} s of the run, sandbox {sandbox_cpu:.1f} s in all "
              f"({info['cpu_count']} CPUs)")
    else:
        print(f"CPU time: client process {client_cpu:.1f} s over the {ran:.1f} s of the run, "
              f"sandbox {sandbox_cpu:.1f} s in all ({info['cpu_count']} CPUs)")
    lag: dict[str, Any]
    gc_figures: dict[str, Any]
    if args.processes:
        lag, gc_figures = {}, {}
        for name, run in runs.items():
            thread_canary, gc_pauses = controls(run)
            lag[name] = {"thread": thread_canary.figures()}
            if name == "httpx_async":
                lag[name]["event_loop"] = run.loop_canary.figures()
            gc_figures[name] = gc_pauses.figures() if gc_pauses else None
    else:
        lag = {"thread": canary.figures()}
        if "httpx_async" in runs:
            lag["event_loop"] = runs["httpx_async"].loop_canary.figures()
        gc_figures = pauses.figures() if pauses else {}
    print_controls(rows, lag, gc_figures, args.processes)
    print(f"faults injected: {dict(sorted(faults.items()))}")
    print(f"attempts by outcome (clients' histories): {rows['overall']['attempt_outcomes']}")
    print_breakdown(table)
    print_targets(rows, checks)
    print("\nlatest calls at the deadline (overrun ms, stack, kind, attempts; the worst "
          "thread / loop lag and collector's pause from 100 ms before the deadline to the "
          "end, ms):")
    for late in rows["overall"]["latest_at_deadline"][:5]:
        print(f"  {late['overrun_ms']:7.1f}  {late['stack']:12s} {late['kind']:14s} "
              f"{' '.join(late['attempts'])}  (thread {late['thread_lag_ms']}, loop "
              f"{late.get('loop_lag_ms', '-')}, gc {late['gc_pause_ms']})")
    samples = print_samples(records)

    result = {
        "parameters": {
            "requests": args.requests, "workers_per_stack": args.workers, "seed": args.seed,
            "quick": args.quick, "stacks": args.stack_list, "mix": dict(MIX),
            "fault_p": FAULT_P, "hang_s": HANG, "retry_after": RETRY_AFTER,
            "probe_hang_s": PROBE_HANG, "cap_probe_retry_after": CAP_PROBE_RETRY_AFTER,
            "policies": {name: {k: (sorted(v) if isinstance(v, frozenset) else v)
                                for k, v in asdict(policy).items()}
                         for name, policy in POLICIES.items()},
            "commit": info["commit"], "src_modified": info["src_modified"],
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(elapsed, 1),
            "run_s": round(ran, 1),
            "client_cpu_s": round(client_cpu, 1),
            "sandbox_cpu_s": round(sandbox_cpu, 1),
            "stack_seconds": {n: round(r.seconds, 1) for n, r in runs.items()},
            "processes": args.processes,
        },
        "machine": info,
        "targets": TARGETS,
        "figures": rows,
        "targets_met": checks,
        "by_kind_and_fault": table,
        "server": {"attempts": server_attempts, "faults": faults,
                   "orders_created": stats.get("orders_created"), "resets": stats.get("resets"),
                   "endpoints": {e: endpoints.get(e) for e in ("/flaky", "/orders")}},
        "scheduling_lag": lag,
        "gc_pauses": gc_figures,
        "gave_up_reasons": dict(sum((run.hook.gave_up for run in runs.values()),
                                    Counter()).most_common(20)),
        "untyped_samples": samples,
    }
    return result, any(checks["overall"][t] is False for t in INVARIANTS)


def _cpu(now: os.times_result, then: os.times_result) -> float:
    return now.user + now.system - then.user - then.system


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
