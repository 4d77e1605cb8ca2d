"""Per-request overhead of surefoot on requests and httpx, measured against bare clients.

Every contender is a warm keep-alive client doing sequential GETs against a loopback
server in a subprocess, so that the client process only pays for its own work (no GIL
shared with the server). By default the server is ``bench/_raw_server.py``, a raw asyncio
HTTP/1.1 server that shares no code with surefoot; ``--server sandbox`` uses surefoot's
sandbox instead. All contenders are measured side by side in one run: rounds, each
running every contender for one batch in a shuffled order; a figure is the median across
rounds of the per-round ratio to a baseline measured in the same round, which cancels
machine drift. A second bare requests session (``bare_requests_null``) is the null
control: its ratio must read 1.00.

    .venv/bin/python bench/overhead.py [--requests N] [--rounds R] [--server raw|sandbox] [--quick]

Writes ``bench/results/overhead.json`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import httpx
import httpx_retries
import requests
import requests.adapters
import requests.auth
import tenacity
import urllib3
import urllib3.util

import surefoot
import surefoot.httpx
from _env import platform_info, source_state
from _env import version as _version
from _sandbox_process import RawServerProcess, SandboxProcess
from _stats import quartiles
from surefoot.pacing import BreakerPolicy

RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
BASELINE = "bare_requests"
METRICS = ("wall", "cpu")
#: contender name -> mean ns per request of each round
Samples = dict[str, list[float]]

#: Issue 14's targets: ratio key -> the most it may be (median of the per-round ratios).
TARGETS = {
    "ratio_requests": 1.03,
    "ratio_httpx_sync": 1.03,
    "ratio_httpx_async": 1.03,
    "ratio_requests_all": 1.05,
    "ratio_httpx_sync_all": 1.05,
    "ratio_httpx_async_all": 1.05,
}
#: The null control (two identical bare sessions) must read 1.00 within this.
NULL_TOLERANCE = 0.01


# -- servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A loopback server and the paths the contenders request on it."""

    #: A plain 200.
    get: str
    #: A 200 carrying quota headers that announce a quota far above what is sent.
    quota: str
    #: A path that verifies the demo HMAC signature ("": none, the contenders are skipped).
    signed: str
    process: Callable[[], SandboxProcess]


SERVERS = {
    # the independent raw asyncio server: does not verify signatures
    "raw": Server("/get", "/quota", "", RawServerProcess),
    # surefoot's own sandbox: /limited with a quota of a million per second
    "sandbox": Server(
        "/get",
        "/limited/bench",
        "/signed/bench",
        lambda: SandboxProcess(["--rate", "1000000", "--burst", "1000000"]),
    ),
}


# -- contenders ----------------------------------------------------------------------------


class Timing(NamedTuple):
    """A batch's elapsed wall-clock time and the CPU time of the calling thread, in ns."""

    wall_ns: int
    cpu_ns: int


class _Stopwatch:
    """Wall clock (``perf_counter_ns``) and this thread's CPU time, started together."""

    __slots__ = ("cpu", "wall")

    def __init__(self) -> None:
        self.cpu = time.thread_time_ns()
        self.wall = time.perf_counter_ns()

    def stop(self) -> Timing:
        wall = time.perf_counter_ns()
        cpu = time.thread_time_ns()
        return Timing(wall - self.wall, cpu - self.cpu)


class Contender(Protocol):
    """One way of sending a request, measured in batches.

    ``setup()`` builds everything (and sends a request to check it works) before any
    measurement; ``run_batch(n)`` sends ``n`` sequential requests and returns their
    :class:`Timing`; ``close()`` releases everything.
    """

    name: str
    #: The contender this one is compared to in the same round ("" for the baseline).
    baseline: str
    #: Key of the headline figure in the JSON (``ratio_...``), or "" for none.
    ratio_key: str

    def setup(self) -> None: ...

    def run_batch(self, n: int) -> Timing: ...

    def close(self) -> None: ...


def _check(response: Any, name: str) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{name}: HTTP {response.status_code}: {response.text[:200]}")


@dataclass
class SyncContender:
    """A warm client from ``factory`` doing ``client.get(target)`` in a loop.

    The client is anything with ``get(target)`` returning a response with a
    ``status_code``, and ``close()``: a ``requests.Session`` or an ``httpx.Client``
    (``target`` a full URL), ``surefoot.Client`` or ``surefoot.httpx.Client`` (``target``
    a path on their base URL) ...
    """

    name: str
    target: str
    factory: Callable[[], Any]
    baseline: str = BASELINE
    ratio_key: str = ""
    client: Any = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        self.client = self.factory()
        _check(self.client.get(self.target), self.name)

    def run_batch(self, n: int) -> Timing:
        client, target = self.client, self.target
        assert client is not None
        get = client.get
        bad = 0
        watch = _Stopwatch()
        for _ in range(n):
            if get(target).status_code != 200:
                bad += 1
        elapsed = watch.stop()
        if bad:
            raise RuntimeError(f"{self.name}: {bad} of {n} requests did not return 200")
        return elapsed

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class AsyncContender:
    """Base for async contenders (e.g. ``httpx.AsyncClient``): each runs its batch in its
    own event loop, created in ``setup()`` and closed in ``close()``.

    Subclasses set ``name``/``baseline``/``ratio_key`` and implement ``asetup()``,
    ``request()`` (one request, raising on a non-200) and ``aclose()``. Only the batch's
    requests are timed, not entering or leaving the loop.
    """

    name: str = ""
    baseline: str = BASELINE
    ratio_key: str = ""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    async def asetup(self) -> None:
        raise NotImplementedError

    async def request(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._run(self.asetup())
        self._run(self.request())

    async def _batch(self, n: int) -> Timing:
        request = self.request
        watch = _Stopwatch()
        for _ in range(n):
            await request()
        return watch.stop()

    def run_batch(self, n: int) -> Timing:
        timing: Timing = self._run(self._batch(n))
        return timing

    def close(self) -> None:
        if self.loop is not None:
            try:
                self._run(self.aclose())
            finally:
                self.loop.close()
                self.loop = None


class AsyncClientContender(AsyncContender):
    """A warm async client from ``factory`` awaiting ``client.get(target)`` in a loop:
    an ``httpx.AsyncClient`` or a ``surefoot.httpx.AsyncClient`` (anything with an async
    ``get`` and ``aclose``). The client is built inside the contender's own event loop."""

    def __init__(
        self,
        name: str,
        target: str,
        factory: Callable[[], Any],
        *,
        baseline: str = BASELINE,
        ratio_key: str = "",
    ) -> None:
        super().__init__()
        self.name, self.target, self.factory = name, target, factory
        self.baseline, self.ratio_key = baseline, ratio_key
        self.client: Any = None
        self._get: Callable[[str], Coroutine[Any, Any, httpx.Response]] | None = None

    async def asetup(self) -> None:
        self.client = self.factory()
        self._get = self.client.get

    async def request(self) -> None:
        assert self._get is not None
        response = await self._get(self.target)
        _check(response, self.name)

    async def aclose(self) -> None:
        client, self.client, self._get = self.client, None, None
        if client is not None:
            await client.aclose()


# -- clients -------------------------------------------------------------------------------


def _no_hook(event: surefoot.Event) -> None:
    """A hook that ignores every event: measures the pipeline without instrumentation."""


def every_policy() -> dict[str, Any]:
    """The options of a surefoot client with every policy on (a fresh pacer each call):
    pacing that learns the quota from the headers, with its retry budget (on by default)
    and a circuit breaker (off by default: turned on here), HMAC signing, a hook that does
    nothing, and the default ``RetryPolicy``."""
    pacing = surefoot.PacingPolicy(breaker=BreakerPolicy())
    return {
        "pacing": surefoot.Pacer(pacing),
        "auth": surefoot.SigningAuth.hmac("demo-key", "demo-secret"),
        "hook": _no_hook,
    }


def _urllib3_retry_session() -> requests.Session:
    retry = urllib3.util.Retry(
        total=3, backoff_factor=0.5, status_forcelist=[429, 500, 502, 503, 504]
    )
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=retry))
    return session


class TenacitySession:
    """tenacity around requests, the usual way: a ``@tenacity.retry``-decorated function
    calling ``session.get``, retried on a requests exception or a 5xx (4 attempts,
    exponential backoff)."""

    def __init__(self) -> None:
        self.session = requests.Session()

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(4),
            wait=tenacity.wait_exponential(multiplier=0.5, max=10),
            retry=(
                tenacity.retry_if_exception_type(requests.RequestException)
                | tenacity.retry_if_result(lambda r: r.status_code >= 500)
            ),
            reraise=True,
        )
        def get(url: str) -> requests.Response:
            return self.session.get(url)

        self.get = get

    def close(self) -> None:
        self.session.close()


def _httpx_retries_transport() -> httpx_retries.RetryTransport:
    return httpx_retries.RetryTransport(retry=httpx_retries.Retry(total=3, backoff_factor=0.5))


class TutorialHmacAuth(requests.auth.AuthBase):
    """The hand-rolled tutorial way: a requests auth adding the HMAC headers.

    It signs through :class:`surefoot.signing.HmacSigner` directly, so comparing it with
    ``SigningAuth.hmac`` on the adapter isolates the pipeline's overhead from the signing cost.
    """

    def __init__(self, key_id: str, secret: str) -> None:
        self.signer = surefoot.signing.HmacSigner(key_id, secret)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body
        if isinstance(body, str):
            body = body.encode("iso-8859-1")
        signed = body if isinstance(body, bytes) else b""
        attempt = surefoot.signing.HttpRequest(request.method or "GET", request.url or "", {},
                                               signed)
        request.headers.update(self.signer.sign(attempt))
        return request


def _tutorial_hmac_session() -> requests.Session:
    session = requests.Session()
    session.auth = TutorialHmacAuth("demo-key", "demo-secret")
    return session


def _surefoot_hmac_session() -> requests.Session:
    session = requests.Session()
    adapter = surefoot.requests.SurefootAdapter(
        auth=surefoot.SigningAuth.hmac("demo-key", "demo-secret"), hook=_no_hook
    )
    session.mount("http://", adapter)
    return session


def build_contenders(base_url: str, server: Server) -> list[Contender]:
    """All contenders, in reporting order. Add new ones here.

    The surefoot clients are built as a user would: ``surefoot.Client(base_url)`` and
    ``get(path)``; the bare clients get the full URL.
    """
    get, quota = f"{base_url}{server.get}", f"{base_url}{server.quota}"
    sf_httpx = surefoot.httpx
    contenders: list[Contender] = [
        # requests
        SyncContender("bare_requests", get, requests.Session, baseline=""),
        SyncContender("bare_requests_null", get, requests.Session, ratio_key="ratio_null"),
        SyncContender("surefoot_requests", server.get, lambda: surefoot.Client(base_url),
                      ratio_key="ratio_requests"),
        SyncContender("urllib3_retry_peer", get, _urllib3_retry_session,
                      ratio_key="ratio_urllib3_retry_peer"),
        SyncContender("tenacity_peer", get, TenacitySession, ratio_key="ratio_tenacity_peer"),
        SyncContender("bare_requests_quota", quota, requests.Session),
        SyncContender("surefoot_requests_all", server.quota,
                      lambda: surefoot.Client(base_url, **every_policy()),
                      baseline="bare_requests_quota", ratio_key="ratio_requests_all"),
        # httpx, sync
        SyncContender("bare_httpx_sync", get, httpx.Client),
        SyncContender("surefoot_httpx_sync", server.get, lambda: sf_httpx.Client(base_url),
                      baseline="bare_httpx_sync", ratio_key="ratio_httpx_sync"),
        SyncContender("httpx_retries_sync_peer", get,
                      lambda: httpx.Client(transport=_httpx_retries_transport()),
                      baseline="bare_httpx_sync", ratio_key="ratio_httpx_retries_sync_peer"),
        SyncContender("bare_httpx_sync_quota", quota, httpx.Client, baseline="bare_httpx_sync"),
        SyncContender("surefoot_httpx_sync_all", server.quota,
                      lambda: sf_httpx.Client(base_url, **every_policy()),
                      baseline="bare_httpx_sync_quota", ratio_key="ratio_httpx_sync_all"),
        # httpx, async
        AsyncClientContender("bare_httpx_async", get, httpx.AsyncClient),
        AsyncClientContender("surefoot_httpx_async", server.get,
                             lambda: sf_httpx.AsyncClient(base_url),
                             baseline="bare_httpx_async", ratio_key="ratio_httpx_async"),
        AsyncClientContender("httpx_retries_async_peer", get,
                             lambda: httpx.AsyncClient(transport=_httpx_retries_transport()),
                             baseline="bare_httpx_async",
                             ratio_key="ratio_httpx_retries_async_peer"),
        AsyncClientContender("bare_httpx_async_quota", quota, httpx.AsyncClient,
                             baseline="bare_httpx_async"),
        AsyncClientContender("surefoot_httpx_async_all", server.quota,
                             lambda: sf_httpx.AsyncClient(base_url, **every_policy()),
                             baseline="bare_httpx_async_quota",
                             ratio_key="ratio_httpx_async_all"),
    ]
    if server.signed:  # the sandbox verifies signatures: the pipeline's cost on one
        signed = f"{base_url}{server.signed}"
        contenders += [
            SyncContender("bare_hmac_tutorial", signed, _tutorial_hmac_session),
            SyncContender("surefoot_hmac", signed, _surefoot_hmac_session,
                          baseline="bare_hmac_tutorial", ratio_key="ratio_requests_hmac"),
        ]
    return contenders


# -- measuring -----------------------------------------------------------------------------


def measure(
    contenders: list[Contender], *, n: int, rounds: int, rng: random.Random
) -> dict[str, Samples]:
    """Per metric ("wall", "cpu") and contender, the mean ns per request of each round."""
    for contender in contenders:  # warm-up: connections, caches, learned quotas, code paths
        contender.run_batch(n)
    # Everything built so far (modules, clients) is left out of later collections, so
    # that the gc.collect() before each batch is short and costs every contender the same.
    gc.collect()
    gc.freeze()
    samples: dict[str, Samples] = {m: {c.name: [] for c in contenders} for m in METRICS}
    order = list(contenders)
    every = max(1, rounds // 10)
    try:
        for index in range(rounds):
            rng.shuffle(order)
            for contender in order:
                gc.collect()
                timing = contender.run_batch(n)
                samples["wall"][contender.name].append(timing.wall_ns / n)
                samples["cpu"][contender.name].append(timing.cpu_ns / n)
            if (index + 1) % every == 0 or index + 1 == rounds:
                print(f"  round {index + 1}/{rounds}", flush=True)
    finally:
        gc.unfreeze()
    return samples


@dataclass(frozen=True)
class Figure:
    """One contender's figures for one metric; ratios and differences are per round."""

    name: str
    baseline: str
    us_per_request: float
    ratio_vs_bare: float
    overhead_vs_bare_us: float
    ratio_vs_baseline: float
    overhead_vs_baseline_us: float
    ratio_vs_baseline_iqr: tuple[float, float]


def _median_ratio(mine: list[float], base: list[float]) -> float:
    return statistics.median(m / b for m, b in zip(mine, base, strict=True))


def _median_diff_us(mine: list[float], base: list[float]) -> float:
    return statistics.median((m - b) / 1000 for m, b in zip(mine, base, strict=True))


def summarize(contenders: list[Contender], samples: Samples) -> list[Figure]:
    """Median across rounds of each per-round mean, ratio and difference."""
    figures = []
    bare = samples[BASELINE]
    for contender in contenders:
        baseline = contender.baseline or contender.name
        mine, base = samples[contender.name], samples[baseline]
        figures.append(
            Figure(
                name=contender.name,
                baseline=baseline,
                us_per_request=statistics.median(mine) / 1000,
                ratio_vs_bare=_median_ratio(mine, bare),
                overhead_vs_bare_us=_median_diff_us(mine, bare),
                ratio_vs_baseline=_median_ratio(mine, base),
                overhead_vs_baseline_us=_median_diff_us(mine, base),
                ratio_vs_baseline_iqr=quartiles([m / b for m, b in zip(mine, base, strict=True)]),
            )
        )
    return figures


# -- reporting -----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        **platform_info(),
        "requests": metadata.version("requests"),
        "urllib3": metadata.version("urllib3"),
        "httpx": metadata.version("httpx"),
        "httpx-retries": _version("httpx-retries"),
        "tenacity": _version("tenacity"),
        # Without sniffio, httpcore retries ``import sniffio`` on every async request.
        "sniffio": _version("sniffio"),
        "surefoot": surefoot.__version__,
    }


def print_table(title: str, figures: list[Figure]) -> None:
    """The compact table: each contender against its own baseline."""
    header = (
        f"{'contender':<26} {'µs/req':>7}  {'baseline':<22} {'ratio':>6} {'+µs':>6} "
        f"{'ratio IQR':>13}"
    )
    print(title)
    print(header)
    print("-" * len(header))
    for f in figures:
        low, high = f.ratio_vs_baseline_iqr
        if f.baseline == f.name:
            print(f"{f.name:<26} {f.us_per_request:>7.1f}  {'(baseline)':<22}")
            continue
        print(
            f"{f.name:<26} {f.us_per_request:>7.1f}  {f.baseline:<22} "
            f"{f.ratio_vs_baseline:>6.3f} {f.overhead_vs_baseline_us:>+6.1f} "
            f"{low:>6.3f}-{high:<6.3f}"
        )


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each issue-14 target: the figure, the limit and whether it is met; and the null
    control (``ratio_null`` within ``NULL_TOLERANCE`` of 1)."""
    out: dict[str, dict[str, Any]] = {}
    for key, limit in TARGETS.items():
        if key in result:
            out[key] = {"value": result[key], "limit": limit, "met": result[key] <= limit}
    if "ratio_null" in result:
        value = result["ratio_null"]
        out["ratio_null"] = {"value": value, "limit": [1 - NULL_TOLERANCE, 1 + NULL_TOLERANCE],
                             "met": abs(value - 1) <= NULL_TOLERANCE}
    return out


def print_targets(result: dict[str, Any]) -> None:
    iqr = result["ratio_vs_baseline_iqr"]
    names = {c: n for n, c in result["ratio_key"].items()}
    for key, target in result["targets"].items():
        low, high = iqr[names[key]]
        verdict = "met" if target["met"] else "MISSED"
        if key == "ratio_null":
            bound = f"1.00 ± {NULL_TOLERANCE:.2f} (null control)"
        else:
            bound = f"≤ {target['limit']:.2f}"
        cpu = result["cpu"][key]
        print(f"{key:<22} {target['value']:.3f} (IQR {low:.3f}-{high:.3f}; client CPU "
              f"{cpu:.3f})  target {bound}: {verdict}")


def _figures_json(contenders: list[Contender], figures: list[Figure]) -> dict[str, Any]:
    by_name = {f.name: f for f in figures}
    result: dict[str, Any] = {
        c.ratio_key: round(by_name[c.name].ratio_vs_baseline, 4) for c in contenders if c.ratio_key
    }
    result.update(
        {
            "us_per_request": {f.name: round(f.us_per_request, 2) for f in figures},
            "overhead_us": {f.name: round(f.overhead_vs_baseline_us, 2) for f in figures},
            "baseline": {f.name: f.baseline for f in figures},
            "ratio_vs_baseline": {f.name: round(f.ratio_vs_baseline, 4) for f in figures},
            "ratio_vs_baseline_iqr": {
                f.name: [round(x, 4) for x in f.ratio_vs_baseline_iqr] for f in figures
            },
            "ratio_vs_bare_requests": {f.name: round(f.ratio_vs_bare, 4) for f in figures},
            "overhead_vs_bare_requests_us": {
                f.name: round(f.overhead_vs_bare_us, 2) for f in figures
            },
        }
    )
    return result


def build_result(
    contenders: list[Contender],
    figures: dict[str, list[Figure]],
    samples: dict[str, Samples],
    *,
    n: int,
    rounds: int,
    server: str,
) -> dict[str, Any]:
    """The JSON: wall-clock figures at the top level, client CPU figures under "cpu"."""
    info = machine_info()
    result = _figures_json(contenders, figures["wall"])
    result["cpu"] = _figures_json(contenders, figures["cpu"])
    result["ratio_key"] = {c.name: c.ratio_key for c in contenders if c.ratio_key}
    result["targets"] = targets(result)
    result.update(
        {
            "server": server,
            "rounds": rounds,
            "requests_per_round": n,
            "python": info["python"],
            "cpu_count": info["cpu_count"],
            "machine": info,
            "source": source_state(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "per_round_us": {
                metric: {name: [round(v / 1000, 2) for v in values] for name, values in s.items()}
                for metric, s in samples.items()
            },
        }
    )
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="requests per batch (50)")
    parser.add_argument("--rounds", type=int, default=400, help="rounds (400)")
    parser.add_argument("--server", choices=sorted(SERVERS), default="raw",
                        help="raw: bench/_raw_server.py (default); sandbox: surefoot's sandbox")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 requests, 5 rounds")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON path ({RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds = 50, 5
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n, rounds = args.requests, args.rounds
    info = machine_info()
    print(
        f"python {info['python']} ({info['implementation']}) on {info['platform']}, "
        f"{info['cpu_count']} CPUs; requests {info['requests']}, urllib3 {info['urllib3']}, "
        f"httpx {info['httpx']}, httpx-retries {info['httpx-retries']}, "
        f"tenacity {info['tenacity']}, surefoot {info['surefoot']}"
    )
    print(f"{rounds} rounds x {n} sequential requests per contender, shuffled order per round")
    server = SERVERS[args.server]
    with server.process() as process:
        print(f"{args.server} server (subprocess) at {process.url}")
        contenders = build_contenders(process.url, server)
        ready: list[Contender] = []
        try:
            for contender in contenders:
                contender.setup()
                ready.append(contender)
            samples = measure(ready, n=n, rounds=rounds, rng=random.Random(args.seed))
        finally:
            for contender in ready:
                contender.close()
    figures = {metric: summarize(contenders, samples[metric]) for metric in METRICS}
    result = build_result(contenders, figures, samples, n=n, rounds=rounds, server=args.server)
    print()
    print_table("wall clock per request (median of rounds; ratio and +µs paired per round):",
                figures["wall"])
    print()
    print_targets(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
