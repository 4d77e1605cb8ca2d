"""No public signature says ``Any``: what a user passes and gets back is typed."""

from __future__ import annotations

import importlib

from test_layout import NAMESPACES


def _annotations_of(obj: object) -> list[tuple[str, str]]:
    """(where, annotation text) for every public signature of a public object."""
    import inspect

    out: list[tuple[str, str]] = []

    def add(label: str, fn: object) -> None:
        try:
            sig = inspect.signature(fn)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        out.extend((f"{label}({n})", str(p.annotation)) for n, p in sig.parameters.items())
        out.append((f"{label} ->", str(sig.return_annotation)))

    name = getattr(obj, "__qualname__", repr(obj))
    if isinstance(obj, type):
        for attr, value in vars(obj).items():
            if attr.startswith("_") and attr != "__init__":
                continue
            if isinstance(value, property) and value.fget is not None:
                add(f"{name}.{attr}", value.fget)
            elif callable(value) or isinstance(value, (classmethod, staticmethod)):
                add(f"{name}.{attr}", getattr(obj, attr))
        for attr, ann in vars(obj).get("__annotations__", {}).items():
            if not attr.startswith("_"):
                out.append((f"{name}.{attr}", str(ann)))
    elif callable(obj):
        add(name, obj)
    return out


PUBLIC_NAMESPACES = NAMESPACES + ("surefoot.middleware", "surefoot.sandbox")


def test_no_any_in_a_public_signature():
    import re

    offenders = set()
    for namespace in PUBLIC_NAMESPACES:
        module = importlib.import_module(namespace)
        for name in module.__all__:
            for where, annotation in _annotations_of(getattr(module, name)):
                if re.search(r"\bAny\b", annotation):
                    offenders.add(f"{namespace}: {where}: {annotation}")
    assert sorted(offenders) == []

