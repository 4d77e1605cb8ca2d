"""Memory: no growth over many requests on one client, the state kept per pacing
partition, and the bound of every per-key structure when an attacker varies the key.

Everything runs in this process against in-process fakes (no sockets), so that a million
requests per client take minutes, not hours: ``surefoot.Client`` (requests) with its
adapter's wire send replaced by a canned response (``requests``' own ``build_response``
on a ``urllib3.HTTPResponse``), ``surefoot.httpx.Client`` and
``surefoot.httpx.AsyncClient`` over ``httpx.MockTransport``. Allocations are measured with
``tracemalloc`` (started before each client is built), after ``gc.collect()``.

    .venv/bin/python bench/memory.py [--requests N] [--partitions P] [--attack K] [--quick]

Writes ``bench/results/memory.json`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import io
import json
import linecache
import secrets
import sys
import time
import tracemalloc
import weakref
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import requests
import requests.adapters
import urllib3

import surefoot
import surefoot.httpx
from _env import machine_info, source_state
from surefoot._core._policy import ResponseInfo
from surefoot.errors import StoreUnavailable
from surefoot.pacing import BreakerPolicy
from surefoot.pacing._gcra import MAX_PARTITIONS
from surefoot.requests import SurefootAdapter
from surefoot.signing import (
    HmacSigner,
    HmacVerifier,
    HttpRequest,
    MessageVerifier,
    SignatureKey,
    SignedRequest,
    SigV4Credentials,
    SigV4Signer,
    SigV4Verifier,
)
from surefoot.stores import MemoryNonceCache, MemoryTokenStore
from surefoot.stores._memory import NONCE_MAX_ENTRIES

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
REPO = Path(__file__).resolve().parents[1]

BASE = "http://api.memory.test/"
PATH = "/v1/items"
BODY = b'{"items": [1, 2, 3], "next": null}'
#: A quota far above what one process sends: learned and paced, never waited for.
QUOTA_HEADERS = {"RateLimit-Policy": '"default";q=1000000;w=1',
                 "RateLimit": '"default";r=999999;t=1'}
#: With every policy on, one answer in this many is a 503 (a retry, the breaker counts it).
FAIL_EVERY = 1000

#: Targets (printed met/MISSED; the exit status does not depend on them).
GROWTH_PER_1E5_MAX = 16 * 1024  # bytes per 10^5 requests (noise of caches, not a leak)
GROWTH_MIN_REQUESTS = 100_000  # the growth target is judged on runs this long only
PARTITION_MAX = 2048  # bytes per pacing partition...
PARTITION_TARGETED = ("default", "learned")  # ...of these configurations
PARTITION_WARMUP = 200  # hosts before the measured ones
#: The most partitions measured: with the warm-up hosts, under the state's bound (its
#: tables evict or clear past it; the figure would no longer be per partition).
PARTITIONS_MAX = MAX_PARTITIONS - PARTITION_WARMUP - 800


def _no_hook(event: surefoot.Event) -> None:
    """A hook that ignores every event."""


# -- fake servers -------------------------------------------------------------------------


class _Answers:
    """What the fake server answers: 200 with a small JSON body (and, with ``quota``, the
    quota headers), or every ``fail_every``-th time a 503."""

    def __init__(self, *, quota: bool, fail_every: int | None) -> None:
        self.headers = {"Content-Type": "application/json", **(QUOTA_HEADERS if quota else {})}
        self.fail_every = fail_every
        self.count = 0

    def status(self) -> int:
        self.count += 1
        if self.fail_every and self.count % self.fail_every == 0:
            return 503
        return 200


class _FakeWire(requests.adapters.HTTPAdapter):
    """requests' HTTPAdapter whose ``send`` answers from ``answers`` without a socket
    (``build_response`` as requests does: cookies, encoding, the response's ``raw``)."""

    answers: _Answers

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        answers = self.answers
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(BODY),
            headers={**answers.headers, "Content-Length": str(len(BODY))},
            status=answers.status(), preload_content=False, decode_content=False,
        )
        return self.build_response(request, raw)


class FakeSurefootAdapter(SurefootAdapter, _FakeWire):
    """``SurefootAdapter`` whose ``super().send`` (the wire) is :class:`_FakeWire`'s: the
    whole pipeline runs, only the socket is gone."""


def _httpx_mock(answers: _Answers) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answers.status(), headers=answers.headers, content=BODY)

    return httpx.MockTransport(handler)


# -- clients ------------------------------------------------------------------------------

CLIENTS = ("requests", "httpx", "httpx_async")
CONFIGS = ("defaults", "all_policies")


def _options(config: str) -> dict[str, Any]:
    """The client's options: none, or every policy on."""
    if config == "defaults":
        return {}
    return {
        "pacing": surefoot.Pacer(surefoot.PacingPolicy(breaker=BreakerPolicy())),
        "auth": surefoot.SigningAuth.hmac("memory-key", "memory-secret"),
        "hook": _no_hook,
        "rng": lambda: 0.0,  # a retry's backoff is 0 s: the run measures memory, not waits
    }


class Driver:
    """One client sending ``GET PATH`` in batches (sync or on its own event loop)."""

    def __init__(self, client_name: str, config: str) -> None:
        self.name, self.config = client_name, config
        full = config == "all_policies"
        self.answers = _Answers(quota=full, fail_every=FAIL_EVERY if full else None)
        self.loop: asyncio.AbstractEventLoop | None = None
        options = _options(config)
        if client_name == "requests":
            client = surefoot.Client(BASE, **options)
            client.session.trust_env = False  # no proxy lookups in the environment per call
            client.adapter.__class__ = FakeSurefootAdapter
            client.adapter.answers = self.answers  # type: ignore[attr-defined]
            self.client: Any = client
        elif client_name == "httpx":
            self.client = surefoot.httpx.Client(BASE, transport=_httpx_mock(self.answers),
                                                **options)
        else:
            self.loop = asyncio.new_event_loop()

            async def build() -> surefoot.httpx.AsyncClient:
                return surefoot.httpx.AsyncClient(
                    BASE, transport=_httpx_mock(self.answers), **options)

            self.client = self.loop.run_until_complete(build())

    @property
    def pacer(self) -> surefoot.Pacer | None:
        holder = self.client.adapter if self.name == "requests" else self.client.transport
        pacer: surefoot.Pacer | None = holder.pacer
        return pacer

    def one(self) -> Any:
        """One request; its response."""
        if self.loop is None:
            return self.client.get(PATH)
        return self.loop.run_until_complete(self.client.get(PATH))

    def batch(self, n: int, url: Callable[[int], str] | None = None) -> None:
        """``n`` requests, each response dropped at once (``url(i)``: the i-th URL)."""
        if self.loop is not None:
            self.loop.run_until_complete(self._abatch(n, url))
            return
        get = self.client.get
        for i in range(n):
            response = get(PATH if url is None else url(i))
            if response.status_code != 200:
                raise RuntimeError(f"{self.name}: HTTP {response.status_code}")

    async def _abatch(self, n: int, url: Callable[[int], str] | None) -> None:
        get = self.client.get
        for i in range(n):
            response = await get(PATH if url is None else url(i))
            if response.status_code != 200:
                raise RuntimeError(f"{self.name}: HTTP {response.status_code}")

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            return
        try:
            self.loop.run_until_complete(self.client.aclose())
        finally:
            self.loop.close()


# -- tracemalloc --------------------------------------------------------------------------

_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, linecache.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


@contextmanager
def tracing(frames: int) -> Iterator[None]:
    gc.collect()
    tracemalloc.start(frames)
    try:
        yield
    finally:
        tracemalloc.stop()


def settle() -> None:
    """Collect: what is left is what the client keeps (the attempt watchdog keeps one
    watch per thread, nothing per attempt)."""
    gc.collect()


def traced() -> int:
    """Bytes allocated since tracing began and still alive, after :func:`settle`."""
    settle()
    return tracemalloc.get_traced_memory()[0]


def snapshot() -> tracemalloc.Snapshot:
    settle()
    return tracemalloc.take_snapshot().filter_traces(_IGNORED)


def _short(filename: str) -> str:
    if filename.startswith("<"):
        return filename  # generated code (a dataclass's __init__ ...)
    for marker in ("site-packages/", "src/", "lib/python"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + len(marker):] if marker != "lib/python" else (
                "stdlib/" + filename[at:].split("/", 2)[-1])
    try:
        return str(Path(filename).resolve().relative_to(REPO))
    except ValueError:
        return filename


def top_sites(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot,
              n: int = 5, key: str = "lineno") -> list[dict[str, Any]]:
    """The allocation sites that grew most between the snapshots."""
    sites = []
    for stat in after.compare_to(before, key)[: n * 4]:
        if stat.size_diff <= 0:
            continue
        frame = stat.traceback[0]
        where = _short(frame.filename) + ("" if key == "filename" else f":{frame.lineno}")
        sites.append({"site": where, "size_diff": stat.size_diff, "count_diff": stat.count_diff})
        if len(sites) == n:
            break
    return sites


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per request through ``(requests, bytes)`` points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


# -- 1. many requests on one client ---------------------------------------------------------


@dataclass
class Run:
    client: str
    config: str
    requests: int
    warmup: int
    seconds: float = 0.0
    warm_bytes: int = 0
    end_bytes: int = 0
    checkpoints: list[tuple[int, int]] = field(default_factory=list)
    growth_per_1e5: float = 0.0
    top_sites: list[dict[str, Any]] = field(default_factory=list)
    gc: dict[str, Any] = field(default_factory=dict)
    pacer: dict[str, int] = field(default_factory=dict)

    @property
    def growth(self) -> int:
        return self.end_bytes - self.warm_bytes


def pacer_sizes(pacer: surefoot.Pacer | None) -> dict[str, int]:
    """Entries of each per-partition structure of a pacer with a local state."""
    if pacer is None:
        return {}
    state: Any = pacer.state
    sizes = {"limiter": len(state.limiter._partitions)}
    for name in ("_adaptive", "_arrivals", "_sends", "_oks", "_breakers"):
        sizes["state" + name] = len(getattr(state, name))
    for name in ("_server_learned", "_answered", "_sent_learned", "_late_told", "_resets",
                 "_windows", "_longest", "_refills"):
        sizes["pacer" + name] = len(getattr(pacer, name))
    return sizes


def _bare_gc(client_name: str, probes: int) -> tuple[bool, float]:
    """The same two figures for the bare library client on the same fake server
    (``requests.Session`` with the fake wire, ``httpx.Client``/``AsyncClient`` on the
    mock transport): what the library itself does."""
    answers = _Answers(quota=False, fail_every=None)
    loop: asyncio.AbstractEventLoop | None = None
    if client_name == "requests":
        session = requests.Session()
        session.trust_env = False
        wire = _FakeWire()
        wire.answers = answers
        session.mount("http://", wire)
        get: Callable[[str], Any] = session.get
        close: Callable[[], Any] = session.close
    elif client_name == "httpx":
        client = httpx.Client(transport=_httpx_mock(answers))
        get, close = client.get, client.close
    else:
        loop = asyncio.new_event_loop()
        aclient = httpx.AsyncClient(transport=_httpx_mock(answers))

        def get(url: str) -> Any:
            assert loop is not None
            return loop.run_until_complete(aclient.get(url))

        def close() -> None:
            assert loop is not None
            loop.run_until_complete(aclient.aclose())
            loop.close()
    url = BASE.rstrip("/") + PATH
    enabled = gc.isenabled()
    try:
        for _ in range(20):
            get(url)
        gc.collect()
        gc.disable()
        response = get(url)
        ref = weakref.ref(response)
        del response
        freed = ref() is None
        for _ in range(probes):
            get(url)
        cyclic = gc.collect()
    finally:
        if enabled:
            gc.enable()
        close()
    return freed, cyclic / probes


def gc_checks(driver: Driver, probes: int) -> dict[str, Any]:
    """Does a dropped response go at once (reference counting alone), does its history
    keep it alive, and how many objects per request only the cycle collector frees (and
    the same for the bare library client)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        response = driver.one()
        ref = weakref.ref(response)
        history = surefoot.history_of(response)
        del response
        freed_by_refcount = ref() is None
        gc.collect()
        freed_by_gc = ref() is None
        del history
        gc.collect()
        freed_without_history = ref() is None
        driver.batch(probes)
        cyclic = gc.collect()
    finally:
        if enabled:
            gc.enable()
    bare_freed, bare_cyclic = _bare_gc(driver.name, probes)
    return {
        "response_freed_by_refcount": freed_by_refcount,
        "response_freed_while_history_kept": freed_by_gc,
        "response_freed": freed_without_history,
        "cyclic_objects_per_request": round(cyclic / probes, 2),
        "bare_response_freed_by_refcount": bare_freed,
        "bare_cyclic_objects_per_request": round(bare_cyclic, 2),
        "gc_garbage": len(gc.garbage),
    }


def run_client(client_name: str, config: str, *, n: int, warmup: int, every: int,
               frames: int, probes: int) -> Run:
    run = Run(client_name, config, n, warmup)
    started = time.perf_counter()
    with tracing(frames):
        driver = Driver(client_name, config)
        try:
            driver.batch(warmup)
            # The checkpoints go into an array made before the first one: recording them
            # allocates nothing (a list of tuples would grow with them, and be measured).
            marks = array("q", bytes(8 * 2 * (-(-n // every) + 1)))
            before = snapshot()  # first: the filters' own caches are then warm
            run.warm_bytes = marks[1] = traced()
            done = k = 0
            while done < n:
                step = min(every, n - done)
                driver.batch(step)
                done += step
                k += 2
                marks[k], marks[k + 1] = done, traced()
                print(f"    {client_name}/{config}: {done:>9,} requests, "
                      f"{marks[k + 1]:>10,} bytes traced", flush=True)
            run.end_bytes = marks[k + 1]
            after = snapshot()
            run.checkpoints = [(marks[i], marks[i + 1]) for i in range(0, k + 2, 2)]
            run.top_sites = top_sites(after, before)
            del before, after
            run.pacer = pacer_sizes(driver.pacer)
            run.gc = gc_checks(driver, probes)
        finally:
            driver.close()
    run.seconds = time.perf_counter() - started
    # The first checkpoint after the warm-up is left out of the fit: one-off growth
    # (a dict resized, a free list filled) is not a trend.
    run.growth_per_1e5 = slope(run.checkpoints[1:] if len(run.checkpoints) > 3
                               else run.checkpoints) * 1e5
    return run


# -- 2. state per pacing partition ----------------------------------------------------------


PARTITION_CONFIGS = {
    # name: (what, client options, the server states a quota)
    "default": ("PacingPolicy() (the default pacer); the server states no quota", {}, False),
    "learned": ("PacingPolicy(); every answer states a quota (learned per partition)", {},
                True),
    "all_policies": ("Pacer(PacingPolicy(breaker=BreakerPolicy())), HMAC auth, no-op hook; "
                     "a quota stated", "all", True),
}


def run_partitions(config: str, *, partitions: int, frames: int) -> dict[str, Any]:
    """Bytes kept per new partition: ``partitions`` requests to as many hosts through a
    ``surefoot.httpx.Client`` (the pipeline's own calls to the pacer)."""
    what, options, quota = PARTITION_CONFIGS[config]
    answers = _Answers(quota=quota, fail_every=None)
    kwargs = _options("all_policies") if options == "all" else {}
    with tracing(frames):
        client = surefoot.httpx.Client(BASE, transport=_httpx_mock(answers), **kwargs)
        try:
            for i in range(PARTITION_WARMUP):  # warm-up: the code paths, on hosts of their own
                client.get(f"http://warm{i}.memory.test{PATH}")
            before_bytes = traced()
            before = snapshot()
            started = time.perf_counter()
            for i in range(partitions):
                response = client.get(f"http://p{i}.memory.test{PATH}")
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}")
            del response
            seconds = time.perf_counter() - started
            after_bytes = traced()
            after = snapshot()
            sizes = pacer_sizes(client.transport.pacer)
            by_file = top_sites(after, before, n=6, key="filename")
            sites = top_sites(after, before, n=6)
        finally:
            client.close()
    per = (after_bytes - before_bytes) / partitions
    return {
        "config": config,
        "what": what,
        "partitions": partitions,
        "bytes": after_bytes - before_bytes,
        "bytes_per_partition": round(per, 1),
        "target": PARTITION_MAX if config in PARTITION_TARGETED else None,
        "met": per <= PARTITION_MAX,
        "seconds": round(seconds, 2),
        "pacer_entries": sizes,
        "by_file": by_file,
        "top_sites": sites,
    }


# -- 3. bounds under an attack ----------------------------------------------------------------

WALL = 1_800_000_000.0


def _report(pacer: surefoot.Pacer, partition: str, info: ResponseInfo, now: float,
            *, late: float = 0.0) -> None:
    """What the pipeline does for one attempt on ``partition``: reserve, admit, count
    the request, report the answer."""
    pacer.reserve(partition, now=now)
    pacer.admit(partition, now=now)
    pacer.on_request(partition, now=now)
    pacer.report(partition, info, sent_at=now - late, now=now, wall_now=WALL + now,
                 probe=False, late=late)


def _attack_pacer(keys: int, info_for: Callable[[int, int], ResponseInfo], *,
                  answers: int = 1, breaker: bool = False, late: float = 0.0,
                  step: float = 1e-4) -> tuple[surefoot.Pacer, int]:
    """``keys`` partitions, ``answers`` answers each; the pacer and the bytes it kept."""
    pacer = surefoot.Pacer(surefoot.PacingPolicy(breaker=BreakerPolicy() if breaker else None))
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    now = 0.0
    for i in range(keys):  # a key's answers in a row (its reset jumps between them)
        for round_ in range(answers):
            now += step
            _report(pacer, f"h{i}.attack.test", info_for(i, round_), now, late=late)
    return pacer, traced() - start


@dataclass
class Bound:
    structure: str
    where: str
    bound: str
    bound_value: int | None
    attack: str
    keys: int
    entries: int
    bytes: int
    seconds: float
    note: str = ""
    #: Keys an attacker chooses (a Host, an API key, a nonce); ``False``: the
    #: application's own (reported, not part of the target).
    attacker: bool = True

    @property
    def met(self) -> bool:
        return self.bound_value is not None and self.entries <= self.bound_value


def _pacer_rows(pacer: surefoot.Pacer, rows: list[tuple[str, str, str, int | None, str]],
                attack: str, keys: int, size: int, seconds: float) -> list[Bound]:
    sizes = pacer_sizes(pacer)
    out = []
    for i, (structure, where, bound, value, note) in enumerate(rows):
        key = structure.split()[0]
        out.append(Bound(structure, where, bound, value, attack, keys, sizes[key],
                         size if i == 0 else 0, seconds if i == 0 else 0.0, note))
    return out


def bounds(keys: int, sig_keys: int, frames: int) -> list[Bound]:
    """Every per-key structure of ``src/surefoot`` that an attacker can grow, driven with
    ``keys`` distinct keys (``sig_keys`` for the signing caches: each key costs a
    signature); bytes are what the whole attacked object kept (first row of a group)."""
    found: list[Bound] = []
    limit = f"{MAX_PARTITIONS:,} (RateLimiter.max_partitions)"
    with tracing(frames):
        # (a) new hosts stating a quota, breaker on: what the pipeline does per attempt
        started = time.perf_counter()
        quota = ResponseInfo(200, QUOTA_HEADERS)
        pacer, size = _attack_pacer(keys, lambda i, r: quota, breaker=True)
        found += _pacer_rows(pacer, [
            ("limiter", "pacing/_gcra.py RateLimiter._partitions", limit, MAX_PARTITIONS,
             "LRU; partitions holding state get a second chance"),
            ("state_arrivals", "pacing/_state.py LocalPacerState._arrivals", limit,
             MAX_PARTITIONS, "cleared when full"),
            ("state_sends", "pacing/_state.py LocalPacerState._sends", limit, MAX_PARTITIONS,
             "cleared when full"),
            ("state_breakers", "pacing/_state.py LocalPacerState._breakers", limit,
             MAX_PARTITIONS, "full: one holding no state dropped first, else the oldest"),
            ("pacer_answered", "pacing/_pacer.py Pacer._answered", "40,000", 40_001,
             "cleared past 40,000"),
            ("pacer_server_learned", "pacing/_pacer.py Pacer._server_learned", "40,000",
             40_001, "cleared past 40,000"),
            ("pacer_sent_learned", "pacing/_pacer.py Pacer._sent_learned", "40,000", 40_001,
             "cleared past 40,000"),
        ], "new hosts stating a quota (breaker on)", keys, size,
            time.perf_counter() - started)
        del pacer
        # (b) new hosts throttling (429, no quota stated): the adaptive rate per partition
        started = time.perf_counter()
        throttled = ResponseInfo(429, {})
        pacer, size = _attack_pacer(keys, lambda i, r: throttled)
        found += _pacer_rows(pacer, [
            ("state_adaptive", "pacing/_state.py LocalPacerState._adaptive", limit,
             MAX_PARTITIONS, "oldest created dropped"),
            ("state_oks", "pacing/_state.py LocalPacerState._oks", limit, MAX_PARTITIONS,
             "cleared when full (counted on non-throttled answers)"),
        ], "new hosts answering 429 without a quota", keys, size,
            time.perf_counter() - started)
        del pacer
        # (c) X-RateLimit without a window, the reset jumping: window inference per key
        started = time.perf_counter()

        def jumping(i: int, round_: int) -> ResponseInfo:
            return ResponseInfo(200, {"X-RateLimit-Limit": "100",
                                      "X-RateLimit-Remaining": "99",
                                      "X-RateLimit-Reset": str(1 + 60 * round_)})

        n_c = max(keys // 2, 1)
        pacer, size = _attack_pacer(n_c, jumping, answers=2, step=1e-3)
        found += _pacer_rows(pacer, [
            ("pacer_resets", "pacing/_pacer.py Pacer._resets", "40,000", 40_001,
             "cleared past 40,000"),
            ("pacer_windows", "pacing/_pacer.py Pacer._windows", "40,000", 40_001,
             "cleared past 40,000"),
            ("pacer_longest", "pacing/_pacer.py Pacer._longest", "40,000", 40_001,
             "cleared past 40,000"),
        ], "new hosts, X-RateLimit-Reset jumping (2 answers each)", n_c, size,
            time.perf_counter() - started)
        del pacer
        # (d) OpenAI-style headers (the refill rate fitted per key) and late sends
        started = time.perf_counter()
        openai = ResponseInfo(200, {"x-ratelimit-limit-requests": "100",
                                    "x-ratelimit-remaining-requests": "50",
                                    "x-ratelimit-reset-requests": "500ms"})
        pacer, size = _attack_pacer(keys, lambda i, r: openai, late=0.05)
        found += _pacer_rows(pacer, [
            ("pacer_refills", "pacing/_pacer.py Pacer._refills", "40,000", 40_001,
             "cleared past 40,000"),
            ("pacer_late_told", "pacing/_pacer.py Pacer._late_told", "40,000", 40_001,
             "cleared past 40,000"),
        ], "new hosts, OpenAI headers, sends 50 ms late", keys, size,
            time.perf_counter() - started)
        del pacer
        found.append(_attack_hmac_nonces(keys))
        found.append(_attack_hmac_nonces(keys, max_entries=max(keys // 4, 1)))
        found.append(_attack_sigv4_keys(sig_keys))
        found.append(_attack_sigv4_signer(sig_keys))
        found.append(_attack_rfc9421_identifiers(sig_keys))
        found.append(_attack_token_store(keys))
    return found


def _attack_hmac_nonces(keys: int, *, max_entries: int = NONCE_MAX_ENTRIES) -> Bound:
    """``keys`` valid HMAC requests, each with its own nonce, within the replay window."""
    signer = HmacSigner("attack-key", "attack-secret", nonce_factory=lambda: secrets.token_hex(16))
    cache = MemoryNonceCache(max_entries=max_entries)
    verifier = HmacVerifier({"attack-key": "attack-secret"}, nonces=cache)
    url = "https://api.attack.test/v1/orders"
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    refused = 0
    for i in range(keys):
        now = WALL + i * 1e-4
        headers = signer.sign(HttpRequest("POST", url, {}, b"{}"), now=now)
        try:
            verifier.verify(SignedRequest.of("POST", url, headers, b"{}"), now=now)
        except StoreUnavailable:
            refused += 1
    size = traced() - start
    configured = max_entries != NONCE_MAX_ENTRIES
    return Bound(
        "nonces" + (" (configured)" if configured else ""),
        "stores/_memory.py MemoryNonceCache._seen (HmacVerifier's default)",
        f"{max_entries:,} (max_entries)", max_entries,
        "valid HMAC requests, a new nonce each", keys, len(cache), size,
        time.perf_counter() - started,
        f"{refused:,} refused (StoreUnavailable: 503)" if refused else
        f"{size / max(len(cache), 1):.0f} B per pair")


def _attack_sigv4_keys(keys: int) -> Bound:
    """``keys`` valid SigV4 requests, each under its own access key."""
    secrets_by_key = {f"AKIA{i:016d}": f"secret-{i}" for i in range(keys)}
    verifier = SigV4Verifier(secrets_by_key, region="eu-west-1", service="execute-api",
                             nonces=False)
    url = "https://api.attack.test/v1/orders"
    signers = [SigV4Signer(SigV4Credentials(k, s), "eu-west-1", "execute-api")
               for k, s in secrets_by_key.items()]
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    for signer in signers:
        headers = signer.sign(HttpRequest("GET", url, {}, b""), now=WALL)
        headers["host"] = "api.attack.test"  # (sent by the HTTP client)
        verifier.verify(SignedRequest.of("GET", url, headers, b""), now=WALL)
    size = traced() - start
    table = verifier._signing_keys._table
    return Bound("sigv4_verifier_keys", "signing/_sigv4.py SigV4Verifier._signing_keys",
                 f"{table_max(verifier._signing_keys):,} (_KeyCache)",
                 table_max(verifier._signing_keys), "valid SigV4 requests, one access key each",
                 keys, len(table), size, time.perf_counter() - started, "LRU")


def table_max(cache: Any) -> int:
    value: int = cache.max_entries
    return value


def _attack_sigv4_signer(keys: int) -> Bound:
    """One signer, ``keys`` distinct header names (the per-name signing decision)."""
    signer = SigV4Signer(SigV4Credentials("AKIAATTACK", "secret"), "eu-west-1", "execute-api")
    url = "https://api.attack.test/v1/orders"
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    for i in range(keys):
        signer.sign(HttpRequest("GET", url, {f"x-custom-{i}": "1"}, b""), now=WALL)
    size = traced() - start
    return Bound("sigv4_signer_decisions", "signing/_sigv4.py SigV4Signer._decisions",
                 "512", 512, "requests with a new header name each", keys,
                 len(signer._decisions), size, time.perf_counter() - started,
                 "full: not memoised")


def _attack_rfc9421_identifiers(keys: int) -> Bound:
    """Signature-Input covering a new component each (checked before the signature)."""
    verifier = MessageVerifier({"k": SignatureKey("hmac-sha256", b"s" * 32, key_id="k")})
    url = "https://api.attack.test/v1/orders"
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    unexpected: dict[str, int] = {}
    for i in range(keys):
        headers = {
            "Signature-Input": f'sig1=("@method" "x-h{i}");created={int(WALL)};keyid="k"',
            "Signature": "sig1=:AAAA:",
            f"x-h{i}": "1",
        }
        try:
            verifier.verify(SignedRequest.of("GET", url, headers, b""), now=WALL)
        except surefoot.SignatureError:
            pass
        except Exception as exc:  # not the verifier's contract: counted and shown
            unexpected[type(exc).__name__] = unexpected.get(type(exc).__name__, 0) + 1
    size = traced() - start
    return Bound("rfc9421_identifiers", "signing/_rfc9421.py MessageVerifier._identifiers",
                 "512 (_MAX_CACHED_IDENTIFIERS)", 512,
                 "unsigned requests covering a new header each", keys,
                 len(verifier._identifiers), size, time.perf_counter() - started,
                 "cleared when full" + "".join(f"; {n} x {name} (a bug: not a SignatureError)"
                                               for name, n in unexpected.items()))


def _attack_token_store(keys: int) -> Bound:
    """Tokens saved and deleted under ``keys`` keys (the application's, e.g. per user)."""
    from surefoot.oauth._token import Token

    store = MemoryTokenStore()
    token = Token(access_token="a", token_type="Bearer", expires_at=None)
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    for i in range(keys):
        key = f"user-{i}"
        store.save(key, token)
        store.delete(key)
    size = traced() - start
    return Bound("token_versions", "stores/_memory.py MemoryTokenStore._versions",
                 "none (the application's keys)", None,
                 "tokens saved then deleted, one key each", keys, len(store._versions),
                 size, time.perf_counter() - started,
                 "a tombstone per deleted key: versions never go backwards", attacker=False)


# -- reporting ------------------------------------------------------------------------------


def print_runs(runs: list[Run]) -> None:
    header = (f"{'client':<12} {'config':<13} {'requests':>10} {'warm-up B':>10} "
              f"{'end B':>10} {'growth B':>9} {'B/1e5 req':>10} {'refcnt':>6} "
              f"{'cyc/req':>7} {'bare':>5}  top growing site")
    print(header)
    print("-" * len(header))
    for run in runs:
        site = run.top_sites[0] if run.top_sites else None
        where = f"{site['site']} (+{site['size_diff']:,} B)" if site else "-"
        print(f"{run.client:<12} {run.config:<13} {run.requests:>10,} {run.warm_bytes:>10,} "
              f"{run.end_bytes:>10,} {run.growth:>+9,} {run.growth_per_1e5:>+10,.0f} "
              f"{'yes' if run.gc['response_freed_by_refcount'] else 'NO':>6} "
              f"{run.gc['cyclic_objects_per_request']:>7} "
              f"{run.gc['bare_cyclic_objects_per_request']:>5}  {where}")


def print_partitions(rows: list[dict[str, Any]]) -> None:
    header = (f"{'config':<13} {'partitions':>10} {'bytes':>11} {'B/partition':>11} "
              f"{'target':>7}  where (top files)")
    print(header)
    print("-" * len(header))
    for row in rows:
        files = ", ".join(f"{s['site']} {s['size_diff'] / row['partitions']:.0f}"
                          for s in row["by_file"][:4])
        print(f"{row['config']:<13} {row['partitions']:>10,} {row['bytes']:>11,} "
              f"{row['bytes_per_partition']:>11,.0f} "
              f"{('met' if row['met'] else 'MISSED') if row['target'] else 'info':>7}  "
              f"{files}")


def print_bounds(found: list[Bound]) -> None:
    header = (f"{'structure':<26} {'bound':<34} {'keys':>8} {'entries':>8} {'bytes':>11} "
              f"{'ok':>7}  note")
    print(header)
    print("-" * len(header))
    for b in found:
        size = f"{b.bytes:,}" if b.bytes else "(above)"
        print(f"{b.structure:<26} {b.bound:<34} {b.keys:>8,} {b.entries:>8,} {size:>11} "
              f"{'ok' if b.met else 'UNBOUND' if b.attacker else 'app':>7}  {b.note}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000,
                        help="requests per client and configuration (10^6)")
    parser.add_argument("--every", type=int, default=None,
                        help="requests between checkpoints (default: a tenth of --requests)")
    parser.add_argument("--warmup", type=int, default=2000, help="warm-up requests (2000)")
    parser.add_argument("--partitions", type=int, default=PARTITIONS_MAX,
                        help="new partitions measured per pacer configuration "
                             f"({PARTITIONS_MAX}: the most that stay under the state's bound)")
    parser.add_argument("--attack", type=int, default=200_000,
                        help="distinct keys per bounds attack (200000)")
    parser.add_argument("--sig-attack", type=int, default=None,
                        help="distinct keys for the signing caches (default: min(--attack, "
                             "20000); each costs a signature)")
    parser.add_argument("--clients", default=",".join(CLIENTS),
                        help=f"clients to run ({','.join(CLIENTS)})")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"configurations to run ({','.join(CONFIGS)})")
    parser.add_argument("--skip", default="",
                        help="sections to skip: requests,partitions,bounds")
    parser.add_argument("--keep-skipped", action="store_true",
                        help="keep the skipped sections' results from the JSON at --output")
    parser.add_argument("--frames", type=int, default=1,
                        help="tracemalloc frames per allocation (1: cheapest)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1500 requests, 500 partitions, 11000 keys (< 60 s)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON path ({RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.partitions, args.attack = 1500, 300, 500, 11_000
        args.every = args.every or 500
        args.sig_attack = args.sig_attack or 1100
    args.every = args.every or max(args.requests // 10, 1)
    args.sig_attack = args.sig_attack or min(args.attack, 20_000)
    args.clients = [c for c in args.clients.split(",") if c]
    args.configs = [c for c in args.configs.split(",") if c]
    args.skip = {s for s in args.skip.split(",") if s}
    for name in args.clients:
        if name not in CLIENTS:
            parser.error(f"unknown client {name!r}")
    for name in args.configs:
        if name not in CONFIGS:
            parser.error(f"unknown configuration {name!r}")
    if args.partitions > PARTITIONS_MAX:
        parser.error(f"--partitions: at most {PARTITIONS_MAX} (beyond, the state's tables "
                     "evict or clear partitions and the figure is no longer per partition)")
    if min(args.requests, args.partitions, args.attack, args.every, args.sig_attack) < 1:
        parser.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info("requests", "urllib3", "httpx")
    started = time.perf_counter()
    print(f"python {info['python']} ({info['implementation']}) on {info['platform']}, "
          f"{info['cpu_count']} CPUs; requests {info['requests']}, httpx {info['httpx']}, "
          f"surefoot {info['surefoot']}")
    runs: list[Run] = []
    if "requests" not in args.skip:
        print(f"\n1. {args.requests:,} requests per client after {args.warmup:,} of warm-up, "
              f"checkpoint every {args.every:,} (in-process fakes, tracemalloc "
              f"{args.frames} frame(s))", flush=True)
        for config in args.configs:
            for name in args.clients:
                runs.append(run_client(name, config, n=args.requests, warmup=args.warmup,
                                       every=args.every, frames=args.frames, probes=500))
    partitions: list[dict[str, Any]] = []
    print(f"   ({time.perf_counter() - started:.0f} s so far)", flush=True)
    if "partitions" not in args.skip:
        print(f"\n2. {args.partitions:,} new partitions (hosts) per pacer configuration, "
              "through surefoot.httpx.Client", flush=True)
        for config in PARTITION_CONFIGS:
            partitions.append(run_partitions(config, partitions=args.partitions,
                                             frames=args.frames))
    found: list[Bound] = []
    print(f"   ({time.perf_counter() - started:.0f} s so far)", flush=True)
    if "bounds" not in args.skip:
        print(f"\n3. bounds: {args.attack:,} distinct keys per attack ({args.sig_attack:,} for "
              "the signing caches)", flush=True)
        found = bounds(args.attack, args.sig_attack, args.frames)
    print()
    if runs:
        print("many requests on one client (bytes traced by tracemalloc after gc.collect()):")
        print_runs(runs)
        print()
    if partitions:
        print("state per pacing partition:")
        print_partitions(partitions)
        print()
    if found:
        print("bounds under an attack (entries after it; bytes: what the attacked object "
              "kept):")
        print_bounds(found)
        print()
    runs_json = [
        {
            "client": r.client, "config": r.config, "requests": r.requests,
            "warmup": r.warmup, "seconds": round(r.seconds, 1),
            "warm_bytes": r.warm_bytes, "end_bytes": r.end_bytes, "growth": r.growth,
            "growth_per_1e5": round(r.growth_per_1e5, 1),
            "checkpoints": r.checkpoints, "top_sites": r.top_sites, "gc": r.gc,
            "pacer_entries": r.pacer,
        }
        for r in runs
    ]
    bounds_json = [
        {
            "structure": b.structure, "where": b.where, "bound": b.bound,
            "bound_value": b.bound_value, "attack": b.attack, "keys": b.keys,
            "entries": b.entries, "bytes": b.bytes, "seconds": round(b.seconds, 2),
            "met": b.met, "note": b.note, "attacker": b.attacker,
        }
        for b in found
    ]
    kept: list[str] = []
    if args.keep_skipped and args.skip and args.output.exists():
        previous = json.loads(args.output.read_text())
        for section, name in (("requests", "runs"), ("partitions", "partitions"),
                              ("bounds", "bounds")):
            if section in args.skip and previous.get(name):
                kept.append(name)
        runs_json = previous["runs"] if "runs" in kept else runs_json
        partitions = previous["partitions"] if "partitions" in kept else partitions
        bounds_json = previous["bounds"] if "bounds" in kept else bounds_json
        if kept:
            print(f"kept from the previous {args.output.name}: {', '.join(kept)} (measured "
                  f"{previous.get('date')}, parameters {previous.get('parameters')})")
    # A trend needs a long run: under 10^5 requests the slope is mostly noise.
    long_runs = [r for r in runs_json if r["requests"] >= GROWTH_MIN_REQUESTS]
    growth_ok = (all(r["growth_per_1e5"] <= GROWTH_PER_1E5_MAX for r in long_runs)
                 if long_runs else None)
    freed_ok = all(r["gc"]["response_freed"] for r in runs_json) if runs_json else None
    targeted = [p for p in partitions if p["config"] in PARTITION_TARGETED]
    partition_ok = all(p["met"] for p in targeted) if targeted else None
    targets = {
        "growth_per_1e5_requests": {"max": GROWTH_PER_1E5_MAX, "met": growth_ok,
                                    "min_requests": GROWTH_MIN_REQUESTS},
        "responses_freed": {"met": freed_ok},
        "bytes_per_partition": {"max": PARTITION_MAX, "met": partition_ok,
                                "configs": list(PARTITION_TARGETED)},
        "bounded_structures": {
            "met": all(b["met"] for b in bounds_json if b.get("attacker", True)) if bounds_json
            else None,
            "unbounded": sorted({b["where"] for b in bounds_json if not b["met"]}),
        },
    }
    for name, target in targets.items():
        met = target["met"]
        print(f"  {name}: {'not measured' if met is None else 'met' if met else 'MISSED'}")
    result = {
        "parameters": {
            "requests": args.requests, "every": args.every, "warmup": args.warmup,
            "partitions": args.partitions, "attack": args.attack,
            "sig_attack": args.sig_attack, "frames": args.frames, "quick": args.quick,
            "clients": args.clients, "configs": args.configs, "fail_every": FAIL_EVERY,
            "quota_headers": QUOTA_HEADERS, "skipped": sorted(args.skip),
            "kept_from_previous_run": kept,
        },
        "targets": targets,
        "runs": runs_json,
        "partitions": partitions,
        "bounds": bounds_json,
        "seconds": round(time.perf_counter() - started, 1),
        "source": source_state(),
        "machine": info,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
