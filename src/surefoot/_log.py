"""The ``surefoot`` logger, with a :class:`logging.NullHandler`: a library prints nothing
unless the application configures logging (then the records propagate to its handlers as
usual). Every module logs through :data:`logger` (or a child of it), so the handler is
installed wherever logging happens."""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("surefoot")
if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
    logger.addHandler(logging.NullHandler())
