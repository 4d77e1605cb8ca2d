"""The instrumentation package: lazy, a missing library is a MissingExtra naming its
``pip install``, a typed public surface."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys

import pytest

import surefoot.instrumentation

LIBRARIES = ("opentelemetry", "prometheus_client", "structlog")

#: module, public hook, the library it needs, the extra installing it
HOOKS = [
    ("surefoot.instrumentation.otel", "OpenTelemetryHook", "opentelemetry", "otel"),
    ("surefoot.instrumentation.prometheus", "PrometheusHook", "prometheus_client",
     "prometheus"),
    ("surefoot.instrumentation.structlog", "StructlogHook", "structlog", "structlog"),
]


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_importing_the_package_imports_no_library():
    out = run("import json, sys\nimport surefoot.instrumentation\n"
              "print(json.dumps(sorted(sys.modules)))")
    loaded = {m.split(".")[0] for m in json.loads(out)}
    assert loaded.isdisjoint(LIBRARIES)


@pytest.mark.parametrize(("module", "name", "library", "extra"), HOOKS)
def test_a_missing_library_names_the_extra(module, name, library, extra):
    code = f"""
import sys
sys.modules[{library!r}] = None  # as if not installed
import surefoot.instrumentation
from surefoot.errors import MissingExtra
for how in ("module", "attribute"):
    try:
        if how == "module":
            import {module}
        else:
            getattr(surefoot.instrumentation, {name!r})
    except MissingExtra as exc:
        print(how, exc.extra, exc.__cause__ is None, exc)
"""
    lines = run(code).splitlines()
    assert len(lines) == 2
    for line, how in zip(lines, ("module", "attribute")):
        assert line.startswith(f"{how} {extra} True ")
        assert f"pip install 'surefoot[{extra}]'" in line


@pytest.mark.parametrize(("module", "name", "library", "extra"), HOOKS)
def test_the_hooks_resolve_lazily(module, name, library, extra):
    hook_type = getattr(surefoot.instrumentation, name)
    assert hook_type.__module__ == module
    assert name in surefoot.instrumentation.__all__
    assert name in dir(surefoot.instrumentation)


def test_no_any_in_a_public_signature():
    offenders = []
    for module, name, _, _ in HOOKS:
        cls = getattr(surefoot.instrumentation, name)
        for attr, member in [("__init__", cls.__init__), ("__call__", cls.__call__),
                             ("wants", cls.wants)]:
            sig = inspect.signature(member)
            annotations = [str(p.annotation) for p in sig.parameters.values()]
            annotations.append(str(sig.return_annotation))
            offenders += [f"{name}.{attr}: {a}" for a in annotations
                          if re.search(r"\bAny\b", a)]
    assert offenders == []


def test_every_hook_is_a_surefoot_hook_with_wants():
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from surefoot.events import EventKind
    from surefoot.instrumentation import OpenTelemetryHook, PrometheusHook, StructlogHook

    for hook in (OpenTelemetryHook(TracerProvider()), PrometheusHook(CollectorRegistry()),
                 StructlogHook()):
        assert callable(hook)
        assert isinstance(hook.wants(EventKind.REQUEST_DONE), bool)
        assert type(hook).__name__ in repr(hook)
