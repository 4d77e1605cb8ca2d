"""The clients the quota benchmarks (``quota.py`` and its ``--fleet``, ``_fleet.py``) run.

Each sends ``GET /limited/x?dialect=...`` to the sandbox, one logical request (retries
included) per :meth:`Client.request`, and records every attempt it puts on the wire in a
:class:`Recorder`: surefoot, and the usual tools side by side (a naive loop, urllib3's
``Retry``, tenacity, httpx-retries, pyrate-limiter).
"""

from __future__ import annotations

import random
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
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
from _quota_metrics import OK, ClosedScenario, OutageScenario, Run

#: Statuses the peers' hand-written loops retry (429 throttling, 503 outage). There is no
#: 503 outside the outage scenario, so in ``known``/``unknown`` this is "retry on 429".
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRIES = 10  # retries of the naive loops (so up to 11 attempts)
MAX_ATTEMPTS = 10  # total attempts of tenacity and surefoot; urllib3/httpx-retries: total=10
ATTEMPT_TIMEOUT = 30.0  # per-attempt socket timeout of every client, seconds


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


def pyrate_rate(rate: float) -> pyrate_limiter.Rate:
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
            rate = pyrate_rate(setup.rate)
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


#: ``SurefootClient(pacing=DEFAULT_PACING)``: build the client without a ``pacing`` argument
DEFAULT_PACING: Any = object()


class SurefootClient:
    """One ``surefoot.Client`` shared by every thread, its adapter re-mounted with a pool
    as large as the concurrency (as in the docs' many-threads recipe), on the client's own
    pacer (which may be None)."""

    def __init__(self, name: str, setup: Setup, pacing: Any) -> None:
        self.name = name
        self.path = setup.path
        retry = surefoot.RetryPolicy(max_attempts=MAX_ATTEMPTS, deadline=setup.deadline)
        paced = {} if pacing is DEFAULT_PACING else {"pacing": pacing}
        self.client = surefoot.Client(
            setup.base_url, retry=retry, hook=setup.recorder, timeout=ATTEMPT_TIMEOUT,
            **paced,
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


class SurefootDefaultsClient(SurefootClient):
    """What a user gets by default: ``surefoot.Client(base_url, retry=RetryPolicy(
    max_attempts=10, deadline=...), hook=..., timeout=...)`` with no ``pacing`` argument
    at all (the bigger pool is mounted on the client's own pacer, whatever it is)."""

    def __init__(self, setup: Setup, name: str = "surefoot_defaults") -> None:
        super().__init__(name, setup, DEFAULT_PACING)


# -- driving a client ----------------------------------------------------------------------


_reported: set[tuple[str, str]] = set()


def safe_request(client: Client) -> str:
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


def join_all(threads: Iterable[threading.Thread], until: float) -> int:
    """Join until the monotonic instant ``until``; the number still alive."""
    alive = 0
    for thread in threads:
        thread.join(timeout=max(0.0, until - time.monotonic()))
        alive += thread.is_alive()
    return alive


def run_closed(
    client: Client, scen: ClosedScenario, recorder: Recorder, grace: float | None = None
) -> Run:
    """N requests from C worker threads (``scen``), no new one after ``scen.box``; then
    the ones in flight get ``grace`` seconds (default: their deadline + 30 s) to finish."""
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
            verdict = safe_request(client)
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
    box = scen.box
    if join_all(threads, recorder.t0 + box):
        stop.set()
        run.cut_at = box
        wait = scen.deadline + 30 if grace is None else grace
        run.unfinished = join_all(threads, time.monotonic() + wait)
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


class OutageServer(Protocol):
    """A server that can start an outage (the sandbox's ``QuotaSandbox``, the matrix's
    model server)."""

    def outage(self, seconds: float) -> None: ...


def run_outage(
    client: Client, scen: OutageScenario, recorder: Recorder, sandbox: OutageServer
) -> Run:
    """Open-loop Poisson arrivals (one thread each); ``sandbox.outage()`` at the
    scenario's ``outage_start``."""
    run = Run(client.name, arrivals=poisson_arrivals(scen.arrival_rate, scen.duration, scen.seed))
    lock = threading.Lock()
    window: list[float] = []
    errors: list[BaseException] = []

    def one(index: int, arrival: float) -> None:
        recorder.bind(index)
        verdict = safe_request(client)
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
    run.unfinished = join_all(threads, recorder.t0 + scen.duration + scen.deadline + 15)
    run.started = len(threads)
    run.outage = (window[0], window[0] + scen.outage_seconds)
    run.attempts = list(recorder.attempts)
    return run
