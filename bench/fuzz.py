"""Totality fuzzing at scale: ``tests/project/test_fuzz.py`` with many examples per target.

The test file holds one hypothesis property per parser or verifier of untrusted input
(Retry-After, quota headers, token JSON, the challenges, Content-Digest, RFC 9421, SigV4,
HMAC, the WSGI and ASGI middleware, ``redact_url``): any input gives a value or a
``SurefootError``, never another exception, never a hang, never a bad wait. CI runs it
with a few hundred examples per target; this script runs it with
``SUREFOOT_FUZZ_EXAMPLES`` (default 100 000) and reports, per target, the examples run
(hypothesis may stop early when it has exhausted a small input space), the time and the
rate. The file's ``test_defect`` cases (known defects, ``xfail(strict=True)``) run too:
one that passes means a defect was fixed and its case must go.

    .venv/bin/python bench/fuzz.py                      # 100 000 examples per target
    .venv/bin/python bench/fuzz.py --quick              # smoke run: 100 per target
    .venv/bin/python bench/fuzz.py --examples 20000 --only sigv4_verify,hmac_verify

pytest runs in this process (its per-test timeout off), so that the examples each target
checked can be read from the test module's ``EXAMPLES_RUN``. Writes
``bench/results/fuzz.json`` (see ``bench/README.md``). Exit status 1 if any property
failed (hypothesis prints the shrunk input) or a defect case passed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from _env import platform_info, source_state, version

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEST_FILE = ROOT / "tests" / "project" / "test_fuzz.py"
RESULTS = HERE / "results" / "fuzz.json"
ENV = "SUREFOOT_FUZZ_EXAMPLES"
PREFIX = "test_fuzz_"
DEFECTS = "test_defect"


class Collector:
    """A pytest plugin: the collected items, and each test's call phase (outcome, time)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.calls: dict[str, dict[str, Any]] = {}

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        self.items = list(items)

    def pytest_runtest_logreport(self, report: Any) -> None:
        name = report.nodeid.rpartition("::")[2]
        entry = self.calls.setdefault(name, {"outcome": "not run", "seconds": 0.0})
        entry["seconds"] += report.duration
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "XPASSED"
            entry["outcome"] = outcome


def targets_in_file() -> list[str]:
    """The targets, from the test file's source (``def test_fuzz_<target>``)."""
    found = []
    for line in TEST_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"def {PREFIX}"):
            found.append(line[len(f"def {PREFIX}"):].partition("(")[0])
    return found


def run(examples: int, only: list[str] | None, seed: int | None
        ) -> tuple[int, Collector, Mapping[str, int], float]:
    """Run the file; (pytest's exit code, the collector, examples per target, seconds)."""
    import pytest  # (only the run needs it)

    os.environ[ENV] = str(examples)
    collector = Collector()
    args = [str(TEST_FILE), "-q", "-rfEX", "-p", "no:cacheprovider", "-o", "timeout=0",
            "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")]
    if only is not None:
        args += ["-k", " or ".join(f"{PREFIX}{name}" for name in only)]
    if seed is not None:
        args += [f"--hypothesis-seed={seed}"]
    started = time.perf_counter()
    code = int(pytest.main(args, plugins=[collector]))
    seconds = time.perf_counter() - started
    counts: Mapping[str, int] = {}
    if collector.items:
        counts = dict(getattr(collector.items[0].module, "EXAMPLES_RUN", {}))
    return code, collector, counts, seconds


def summarize(collector: Collector, counts: Mapping[str, int], targets: list[str]
              ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    figures: dict[str, dict[str, Any]] = {}
    for target in targets:
        call = collector.calls.get(f"{PREFIX}{target}", {"outcome": "not run", "seconds": 0.0})
        n = int(counts.get(target, 0))
        seconds = float(call["seconds"])
        figures[target] = {
            "examples": n,
            "seconds": round(seconds, 2),
            "examples_per_s": round(n / seconds, 1) if seconds > 0 else None,
            "outcome": call["outcome"],
        }
    defects = {
        name.removeprefix(DEFECTS).strip("[]"): entry["outcome"]
        for name, entry in collector.calls.items() if name.startswith(DEFECTS)
    }
    return figures, defects


def print_table(figures: dict[str, dict[str, Any]], defects: dict[str, str]) -> None:
    header = f"{'target':<22} {'examples':>9} {'seconds':>9} {'examples/s':>11}  outcome"
    print(header)
    print("-" * len(header))
    for target, f in figures.items():
        rate = f"{f['examples_per_s']:>11.1f}" if f["examples_per_s"] is not None else f"{'-':>11}"
        print(f"{target:<22} {f['examples']:>9} {f['seconds']:>9.1f} {rate}  {f['outcome']}")
    total_n = sum(f["examples"] for f in figures.values())
    total_s = sum(f["seconds"] for f in figures.values())
    print(f"{'all':<22} {total_n:>9} {total_s:>9.1f}")
    if defects:
        pinned = sum(outcome == "xfailed" for outcome in defects.values())
        print(f"\nknown defects (test_defect, xfail strict): {pinned}/{len(defects)} still fail")
        for name, outcome in defects.items():
            if outcome != "xfailed":
                print(f"  {name}: {outcome} (fixed? remove its case)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000,
                        help="hypothesis examples per target (100000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 examples per target")
    parser.add_argument("--only", default=None,
                        help="targets, comma-separated (default: all, and the defect cases)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON path ({RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:
        args.examples = 100
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    known = targets_in_file()
    args.targets = known
    if args.only is not None:
        args.only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(args.only) - set(known))
        if unknown:
            parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(known)}")
        args.targets = [name for name in known if name in args.only]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = {**platform_info(), "hypothesis": version("hypothesis"),
            "pytest": version("pytest"), "surefoot": version("surefoot")}
    print(
        f"python {info['python']} ({info['implementation']}) on {info['platform']}, "
        f"{info['cpu_count']} CPUs; hypothesis {info['hypothesis']}, pytest {info['pytest']}, "
        f"surefoot {info['surefoot']}"
    )
    print(f"{args.examples} examples per target, {len(args.targets)} targets: "
          f"{TEST_FILE.relative_to(ROOT)}")
    code, collector, counts, seconds = run(args.examples, args.only, args.seed)
    figures, defects = summarize(collector, counts, args.targets)
    print()
    print_table(figures, defects)
    print(f"\n{seconds:.1f} s in all; pytest exit code {code}")
    result = {
        "examples_per_target": args.examples,
        "quick": args.quick,
        "seed": args.seed,
        "targets": figures,
        "defects": defects,
        "seconds": round(seconds, 1),
        "pytest_exit_code": code,
        "source": source_state(),
        "machine": info,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    if args.quick:
        print("(--quick: a smoke run, not a fuzzing campaign)")
    failed = [t for t, f in figures.items() if f["outcome"] != "passed"]
    failed += [f"defect {name}" for name, outcome in defects.items() if outcome != "xfailed"]
    if failed:
        print("FAILED: " + ", ".join(failed))
    return 0 if code == 0 and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
