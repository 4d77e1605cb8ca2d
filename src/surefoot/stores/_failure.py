"""What a shared store does when its backend is down: fail open or fail closed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from surefoot.errors import ConfigurationError, StoreUnavailable

__all__ = ["FailureMode", "OnFailure"]

logger = logging.getLogger("surefoot")

OnFailure = Literal["open", "closed"]
T = TypeVar("T")

#: After falling back to local state, the backend is tried again after this long.
RETRY_BACKEND_AFTER = 1.0


class FailureMode:
    """``"open"``: on a backend failure, use local state and log once, loudly (again
    only after the backend has recovered and failed anew). ``"closed"``: raise
    :class:`~surefoot.StoreUnavailable`.

    While open and failed, the backend is not called again for
    :data:`RETRY_BACKEND_AFTER` seconds, so a dead backend costs one timeout per
    second, not one per request.
    """

    __slots__ = ("_down_since", "_lock", "_logged", "mode", "name")

    def __init__(self, mode: OnFailure, name: str) -> None:
        if mode not in ("open", "closed"):
            raise ConfigurationError("on_failure must be 'open' or 'closed'")
        self.mode: OnFailure = mode
        self.name = name
        self._down_since: float | None = None
        self._logged = False
        self._lock = threading.Lock()

    @property
    def fail_open(self) -> bool:
        return self.mode == "open"

    def skip_backend(self) -> bool:
        """Fail-open only: the backend failed recently; use local state without trying."""
        down = self._down_since
        return down is not None and time.monotonic() - down < RETRY_BACKEND_AFTER

    def failed(self, exc: StoreUnavailable, what: str) -> None:
        """The backend failed during ``what``: raise (closed) or note it (open)."""
        if self.mode == "closed":
            raise exc
        with self._lock:
            self._down_since = time.monotonic()
            if not self._logged:
                self._logged = True
                logger.error(
                    "surefoot: %s is unavailable (%s) during %s; FAILING OPEN: this "
                    "process now uses local state (quotas, tokens, nonces are no longer "
                    "shared) until it is back",
                    self.name,
                    exc,
                    what,
                )

    def guard(self, what: str, backend: Callable[[], T], local: Callable[[], T]) -> T:
        """``backend()``, or ``local()`` while the backend is down and this fails open
        (:meth:`failed` raises instead when failing closed)."""
        if self.skip_backend():
            return local()
        try:
            result = backend()
        except StoreUnavailable as exc:
            self.failed(exc, what)
            return local()
        self.succeeded()
        return result

    def succeeded(self) -> None:
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    self._down_since = None
                    self._logged = False
                    logger.warning("surefoot: %s is available again", self.name)
