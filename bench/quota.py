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

``--fleet --hosts H`` spreads the fleet over H simulated hosts (``bench/_hosts.py``): a
latency-injecting proxy in front of Redis per host, a network namespace per host when
root can make them, skewed host clocks; 100 processes x 2 threads, one quota of
1000/s with a burst of 20, N=20,000 (``--quick``: 20 processes, N=3000). It writes
``bench/results/fleet_hosts.json`` (``--quick``: ``fleet_hosts_quick.json``).

    .venv/bin/python bench/quota.py --fleet --hosts 4 [--quick] [--processes P] [--threads T]
        [--rate R] [--burst B] [--requests N] [--latency-ms LO,HI] [--skew-s S]
        [--netns auto|on|off]

``--matrix`` runs the server-model matrix instead (``bench/_matrix.py``): surefoot and
the peers against ``bench/_model_server.py``, an independent quota server, one axis
varied at a time (algorithm, header dialect, Retry-After, concurrency, fleet, outage).
It writes ``bench/results/matrix.json`` (``--quick``: ``matrix_quick.json``) and one
heat map per metric next to it.

    .venv/bin/python bench/quota.py --matrix [--quick] [--list] [--only REGEX] [--clients a,b]

The clients and their recorder are in ``_quota_clients.py``; the scenarios' parameters,
metrics, tables and plots in ``_quota_metrics.py`` (both shared with ``_fleet.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import surefoot
from _env import platform_info, source_state
from _env import version as _version
from _fleet import FLEET_CLIENTS, HOSTS_CLIENTS, hosts_main
from _fleet import main as fleet_main
from _hosts import add_arguments as add_hosts_arguments
from _matrix import ALL_CLIENTS as MATRIX_CLIENTS
from _matrix import add_arguments as add_matrix_arguments
from _matrix import list_cells
from _matrix import main as matrix_main
from _quota_clients import (
    Client,
    HttpxRetriesClient,
    NaiveClient,
    PyrateClient,
    Recorder,
    Setup,
    SurefootClient,
    TenacityClient,
    Urllib3Client,
    run_closed,
    run_outage,
)
from _quota_metrics import (
    QUICK_BOX,
    ClosedScenario,
    OutageScenario,
    Run,
    Scenario,
    closed_metrics,
    meets,
    outage_metrics,
    plot,
    print_closed_rows,
    print_failures,
    print_outage_rows,
    round_figures,
)
from _sandbox_process import QuotaSandbox

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("known", "unknown", "outage")
CLOSED_CLIENTS = ("naive", "urllib3", "tenacity", "httpx_retries", "pyrate_limiter", "surefoot")
OUTAGE_CLIENTS = (*CLOSED_CLIENTS, "surefoot_no_guard")
#: Only with --clients: pyrate-limiter spelt the everyday way, Rate(R, Duration.SECOND).
EXTRA_CLIENTS = ("pyrate_limiter_window",)
TARGETS = {
    "known": {"efficiency": (">=", 0.98), "429s_per_N": ("<=", 0.001),
              "attempts_per_N": ("<=", 1.001), "jain": (">=", 0.99)},
    "unknown": {"efficiency": (">=", 0.90), "429s_per_N": ("<=", 0.02)},
    "outage": {"attempts_per_request_during_outage": ("<=", 1.2),
               "peak_vs_arrival_rate": ("<=", 1.5), "success_ratio": (">=", 0.99),
               "recovery_s": ("<=", 1.0)},
}


# -- scenarios -----------------------------------------------------------------------------


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


# -- the clients ---------------------------------------------------------------------------


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


# -- running -------------------------------------------------------------------------------


def run_scenario(
    scen: Scenario, clients: list[str], log: Callable[[str], None]
) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    with QuotaSandbox(scen.rate, scen.burst) as sandbox:
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


# -- reporting -----------------------------------------------------------------------------


def print_table(scen: Scenario, figures: dict[str, dict[str, Any]]) -> None:
    if isinstance(scen, ClosedScenario):
        print(f"\n{scen.name}: dialect={scen.dialect}, N={scen.n}, C={scen.workers}, "
              f"R={scen.rate:g}/s, B={scen.burst}, ideal {scen.ideal_s:.2f} s")
        print_closed_rows(figures, scen.box)
    else:
        print(f"\n{scen.name}: Poisson {scen.arrival_rate:g}/s for {scen.duration:g} s, 503 "
              f"outage of {scen.outage_seconds:g} s at t={scen.outage_start:g} s, deadline "
              f"{scen.deadline:g} s, R={scen.rate:g}/s, B={scen.burst}")
        print_outage_rows(figures)
    print_failures(figures)


def machine_info() -> dict[str, Any]:
    return {
        **source_state(),
        **platform_info(),
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
                        "bench/results/fleet.json, with --hosts fleet_hosts.json or, "
                        "--quick, fleet_hosts_quick.json); PNGs go next to it")
    fleet = parser.add_argument_group("--fleet sizes (default: 4 x 16, R=200, B=10, N=3000; "
                                      "with --hosts: 100 x 2, R=1000, B=20, N=20000, "
                                      "--quick 20 processes, N=3000)")
    fleet.add_argument("--processes", type=int, default=None, help="processes in the fleet")
    fleet.add_argument("--threads", type=int, default=None, help="worker threads per process")
    fleet.add_argument("--rate", type=float, default=None, help="the quota R, per second")
    fleet.add_argument("--burst", type=int, default=None, help="the quota's burst B")
    fleet.add_argument("--requests", type=int, default=None, help="N, in all")
    add_hosts_arguments(parser, hosts_help="with --fleet: spread the fleet over H simulated "
                        "hosts (bench/_hosts.py; implies --fleet)")
    add_matrix_arguments(parser)
    args = parser.parse_args(argv)
    if args.hosts:
        args.fleet = True
    sizes = ("processes", "threads", "rate", "burst", "requests")
    if not args.fleet and any(getattr(args, k) is not None for k in sizes):
        parser.error("--processes, --threads, --rate, --burst and --requests are --fleet's")
    if any(getattr(args, k) is not None and getattr(args, k) <= 0 for k in sizes):
        parser.error("--processes, --threads, --rate, --burst and --requests must be positive")
    if args.hosts < 0 or (args.hosts and args.matrix):
        parser.error("--hosts takes a positive number, and not with --matrix")
    if args.output is None:
        if args.matrix:
            args.output = RESULTS / ("matrix_quick.json" if args.quick else "matrix.json")
        elif args.hosts:
            args.output = RESULTS / ("fleet_hosts_quick.json" if args.quick
                                     else "fleet_hosts.json")
        else:
            args.output = RESULTS / ("fleet.json" if args.fleet else "quota.json")
    if args.matrix:
        known = set(MATRIX_CLIENTS)
    elif args.hosts:
        known = set(HOSTS_CLIENTS)
    else:
        known = set(FLEET_CLIENTS) if args.fleet else {*OUTAGE_CLIENTS, *EXTRA_CLIENTS}
    args.client_list = [c for c in args.clients.split(",") if c]
    unknown = [c for c in args.client_list if c not in known]
    if unknown:
        parser.error(f"unknown clients {unknown}; choose from {', '.join(sorted(known))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.matrix and args.list:
        list_cells(args.quick, args.only)
        return 0
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
    if args.matrix:
        return matrix_main(args, info)
    if args.hosts:
        return hosts_main(args, info)
    if args.fleet:
        return fleet_main(args, info)
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
        checks = {c: meets(TARGETS[name], figures[c]) for c in figures if c == "surefoot"}
        for client, check in checks.items():
            verdicts = ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in check.items())
            print(f"  targets ({client}): {verdicts}")
        result[name] = round_figures(figures)
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
