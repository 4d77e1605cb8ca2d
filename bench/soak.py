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
probe failing the way it should. The control for the overrun is printed beside it: how
late a plain sleeping thread, and a task on the async stack's loop, wake up meanwhile.

    .venv/bin/python bench/soak.py [--quick] [--requests N] [--workers W] [--seed S]
                                   [--stacks a,b] [--output PATH]

Writes ``bench/results/soak.json`` (``--quick``: ``soak_quick.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import random
import sys
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
from _env import platform_info, source_state
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
        return judge_error(job, exc, t0, time.monotonic() - t0)
    wall = time.monotonic() - t0
    return judge_response(job, response.status_code, response.headers, response.content,
                          surefoot.history_of(response), wall)


async def call_async(client: Any, job: Job) -> Record:
    method, path, kwargs = job.request()
    t0 = time.monotonic()
    try:
        response = await client.request(method, path, **kwargs)
    except Exception as exc:
        return judge_error(job, exc, t0, time.monotonic() - t0)
    wall = time.monotonic() - t0
    return judge_response(job, response.status_code, response.headers, response.content,
                          surefoot.history_of(response), wall)


CANARY_SLEEP = 0.01


class Canary:
    """How late a sleeper wakes up in this process while the stacks run: a thread that
    ``time.sleep``s, or a task that ``asyncio.sleep``s on the async stack's loop, 10 ms
    at a time. The control for the deadline overrun: a call that failed at its deadline
    also needs its thread (or its loop) to be scheduled again to end."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.stop = threading.Event()

    def run_thread(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            time.sleep(CANARY_SLEEP)
            self.lags.append(time.monotonic() - t0 - CANARY_SLEEP)

    async def run_task(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            await asyncio.sleep(CANARY_SLEEP)
            self.lags.append(time.monotonic() - t0 - CANARY_SLEEP)

    def figures(self) -> dict[str, float | None]:
        return {"p50_ms": _ms(nearest_rank(self.lags, 0.50)),
                "p99_ms": _ms(nearest_rank(self.lags, 0.99)),
                "max_ms": _ms(max(self.lags, default=None))}


@dataclass
class StackRun:
    name: str
    jobs: list[Job]
    hook: WaitRecorder = field(default_factory=WaitRecorder)
    records: list[Record] = field(default_factory=list)
    seconds: float = 0.0
    crash: str = ""
    loop_canary: Canary = field(default_factory=Canary)  # httpx_async only


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
            orders: Counter[str]) -> dict[str, Any]:
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
             "outcome": r.outcome, "attempts": list(r.trail)}
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
                        help="smoke run: 600 logical requests (< 60 s)")
    parser.add_argument("--requests", type=int, default=None,
                        help="logical requests in all (10000; --quick 600)")
    parser.add_argument("--workers", type=int, default=32,
                        help="threads (tasks for httpx_async) per stack (32)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the plan and of the sandbox's dice (1)")
    parser.add_argument("--stacks", default=",".join(STACKS),
                        help="comma-separated stacks to run; each runs its share of the same "
                        "plan as in a run of all three (default: all)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (bench/results/soak.json; --quick soak_quick.json)")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 600 if args.quick else 10_000
    if args.output is None:
        args.output = RESULTS / ("soak_quick.json" if args.quick else "soak.json")
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
    started = time.monotonic()
    before = os.times()
    with SandboxProcess(["--seed", str(args.seed)]) as sandbox:
        canary = Canary()
        runs = run_all(jobs, sandbox.url, args.workers, print, canary)
        ran = time.monotonic() - started
        client_cpu = _cpu(os.times(), before)
        # the server answers a hung attempt (and counts it) only when its hang is over
        time.sleep(PROBE_HANG + 0.5)
        stats, orders = server_counts(sandbox.url)
    elapsed = time.monotonic() - started
    after = os.times()  # the sandbox has exited: its CPU time is its parent's children's
    sandbox_cpu = (after.children_user + after.children_system
                   - before.children_user - before.children_system)

    records = [r for run in runs.values() for r in run.records]
    runs = {name: run for name, run in runs.items() if name in args.stack_list}
    rows = {name: figures(run.records, [run.hook], orders) for name, run in runs.items()}
    rows["overall"] = figures(records, [run.hook for run in runs.values()], orders)
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
    print(f"CPU time: client process {client_cpu:.1f} s over the {ran:.1f} s of the run, "
          f"sandbox {sandbox_cpu:.1f} s in all ({info['cpu_count']} CPUs)")
    lag = {"thread": canary.figures()}
    if "httpx_async" in runs:
        lag["event_loop"] = runs["httpx_async"].loop_canary.figures()
    print("scheduling lag (a 10 ms sleep woke up late by, p50/p99/max ms): "
          + ", ".join(f"{k} {v['p50_ms']}/{v['p99_ms']}/{v['max_ms']}" for k, v in lag.items()))
    print(f"faults injected: {dict(sorted(faults.items()))}")
    print(f"attempts by outcome (clients' histories): {rows['overall']['attempt_outcomes']}")
    print_breakdown(table)
    print_targets(rows, checks)
    if checks["overall"]["deadline_overrun_p100_ms"] is False:
        print("\nlatest calls at the deadline (overrun ms, stack, kind, attempts):")
        for late in rows["overall"]["latest_at_deadline"][:5]:
            print(f"  {late['overrun_ms']:7.1f}  {late['stack']:12s} {late['kind']:14s} "
                  f"{' '.join(late['attempts'])}")
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
        "gave_up_reasons": dict(sum((run.hook.gave_up for run in runs.values()),
                                    Counter()).most_common(20)),
        "untyped_samples": samples,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(_round(result), indent=2) + "\n")
    print(f"\nwrote {args.output} ({elapsed:.0f} s)")
    return 1 if any(checks["overall"][t] is False for t in INVARIANTS) else 0


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
