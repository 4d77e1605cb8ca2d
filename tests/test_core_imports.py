"""The sans-I/O core and ``import surefoot`` pull in no HTTP library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import surefoot

HEAVY = ("requests", "httpx", "redis", "starlette", "urllib3")

CORE_MODULES = (
    "surefoot",
    "surefoot._core._pipeline",
    "surefoot._core._policy",
    "surefoot.signing._hmac",
    "surefoot.oauth._grants",
    "surefoot._core._retry_after",
    "surefoot._core._clock",
    "surefoot.events",
    "surefoot.errors",
    "surefoot._core._history",
    "surefoot.pacing._gcra",
    "surefoot.pacing._quota_headers",
    "surefoot.pacing._adaptive",
    "surefoot.pacing._budget",
    "surefoot.pacing._breaker",
    "surefoot.pacing._pacer",
    "surefoot.signing._rfc9421",
    "surefoot.signing._digest",
    "surefoot.signing._sigv4",
)


def loaded_after(code: str) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_core_imports_no_http_library():
    modules = loaded_after("import " + ", ".join(CORE_MODULES))
    assert set(CORE_MODULES) <= modules
    assert heavy_in(modules) == []


def test_public_objects_usable_without_http_library():
    modules = loaded_after(
        "import surefoot\n"
        "surefoot.HmacSigner('k', 's')\n"
        "surefoot.HmacVerifier({'k': 's'})\n"
        "surefoot.RetryPolicy()\n"
        "surefoot.TokenCache(lambda: 'tok')\n"
        "surefoot.FileTokenStore('/nonexistent/tokens.json')\n"
    )
    assert heavy_in(modules) == []


def test_auth_objects_need_no_requests():
    # They are httpx.Auth subclasses when httpx is installed, and requests auths by duck
    # typing: using them never imports requests.
    modules = loaded_after(
        "import surefoot\n"
        "surefoot.HmacAuth('k', 's')\n"
        "surefoot.BearerAuth(lambda: 'tok')\n"
    )
    assert "requests" not in modules


def test_check_detects_http_libraries():
    # guards the check above: a module that does import urllib3 is seen
    modules = loaded_after("import urllib3")
    assert heavy_in(modules) != []


def test_every_public_name_is_importable():
    assert len(surefoot.__all__) == len(set(surefoot.__all__))
    missing = [name for name in surefoot.__all__ if not hasattr(surefoot, name)]
    assert missing == []
    for name in surefoot.__all__:
        assert getattr(surefoot, name) is not None


def test_star_import():
    namespace: dict[str, object] = {}
    exec("from surefoot import *", namespace)
    assert set(surefoot.__all__) <= set(namespace)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="does_not_exist"):
        surefoot.does_not_exist  # noqa: B018


def test_version():
    assert surefoot.__version__ == "0.1.0"
