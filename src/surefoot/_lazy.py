"""Lazy namespaces: a package's public names are imported on first use (PEP 562).

Each package ``__init__`` maps its public names to the private modules that define them.
Nothing is imported until a name is used, so importing one private module never runs
another package's imports (no import cycles between the feature packages), and
``import surefoot`` stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping

__all__ = ["attach"]


def attach(
    package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps each
    public name to the module defining it; ``submodules`` are importable as attributes."""
    subs = frozenset(submodules)
    public = sorted(names)

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is not None:
            value: object = getattr(importlib.import_module(module), name)
        elif name in subs:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public, *subs})

    return __getattr__, __dir__
