"""The file paths the stores are given: ``~`` and ``~user`` expanded (a literal ``./~``
directory is never what was meant), and a clear error for what is not a path."""

from __future__ import annotations

import os
from pathlib import Path

from surefoot.errors import ConfigurationError

__all__ = ["user_path"]


def user_path(path: object, what: str) -> Path:
    """``path`` (a ``str`` or ``os.PathLike``) with ``~`` expanded; ``what`` names the
    argument in the error raised for anything else."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(
            f"{what} must be a file path (str or os.PathLike), not {type(path).__name__}")
    if not os.fspath(path):
        raise ConfigurationError(f"{what} must not be empty")
    return Path(path).expanduser()
