"""Client-side pacing against a rate-limited API, side by side with the usual tools.

Every client sends ``GET /limited/x?dialect=...`` to the sandbox, which runs in a
subprocess (``python -m surefoot.sandbox --rate R --burst B``) and enforces a GCRA quota
of R requests per second with a burst of B. The clients run one after another in one run,
against the same sandbox, reset (``POST /admin/reset``) before each of them; the
sandbox's own counters (``GET /stats``) are the source of truth for attempts and 429s,
and every client also timestamps each attempt it sends (for the timeline and the plots).

Scenarios:

* ``known``: the server states its quota (``dialect=ietf``). N requests from C threads.
* ``unknown``: it states nothing (``dialect=none``) but still answers 429 + Retry-After.
* ``outage``: open-loop Poisson arrivals; for a while every request gets 503 with
  Retry-After (``POST /admin/outage``). How much load does each client add while the
  server is down, and how fast does it recover?

    .venv/bin/python bench/quota.py [--quick] [--scenario known|unknown|outage|all]

Writes ``bench/results/quota.json`` and ``bench/results/quota_<scenario>.png`` (see
``bench/README.md``).

``--fleet`` runs a different benchmark instead (``bench/_fleet.py``): 4 processes x 16
threads share ONE quota, through surefoot's Redis and SQLite stores, against unshared
in-memory pacers, tenacity and pyrate-limiter on Redis. It writes
``bench/results/fleet.json`` and ``fleet.png``.

    .venv/bin/python bench/quota.py --fleet [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import httpx_retries
import pyrate_limiter
import requests
import requests.adapters
import tenacity
import urllib3
import urllib3.util

import surefoot
from _env import git as _git
from _env import version as _version
from _sandbox_process import SandboxProcess

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("known", "unknown", "outage")
CLOSED_CLIENTS = ("naive", "urllib3", "tenacity", "httpx_retries", "pyrate_limiter", "surefoot")
OUTAGE_CLIENTS = (*CLOSED_CLIENTS, "surefoot_no_guard")
#: Only with --clients: pyrate-limiter spelt the everyday way, Rate(R, Duration.SECOND).
EXTRA_CLIENTS = ("pyrate_limiter_window",)
#: Statuses the peers' hand-written loops retry (429 throttling, 503 outage). There is no
#: 503 outside the outage scenario, so in ``known``/``unknown`` this is "retry on 429".
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRIES = 10  # retries of the naive loops (so up to 11 attempts)
MAX_ATTEMPTS = 10  # total attempts of tenacity and surefoot; urllib3/httpx-retries: total=10
ATTEMPT_TIMEOUT = 30.0  # per-attempt socket timeout of every client, seconds
BIN = 0.1  # timeline resolution, seconds
#: ``--quick``: a closed-loop client starts no request after this many times the ideal time
QUICK_BOX = 1.1
OK = "ok"
TARGETS = {
    "known": {"efficiency": (">=", 0.98), "429s_per_N": ("<=", 0.001),
              "attempts_per_N": ("<=", 1.001), "jain": (">=", 0.99)},
    "unknown": {"efficiency": (">=", 0.90), "429s_per_N": ("<=", 0.02)},
    "outage": {"attempts_per_request_during_outage": ("<=", 1.2),
               "peak_vs_arrival_rate": ("<=", 1.5), "success_ratio": (">=", 0.99),
               "recovery_s": ("<=", 1.0)},
}


# -- scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClosedScenario:
    """N requests taken from a shared counter by C worker threads, as fast as allowed."""

    name: str
    dialect: str
    n: int
    workers: int
    rate: float
    burst: int
    deadline: float = 120.0
    #: ``--quick``: no request is started after this many seconds (None: all N)
    time_box: float | None = None

    @property
    def ideal_s(self) -> float:
        """The fastest the server allows: B at once, then one every 1/R seconds."""
        return (self.n - self.burst) / self.rate


@dataclass(frozen=True)
class OutageScenario:
    """Open-loop Poisson arrivals; every non-admin request gets 503 during the outage."""

    name: str
    dialect: str
    duration: float
    arrival_rate: float
    outage_start: float
    outage_seconds: float
    rate: float
    burst: int
    deadline: float = 30.0
    seed: int = 1


Scenario = ClosedScenario | OutageScenario


def scenario(name: str, *, quick: bool, seed: int) -> Scenario:
    if name in ("known", "unknown"):
        n, rate, burst = (600 if quick else 3000), 200.0, 10
        return ClosedScenario(
            name=name,
            dialect="ietf" if name == "known" else "none",
            n=n,
            workers=32,
            rate=rate,
            burst=burst,
            time_box=round(QUICK_BOX * (n - burst) / rate, 3) if quick else None,
        )
    if quick:  # 7 clients x 6 s: what fits in --quick's 2 minutes with the two others
        return OutageScenario(name=name, dialect="ietf", duration=6.0, arrival_rate=100.0,
                              outage_start=2.0, outage_seconds=2.0, rate=1000.0, burst=100,
                              seed=seed)
    return OutageScenario(name=name, dialect="ietf", duration=30.0, arrival_rate=100.0,
                          outage_start=10.0, outage_seconds=10.0, rate=1000.0, burst=100,
                          seed=seed)


# -- recording attempts --------------------------------------------------------------------


class Recorder:
    """Every attempt a client sends: ``[t, status, worker]`` (``t`` in seconds since
    :meth:`start`, ``status`` 0 for a transport error, ``worker`` the worker thread in the
    closed-loop scenarios or the logical request in the outage scenario)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.attempts: list[list[Any]] = []
        self._local = threading.local()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.attempts = []

    def bind(self, worker: int) -> None:
        """This thread now works for ``worker``."""
        self._local.worker = worker

    def sent(self) -> list[Any]:
        """Record an attempt sent now; the caller fills in its status (index 1)."""
        entry = [time.monotonic() - self.t0, None, getattr(self._local, "worker", -1)]
        self.attempts.append(entry)  # list.append is atomic
        return entry

    # surefoot: an event hook (ATTEMPT_SENT opens an entry, ATTEMPT_DONE gives its status)
    def wants(self, kind: surefoot.events.EventKind) -> bool:
        kinds = surefoot.events.EventKind
        return kind in (kinds.ATTEMPT_SENT, kinds.ATTEMPT_DONE)

    def __call__(self, event: surefoot.Event) -> None:
        if event.kind is surefoot.events.EventKind.ATTEMPT_SENT:
            self._local.pending = self.sent()
        elif event.kind is surefoot.events.EventKind.ATTEMPT_DONE:
            entry = getattr(self._local, "pending", None)
            if entry is not None:
                entry[1] = event.status if event.status is not None else 0
                self._local.pending = None


def _timed_pool_class(recorder: Recorder) -> type[urllib3.HTTPConnectionPool]:
    """A urllib3 connection pool recording each request it puts on the wire: this sees the
    retries urllib3's ``Retry`` makes inside one ``session.get``."""

    class TimedPool(urllib3.HTTPConnectionPool):
        def _make_request(self, *args: Any, **kwargs: Any) -> Any:
            entry = recorder.sent()
            try:
                response = super()._make_request(*args, **kwargs)
            except BaseException:
                entry[1] = 0
                raise
            entry[1] = response.status
            return response

    return TimedPool


class _TimedHTTPTransport(httpx.HTTPTransport):
    """httpx's transport, recording each attempt (httpx-retries wraps it)."""

    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        entry = self.recorder.sent()
        try:
            response = super().handle_request(request)
        except BaseException:
            entry[1] = 0
            raise
        entry[1] = response.status_code
        return response


# -- the clients ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    base_url: str
    path: str  # "limited/x?dialect=..."
    recorder: Recorder
    pool: int  # connections kept per client (>= its concurrency)
    deadline: float  # of one logical request, seconds
    rate: float  # the server's quota (pyrate-limiter is configured with it)
    unknown: bool  # the server states no quota (surefoot's adaptive pacing)
    outage: bool

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.path}"


class Client(Protocol):
    """One logical request per :meth:`request` (retries included): ``"ok"`` for a 200,
    else why not. Must be safe to call from many threads at once."""

    name: str

    def request(self) -> str: ...

    def close(self) -> None: ...


def _verdict(status: int) -> str:
    return OK if status == 200 else f"HTTP {status}"


def _requests_session(setup: Setup, max_retries: Any = 0) -> requests.Session:
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=setup.pool, max_retries=max_retries
    )
    adapter.poolmanager.pool_classes_by_scheme = {  # a new dict: never mutate urllib3's
        "http": _timed_pool_class(setup.recorder),
        "https": urllib3.HTTPSConnectionPool,
    }
    session = requests.Session()
    session.trust_env = False  # 127.0.0.1 only: no proxy from the environment
    session.mount("http://", adapter)
    return session


class NaiveClient:
    """The tutorial's loop: on 429 (or 503) sleep ``int(Retry-After)`` (2**retries when
    absent), up to 10 retries; gives up rather than sleep past the deadline."""

    name = "naive"

    def __init__(self, setup: Setup) -> None:
        self.url, self.deadline = setup.url, setup.deadline
        self.session = _requests_session(setup)

    def before_attempt(self, deadline_at: float) -> bool:
        return True

    def request(self) -> str:
        deadline_at = time.monotonic() + self.deadline
        retries = 0
        while True:
            if not self.before_attempt(deadline_at):
                return "deadline (waiting for a permit)"
            response = self.session.get(self.url, timeout=ATTEMPT_TIMEOUT)
            if response.status_code not in RETRY_STATUSES:
                return _verdict(response.status_code)
            if retries >= MAX_RETRIES:
                return f"gave up: HTTP {response.status_code}"
            retry_after = response.headers.get("Retry-After")
            wait = int(retry_after) if retry_after is not None else 2**retries
            if time.monotonic() + wait > deadline_at:
                return "deadline"
            retries += 1
            time.sleep(wait)

    def close(self) -> None:
        self.session.close()


def _pyrate_rate(rate: float) -> pyrate_limiter.Rate:
    """Exactly ``rate`` per second, evenly spaced: k permits per k·1000/rate ms with the
    smallest k that makes the interval a whole number of milliseconds (1 per 5 ms at 200/s).
    ``Rate(200, Duration.SECOND)`` would let 200 go at once, against a burst of 10."""
    for k in range(1, 1001):
        interval = k * 1000.0 / rate
        if interval >= 1 and abs(interval - round(interval)) < 1e-9:
            return pyrate_limiter.Rate(k, round(interval))
    raise ValueError(f"cannot express {rate}/s as a whole number of milliseconds")


class PyrateClient(NaiveClient):
    """The naive loop, with a blocking ``Limiter.try_acquire`` (in-memory bucket, R/s
    exactly) before every attempt, retries included."""

    name = "pyrate_limiter"

    def __init__(self, setup: Setup, *, window: bool = False) -> None:
        super().__init__(setup)
        if window:  # R per rolling second: R may go at once
            self.name = "pyrate_limiter_window"
            rate = pyrate_limiter.Rate(round(setup.rate), pyrate_limiter.Duration.SECOND)
        else:
            rate = _pyrate_rate(setup.rate)
        self.limiter = pyrate_limiter.Limiter(pyrate_limiter.InMemoryBucket([rate]))

    def before_attempt(self, deadline_at: float) -> bool:
        left = deadline_at - time.monotonic()
        return left > 0 and bool(self.limiter.try_acquire("quota", timeout=left))

    def close(self) -> None:
        super().close()
        self.limiter.close()


class Urllib3Client:
    """``HTTPAdapter(max_retries=Retry(total=10, status_forcelist=[429], backoff_factor=0.5,
    respect_retry_after_header=True, allowed_methods=None))``. urllib3 also retries a 503
    carrying Retry-After (its ``RETRY_AFTER_STATUS_CODES``); it has no overall deadline."""

    name = "urllib3"

    def __init__(self, setup: Setup) -> None:
        retry = urllib3.util.Retry(
            total=MAX_RETRIES,
            status_forcelist=[429],
            backoff_factor=0.5,
            respect_retry_after_header=True,
            allowed_methods=None,
        )
        self.url = setup.url
        self.session = _requests_session(setup, max_retries=retry)

    def request(self) -> str:
        return _verdict(self.session.get(self.url, timeout=ATTEMPT_TIMEOUT).status_code)

    def close(self) -> None:
        self.session.close()


class TenacityClient:
    """``@retry(retry=retry_if_result(429 or 503), wait=wait_exponential_jitter(initial=0.1,
    max=5), stop=stop_after_attempt(10) | stop_before_delay(deadline))`` around
    ``session.get``; the last response is returned when it gives up. (Its wait is
    ``0.1 * 2**n`` plus up to 1 s of jitter, at most 5 s; it ignores Retry-After.)"""

    name = "tenacity"

    def __init__(self, setup: Setup) -> None:
        self.url = setup.url
        self.session = _requests_session(setup)
        self._get = tenacity.retry(
            retry=tenacity.retry_if_result(lambda r: r.status_code in RETRY_STATUSES),
            # initial=0.1 in the brief's spelling; tenacity 9.2 renamed it multiplier
            wait=tenacity.wait_exponential_jitter(multiplier=0.1, max=5),
            stop=tenacity.stop_after_attempt(MAX_ATTEMPTS)
            | tenacity.stop_before_delay(setup.deadline),
            retry_error_callback=lambda state: state.outcome.result(),
        )(self._once)

    def _once(self) -> requests.Response:
        return self.session.get(self.url, timeout=ATTEMPT_TIMEOUT)

    def request(self) -> str:
        return _verdict(self._get().status_code)

    def close(self) -> None:
        self.session.close()


class HttpxRetriesClient:
    """``httpx.Client(transport=RetryTransport(retry=Retry(total=10, backoff_factor=0.5,
    total_timeout=deadline)))``: retries 429/502/503/504, honours Retry-After (capped at
    ``max_backoff_wait``, 120 s); ``total_timeout`` caps its summed sleeps."""

    name = "httpx_retries"

    def __init__(self, setup: Setup) -> None:
        limits = httpx.Limits(max_connections=setup.pool, max_keepalive_connections=setup.pool)
        inner = _TimedHTTPTransport(setup.recorder, limits=limits)
        retry = httpx_retries.Retry(
            total=MAX_RETRIES, backoff_factor=0.5, total_timeout=setup.deadline
        )
        self.url = setup.url
        self.client = httpx.Client(
            transport=httpx_retries.RetryTransport(transport=inner, retry=retry),
            timeout=ATTEMPT_TIMEOUT,
            trust_env=False,
        )

    def request(self) -> str:
        return _verdict(self.client.get(self.url).status_code)

    def close(self) -> None:
        self.client.close()


class SurefootClient:
    """One ``surefoot.Client`` shared by every thread, its adapter re-mounted with a pool
    as large as the concurrency (as in the docs' many-threads recipe)."""

    def __init__(self, name: str, setup: Setup, pacing: surefoot.PacingPolicy) -> None:
        self.name = name
        self.path = setup.path
        retry = surefoot.RetryPolicy(max_attempts=MAX_ATTEMPTS, deadline=setup.deadline)
        self.client = surefoot.Client(
            setup.base_url, pacing=pacing, retry=retry, hook=setup.recorder,
            timeout=ATTEMPT_TIMEOUT,
        )
        self.client.session.trust_env = False
        adapter = surefoot.requests.SurefootAdapter(
            pacing=self.client.adapter.pacer, retry=retry, hook=setup.recorder,
            pool_maxsize=setup.pool,
        )
        self.client.session.mount("http://", adapter)

    def request(self) -> str:
        return _verdict(self.client.get(self.path).status_code)

    def close(self) -> None:
        self.client.close()


def build_client(name: str, setup: Setup, scen: Scenario) -> Client:
    if name == "naive":
        return NaiveClient(setup)
    if name == "urllib3":
        return Urllib3Client(setup)
    if name == "tenacity":
        return TenacityClient(setup)
    if name == "httpx_retries":
        return HttpxRetriesClient(setup)
    if name == "pyrate_limiter":
        return PyrateClient(setup)
    if name == "pyrate_limiter_window":
        return PyrateClient(setup, window=True)
    if name == "surefoot":
        if isinstance(scen, OutageScenario):
            pacing = surefoot.PacingPolicy(
                budget=surefoot.pacing.RetryBudgetPolicy(),
                breaker=surefoot.pacing.BreakerPolicy(failure_threshold=5, open_for=1.0),
            )
        elif setup.unknown:
            pacing = surefoot.PacingPolicy(
                adaptive=surefoot.pacing.AdaptivePolicy(initial_rate=scen.rate / 4)
            )
        else:
            pacing = surefoot.PacingPolicy()
        return SurefootClient(name, setup, pacing)
    if name == "surefoot_no_guard":
        return SurefootClient(name, setup, surefoot.PacingPolicy(budget=None, breaker=None))
    raise ValueError(f"unknown client {name!r}")


# -- the sandbox subprocess ----------------------------------------------------------------


class Sandbox(SandboxProcess):
    """The sandbox subprocess with a quota of ``rate``/s and ``burst``, plus its admin
    calls."""

    def __init__(self, rate: float, burst: int, timeout: float = 20.0) -> None:
        super().__init__(["--rate", repr(rate), "--burst", str(burst)], timeout)
        self.rate, self.burst = rate, burst
        self.admin = requests.Session()
        self.admin.trust_env = False

    def __enter__(self) -> Sandbox:
        super().__enter__()
        return self

    def reset(self) -> None:
        self.admin.post(f"{self.url}/admin/reset", timeout=10).raise_for_status()

    def outage(self, seconds: float) -> None:
        response = self.admin.post(f"{self.url}/admin/outage", params={"seconds": seconds},
                                   timeout=10)
        response.raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self.admin.get(f"{self.url}/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.admin.close()
        super().stop()


# -- running -------------------------------------------------------------------------------


@dataclass
class Run:
    """What one client did in one scenario. Times are seconds since the run's start."""

    client: str
    #: per logical request: (started, ended, verdict, worker or request id)
    requests: list[tuple[float, float, str, int]] = field(default_factory=list)
    attempts: list[list[Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    #: logical requests started (N unless the run was cut short) and still running at the end
    started: int = 0
    unfinished: int = 0
    #: closed loop: when no more requests were started (the time box), if the run was cut
    cut_at: float | None = None
    #: outage scenario: the outage's start and end, and the scheduled arrivals
    outage: tuple[float, float] | None = None
    arrivals: list[float] = field(default_factory=list)


_reported: set[tuple[str, str]] = set()


def _safe_request(client: Client) -> str:
    try:
        return client.request()
    except Exception as exc:  # a failed logical request is a data point, not a crash
        kind = type(exc).__name__
        if not isinstance(exc, (requests.RequestException, httpx.HTTPError,
                                surefoot.SurefootError)) and (client.name, kind) not in _reported:
            # an unexpected error (a bug in a client or the harness): show it once
            _reported.add((client.name, kind))
            print(f"  {client.name}: unexpected {kind}:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        return kind


def _join_all(threads: Iterable[threading.Thread], until: float) -> int:
    """Join until the monotonic instant ``until``; the number still alive."""
    alive = 0
    for thread in threads:
        thread.join(timeout=max(0.0, until - time.monotonic()))
        alive += thread.is_alive()
    return alive


def run_closed(client: Client, scen: ClosedScenario, recorder: Recorder) -> Run:
    run = Run(client.name)
    lock = threading.Lock()
    taken = [0]
    stop = threading.Event()

    def worker(index: int) -> None:
        recorder.bind(index)
        while not stop.is_set():
            with lock:
                if taken[0] >= scen.n:
                    return
                taken[0] += 1
            started = time.monotonic() - recorder.t0
            verdict = _safe_request(client)
            ended = time.monotonic() - recorder.t0
            with lock:
                run.requests.append((started, ended, verdict, index))

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"quota-{i}", daemon=True)
        for i in range(scen.workers)
    ]
    recorder.start()
    for thread in threads:
        thread.start()
    # Bounded: after the time box (--quick) or 10x the ideal time (+30 s) no new request
    # is started, and the ones in flight get their deadline (+30 s) to finish.
    box = scen.time_box if scen.time_box is not None else 10 * scen.ideal_s + 30
    if _join_all(threads, recorder.t0 + box):
        stop.set()
        run.cut_at = box
        run.unfinished = _join_all(threads, time.monotonic() + scen.deadline + 30)
    with lock:
        run.started = taken[0]
    run.attempts = list(recorder.attempts)
    return run


def poisson_arrivals(rate: float, duration: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    arrivals: list[float] = []
    t = rng.expovariate(rate)
    while t < duration:
        arrivals.append(t)
        t += rng.expovariate(rate)
    return arrivals


def run_outage(
    client: Client, scen: OutageScenario, recorder: Recorder, sandbox: Sandbox
) -> Run:
    run = Run(client.name, arrivals=poisson_arrivals(scen.arrival_rate, scen.duration, scen.seed))
    lock = threading.Lock()
    window: list[float] = []
    errors: list[BaseException] = []

    def one(index: int, arrival: float) -> None:
        recorder.bind(index)
        verdict = _safe_request(client)
        ended = time.monotonic() - recorder.t0
        with lock:
            run.requests.append((arrival, ended, verdict, index))

    def start_outage() -> None:
        delay = recorder.t0 + scen.outage_start - time.monotonic()
        time.sleep(max(0.0, delay))
        sent = time.monotonic() - recorder.t0
        try:
            sandbox.outage(scen.outage_seconds)
        except BaseException as exc:
            errors.append(exc)
            return
        # The server starts the outage between the request and its response.
        window.append((sent + time.monotonic() - recorder.t0) / 2)

    # One thread per arrival (open loop: an arrival never waits for a free worker).
    previous_stack = threading.stack_size(1 << 20)
    threads: list[threading.Thread] = []
    try:
        recorder.start()
        trigger = threading.Thread(target=start_outage, name="quota-outage", daemon=True)
        trigger.start()
        for index, arrival in enumerate(run.arrivals):
            delay = recorder.t0 + arrival - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            thread = threading.Thread(target=one, args=(index, arrival), daemon=True)
            thread.start()
            threads.append(thread)
    finally:
        threading.stack_size(previous_stack)
    trigger.join(timeout=15)
    if errors or not window:
        raise RuntimeError(f"could not start the outage: {errors!r}")
    # Bounded: every request has its deadline; give stragglers 15 s on top.
    run.unfinished = _join_all(threads, recorder.t0 + scen.duration + scen.deadline + 15)
    run.started = len(threads)
    run.outage = (window[0], window[0] + scen.outage_seconds)
    run.attempts = list(recorder.attempts)
    return run


def run_scenario(
    scen: Scenario, clients: list[str], log: Callable[[str], None]
) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    with Sandbox(scen.rate, scen.burst) as sandbox:
        log(f"sandbox (subprocess) at {sandbox.url}, rate {scen.rate:g}/s, burst {scen.burst}")
        outage = isinstance(scen, OutageScenario)
        for name in clients:
            recorder = Recorder()
            setup = Setup(
                base_url=sandbox.url,
                path=f"limited/x?dialect={scen.dialect}",
                recorder=recorder,
                pool=2048 if outage else scen.workers,
                deadline=scen.deadline,
                rate=scen.rate,
                unknown=scen.dialect == "none",
                outage=outage,
            )
            client = build_client(name, setup, scen)
            try:
                sandbox.reset()
                wall = time.monotonic()
                if isinstance(scen, OutageScenario):
                    run = run_outage(client, scen, recorder, sandbox)
                else:
                    run = run_closed(client, scen, recorder)
                run.stats = sandbox.stats()
            finally:
                client.close()
            log(f"  {name:<18} done in {time.monotonic() - wall:5.1f} s"
                + (f"  ({run.unfinished} unfinished)" if run.unfinished else ""))
            runs[name] = run
            sandbox.reset()  # also ends an outage that is still on
    return runs


# -- metrics -------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def jain(values: list[float]) -> float | None:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else None


def _bins(times: Iterable[float], end: float) -> list[int]:
    counts = [0] * (int(end / BIN) + 1)
    for t in times:
        if 0 <= t <= end:
            counts[int(t / BIN)] += 1
    return counts


def _window_sums(counts: list[int], width: int) -> list[int]:
    """Sums of ``width`` consecutive bins, one per starting bin."""
    sums, running = [], sum(counts[:width])
    for start in range(max(1, len(counts) - width + 1)):
        sums.append(running)
        if start + width < len(counts):
            running += counts[start + width] - counts[start]
    return sums


def _limited(stats: dict[str, Any]) -> tuple[int, dict[str, int]]:
    endpoint = stats.get("endpoints", {}).get("/limited", {"requests": 0, "statuses": {}})
    return endpoint["requests"], endpoint["statuses"]


def _failures(run: Run) -> dict[str, int]:
    failed = Counter(verdict for _, _, verdict, _ in run.requests if verdict != OK)
    if run.unfinished:
        failed["unfinished"] += run.unfinished
    return dict(failed.most_common())


def closed_metrics(run: Run, scen: ClosedScenario) -> dict[str, Any]:
    server_attempts, statuses = _limited(run.stats)
    ok = [r for r in run.requests if r[2] == OK]
    last = max((r[1] for r in run.requests), default=float("nan"))
    per_worker = [0] * scen.workers
    for _, _, _, worker in ok:
        per_worker[worker] += 1
    waits = [ended - started for started, ended, _, _ in run.requests]
    n = max(run.started, 1)
    boxed = run.cut_at is not None and run.started < scen.n
    if boxed:
        # Cut short by the time box: the quota's share it used within the box, i.e.
        # (successes by then - B) / R over the box.
        assert run.cut_at is not None
        done = sum(1 for r in ok if r[1] <= run.cut_at)
        efficiency = max(done - scen.burst, 0) / scen.rate / run.cut_at
    else:
        efficiency = scen.ideal_s / last if last > 0 else None
    return {
        "efficiency": efficiency,
        "429s_per_N": statuses.get("429", 0) / n,
        "attempts_per_N": server_attempts / n,
        "jain": jain([float(c) for c in per_worker]),
        "p99_wait": _quantile(waits, 0.99),
        "p50_wait": _quantile(waits, 0.50),
        "elapsed_s": last,
        "ideal_s": scen.ideal_s,
        "requests": run.started,
        "time_boxed": boxed,
        "success_ratio": len(ok) / n,
        "server_attempts": server_attempts,
        "server_429s": statuses.get("429", 0),
        "client_attempts": len(run.attempts),
        "client_attempts_per_N": len(run.attempts) / n,
        "peak_attempts_per_s": max(_window_sums(_bins((a[0] for a in run.attempts), last),
                                                round(1 / BIN)), default=0),
        "completions_per_worker": {"min": min(per_worker), "max": max(per_worker)},
        "failures": _failures(run),
    }


def _recovery(run: Run, scen: OutageScenario, end: float) -> float | None:
    """Seconds from the outage's end until successful completions are back to >= 95 % of
    arrivals: the end of the first trailing 0.5 s window (on a 100 ms grid, ending after
    the outage did) that meets it, and the windows ending in the next second do too."""
    assert run.outage is not None
    over = run.outage[1]
    done = _bins((r[1] for r in run.requests if r[2] == OK), end)
    arrived = _bins(run.arrivals, end)
    width, hold = round(0.5 / BIN), round(1.0 / BIN)
    done_w, arrived_w = _window_sums(done, width), _window_sums(arrived, width)
    good = [d >= 0.95 * a for d, a in zip(done_w, arrived_w, strict=True)]
    first = max(0, math.floor(over / BIN) - width + 1)  # the first window ending after it
    # only windows that end before the arrivals do (after that, 0 >= 0.95 * 0)
    last = min(len(good), round(scen.duration / BIN) - width + 1)
    for start in range(first, last - hold + 1):
        if all(good[start : start + hold]):
            return max(0.0, (start + width) * BIN - over)
    return None


def outage_metrics(run: Run, scen: OutageScenario) -> dict[str, Any]:
    assert run.outage is not None
    begin, finish = run.outage
    server_attempts, statuses = _limited(run.stats)
    arrivals = len(run.arrivals)
    by_request = Counter(a[2] for a in run.attempts)
    during = [i for i, t in enumerate(run.arrivals) if begin <= t < finish]
    in_window = sum(1 for a in run.attempts if begin <= a[0] < finish)
    # success: a 200 within the deadline, counted from the arrival
    ok = [r for r in run.requests if r[2] == OK and r[1] - r[0] <= scen.deadline]
    late = sum(1 for r in run.requests if r[2] == OK and r[1] - r[0] > scen.deadline)
    end = max([scen.duration, *(r[1] for r in run.requests)])
    second = round(1 / BIN)
    attempts_bins = _bins((a[0] for a in run.attempts), end)
    peak = max(_window_sums(attempts_bins, second), default=0)
    peak_arrivals = max(_window_sums(_bins(run.arrivals, end), second), default=0)
    waits = [ended - arrival for arrival, ended, _, _ in run.requests]
    held = [ended for arrival, ended, _, _ in run.requests if arrival < finish]
    first_ok = min((r[1] for r in run.requests if r[2] == OK and r[1] >= finish), default=None)
    failures = _failures(run)
    if late:
        failures["late (200 after the deadline)"] = late
    return {
        "attempts_per_request_during_outage": (
            sum(by_request[i] for i in during) / len(during) if during else None
        ),
        "peak_attempts_per_s": peak,
        "peak_vs_arrival_rate": peak / scen.arrival_rate,
        "success_ratio": len(ok) / arrivals if arrivals else None,
        "recovery_s": _recovery(run, scen, end),
        "p99_wait": _quantile(waits, 0.99),
        "p50_wait": _quantile(waits, 0.50),
        "arrivals": arrivals,
        "arrivals_during_outage": len(during),
        "attempts_in_outage_window_per_arrival": in_window / len(during) if during else None,
        "attempts_per_request": len(run.attempts) / arrivals if arrivals else None,
        "peak_attempts_per_100ms_as_per_s": max(attempts_bins, default=0) / BIN,
        "peak_arrivals_per_s": peak_arrivals,
        "first_success_after_outage_s": None if first_ok is None else first_ok - finish,
        "backlog_drained_s": max(0.0, max(held, default=finish) - finish),
        "server_attempts": server_attempts,
        "server_503s": statuses.get("503", 0),
        "server_429s": statuses.get("429", 0),
        "client_attempts": len(run.attempts),
        "outage_window_s": [round(begin, 3), round(finish, 3)],
        "failures": failures,
    }


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def check_targets(name: str, metrics: dict[str, Any]) -> dict[str, bool]:
    checks = {}
    for metric, (op, bound) in TARGETS[name].items():
        value = metrics.get(metric)
        checks[metric] = value is not None and (value >= bound if op == ">=" else value <= bound)
    return checks


# -- reporting -----------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(scen: Scenario, figures: dict[str, dict[str, Any]]) -> None:
    if isinstance(scen, ClosedScenario):
        print(f"\n{scen.name}: dialect={scen.dialect}, N={scen.n}, C={scen.workers}, "
              f"R={scen.rate:g}/s, B={scen.burst}, ideal {scen.ideal_s:.2f} s")
        print(f"{'client':<21} {'eff':>6} {'429s/N':>8} {'att/N':>7} {'client':>7} "
              f"{'jain':>6} {'p50 s':>7} {'p99 s':>7} {'ok':>7} {'time s':>7} {'N':>5}")
        for name, m in figures.items():
            print(f"{name:<21} {_fmt(m['efficiency'], '6.3f')} {_fmt(m['429s_per_N'], '8.2%')} "
                  f"{_fmt(m['attempts_per_N'], '7.3f')} {_fmt(m['client_attempts_per_N'], '7.3f')}"
                  f" {_fmt(m['jain'], '6.3f')} {_fmt(m['p50_wait'], '7.3f')} "
                  f"{_fmt(m['p99_wait'], '7.3f')} {_fmt(m['success_ratio'], '7.1%')} "
                  f"{_fmt(m['elapsed_s'], '7.2f')} {m['requests']:>5d}"
                  + (" (time-boxed)" if m["time_boxed"] else ""))
        if any(m["time_boxed"] for m in figures.values()):
            box = scen.time_box if scen.time_box is not None else 10 * scen.ideal_s + 30
            print(f"(time box: no request started after {box:g} s; a time-boxed client's "
                  "eff is its throughput in the box, its per-N figures per request started)")
    else:
        print(f"\n{scen.name}: Poisson {scen.arrival_rate:g}/s for {scen.duration:g} s, 503 "
              f"outage of {scen.outage_seconds:g} s at t={scen.outage_start:g} s, deadline "
              f"{scen.deadline:g} s, R={scen.rate:g}/s, B={scen.burst}")
        print(f"{'client':<21} {'att/req':>7} {'win/arr':>7} {'peak/s':>7} {'xrate':>6} "
              f"{'success':>8} {'recov s':>7} {'drain s':>7} {'p50 s':>7} {'p99 s':>7} "
              f"{'503s':>6} {'att':>6}")
        for name, m in figures.items():
            print(f"{name:<21} {_fmt(m['attempts_per_request_during_outage'], '7.2f')} "
                  f"{_fmt(m['attempts_in_outage_window_per_arrival'], '7.2f')} "
                  f"{m['peak_attempts_per_s']:>7d} {_fmt(m['peak_vs_arrival_rate'], '6.2f')} "
                  f"{_fmt(m['success_ratio'], '8.2%')} {_fmt(m['recovery_s'], '7.1f')} "
                  f"{_fmt(m['backlog_drained_s'], '7.2f')} "
                  f"{_fmt(m['p50_wait'], '7.3f')} {_fmt(m['p99_wait'], '7.3f')} "
                  f"{m['server_503s']:>6d} {m['server_attempts']:>6d}")
        print(f"(peak arrivals per 1 s window: "
              f"{max(m['peak_arrivals_per_s'] for m in figures.values())})")
    for name, m in figures.items():
        failures = m.get("failures")
        if failures:
            shown = ", ".join(f"{k}: {v}" for k, v in list(failures.items())[:4])
            print(f"  {name} failures: {shown}")


def plot(scen: Scenario, runs: dict[str, Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs)
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 1.9 * len(names) + 0.8),
                             sharex=True, squeeze=False)
    end = max(max((a[0] for a in run.attempts), default=0.0) for run in runs.values()) + BIN
    edges = [i * BIN for i in range(int(end / BIN) + 2)]
    for ax, name in zip(axes[:, 0], names, strict=True):
        run = runs[name]
        groups = {
            "200": [a[0] for a in run.attempts if a[1] == 200],
            "429": [a[0] for a in run.attempts if a[1] == 429],
            "503": [a[0] for a in run.attempts if a[1] == 503],
            "other": [a[0] for a in run.attempts if a[1] not in (200, 429, 503)],
        }
        colors = {"200": "tab:blue", "429": "red", "503": "darkred", "other": "grey"}
        present = [k for k, v in groups.items() if v]
        ax.hist([groups[k] for k in present], bins=edges, stacked=True,
                color=[colors[k] for k in present], label=present, linewidth=0)
        if isinstance(scen, OutageScenario):
            ax.hist(run.arrivals, bins=edges, histtype="step", color="black", linewidth=0.7,
                    label="arrivals")
            if run.outage is not None:
                ax.axvspan(*run.outage, color="red", alpha=0.08, label="outage")
        else:
            ax.axhline(scen.rate * BIN, color="black", linestyle="--", linewidth=0.7,
                       label=f"quota ({scen.rate:g}/s)")
        ax.set_ylabel("attempts\n/100 ms")
        ax.set_title(name, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper right", ncol=6)
    axes[-1, 0].set_xlabel("seconds since the client's start")
    fig.suptitle(f"quota.py - {scen.name}: attempts per 100 ms by status "
                 "(429 red, 503 dark red)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine_info() -> dict[str, Any]:
    changed = _git("status", "--porcelain", "--", "../src")
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_modified": None if changed is None else bool(changed),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "surefoot": surefoot.__version__,
        **{
            package: _version(package)
            for package in ("requests", "urllib3", "httpx", "tenacity", "httpx-retries",
                            "pyrate-limiter", "matplotlib")
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (< 2 min): N=600 time-boxed at 1.1x the ideal "
                        "time; outage 6 s with a 2 s outage")
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    parser.add_argument("--clients", default="",
                        help="comma-separated subset of the clients (default: all)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the Poisson arrivals (1)")
    parser.add_argument("--fleet", action="store_true",
                        help="instead of the scenarios: 4 processes x 16 threads sharing one "
                        "quota (see bench/_fleet.py); --quick: N=600, < 2 min")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (bench/results/quota.json, with --fleet "
                        "bench/results/fleet.json); PNGs go next to it")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = RESULTS / ("fleet.json" if args.fleet else "quota.json")
    if args.fleet:
        from _fleet import FLEET_CLIENTS

        known = set(FLEET_CLIENTS)
    else:
        known = {*OUTAGE_CLIENTS, *EXTRA_CLIENTS}
    args.client_list = [c for c in args.clients.split(",") if c]
    unknown = [c for c in args.client_list if c not in known]
    if unknown:
        parser.error(f"unknown clients {unknown}; choose from {', '.join(sorted(known))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Load the lazily imported requests integration now, so that a run uses one version of
    # surefoot even if its files change on disk meanwhile.
    _ = surefoot.Client, surefoot.requests.SurefootAdapter
    info = machine_info()
    print(f"surefoot at {info['commit']}"
          + (" (src/ modified)" if info["src_modified"] else ""))
    print(f"python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs; "
          + ", ".join(f"{k} {info[k]}" for k in ("surefoot", "requests", "urllib3", "httpx",
                                                  "tenacity", "httpx-retries",
                                                  "pyrate-limiter")))
    if args.fleet:
        import _fleet

        return _fleet.main(args, info)
    names = SCENARIOS if args.scenario == "all" else (args.scenario,)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    if args.output.exists():  # keep the other scenarios' latest figures
        try:
            result = json.loads(args.output.read_text())
        except ValueError:
            result = {}
    result.setdefault("parameters", {})
    result.setdefault("targets_met", {})
    result["machine"] = info
    started = time.monotonic()
    for name in names:
        scen = scenario(name, quick=args.quick, seed=args.seed)
        everyone = OUTAGE_CLIENTS if isinstance(scen, OutageScenario) else CLOSED_CLIENTS
        if args.client_list:
            clients = [c for c in (*everyone, *EXTRA_CLIENTS) if c in args.client_list]
        else:
            clients = list(everyone)
        if not clients:
            continue
        print(f"\n== {name} ({', '.join(clients)})")
        runs = run_scenario(scen, clients, print)
        if isinstance(scen, OutageScenario):
            figures = {c: outage_metrics(run, scen) for c, run in runs.items()}
        else:
            figures = {c: closed_metrics(run, scen) for c, run in runs.items()}
        print_table(scen, figures)
        png = args.output.parent / f"quota_{name}.png"
        plot(scen, runs, png)
        checks = {c: check_targets(name, figures[c]) for c in figures if c == "surefoot"}
        for client, check in checks.items():
            verdicts = ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in check.items())
            print(f"  targets ({client}): {verdicts}")
        result[name] = _round(figures)
        result["targets_met"][name] = checks
        result["parameters"][name] = {
            **asdict(scen),
            "quick": args.quick,
            "commit": info["commit"],
            "src_modified": info["src_modified"],
            "clients": clients,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "plot": png.name,
        }
        print(f"wrote {png}")
    result["targets"] = {k: {m: list(v) for m, v in t.items()} for k, t in TARGETS.items()}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
