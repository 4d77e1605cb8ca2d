"""The architecture, kept by tests: the sans-I/O core imports no HTTP or Redis library
(and no feature package), only the front doors and the Redis store import them, and the
public surface is small, lazy and complete."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import surefoot

SRC = Path(surefoot.__file__).parent
HEAVY = ("requests", "httpx", "redis", "starlette", "urllib3", "httpcore")

#: The files that may import an HTTP or Redis library, and why.
BOUNDARY = {
    "requests.py": "the requests front door",
    "httpx.py": "the httpx front door",
    "_adapters/": "the front doors' adapters (transport adapter, transports, auth hooks)",
    "stores/_redis/": "the Redis store (imports redis lazily, on first connection)",
    "cli/": "the command line, an application on top of the library (installed with [cli])",
}

#: The sans-I/O core and the pure parts of each feature.
PURE_MODULES = (
    "surefoot._core._pipeline",
    "surefoot._core._policy",
    "surefoot._core._retry_after",
    "surefoot._core._clock",
    "surefoot._core._history",
    "surefoot._core._origin",
    "surefoot.events",
    "surefoot.errors",
    "surefoot.signing._hmac",
    "surefoot.signing._rfc9421",
    "surefoot.signing._digest",
    "surefoot.signing._sigv4",
    "surefoot.oauth._token",
    "surefoot.oauth._grants",
    "surefoot.oauth._client_auth",
    "surefoot.pacing._gcra",
    "surefoot.pacing._quota_headers",
    "surefoot.pacing._adaptive",
    "surefoot.pacing._budget",
    "surefoot.pacing._breaker",
    "surefoot.pacing._pacer",
    "surefoot.pacing._state",
)

NAMESPACES = ("surefoot", "surefoot.signing", "surefoot.oauth", "surefoot.pacing",
              "surefoot.stores", "surefoot.errors", "surefoot.events", "surefoot.testing",
              "surefoot.requests", "surefoot.httpx", "surefoot.instrumentation")


def loaded_after(code: str) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(module, only for type checking) for every import in a file, nested ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in typing_only) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.module, id(node) in typing_only))
    return out


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_only_the_front_doors_and_the_redis_store_import_http_or_redis():
    offenders = []
    for path in source_files():
        rel = path.relative_to(SRC).as_posix()
        if any(rel == b or (b.endswith("/") and rel.startswith(b)) for b in BOUNDARY):
            continue
        for module, typing_only in imports_of(path):
            if module.split(".")[0] in HEAVY and not typing_only:
                offenders.append(f"{rel}: {module}")
    assert offenders == []


def test_boundary_check_sees_an_import():
    # guards the check above: the front doors are seen importing their library
    assert ("requests", False) in imports_of(SRC / "requests.py")
    assert any(m == "httpx" for m, _ in imports_of(SRC / "httpx.py"))


def test_core_depends_on_no_feature_package():
    """``_core`` is the pipeline and its policies: it imports only itself, the error tree,
    the events and the library's logger at run time (feature types only for type
    checking)."""
    allowed = ("surefoot._core", "surefoot.errors", "surefoot.events", "surefoot._log")
    offenders = []
    for path in sorted((SRC / "_core").glob("*.py")):
        for module, typing_only in imports_of(path):
            if module.startswith("surefoot") and not typing_only and not module.startswith(
                allowed
            ):
                offenders.append(f"{path.name}: {module}")
    assert offenders == []


def test_pure_modules_import_no_http_library():
    modules = loaded_after("import " + ", ".join(PURE_MODULES))
    assert set(PURE_MODULES) <= modules
    assert heavy_in(modules) == []


def test_import_surefoot_is_lazy():
    modules = loaded_after("import surefoot")
    assert heavy_in(modules) == []
    assert not any(m.startswith(("surefoot.signing.", "surefoot.oauth.", "surefoot.pacing."))
                   for m in modules)


def test_import_surefoot_loads_no_parser_nor_typing():
    """``import surefoot`` stays cheap (issue 14: <= 30 ms): its lazy namespaces are read
    without ast, re or typing (each would cost more than the rest of it)."""
    script = "import sys\nimport surefoot\nprint(' '.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    modules = set(out.split())
    assert "surefoot" in modules
    assert {"ast", "re", "typing", "pathlib"}.isdisjoint(modules)


@pytest.mark.parametrize("init", sorted(
    str(p) for p in (Path(surefoot.__file__).parent).rglob("__init__.py")))
def test_lazy_namespaces_read_their_imports_as_ast_does(init: str) -> None:
    """The line reader of the TYPE_CHECKING imports finds what ast finds."""
    from surefoot._lazy import _typing_imports

    expected: dict[str, str] = {}
    for node in ast.parse(Path(init).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                    for alias in stmt.names:
                        name = alias.asname or alias.name
                        if not name.startswith("_"):
                            expected[name] = stmt.module
    assert _typing_imports(init) == expected


def test_public_objects_usable_without_http_library():
    modules = loaded_after(
        "import surefoot\n"
        "surefoot.signing.HmacSigner('k', 's')\n"
        "surefoot.signing.HmacVerifier({'k': 's'})\n"
        "surefoot.RetryPolicy()\n"
        "surefoot.oauth.TokenCache(lambda: 'tok')\n"
        "surefoot.stores.FileTokenStore('/nonexistent/tokens.json')\n"
        "surefoot.Pacer(surefoot.PacingPolicy())\n"
    )
    assert heavy_in(modules) == []


def test_auth_objects_need_no_requests():
    # They are httpx.Auth subclasses when httpx is installed, and requests auths by duck
    # typing: using them never imports requests.
    modules = loaded_after(
        "import surefoot\n"
        "surefoot.SigningAuth.hmac('k', 's')\n"
        "surefoot.BearerAuth(lambda: 'tok')\n"
    )
    assert "requests" not in modules


def test_check_detects_http_libraries():
    # guards the checks above: a module that does import urllib3 is seen
    modules = loaded_after("import urllib3")
    assert heavy_in(modules) != []


@pytest.mark.parametrize("name", NAMESPACES)
def test_every_public_name_resolves(name: str):
    module = importlib.import_module(name)
    names = module.__all__
    assert len(names) == len(set(names))
    missing = [n for n in names if getattr(module, n, None) is None]
    assert missing == []
    assert set(names) <= set(dir(module))


def test_root_is_the_common_path_only():
    # about 25 names; the rest lives in the subsystem namespaces
    assert len(surefoot.__all__) <= 30
    for sub in ("signing", "oauth", "pacing", "stores", "errors", "events", "testing",
                "requests", "httpx", "middleware", "sandbox"):
        assert importlib.import_module(f"surefoot.{sub}") is getattr(surefoot, sub)


def test_configuration_objects_share_one_naming_pattern():
    from surefoot.pacing import AdaptivePolicy, BreakerPolicy, RetryBudgetPolicy

    for policy in (surefoot.RetryPolicy, surefoot.PacingPolicy, AdaptivePolicy, BreakerPolicy,
                   RetryBudgetPolicy):
        assert policy.__name__.endswith("Policy")
        assert policy.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_star_import():
    namespace: dict[str, object] = {}
    exec("from surefoot import *", namespace)
    assert set(surefoot.__all__) <= set(namespace)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="does_not_exist"):
        surefoot.does_not_exist  # noqa: B018
    with pytest.raises(AttributeError, match="does_not_exist"):
        surefoot.signing.does_not_exist  # noqa: B018


def test_version():
    assert surefoot.__version__ == "0.1.0"


def test_built_in_objects_implement_the_exported_protocols(tmp_path):
    from surefoot.oauth import TokenCache, TokenSource
    from surefoot.pacing import LocalPacerState, PacerState, PacingPolicy
    from surefoot.stores import (
        FileTokenStore,
        MemoryNonceCache,
        MemoryStore,
        MemoryTokenStore,
        NonceCache,
        SQLiteStore,
        Store,
        TokenStore,
    )

    sqlite = SQLiteStore(tmp_path / "state.db")
    try:
        for store in (MemoryStore(), sqlite):
            assert isinstance(store, Store)
            assert isinstance(store.tokens, TokenStore)
            assert isinstance(store.nonces, NonceCache)
            assert isinstance(store.pacer_state(PacingPolicy()), PacerState)
    finally:
        sqlite.close()
    assert isinstance(FileTokenStore(tmp_path / "t.json"), TokenStore)
    assert isinstance(MemoryTokenStore(), TokenStore)
    assert isinstance(MemoryNonceCache(), NonceCache)
    assert isinstance(LocalPacerState(PacingPolicy()), PacerState)
    assert isinstance(TokenCache(lambda: "tok"), TokenSource)
    bearer = surefoot.BearerAuth(lambda: "tok")
    assert isinstance(bearer, surefoot.AuthStrategy)
    assert isinstance(bearer.token_source, TokenSource)
    assert not isinstance(object(), surefoot.AuthStrategy)
