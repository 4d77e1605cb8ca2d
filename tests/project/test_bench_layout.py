"""The benchmarks' layout: ``bench/*.py`` scripts share code only through helper modules.

A script (``bench/overhead.py``, ``quota.py``...: a name without a leading underscore) is
run, never imported: importing one from another bench module loads it a second time
(as ``__main__`` and under its own name) and makes an import cycle. Shared code lives in
``bench/_*.py`` helpers, which import each other without a cycle. Checked on the source
(``ast``), so the benchmarks' dependencies need not be installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = {path.stem: path for path in sorted(BENCH.glob("*.py"))}


def is_script(name: str) -> bool:
    return not name.startswith("_")


def bench_imports(path: Path) -> set[str]:
    """The bench modules ``path`` imports, anywhere in it (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(top for top in (n.split(".")[0] for n in names) if top in MODULES)
    return found


GRAPH = {name: bench_imports(path) for name, path in MODULES.items()}


def test_bench_has_scripts_and_helpers() -> None:
    assert {"overhead", "quota", "refresh_storm", "signing"} <= {
        name for name in MODULES if is_script(name)
    }
    assert any(not is_script(name) for name in MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_bench_module_imports_a_script(name: str) -> None:
    scripts = sorted(imported for imported in GRAPH[name] if is_script(imported))
    assert not scripts, (
        f"bench/{name}.py imports the bench script(s) {scripts}: move the shared code "
        "into a bench/_*.py helper module"
    )


def test_bench_imports_have_no_cycle() -> None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name):], name]
            pytest.fail("import cycle in bench/: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(GRAPH[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])
