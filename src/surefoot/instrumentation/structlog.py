"""surefoot's events as structlog key-values (``pip install 'surefoot[structlog]'``).

::

    import structlog
    import surefoot
    from surefoot.instrumentation.structlog import StructlogHook

    client = surefoot.Client("https://api.example.com", hook=StructlogHook())
    # e.g. {"event": "surefoot.retry_scheduled", "log_level": "info", "method": "GET",
    #       "url": "https://api.example.com/orders", "attempt": 1, "status": 503,
    #       "wait": 0.42, "reason": "...", "request_id": 7}

Each event is logged once, named ``surefoot.<kind>`` (``surefoot.attempt_sent`` ...),
with the event's fields as keys: ``method``, ``url`` (redacted), ``attempt``, ``status``,
``error``, ``wait``, ``elapsed`` (seconds), ``reason``, ``request_id`` and ``partition``;
the ones the event does not have (``None``, empty, attempt 0) are left out,
``request_id`` is always there. The levels are :class:`~surefoot.events.LoggingHook`'s:
debug for requests and attempts, info for retries, token refreshes and withheld
credentials, warning for giving up and failed refreshes. The logger decides what is
output (``structlog.make_filtering_bound_logger(logging.INFO)`` drops the debug events,
and the hook then does not even build them). Nothing logged can be a secret: surefoot's
events carry none, and the hook adds nothing.

This module is ``surefoot.instrumentation.structlog``; its ``import structlog`` is
absolute, so it imports the structlog library, never itself.
"""

from __future__ import annotations

import logging
from typing import Protocol

from surefoot._extras import missing
from surefoot._log import logger as _surefoot_logger
from surefoot.events import _LEVELS, Event, EventKind

try:
    import structlog
except ImportError as exc:
    raise missing(exc, "structlog", extra="structlog",
                  what="surefoot.instrumentation.structlog") from None

__all__ = ["StructlogHook", "StructlogLogger"]


class StructlogLogger(Protocol):
    """What the hook needs of a logger: structlog's bound loggers (filtering or stdlib)
    have it."""

    def debug(self, event: str, /, **kw: object) -> object: ...

    def info(self, event: str, /, **kw: object) -> object: ...

    def warning(self, event: str, /, **kw: object) -> object: ...


_METHODS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}
_NAMES = {kind: f"surefoot.{kind.value}" for kind in EventKind}


class StructlogHook:
    """A surefoot hook logging every event through a structlog logger (see the module's
    documentation). ``logger``: a structlog bound logger (default
    ``structlog.get_logger("surefoot")``)."""

    __slots__ = ("logger",)

    def __init__(self, logger: StructlogLogger | None = None) -> None:
        self.logger: StructlogLogger = (
            structlog.get_logger("surefoot") if logger is None else logger
        )

    def wants(self, kind: EventKind) -> bool:
        """Whether the logger would output an event of this kind (a filtering bound
        logger says; a logger that cannot tell is given every event)."""
        level = _LEVELS.get(kind, logging.INFO)
        try:
            check = getattr(self.logger, "is_enabled_for", None)
            if check is None:
                check = getattr(self.logger, "isEnabledFor", None)
            return True if check is None else bool(check(level))
        except Exception:
            return True

    def __call__(self, event: Event) -> None:
        method = _METHODS.get(_LEVELS.get(event.kind, logging.INFO), "info")
        try:
            getattr(self.logger, method)(_NAMES[event.kind], **event.fields())
        except Exception:
            _surefoot_logger.exception("surefoot structlog hook failed on %s",
                                       event.kind.value)

    def __repr__(self) -> str:
        return f"StructlogHook({self.logger!r})"
