"""MkDocs hook: the benchmark tables and plots, read from ``bench/results/`` at build time.

A page line ``<!-- bench: NAME -->`` becomes the table of ``NAME`` (see :data:`TABLES`),
built from ``bench/results/*.json`` as the last benchmark run left them, so the site never
shows figures that the results do not hold. The PNG plots that ``bench/quota.py`` writes
are published under ``benchmarks/plots/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
PLOTS = (
    "quota_known", "quota_unknown", "quota_outage", "fleet",
    "matrix_efficiency", "matrix_429s_per_N", "matrix_attempts_per_N", "matrix_jain",
    "matrix_p99_wait",
)
MARKER = re.compile(r"^<!-- bench: (?P<name>[\w-]+) -->$", re.M)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "met" if value else "**missed**"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def measured(data: dict[str, Any]) -> str:
    machine = data.get("machine") or {}
    parts = [f"Python {machine['python']}" if "python" in machine else "",
             f"{machine['cpu_count']} CPUs" if "cpu_count" in machine else "",
             f"measured {data['date'][:10]}" if "date" in data else ""]
    text = ", ".join(p for p in parts if p)
    return f"\n\n*{text}.*" if text else ""


def overhead() -> str:
    data = load("overhead")
    rows = [
        (f"`{name}`", us, f"`{data['baseline'][name]}`", data["ratio_vs_baseline"][name],
         data["overhead_us"][name])
        for name, us in data["us_per_request"].items()
    ]
    return table(["contender", "µs per request", "baseline", "ratio", "µs added"], rows) + (
        "\n\n" + targets_table(data["targets"]) + measured(data)
    )


def throughput() -> str:
    data = load("throughput")
    rows = [(f"`{name}`", c["requests_per_s"], c["ratio_vs_bare"], c["errors"])
            for name, c in data["contenders"].items()]
    return table(["contender", "requests/s", "ratio to bare", "errors"], rows) + (
        "\n\n" + targets_table(data["targets"]) + measured(data)
    )


def signing() -> str:
    data = load("signing")
    rows = [(f"`{name}`", c["what"] or "", c["us_per_op"], c["ratio_vs_baseline"],
             c["target"], c["status"])
            for name, c in data["contenders"].items()]
    return table(["contender", "what", "µs per op", "ratio", "target", "status"], rows) + (
        measured(data)
    )


def quota() -> str:
    data = load("quota")
    out = []
    for scenario in ("known", "unknown", "outage"):
        metrics = list(data["targets"][scenario])
        for extra in ("success_ratio", "p99_wait"):
            if extra not in metrics:
                metrics.append(extra)
        limits = data["targets"][scenario]
        header = ["client"] + [
            f"{m} ({' '.join(map(str, limits[m]))})" if m in limits else m for m in metrics
        ]
        rows = [[f"`{client}`"] + [figures.get(m) for m in metrics]
                for client, figures in data[scenario].items() if isinstance(figures, dict)]
        out.append(f"**{scenario}**\n\n" + table(header, rows))
    return "\n\n".join(out) + measured(data)


def fleet() -> str:
    data = load("fleet")
    metrics = list(data["targets"])
    rows = [[f"`{name}`"] + [value.get(m) for m in metrics]
            for name, value in data.items() if isinstance(value, dict) and "efficiency" in value]
    header = ["client"] + [f"{m} ({' '.join(map(str, data['targets'][m]))})" for m in metrics]
    return table(header, rows) + measured(data)


def refresh_storm() -> str:
    out = []
    for name in ("refresh_storm", "refresh_storm_cycles"):
        data = load(name)
        rows = []
        for store, result in data["results"].items():
            rounds = result.get("rounds") or []
            tokens = [r["token_requests"] for r in rounds]
            calls = sum(r["calls"] for r in rounds)
            ok = sum(r["ok"] for r in rounds)
            rows.append((f"`{store}`", len(rounds),
                         f"{min(tokens)} to {max(tokens)}" if tokens else None, f"{ok}/{calls}",
                         data["targets_met"].get(store)))
        out.append(f"**{name}.json** — target: {data['target']}\n\n" + table(
            ["client", "expiries", "token requests per expiry", "calls answered 200", "target"],
            rows,
        ) + measured(data))
    return "\n\n".join(out)


def soak() -> str:
    data = load("soak")
    figures = data["figures"]["requests"]
    rows = [(f"`{name}`", target, figures.get(name)) for name, target in data["targets"].items()]
    met = data.get("targets_met")
    return table(["figure", "target", "value"], rows) + (
        f"\n\nAll targets met: {cell(met)}." if isinstance(met, bool) else ""
    ) + measured(data)


def fuzz() -> str:
    data = load("fuzz")
    rows = [(f"`{name}`", t["examples"], t["seconds"], t["outcome"])
            for name, t in data["targets"].items()]
    return table(["target", "examples", "seconds", "outcome"], rows) + (
        f"\n\nDefects found: {len(data['defects'])}." + measured(data)
    )


def memory() -> str:
    data = load("memory")
    rows = [(f"`{name}`", ", ".join(f"{k}={v}" for k, v in t.items() if k != "met"), t["met"])
            for name, t in data["targets"].items()]
    return table(["bound", "details", "target"], rows) + measured(data)


def targets_table(targets: dict[str, dict[str, Any]]) -> str:
    rows = [(f"`{name}`", t["value"], t["limit"], t["met"]) for name, t in targets.items()]
    return table(["figure", "value", "target", "met"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "overhead": overhead,
    "throughput": throughput,
    "signing": signing,
    "quota": quota,
    "fleet": fleet,
    "refresh-storm": refresh_storm,
    "soak": soak,
    "fuzz": fuzz,
    "memory": memory,
}


def on_files(files: Files, config: Any) -> Files:
    for name in PLOTS:
        path = RESULTS / f"{name}.png"
        if path.exists():
            files.append(File.generated(config, f"benchmarks/plots/{name}.png",
                                        abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"{page.file.src_uri}: no benchmark table named {name!r}")
        return TABLES[name]()

    return MARKER.sub(replace, markdown)
