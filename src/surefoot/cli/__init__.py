"""The ``surefoot`` command line: ``request`` (curl-like), ``sign``, ``demo``, ``sandbox``."""

from surefoot.cli._main import main

__all__ = ["main"]
