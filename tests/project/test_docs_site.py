"""The documentation site builds with ``mkdocs build --strict``: a warning (a broken link,
a missing snippet, a docstring mkdocstrings cannot read) fails the suite.

One build per session (about 10 s); the tests below read what it produced.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: The site is built with the newest mkdocs-material, mkdocstrings and pymdown-extensions;
#: the newest releases of the last two that install on Python 3.10 do not work together
#: (``Highlight.__init__() missing ... 'md'`` in a strict build). The library's own tests
#: run on 3.10; the site is built on 3.11 and newer (.ci/run's README run).
pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="the docs toolchain's newest releases for Python 3.10 do not build together",
)

ROOT = Path(__file__).resolve().parents[2]
NAMESPACES = (
    "surefoot", "requests", "httpx", "signing", "oauth", "pacing", "stores", "errors",
    "events", "instrumentation", "testing", "sandbox", "middleware",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    warnings = [line for line in log.splitlines() if re.search(r"\bWARNING\b", line)]
    assert not warnings, "\n".join(warnings)
    return out


def test_site_builds_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in ("tutorial/signing", "how-to/fleet", "how-to/verify-signatures",
                 "how-to/observability", "design"):
        assert (site / page / "index.html").is_file(), page


@pytest.mark.parametrize("name", NAMESPACES)
def test_api_reference_lists_every_public_name(site: Path, name: str) -> None:
    module = importlib.import_module("surefoot" if name == "surefoot" else f"surefoot.{name}")
    page = (site / "reference" / "api" / name / "index.html").read_text(encoding="utf-8")
    public = [n for n in getattr(module, "__all__", ()) if not n.startswith("_")]
    assert public, name
    missing = [n for n in public if f'id="{module.__name__}.{n}"' not in page]
    assert not missing, f"{module.__name__}: not documented: {missing}"


def test_benchmarks_page_has_the_results(site: Path) -> None:
    page = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert "surefoot_requests" in page  # the overhead table, from bench/results/overhead.json
    assert "<!-- bench:" not in page
    for png in sorted((ROOT / "bench" / "results").glob("quota_*.png")):
        assert (site / "benchmarks" / "plots" / png.name).is_file(), png.name
