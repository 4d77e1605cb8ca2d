"""What a shared store does when its backend is down: fail open or fail closed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from surefoot._log import logger
from surefoot.errors import ConfigurationError, StoreUnavailable

__all__ = ["FailureMode", "OnFailure", "StoreBusy"]


OnFailure = Literal["open", "closed"]
T = TypeVar("T")

#: After falling back to local state, the backend is tried again after this long.
RETRY_BACKEND_AFTER = 1.0
#: An outage is over once the backend has answered for this long without failing: a
#: backend that flaps while it comes back (a restarted Redis, whose pooled connections
#: fail one by one) is one outage, logged once.
HEALTHY_FOR = 5.0


class StoreBusy(StoreUnavailable):
    """The backend answers, but this one call could not be done in time: it queued
    behind the process's other calls on the same key (a fleet contending on one key, a
    machine short of CPU). Failing
    open, that call alone runs on local state: the backend is not taken for down (which
    would send every call of the process to local state for a while, unshared: a fleet
    doing that at once overruns the quota it shares). Failing closed, it is raised like
    any :class:`~surefoot.StoreUnavailable`."""


class FailureMode:
    """``"open"``: on a backend failure, use local state and log once, loudly.
    ``"closed"``: raise :class:`~surefoot.StoreUnavailable`.

    While open and failed, the backend is not called again for
    :data:`RETRY_BACKEND_AFTER` seconds, so a dead backend costs one timeout per
    second, not one per request; then one call tries it (:meth:`guard`) while the
    others go on locally until it answers (a locked SQLite file makes a call wait its
    whole busy timeout: not every thread of the process at once).

    One outage, one "FAILING OPEN" (at its first failure) and one "available again" (at
    its first success after it). The outage lasts until the backend has answered for
    :data:`HEALTHY_FOR` seconds without a failure: failures in between (a backend that
    flaps as it comes back) are part of it and logged at debug level only. If the
    backend fails again after "available again" and gives no answer for
    :data:`HEALTHY_FOR` seconds, that is a new outage, logged as such.
    """

    __slots__ = (
        "_announced",
        "_clock",
        "_down_since",
        "_last_ok",
        "_lock",
        "_outage",
        "_probe_at",
        "_up_since",
        "mode",
        "name",
    )

    def __init__(
        self, mode: OnFailure, name: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if mode not in ("open", "closed"):
            raise ConfigurationError("on_failure must be 'open' or 'closed'")
        self.mode: OnFailure = mode
        self.name = name
        self._clock = clock
        #: The last failure, while the backend is skipped or not yet answered again.
        self._down_since: float | None = None
        #: In an outage ("FAILING OPEN" logged, not yet healthy for HEALTHY_FOR s).
        self._outage = False
        #: "available again" was logged for this outage.
        self._announced = False
        #: The first success since the last failure, and the last success.
        self._up_since: float | None = None
        self._last_ok = 0.0
        #: When a call last went to try the backend again (while it is down).
        self._probe_at: float | None = None
        self._lock = threading.Lock()

    @property
    def fail_open(self) -> bool:
        return self.mode == "open"

    def skip_backend(self) -> bool:
        """Fail-open only: the backend failed recently; use local state without trying."""
        down = self._down_since
        return down is not None and self._clock() - down < RETRY_BACKEND_AFTER

    def failed(self, exc: StoreUnavailable, what: str) -> None:
        """The backend failed during ``what``: raise (closed) or note it (open)."""
        if self.mode == "closed":
            raise exc
        with self._lock:
            now = self._clock()
            self._down_since = now
            self._probe_at = None
            up_since, self._up_since = self._up_since, None
            new = (
                not self._outage
                # it had answered long enough: that outage was over
                or (up_since is not None and now - up_since >= HEALTHY_FOR)
                # it came back ("available again") and has been silent since for long
                or (self._announced and now - self._last_ok >= HEALTHY_FOR)
            )
            if new:
                self._outage, self._announced = True, False
        if new:
            logger.error(
                "surefoot: %s is unavailable (%s) during %s; FAILING OPEN: this process "
                "now uses local state (quotas, tokens, nonces are no longer shared) until "
                "it is back",
                self.name,
                exc,
                what,
            )
        else:
            logger.debug(
                "surefoot: %s failed again (%s) during %s; still using local state",
                self.name,
                exc,
                what,
            )

    def guard(self, what: str, backend: Callable[[], T], local: Callable[[], T]) -> T:
        """``backend()``, or ``local()`` while the backend is down and this fails open
        (:meth:`failed` raises instead when failing closed)."""
        if self._down_since is not None and self._skip_or_probe():
            return local()
        try:
            result = backend()
        except StoreBusy as exc:
            if not self.fail_open:
                raise
            logger.debug("surefoot: %s is busy (%s) during %s; this call uses local state",
                         self.name, exc, what)
            return local()
        except StoreUnavailable as exc:
            self.failed(exc, what)
            return local()
        self.succeeded()
        return result

    def _skip_or_probe(self) -> bool:
        """The backend is down: skip it, unless it is time to try it again and no other
        call is trying it already (this one then does)."""
        if self.skip_backend():
            return True
        with self._lock:
            now = self._clock()
            probe = self._probe_at
            if self._down_since is None:
                return False  # it answered meanwhile
            if probe is not None and now - probe < RETRY_BACKEND_AFTER:
                return True  # another call is trying it
            self._probe_at = now
            return False

    def succeeded(self) -> None:
        """The backend answered."""
        if not self._outage and self._down_since is None:
            return  # the usual case: nothing to note, no lock
        announce = False
        with self._lock:
            now = self._clock()
            self._down_since = None
            self._probe_at = None
            self._last_ok = now
            if self._outage:
                if self._up_since is None:
                    self._up_since = now
                if not self._announced:
                    self._announced = announce = True
                if now - self._up_since >= HEALTHY_FOR:
                    self._outage = False
                    self._up_since = None
        if announce:
            logger.warning("surefoot: %s is available again", self.name)
