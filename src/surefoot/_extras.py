"""Optional dependencies, imported on demand: a missing one is a
:class:`~surefoot.errors.MissingExtra` that names the ``pip install`` fixing it, raised
with no chained traceback (the import machinery's frames say nothing more)."""

from __future__ import annotations

import importlib
from types import ModuleType

from surefoot.errors import MissingExtra

__all__ = ["missing", "require"]


def require(module: str, *, extra: str, what: str) -> ModuleType:
    """``import module``, or :class:`MissingExtra` (``what`` needs it; ``extra`` is the
    surefoot extra that installs it). Only the module itself missing is reported so: an
    error inside an installed module propagates as it is."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        error = missing(exc, module, extra=extra, what=what)
    raise error


def missing(exc: ImportError, module: str, *, extra: str, what: str) -> ImportError:
    """What to raise (``from None``) for ``exc``, raised by ``import module``: a
    :class:`MissingExtra` when the module itself is missing, else ``exc`` (the package
    is there and something inside it is broken)."""
    top = module.partition(".")[0]
    if exc.name is not None and exc.name not in (top, module):
        return exc
    return MissingExtra(what, top, extra)
