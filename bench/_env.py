"""What every benchmark records about the run: the machine, package versions, the git
commit, and the output of a tool's ``--version``."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["git", "machine_info", "output", "platform_info", "source_state", "version"]

HERE = Path(__file__).resolve().parent


def version(package: str) -> str | None:
    """The installed version of ``package`` (``None``: not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def output(*args: str, cwd: Path | None = None, check: bool = True) -> str | None:
    """What the command ``args`` printed (stripped), or ``None`` if it could not run (or,
    with ``check``, exited with an error)."""
    try:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=10,
                             cwd=cwd, check=check)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git(*args: str) -> str | None:
    """``git <args>`` run in this directory; its output, or ``None`` if it failed."""
    return output("git", *args, cwd=HERE)


def source_state() -> dict[str, Any]:
    """``commit`` (short hash of HEAD) and ``src_modified`` (uncommitted changes under
    ``src/``; ``None`` when git could not tell)."""
    changed = git("status", "--porcelain", "--", "../src")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_modified": None if changed is None else bool(changed),
    }


def platform_info() -> dict[str, Any]:
    """The Python and the machine the benchmark ran on."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def machine_info(*packages: str) -> dict[str, Any]:
    """:func:`platform_info` and the installed version of each of ``packages`` (``None``:
    not installed) and of surefoot."""
    return {
        **platform_info(),
        **{package: version(package) for package in packages},
        "surefoot": version("surefoot"),
    }
