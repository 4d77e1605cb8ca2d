"""Per-request overhead of surefoot on requests and httpx, measured against bare clients.

Every contender is a warm keep-alive client doing sequential GETs against the sandbox,
which runs in a subprocess so that the client process only pays for its own work (no
GIL shared with the server). All contenders are measured side by side in one run:
rounds, each running every contender for one batch in a shuffled order; a figure is
the median across rounds of the per-round ratio to a baseline measured in the same
round, which cancels machine drift.

    .venv/bin/python bench/overhead.py [--requests N] [--rounds R] [--quick]

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
import requests
import requests.adapters
import requests.auth
import urllib3
import urllib3.util

import surefoot
import surefoot.httpx
from _env import platform_info
from _env import version as _version
from _sandbox_process import SandboxProcess
from _stats import quartiles

RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
BASELINE = "bare_requests"
METRICS = ("wall", "cpu")
#: contender name -> mean ns per request of each round
Samples = dict[str, list[float]]


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

    ``setup()`` builds everything (and may send a request to check it works) before any
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


def _check(response: requests.Response, name: str) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{name}: HTTP {response.status_code}: {response.text[:200]}")


@dataclass
class RequestsContender:
    """A warm ``requests.Session`` from ``factory`` doing ``GET url`` in a loop."""

    name: str
    url: str
    factory: Callable[[], requests.Session]
    baseline: str = BASELINE
    ratio_key: str = ""
    session: requests.Session | None = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        self.session = self.factory()
        _check(self.session.get(self.url), self.name)

    def run_batch(self, n: int) -> Timing:
        session, url = self.session, self.url
        assert session is not None
        get = session.get
        bad = 0
        watch = _Stopwatch()
        for _ in range(n):
            if get(url).status_code != 200:
                bad += 1
        elapsed = watch.stop()
        if bad:
            raise RuntimeError(f"{self.name}: {bad} of {n} requests did not return 200")
        return elapsed

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


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


@dataclass
class HttpxContender:
    """A warm ``httpx.Client`` from ``factory`` doing ``GET url`` in a loop."""

    name: str
    url: str
    factory: Callable[[], httpx.Client]
    baseline: str = BASELINE
    ratio_key: str = ""
    client: httpx.Client | None = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        self.client = self.factory()
        response = self.client.get(self.url)
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status_code}: {response.text[:200]}")

    def run_batch(self, n: int) -> Timing:
        client, url = self.client, self.url
        assert client is not None
        get = client.get
        bad = 0
        watch = _Stopwatch()
        for _ in range(n):
            if get(url).status_code != 200:
                bad += 1
        elapsed = watch.stop()
        if bad:
            raise RuntimeError(f"{self.name}: {bad} of {n} requests did not return 200")
        return elapsed

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class HttpxAsyncContender(AsyncContender):
    """A warm ``httpx.AsyncClient`` from ``factory`` awaiting ``GET url`` in a loop.

    The client is built inside the contender's own event loop (in ``asetup()``).
    """

    def __init__(
        self,
        name: str,
        url: str,
        factory: Callable[[], httpx.AsyncClient],
        *,
        baseline: str = BASELINE,
        ratio_key: str = "",
    ) -> None:
        super().__init__()
        self.name, self.url, self.factory = name, url, factory
        self.baseline, self.ratio_key = baseline, ratio_key
        self.client: httpx.AsyncClient | None = None
        self._get: Callable[[str], Coroutine[Any, Any, httpx.Response]] | None = None

    async def asetup(self) -> None:
        self.client = self.factory()
        self._get = self.client.get

    async def request(self) -> None:
        assert self._get is not None
        response = await self._get(self.url)
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status_code}: {response.text[:200]}")

    async def aclose(self) -> None:
        client, self.client, self._get = self.client, None, None
        if client is not None:
            await client.aclose()


def _no_hook(event: surefoot.Event) -> None:
    """A hook that ignores every event: measures the pipeline without instrumentation."""


def _surefoot_session(**adapter_options: Any) -> Callable[[], requests.Session]:
    def factory() -> requests.Session:
        session = requests.Session()
        session.mount("http://", surefoot.requests.SurefootAdapter(**adapter_options))
        return session

    return factory


def _surefoot_httpx_client() -> httpx.Client:
    transport = surefoot.httpx.Transport(retry=surefoot.RetryPolicy(), hook=_no_hook)
    return httpx.Client(transport=transport)


def _surefoot_httpx_async_client() -> httpx.AsyncClient:
    transport = surefoot.httpx.AsyncTransport(retry=surefoot.RetryPolicy(), hook=_no_hook)
    return httpx.AsyncClient(transport=transport)


def _urllib3_retry_session() -> requests.Session:
    retry = urllib3.util.Retry(
        total=3, backoff_factor=0.5, status_forcelist=[429, 500, 502, 503, 504]
    )
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=retry))
    return session


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


def build_contenders(base_url: str) -> list[Contender]:
    """All contenders, in reporting order. Add new ones here."""
    get = f"{base_url}/get"
    signed = f"{base_url}/signed/bench"
    default_policy = surefoot.RetryPolicy
    return [
        RequestsContender("bare_requests", get, requests.Session, baseline=""),
        RequestsContender(
            "surefoot_requests",
            get,
            _surefoot_session(retry=default_policy(), hook=_no_hook),
            ratio_key="ratio_requests",
        ),
        RequestsContender(
            "surefoot_requests_logging",
            get,
            _surefoot_session(retry=default_policy()),
            ratio_key="ratio_requests_logging",
        ),
        RequestsContender(
            "urllib3_retry_peer", get, _urllib3_retry_session, ratio_key="ratio_urllib3_retry_peer"
        ),
        RequestsContender("bare_hmac_tutorial", signed, _tutorial_hmac_session),
        RequestsContender(
            "surefoot_hmac",
            signed,
            _surefoot_session(
                retry=default_policy(),
                auth=surefoot.SigningAuth.hmac("demo-key", "demo-secret"),
                hook=_no_hook,
            ),
            baseline="bare_hmac_tutorial",
            ratio_key="ratio_requests_hmac",
        ),
        HttpxContender("bare_httpx_sync", get, httpx.Client),
        HttpxContender(
            "surefoot_httpx_sync",
            get,
            _surefoot_httpx_client,
            baseline="bare_httpx_sync",
            ratio_key="ratio_httpx_sync",
        ),
        HttpxAsyncContender("bare_httpx_async", get, httpx.AsyncClient),
        HttpxAsyncContender(
            "surefoot_httpx_async",
            get,
            _surefoot_httpx_async_client,
            baseline="bare_httpx_async",
            ratio_key="ratio_httpx_async",
        ),
    ]


# -- measuring -----------------------------------------------------------------------------


def measure(
    contenders: list[Contender], *, n: int, rounds: int, rng: random.Random
) -> dict[str, Samples]:
    """Per metric ("wall", "cpu") and contender, the mean ns per request of each round."""
    for contender in contenders:  # warm-up: connections, caches, code paths
        contender.run_batch(n)
    samples: dict[str, Samples] = {m: {c.name: [] for c in contenders} for m in METRICS}
    order = list(contenders)
    for index in range(rounds):
        rng.shuffle(order)
        for contender in order:
            gc.collect()
            timing = contender.run_batch(n)
            samples["wall"][contender.name].append(timing.wall_ns / n)
            samples["cpu"][contender.name].append(timing.cpu_ns / n)
        print(f"  round {index + 1}/{rounds}: {' '.join(c.name for c in order)}", flush=True)
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
        # Without sniffio, httpcore retries ``import sniffio`` on every async request.
        "sniffio": _version("sniffio"),
        "surefoot": surefoot.__version__,
    }


def print_table(title: str, figures: list[Figure]) -> None:
    header = (
        f"{'contender':<27} {'µs/req':>8} {'x bare':>7} {'+µs':>7}   "
        f"{'baseline':<19} {'x base':>7} {'+µs':>7}  {'x base IQR':>13}"
    )
    print(title)
    print(header)
    print("-" * len(header))
    for f in figures:
        low, high = f.ratio_vs_baseline_iqr
        print(
            f"{f.name:<27} {f.us_per_request:>8.1f} {f.ratio_vs_bare:>7.3f} "
            f"{f.overhead_vs_bare_us:>+7.1f}   {f.baseline:<19} {f.ratio_vs_baseline:>7.3f} "
            f"{f.overhead_vs_baseline_us:>+7.1f}  {low:>6.3f}-{high:<6.3f}"
        )


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
) -> dict[str, Any]:
    """The JSON: wall-clock figures at the top level, client CPU figures under "cpu"."""
    info = machine_info()
    result = _figures_json(contenders, figures["wall"])
    result["cpu"] = _figures_json(contenders, figures["cpu"])
    result.update(
        {
            "rounds": rounds,
            "requests_per_round": n,
            "python": info["python"],
            "cpu_count": info["cpu_count"],
            "machine": info,
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
    parser.add_argument("--rounds", type=int, default=90, help="rounds (90)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 requests, 3 rounds")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON path ({RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds = 50, 3
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
        f"httpx {info['httpx']}, surefoot {info['surefoot']}"
    )
    print(f"{rounds} rounds x {n} sequential requests per contender, shuffled order per round")
    with SandboxProcess() as sandbox:
        print(f"sandbox (subprocess) at {sandbox.url}")
        contenders = build_contenders(sandbox.url)
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
    print()
    print_table("wall clock per request (the figures):", figures["wall"])
    print()
    print_table("client CPU per request (this thread's CPU time):", figures["cpu"])
    result = build_result(contenders, figures, samples, n=n, rounds=rounds)
    print()
    for contender in contenders:
        if contender.ratio_key:
            key = contender.ratio_key
            print(f"{key} = {result[key]:.3f}  (client CPU: {result['cpu'][key]:.3f})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
