"""``bench/quota.py --matrix``: surefoot's pacing on quota servers it was not tuned on.

The server is ``bench/_model_server.py`` (no surefoot code): one global quota, five
algorithms, ten header dialects, three ``Retry-After`` styles. A FRESH server subprocess
is started for every client of every cell, so no client inherits another's state (nor
its stragglers). Not a cartesian product: one axis varies at a time from the base cell
``tb/ietf/ra-int/C32`` (token bucket R = 200/s, B = 10, the ietf headers, an integer
Retry-After, 32 threads in one process, N = 3000):

* ``algorithm`` (ietf): tb B=1/10/200, gcra B=10, fixed 200 per 1 s, fixed 1500 per
  60 s, sliding log 200 per 1 s, leaky queue (10 places);
* ``dialect`` (tb B=10): every dialect of the server;
* ``retry-after`` (tb B=10): int/frac/none, with the ietf headers and with none;
* ``concurrency`` (tb B=10, ietf): C = 1, 32, 256;
* ``fleet`` (tb B=10, ietf): 4 x 16 and 16 x 16 processes x threads sharing the quota
  (``_fleet.py``'s processes; surefoot through ``RedisStore`` and ``SQLiteStore``);
* ``outage``: quota.py's open-loop outage scenario (Poisson 100/s for 30 s, a 10 s 503
  outage at t = 10 s, deadline 30 s) on tb R=1000/s B=100.

A cell's name is ``model/dialect/ra-<retry-after>/C<threads>`` (``fleet-PxT`` for the
fleet), e.g. ``tb-b10/x-next/ra-int/C32``; ``--only REGEX`` picks cells by name.

Closed-loop runs reuse quota.py's workers (``_quota_clients.run_closed``) and metrics
(``_quota_metrics.closed_metrics``), except efficiency, which is the model's own:
``ideal_seconds(params, successes, C) / elapsed`` (``_model_server.ideal_seconds``: a
perfectly greedy client), elapsed being the time of the last completion. Every run is
time-boxed: no request is started after ``max(2 x ideal, ideal + 10 s)``; the requests in
flight then get 10 s, and a cut run's efficiency is ``ideal_seconds(successes by the cut)
/ cut``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

import surefoot
from _fleet import FleetScenario, fleet_metrics, run_fleet_client
from _model_server import ModelParams, ideal_seconds
from _quota_clients import (
    Client,
    NaiveClient,
    PyrateClient,
    Recorder,
    Setup,
    SurefootClient,
    SurefootDefaultsClient,
    TenacityClient,
    Urllib3Client,
    run_closed,
    run_outage,
)
from _quota_metrics import (
    OK,
    ClosedScenario,
    OutageScenario,
    Run,
    closed_metrics,
    fmt,
    meets,
    outage_metrics,
    print_closed_rows,
    print_failures,
    print_outage_rows,
    round_figures,
)
from _sandbox_process import SandboxProcess

MODEL_SERVER = Path(__file__).resolve().parent / "_model_server.py"
CLOSED_CLIENTS = ("surefoot", "surefoot_defaults", "surefoot_burst", "tenacity",
                  "pyrate_limiter", "urllib3", "naive")
PEERS = ("tenacity", "pyrate_limiter", "urllib3", "naive")
FLEET_CLIENTS = ("surefoot_redis", "surefoot_sqlite", "tenacity", "pyrate_redis")
OUTAGE_CLIENTS = ("surefoot_defaults", "surefoot", "naive", "tenacity", "urllib3")
QUICK_CLIENTS = ("surefoot", "surefoot_defaults", "tenacity")
ALL_CLIENTS = tuple(dict.fromkeys((*CLOSED_CLIENTS, *FLEET_CLIENTS, *OUTAGE_CLIENTS)))
GRACE = 10.0  # seconds the requests in flight at the time box get to finish
METRICS = ("efficiency", "429s_per_N", "attempts_per_N", "jain", "p99_wait")

#: Informative targets (a run never fails on them): per kind of cell, per client.
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "stated": {"efficiency": (">=", 0.97), "429s_per_N": ("<=", 0.005),
               "attempts_per_N": ("<=", 1.005), "jain": (">=", 0.98)},
    "unstated": {"efficiency": (">=", 0.90), "429s_per_N": ("<=", 0.02)},
    "defaults": {"efficiency": (">=", 0.90)},  # and >= the best peer's
    "fleet": {"efficiency": (">=", 0.97)},
    "outage": {"success_ratio": (">=", 0.99),
               "attempts_per_request_during_outage": ("<=", 1.2),
               "peak_after_outage_vs_arrival_rate": ("<=", 2.0),
               "backlog_drained_s": ("<=", 10.0)},
}


# -- the server ----------------------------------------------------------------------------


class ModelServer(SandboxProcess):
    """``python bench/_model_server.py ... --port 0`` in a subprocess, with its admin calls."""

    def __init__(self, params: ModelParams, dialect: str, retry_after: str,
                 timeout: float = 20.0) -> None:
        super().__init__([
            "--algorithm", params.algorithm, "--rate", repr(params.rate),
            "--burst", str(params.burst), "--limit", str(params.limit),
            "--window", repr(params.window), "--dialect", dialect,
            "--retry-after", retry_after,
        ], timeout)
        self.admin = requests.Session()
        self.admin.trust_env = False

    def command(self) -> list[str]:
        return [sys.executable, str(MODEL_SERVER), "--port", "0", *self.options]

    def url_from(self, line: str) -> str:
        return line.strip().removeprefix("listening on ").rstrip("/")

    def __enter__(self) -> ModelServer:
        super().__enter__()
        return self

    def reset(self) -> None:
        self.admin.post(f"{self.url}/reset", timeout=10).raise_for_status()

    def outage(self, seconds: float) -> None:
        self.admin.post(f"{self.url}/outage", params={"seconds": seconds},
                        timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        """``/stats``, also in the sandbox's shape that ``_quota_metrics`` reads."""
        response = self.admin.get(f"{self.url}/stats", timeout=10)
        response.raise_for_status()
        raw = response.json()
        return {
            "endpoints": {"/limited": {"requests": raw["requests"],
                                       "statuses": raw["statuses"]}},
            "clients": {k: {"ok": v["requests"] - v["429"], "429s": v["429"]}
                        for k, v in raw["per_client"].items()},
            "model_server": raw,
        }

    def stop(self) -> None:
        self.admin.close()
        super().stop()


# -- the cells -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    name: str
    kind: str  # "closed", "fleet" or "outage"
    params: ModelParams
    dialect: str = "ietf"
    retry_after: str = "int"
    n: int = 3000
    threads: int = 32  # closed: worker threads; fleet: threads per process
    processes: int = 1
    deadline: float = 60.0  # of one logical request
    axes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def workers(self) -> int:
        return self.processes * self.threads

    @property
    def true_rate(self) -> float:
        """The quota's long-run rate (pyrate-limiter is configured with it)."""
        p = self.params
        return p.limit / p.window if p.windowed else p.rate

    @property
    def ideal_s(self) -> float:
        return ideal_seconds(self.params, self.n, self.workers)

    @property
    def box(self) -> float:
        """No request is started after this many seconds."""
        return round(max(2 * self.ideal_s, self.ideal_s + 10), 3)

    def describe(self) -> str:
        p = self.params
        if p.windowed:
            model = f"{p.algorithm} L={p.limit} per W={p.window:g} s"
        elif p.algorithm == "leaky":
            model = f"leaky R={p.rate:g}/s, queue {p.burst}"
        else:
            model = f"{p.algorithm} R={p.rate:g}/s B={p.burst}"
        who = {"fleet": f"{self.processes} processes x {self.threads} threads",
               "outage": "open-loop arrivals"}.get(self.kind, f"C={self.threads}")
        return f"{model}, dialect {self.dialect}, Retry-After {self.retry_after}, {who}"

    def clients(self) -> tuple[str, ...]:
        return {"closed": CLOSED_CLIENTS, "fleet": FLEET_CLIENTS,
                "outage": OUTAGE_CLIENTS}[self.kind]

    def target_kind(self) -> str:
        if self.kind != "closed":
            return self.kind
        return "unstated" if self.dialect == "none" else "stated"


def _label(p: ModelParams) -> str:
    if p.windowed:
        return f"{p.algorithm}-L{p.limit}-W{p.window:g}"
    if p.algorithm == "leaky":
        return f"leaky-q{p.burst}"
    rate = "" if p.rate == 200 else f"-r{p.rate:g}"
    return f"{p.algorithm}{rate}-b{p.burst}"


def _closed(axis: str, params: ModelParams, dialect: str = "ietf", retry_after: str = "int",
            threads: int = 32, n: int = 3000) -> Cell:
    name = f"{_label(params)}/{dialect}/ra-{retry_after}/C{threads}"
    deadline = max(60.0, 2.5 * params.window) if params.windowed else 60.0
    return Cell(name, "closed", params, dialect, retry_after, n, threads, deadline=deadline,
                axes=(axis,))


def all_cells(*, quick: bool) -> list[Cell]:
    """Every cell, in order (the base cell once, listing every axis it belongs to)."""
    n = 600 if quick else 3000
    tb10 = ModelParams("tb", 200.0, 10)
    cells = [
        _closed("algorithm", ModelParams("tb", 200.0, 1), n=n),
        _closed("algorithm", tb10, n=n),
        _closed("algorithm", ModelParams("tb", 200.0, 200), n=n),
        _closed("algorithm", ModelParams("gcra", 200.0, 10), n=n),
        _closed("algorithm", ModelParams("fixed", limit=200, window=1.0), n=n),
        _closed("algorithm", ModelParams("fixed", limit=1500, window=60.0), n=n),
        _closed("algorithm", ModelParams("sliding", limit=200, window=1.0), n=n),
        _closed("algorithm", ModelParams("leaky", 200.0, 10), n=n),
        *(_closed("dialect", tb10, dialect, n=n)
          for dialect in ("ietf", "ietf-now", "legacy", "x-delta", "x-epoch", "x-next",
                          "github", "discord", "openai", "none")),
        *(_closed("retry-after", tb10, dialect, ra, n=n)
          for dialect in ("ietf", "none") for ra in ("int", "frac", "none")),
        *(_closed("concurrency", tb10, threads=c, n=n) for c in (1, 32, 256)),
        *(Cell(f"tb-b10/ietf/ra-int/fleet-{p}x16", "fleet", tb10, n=n, threads=16,
               processes=p, axes=("fleet",)) for p in (4, 16)),
        Cell("outage/tb-r1000-b100/ietf", "outage", ModelParams("tb", 1000.0, 100),
             n=0, threads=0, deadline=30.0, axes=("outage",)),
    ]
    merged: dict[str, Cell] = {}
    for cell in cells:
        if cell.name in merged:
            old = merged[cell.name]
            merged[cell.name] = Cell(**{**asdict(old), "params": old.params,
                                        "axes": (*old.axes, *cell.axes)})
        else:
            merged[cell.name] = cell
    return list(merged.values())


QUICK_CELLS = ("tb-b10/ietf/ra-int/C32", "tb-b10/x-next/ra-int/C32", "tb-b10/none/ra-int/C32")


def select_cells(*, quick: bool, only: str | None) -> list[Cell]:
    cells = all_cells(quick=quick)
    if only:
        pattern = re.compile(only)
        return [c for c in cells if pattern.search(c.name)]
    if quick:
        return [c for c in cells if c.name in QUICK_CELLS]
    return cells


def outage_scenario(cell: Cell, *, quick: bool, seed: int) -> OutageScenario:
    """quota.py's outage scenario (``--quick``: its short version)."""
    if quick:
        return OutageScenario(name=cell.name, dialect=cell.dialect, duration=6.0,
                              arrival_rate=100.0, outage_start=2.0, outage_seconds=2.0,
                              rate=cell.params.rate, burst=cell.params.burst,
                              deadline=cell.deadline, seed=seed)
    return OutageScenario(name=cell.name, dialect=cell.dialect, duration=30.0,
                          arrival_rate=100.0, outage_start=10.0, outage_seconds=10.0,
                          rate=cell.params.rate, burst=cell.params.burst,
                          deadline=cell.deadline, seed=seed)


# -- the clients ---------------------------------------------------------------------------


def build_client(name: str, setup: Setup) -> Client:
    if name == "surefoot":
        return SurefootClient(name, setup, surefoot.PacingPolicy())
    if name == "surefoot_defaults":
        return SurefootDefaultsClient(setup)
    if name == "surefoot_burst":  # the opt-in burst credit (the server's `remaining`)
        return SurefootClient(name, setup, surefoot.PacingPolicy(burst_ahead=120.0))
    if name == "tenacity":
        return TenacityClient(setup)
    if name == "pyrate_limiter":
        return PyrateClient(setup)
    if name == "urllib3":
        return Urllib3Client(setup)
    if name == "naive":
        return NaiveClient(setup)
    raise ValueError(f"unknown matrix client {name!r}")


def _setup(cell: Cell, url: str, recorder: Recorder, pool: int) -> Setup:
    return Setup(base_url=url, path="q", recorder=recorder, pool=pool,
                 deadline=cell.deadline, rate=cell.true_rate,
                 unknown=cell.dialect == "none", outage=cell.kind == "outage")


# -- running one client of a cell ----------------------------------------------------------


def _model_efficiency(run: Run, cell: Cell, metrics: dict[str, Any]) -> None:
    """Replace quota.py's efficiency (a token bucket's ideal) by the model's own."""
    ok_ends = [r[1] for r in run.requests if r[2] == OK]
    if metrics["time_boxed"] and run.cut_at:
        done = sum(1 for t in ok_ends if t <= run.cut_at)
        metrics["efficiency"] = ideal_seconds(cell.params, done, cell.workers) / run.cut_at
        metrics["elapsed_s"] = run.cut_at
        metrics["done_by_cut"] = done
    else:
        last = metrics["elapsed_s"]
        ideal_done = ideal_seconds(cell.params, len(ok_ends), cell.workers)
        metrics["efficiency"] = ideal_done / last if last and last > 0 else None
    metrics["ideal_s"] = cell.ideal_s


def run_closed_client(name: str, cell: Cell) -> tuple[Run, dict[str, Any]]:
    scen = ClosedScenario(name=cell.name, dialect=cell.dialect, n=cell.n,
                          workers=cell.threads, rate=cell.true_rate, burst=cell.params.burst,
                          deadline=cell.deadline, time_box=cell.box)
    with ModelServer(cell.params, cell.dialect, cell.retry_after) as server:
        recorder = Recorder()
        client = build_client(name, _setup(cell, server.url, recorder, cell.threads))
        try:
            run = run_closed(client, scen, recorder, grace=GRACE)
            run.requests = list(run.requests)  # stragglers still append to the original
            run.stats = server.stats()
        finally:
            client.close()
    metrics = closed_metrics(run, scen)
    _model_efficiency(run, cell, metrics)
    return run, metrics


def run_fleet_cell_client(name: str, cell: Cell, redis_url: str,
                          workdir: str) -> tuple[Run, dict[str, Any]]:
    import redis

    scen = FleetScenario(n=cell.n, processes=cell.processes, threads=cell.threads,
                         rate=cell.true_rate, burst=cell.params.burst, dialect=cell.dialect,
                         deadline=cell.deadline, time_box=cell.box, path="q")
    admin = redis.Redis.from_url(redis_url)
    try:
        admin.flushall()
    finally:
        admin.close()
    with ModelServer(cell.params, cell.dialect, cell.retry_after) as server:
        run = run_fleet_client(name, scen, server, redis_url, workdir)
        run.stats = server.stats()
    metrics = fleet_metrics(run, scen)
    _model_efficiency(run, cell, metrics)
    return run, metrics


def run_outage_client(name: str, cell: Cell, scen: OutageScenario) -> tuple[Run, dict[str, Any]]:
    with ModelServer(cell.params, cell.dialect, cell.retry_after) as server:
        recorder = Recorder()
        client = build_client(name, _setup(cell, server.url, recorder, 2048))
        try:
            run = run_outage(client, scen, recorder, server)
            run.requests = list(run.requests)
            run.stats = server.stats()
        finally:
            client.close()
    return run, outage_metrics(run, scen)


# -- targets and reporting -----------------------------------------------------------------


def check_targets(cell: Cell, figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, bool]]:
    """Per client with targets in this cell: per target, met or not."""
    kind = cell.target_kind()
    checks: dict[str, dict[str, bool]] = {}
    if kind in ("stated", "unstated") and "surefoot" in figures:
        checks["surefoot"] = meets(TARGETS[kind], figures["surefoot"])
    if kind == "fleet":
        for name in ("surefoot_redis", "surefoot_sqlite"):
            if name in figures:
                checks[name] = meets(TARGETS["fleet"], figures[name])
    if kind == "outage":
        for name in ("surefoot", "surefoot_defaults"):
            if name in figures:
                checks[name] = meets(TARGETS["outage"], figures[name])
    if kind in ("stated", "unstated") and "surefoot_defaults" in figures:
        mine = figures["surefoot_defaults"]
        checks["surefoot_defaults"] = meets(TARGETS["defaults"], mine)
        peers = [figures[p]["efficiency"] for p in PEERS
                 if p in figures and figures[p]["efficiency"] is not None]
        if peers:
            checks["surefoot_defaults"]["efficiency >= best peer"] = (
                mine["efficiency"] is not None and mine["efficiency"] >= max(peers))
    return checks


def print_cell(cell: Cell, figures: dict[str, dict[str, Any]], box: float | None,
               title: str) -> None:
    print(f"\n{cell.name}  [{', '.join(cell.axes)}]\n{title}")
    if cell.kind == "outage":
        print_outage_rows(figures)
    else:
        print_closed_rows(figures, box or 0.0)
    print_failures(figures)


def _verdicts(checks: dict[str, dict[str, bool]]) -> list[str]:
    lines = []
    for client, check in checks.items():
        missed = [k for k, v in check.items() if not v]
        lines.append(f"{client}: " + ("all met" if not missed else "MISSED " + ", ".join(missed)))
    return lines


def print_summary(cells: list[Cell], results: dict[str, Any]) -> None:
    """Efficiency and 429s per N per cell and client (outage: success and peak ratio)."""
    shown = [c for c in cells if c.name in results]
    if not shown:
        return
    clients = [c for c in ALL_CLIENTS
               if any(c in results[cell.name]["figures"] for cell in shown)]
    width = max(len(c.name) for c in shown)
    print("\n== summary: efficiency / 429s per N (outage: success / peak-after-outage x "
          "arrival rate)")
    print(f"{'cell':<{width}} " + " ".join(f"{c[:17]:>17}" for c in clients))
    for cell in shown:
        figures = results[cell.name]["figures"]
        row = []
        for client in clients:
            m = figures.get(client)
            if m is None:
                row.append(f"{'':>17}")
            elif cell.kind == "outage":
                row.append(f"{fmt(m['success_ratio'], '.1%')} / "
                           f"{fmt(m['peak_after_outage_vs_arrival_rate'], '.2f')}x".rjust(17))
            else:
                row.append(f"{fmt(m['efficiency'], '.3f')} / "
                           f"{fmt(m['429s_per_N'], '.2%')}".rjust(17))
        print(f"{cell.name:<{width}} " + " ".join(row))
    print("\n== targets (informative)")
    for cell in shown:
        for line in _verdicts(results[cell.name]["targets_met"]):
            print(f"{cell.name:<{width}}  {line}")


def heatmaps(cells: list[Cell], results: dict[str, Any], stem: Path) -> list[Path]:
    """One PNG per metric: rows = cells, columns = clients, the values written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [c.name for c in cells if c.name in results]
    order += [name for name in results if name not in order]
    clients = [c for c in ALL_CLIENTS if any(c in results[r]["figures"] for r in order)]
    written = []
    for metric in METRICS:
        values = [[(results[r]["figures"].get(c) or {}).get(metric) for c in clients]
                  for r in order]
        grid = [[math.nan if v is None else float(v) for v in row] for row in values]
        fig, ax = plt.subplots(figsize=(1.5 * len(clients) + 3.5, 0.36 * len(order) + 1.6))
        better_high = metric in ("efficiency", "jain")
        image = ax.imshow(grid, aspect="auto", cmap="RdYlGn" if better_high else "RdYlGn_r")
        spec = ".2%" if metric == "429s_per_N" else ".3f"
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                if v is not None:
                    ax.text(j, i, format(v, spec), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(clients)), clients, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(order)), order, fontsize=7)
        ax.set_title(f"quota.py --matrix: {metric} (rows: server cells; columns: clients)",
                     fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.03)
        fig.tight_layout()
        path = stem.with_name(f"{stem.stem}_{metric}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


# -- main ----------------------------------------------------------------------------------


def list_cells(quick: bool, only: str | None) -> None:
    for cell in select_cells(quick=quick, only=only):
        print(f"{cell.name:<34} {cell.kind:<7} [{', '.join(cell.axes)}] {cell.describe()}")


def main(args: Any, info: dict[str, Any]) -> int:
    """``quota.py --matrix`` (``info``: quota.py's machine_info, already printed)."""
    cells = select_cells(quick=args.quick, only=args.only)
    if not cells:
        print(f"no cell matches {args.only!r} (see --list)")
        return 2
    wanted = args.client_list or (list(QUICK_CLIENTS) if args.quick else None)
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    if output.exists():  # keep the other cells' latest figures
        try:
            result = json.loads(output.read_text())
        except ValueError:
            result = {}
    result.setdefault("cells", {})
    result["machine"] = info
    result["targets"] = {k: {m: list(v) for m, v in t.items()} for k, t in TARGETS.items()}
    started = time.monotonic()
    redis_server = None
    workdir = tempfile.mkdtemp(prefix="surefoot-matrix-")
    try:
        for cell in cells:
            clients = [c for c in cell.clients() if wanted is None or c in wanted]
            if not clients:
                continue
            if cell.kind == "fleet" and redis_server is None:
                from surefoot.sandbox import RedisServer

                redis_server = RedisServer().start()
            print(f"\n== {cell.name} ({', '.join(clients)})", flush=True)
            figures: dict[str, dict[str, Any]] = {}
            box = None
            if cell.kind == "outage":
                scen = outage_scenario(cell, quick=args.quick, seed=args.seed)
                title = (f"{cell.describe()}; Poisson {scen.arrival_rate:g}/s for "
                         f"{scen.duration:g} s, 503 outage of {scen.outage_seconds:g} s at "
                         f"t={scen.outage_start:g} s, deadline {scen.deadline:g} s")
            else:
                box = cell.box
                title = (f"{cell.describe()}; N={cell.n}, ideal {cell.ideal_s:.2f} s, "
                         f"no request started after {box:g} s")
            for name in clients:
                wall = time.monotonic()
                if cell.kind == "outage":
                    run, m = run_outage_client(name, cell, scen)
                elif cell.kind == "fleet":
                    assert redis_server is not None
                    run, m = run_fleet_cell_client(name, cell, redis_server.url, workdir)
                else:
                    run, m = run_closed_client(name, cell)
                figures[name] = m
                print(f"  {name:<18} done in {time.monotonic() - wall:5.1f} s"
                      + (f"  ({run.unfinished} unfinished)" if run.unfinished else ""),
                      flush=True)
            print_cell(cell, figures, box, title)
            checks = check_targets(cell, figures)
            for line in _verdicts(checks):
                print(f"  targets {line}")
            result["cells"][cell.name] = {
                "config": {**asdict(cell), "params": asdict(cell.params),
                           "ideal_s": cell.ideal_s if cell.kind != "outage" else None,
                           "box_s": box, "describe": cell.describe()},
                "quick": args.quick,
                "commit": info["commit"],
                "src_modified": info["src_modified"],
                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "figures": round_figures(figures),
                "targets_met": checks,
            }
            output.write_text(json.dumps(result, indent=2) + "\n")  # after every cell
    finally:
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print_summary(cells, result["cells"])
    if not args.no_plot:
        for path in heatmaps(all_cells(quick=args.quick), result["cells"], output):
            print(f"wrote {path}")
    print(f"\nwrote {output} ({time.monotonic() - started:.0f} s)")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", action="store_true",
                        help="instead of the scenarios: the server-model matrix against "
                        "bench/_model_server.py (see bench/_matrix.py); --quick: 3 cells, "
                        "N=600, 3 clients, < 2 min")
    parser.add_argument("--only", default=None, metavar="REGEX",
                        help="--matrix: only the cells whose name matches (see --list)")
    parser.add_argument("--list", action="store_true", help="--matrix: list the cells and exit")
    parser.add_argument("--no-plot", action="store_true",
                        help="--matrix: write no heat maps")
