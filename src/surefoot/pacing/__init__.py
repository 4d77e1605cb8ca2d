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
    from surefoot._core._retry_after import parse_http_date as parse_http_date
    from surefoot._core._retry_after import parse_retry_after as parse_retry_after
    from surefoot.pacing._adaptive import AdaptivePolicy as AdaptivePolicy
    from surefoot.pacing._breaker import BreakerPolicy as BreakerPolicy
    from surefoot.pacing._budget import RetryBudgetPolicy as RetryBudgetPolicy
    from surefoot.pacing._config import PacingPolicy as PacingPolicy
    from surefoot.pacing._config import PartitionBy as PartitionBy
    from surefoot.pacing._gcra import Quota as Quota
    from surefoot.pacing._gcra import RateLimiter as RateLimiter
    from surefoot.pacing._pacer import Pacer as Pacer
    from surefoot.pacing._state import LocalPacerState as LocalPacerState
    from surefoot.pacing._state import PacerState as PacerState
else:  # names are imported on first use
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
