"""A/B: the benchmarks of two commits, side by side in one run.

    python bench/ab.py --base 5c6b950                 # every benchmark, 2 alternations
    python bench/ab.py --base HEAD~3 --only overhead,signing --pairs 3

The base commit is checked out in a temporary git worktree; each benchmark runs as that
commit's own script against that commit's own ``src`` (``PYTHONPATH``), then as this
tree's, alternately (base, head, base, head ...), so that drift of the machine is shared
by both. The headline figures of each run are read from its JSON output; the table shows
the mean of each side and head / base.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _env import git

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

Metrics = dict[str, float]


def _overhead(data: dict[str, Any]) -> Metrics:
    out = {k: float(v) for k, v in data.items()
           if k.startswith("ratio_") and isinstance(v, (int, float))}
    for name, us in data.get("overhead_us", {}).items():
        if name.startswith("surefoot"):
            out[f"{name} added µs"] = float(us)
    return out


def _signing(data: dict[str, Any]) -> Metrics:
    out = {f"{k.removesuffix('_us')} µs": float(v) for k, v in data["headline"].items()
           if k.endswith("_us") and not k.startswith(("pyauth", "botocore", "aws4auth", "raw"))}
    for name, entry in data["contenders"].items():
        if ".surefoot.verify" in name:
            out[f"{name} µs"] = float(entry["us_per_op"])
    return out


def _refresh(data: dict[str, Any]) -> Metrics:
    out: Metrics = {}
    for name, entry in data["results"].items():
        if name.startswith("surefoot"):
            out[f"{name} token requests/expiry"] = float(entry["token_requests_per_expiry_mean"])
            out[f"{name} ok ratio"] = float(entry["ok_ratio"])
    return out


def _quota(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], Metrics]:
    def extract(data: dict[str, Any]) -> Metrics:
        out: Metrics = {}
        results = data.get("results", data)
        for scenario, clients in results.items():
            if not isinstance(clients, dict):
                continue
            for client, figures in clients.items():
                if client.startswith("surefoot") and isinstance(figures, dict):
                    for key in keys:
                        if isinstance(figures.get(key), (int, float)):
                            out[f"{scenario}.{client} {key}"] = float(figures[key])
        return out

    return extract


def _fleet(data: dict[str, Any]) -> Metrics:
    out: Metrics = {}
    for client, figures in data.items():
        if client.startswith("surefoot") and isinstance(figures, dict):
            for key in ("efficiency", "429s_per_N", "attempts_per_N"):
                out[f"{client} {key}"] = float(figures[key])
    return out


@dataclass(frozen=True)
class Bench:
    script: str
    args: tuple[str, ...]
    quick: tuple[str, ...]
    extract: Callable[[dict[str, Any]], Metrics]


BENCHES = {
    "overhead": Bench("overhead.py", (), ("--quick",), _overhead),
    "signing": Bench("signing.py", (), ("--quick",), _signing),
    "refresh_storm": Bench("refresh_storm.py", ("--rounds", "5"), ("--quick",), _refresh),
    "quota": Bench(
        "quota.py",
        ("--scenario", "all", "--clients", "surefoot"),
        ("--quick", "--scenario", "all", "--clients", "surefoot"),
        _quota(("efficiency", "429s_per_N", "attempts_per_N", "p99_wait", "success_ratio",
                "attempts_per_request_during_outage", "peak_vs_arrival_rate")),
    ),
    "fleet": Bench(
        "quota.py",
        ("--fleet", "--clients", "surefoot_redis,surefoot_sqlite"),
        ("--fleet", "--quick", "--clients", "surefoot_redis,surefoot_sqlite"),
        _fleet,
    ),
}


def run(tree: Path, bench: Bench, quick: bool, out: Path) -> Metrics:
    args = bench.quick if quick else bench.args
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [sys.executable, str(tree / "bench" / bench.script), *args, "--output", str(out)]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return bench.extract(json.loads(out.read_text(encoding="utf-8")))


def table(name: str, base: list[Metrics], head: list[Metrics]) -> list[dict[str, Any]]:
    rows = []
    print(f"\n## {name}  (base: {len(base)} runs, head: {len(head)} runs)")
    print(f"{'metric':60} {'base':>10} {'head':>10} {'head/base':>10}")
    for key in sorted(set().union(*base) & set().union(*head)):
        b = statistics.fmean(m[key] for m in base if key in m)
        h = statistics.fmean(m[key] for m in head if key in m)
        ratio = h / b if b else float("nan")
        print(f"{key:60} {b:10.4f} {h:10.4f} {ratio:10.3f}")
        rows.append({"metric": key, "base": round(b, 6), "head": round(h, 6),
                     "head_over_base": round(ratio, 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--only", default=",".join(BENCHES), help="benchmarks, comma-separated")
    parser.add_argument("--pairs", type=int, default=2, help="alternations per benchmark (2)")
    parser.add_argument("--quick", action="store_true", help="the benchmarks' smoke runs")
    parser.add_argument("--output", type=Path, default=None, help="JSON of the table")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmarks: {sorted(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="surefoot-ab-"))
    base_tree = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree),
                    args.base], check=True)
    report: dict[str, Any] = {"base": git("rev-parse", "--short", args.base),
                              "head": git("rev-parse", "--short", "HEAD"), "quick": args.quick}
    try:
        for name in names:
            bench = BENCHES[name]
            sides: dict[str, list[Metrics]] = {"base": [], "head": []}
            for i in range(args.pairs):
                for side, tree in (("base", base_tree), ("head", ROOT)):
                    out = work / f"{name}-{side}-{i}.json"
                    sides[side].append(run(tree, bench, args.quick, out))
                    print(f"{name}: {side} run {i + 1} done", file=sys.stderr, flush=True)
            report[name] = table(name, sides["base"], sides["head"])
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                       check=False)
        shutil.rmtree(work, ignore_errors=True)
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
