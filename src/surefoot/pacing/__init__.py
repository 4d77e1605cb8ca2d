"""Pacing: client-side rate limiting that learns the server's quota from its headers (or
adapts when it is not told), Retry-After pauses, a retry budget against retry storms and
a circuit breaker. Everything here is pure (sans-I/O): the state lives in a
:class:`PacerState` (in-process by default, shared through :mod:`surefoot.stores`).

``Client(base, pacing=PacingPolicy(...))`` gives a client a pacer of its own;
``Pacer(PacingPolicy(...), store=...)`` is one pacer to share between clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot._lazy import attach

if TYPE_CHECKING:
    from surefoot._core._retry_after import parse_http_date, parse_retry_after
    from surefoot.pacing._adaptive import AdaptivePolicy
    from surefoot.pacing._breaker import BreakerPolicy
    from surefoot.pacing._budget import RetryBudgetPolicy
    from surefoot.pacing._config import PacingPolicy, PartitionBy
    from surefoot.pacing._gcra import Quota, RateLimiter
    from surefoot.pacing._pacer import Pacer
    from surefoot.pacing._state import LocalPacerState, PacerState

__all__ = [
    "AdaptivePolicy",
    "BreakerPolicy",
    "LocalPacerState",
    "Pacer",
    "PacerState",
    "PacingPolicy",
    "PartitionBy",
    "Quota",
    "RateLimiter",
    "RetryBudgetPolicy",
    "parse_http_date",
    "parse_retry_after",
]

if not TYPE_CHECKING:  # names are imported on first use
    __getattr__, __dir__ = attach(
        __name__,
        {
            "AdaptivePolicy": "surefoot.pacing._adaptive",
            "BreakerPolicy": "surefoot.pacing._breaker",
            "LocalPacerState": "surefoot.pacing._state",
            "Pacer": "surefoot.pacing._pacer",
            "PacerState": "surefoot.pacing._state",
            "PacingPolicy": "surefoot.pacing._config",
            "PartitionBy": "surefoot.pacing._config",
            "Quota": "surefoot.pacing._gcra",
            "RateLimiter": "surefoot.pacing._gcra",
            "RetryBudgetPolicy": "surefoot.pacing._budget",
            "parse_http_date": "surefoot._core._retry_after",
            "parse_retry_after": "surefoot._core._retry_after",
        },
    )
