"""Griffe extension for the API reference (mkdocstrings): surefoot as its users see it.

* **Public names.** surefoot's namespaces are lazy (``surefoot._lazy``): a package lists
  its names as imports under ``if TYPE_CHECKING:`` and computes ``__all__`` at run time,
  which static analysis cannot read. The module is imported and its ``__all__`` taken as
  its exports, so the reference documents exactly what ``from surefoot.x import *`` gives.
* **Docstrings.** They are written in reStructuredText style (Sphinx roles, ``::``
  literal blocks); the site renders Markdown. Roles become code spans
  (``:class:`~surefoot.Client``` shows as ``Client``) and a paragraph's closing ``::``
  a colon: the indented block after it is a code block in Markdown too.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`(?P<target>[^`]+)`")
LITERAL = re.compile(r"(?<=\S)::$", re.M)
BARE_LITERAL = re.compile(r"^(\s*)::$", re.M)


def _role(match: re.Match[str]) -> str:
    target = match["target"]
    if "<" in target and target.endswith(">"):  # :class:`text <target>`
        target = target.split("<", 1)[0].strip()
    elif target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def markdown(text: str) -> str:
    text = ROLE.sub(_role, text)
    text = BARE_LITERAL.sub("", text)
    return LITERAL.sub(":", text)


class SurefootDocs(griffe.Extension):
    """Exports from the runtime ``__all__``; reST docstrings shown as Markdown."""

    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        parts = mod.path.split(".")
        if parts[0] != "surefoot" or any(part.startswith("_") for part in parts):
            return  # public namespaces only (importing ``__main__`` would run the CLI)
        try:
            module = importlib.import_module(mod.path)
        except ImportError:  # an optional dependency is missing: leave it to static analysis
            return
        exports = getattr(module, "__all__", None)
        if exports is not None:
            mod.exports = [str(name) for name in exports]

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == "surefoot":
            _convert(pkg)


def _convert(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = markdown(obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            _convert(member)
