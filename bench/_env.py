"""What every benchmark records about the run: package versions and the git commit."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["git", "version"]


def version(package: str) -> str | None:
    """The installed version of ``package`` (``None``: not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git(*args: str) -> str | None:
    """``git <args>`` run in this directory; its output, or ``None`` if it failed."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()
