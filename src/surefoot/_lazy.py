"""Lazy namespaces: a package's public names are imported on first use (PEP 562).

A package ``__init__`` lists its public names once, as the imports of an
``if TYPE_CHECKING:`` block (``from surefoot.x._y import Name as Name``: what type checkers
and readers see), and ends with::

    else:
        __getattr__, __dir__, __all__ = attach(__name__, __file__)

:func:`attach` reads those imports from the file and imports each name's module when the
name is first used. So importing one private module never runs another package's imports
(the feature packages cannot form import cycles), and ``import surefoot`` stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable

__all__ = ["attach"]


def _typing_imports(file: str) -> dict[str, str]:
    """name -> module, for the ``from module import name`` of the file's
    ``if TYPE_CHECKING:`` blocks (public names only; names on one line, or in
    parentheses over several). Read line by line: parsing the file with :mod:`ast`, or
    importing :mod:`re`, would cost ``import surefoot`` more than the rest of it."""
    with open(file, encoding="utf-8") as source:
        lines = [line.partition("#")[0].rstrip() for line in source.read().splitlines()]
    names: dict[str, str] = {}
    inside = False
    at = 0
    while at < len(lines):
        line = lines[at]
        at += 1
        if not line[:1].isspace():
            inside = line.startswith("if TYPE_CHECKING:")
            continue
        words = line.split(None, 3)
        if not inside or len(words) < 4 or words[0] != "from" or words[2] != "import":
            continue
        module, imported = words[1], words[3]
        if imported.startswith("("):
            while ")" not in imported and at < len(lines):
                imported += "," + lines[at]
                at += 1
        if module.startswith("."):
            continue
        for alias in imported.strip("()").split(","):
            parts = alias.split()
            if parts and not parts[-1].startswith("_"):  # ``Name`` or ``Name as Alias``
                names[parts[-1]] = module
    return names


def attach(
    package: str, file: str, submodules: Iterable[str] = ()
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package`` (whose ``__init__`` is
    ``file``). ``submodules`` are also importable as attributes (not in ``__all__``)."""
    subs = frozenset(submodules)
    names = {n: m for n, m in _typing_imports(file).items() if n not in subs}

    def __getattr__(name: str) -> object:
        module = names.get(name)
        try:
            if module is not None:
                value: object = getattr(importlib.import_module(module), name)
            elif name in subs:
                value = importlib.import_module(f"{package}.{name}")
            else:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
        except ImportError as exc:
            if getattr(exc, "extra", None) is None:
                raise
            # surefoot.errors.MissingExtra: its message says it all; the import
            # machinery's frames would only bury it
            raise exc.with_traceback(None) from None
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names, *subs})

    return __getattr__, __dir__, sorted(names)
