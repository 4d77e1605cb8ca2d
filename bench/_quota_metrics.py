"""What the quota benchmarks (``quota.py`` and its ``--fleet``, ``_fleet.py``) make of a run.

The scenarios, the record of what one client did (:class:`Run`), the metrics computed from
it and the sandbox's ``/stats``, the targets, the closed-loop table and the timeline plot.
Nothing here sends a request.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _stats import jain, nearest_rank

BIN = 0.1  # timeline resolution, seconds
#: ``--quick``: a closed-loop client starts no request after this many times the ideal time
QUICK_BOX = 1.1
OK = "ok"


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

    @property
    def box(self) -> float:
        """No request is started after this: the time box (``--quick``), else 10x the
        ideal time + 30 s."""
        return self.time_box if self.time_box is not None else 10 * self.ideal_s + 30


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


# -- what one client did -------------------------------------------------------------------


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


# -- metrics -------------------------------------------------------------------------------


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
        "p99_wait": nearest_rank(waits, 0.99),
        "p50_wait": nearest_rank(waits, 0.50),
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
    windows = _window_sums(attempts_bins, second)
    peak = max(windows, default=0)
    # after the outage: the 1 s windows that start once it is over
    peak_after = max(windows[math.ceil(finish / BIN - 1e-9):], default=0)
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
        "peak_after_outage_per_s": peak_after,
        "peak_after_outage_vs_arrival_rate": peak_after / scen.arrival_rate,
        "success_ratio": len(ok) / arrivals if arrivals else None,
        "recovery_s": _recovery(run, scen, end),
        "p99_wait": nearest_rank(waits, 0.99),
        "p50_wait": nearest_rank(waits, 0.50),
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


def round_figures(value: Any) -> Any:
    """``value`` for the JSON: floats to 6 decimals (``None`` if not finite), in dicts and
    lists too."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: round_figures(v) for k, v in value.items()}
    if isinstance(value, list):
        return [round_figures(v) for v in value]
    return value


def meets(targets: dict[str, tuple[str, float]], metrics: dict[str, Any]) -> dict[str, bool]:
    """Per target metric (``{metric: (">=" or "<=", bound)}``): whether ``metrics`` meets it."""
    checks = {}
    for metric, (op, bound) in targets.items():
        value = metrics.get(metric)
        checks[metric] = value is not None and (value >= bound if op == ">=" else value <= bound)
    return checks


# -- reporting -----------------------------------------------------------------------------


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_closed_rows(figures: dict[str, dict[str, Any]], box: float) -> None:
    """The closed-loop table (after its title line): one row per client."""
    print(f"{'client':<21} {'eff':>6} {'429s/N':>8} {'att/N':>7} {'client':>7} "
          f"{'jain':>6} {'p50 s':>7} {'p99 s':>7} {'ok':>7} {'time s':>7} {'N':>5}")
    for name, m in figures.items():
        print(f"{name:<21} {fmt(m['efficiency'], '6.3f')} {fmt(m['429s_per_N'], '8.2%')} "
              f"{fmt(m['attempts_per_N'], '7.3f')} {fmt(m['client_attempts_per_N'], '7.3f')}"
              f" {fmt(m['jain'], '6.3f')} {fmt(m['p50_wait'], '7.3f')} "
              f"{fmt(m['p99_wait'], '7.3f')} {fmt(m['success_ratio'], '7.1%')} "
              f"{fmt(m['elapsed_s'], '7.2f')} {m['requests']:>5d}"
              + (" (time-boxed)" if m["time_boxed"] else ""))
    if any(m["time_boxed"] for m in figures.values()):
        print(f"(time box: no request started after {box:g} s; a time-boxed client's "
              "eff is its throughput in the box, its per-N figures per request started)")


def print_outage_rows(figures: dict[str, dict[str, Any]]) -> None:
    """The outage table (after its title line): one row per client."""
    print(f"{'client':<21} {'att/req':>7} {'win/arr':>7} {'peak/s':>7} {'xrate':>6} "
          f"{'after':>6} {'success':>8} {'recov s':>7} {'drain s':>7} {'p50 s':>7} "
          f"{'p99 s':>7} {'503s':>6} {'att':>6}")
    for name, m in figures.items():
        print(f"{name:<21} {fmt(m['attempts_per_request_during_outage'], '7.2f')} "
              f"{fmt(m['attempts_in_outage_window_per_arrival'], '7.2f')} "
              f"{m['peak_attempts_per_s']:>7d} {fmt(m['peak_vs_arrival_rate'], '6.2f')} "
              f"{fmt(m['peak_after_outage_vs_arrival_rate'], '6.2f')} "
              f"{fmt(m['success_ratio'], '8.2%')} {fmt(m['recovery_s'], '7.1f')} "
              f"{fmt(m['backlog_drained_s'], '7.2f')} "
              f"{fmt(m['p50_wait'], '7.3f')} {fmt(m['p99_wait'], '7.3f')} "
              f"{m['server_503s']:>6d} {m['server_attempts']:>6d}")
    print("(xrate: peak attempts per 1 s window / arrival rate; after: the same over the "
          "windows after the outage; peak arrivals per 1 s window: "
          f"{max(m['peak_arrivals_per_s'] for m in figures.values())})")


def print_failures(figures: dict[str, dict[str, Any]]) -> None:
    """The first four kinds of failed requests of each client that had any."""
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

