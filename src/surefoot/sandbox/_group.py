"""What the route groups share: the base class and the request counters.

Each route group owns its state; all of it is guarded by the application's one lock
(handed to every group), so a ``/stats`` snapshot or a reset is atomic.
"""

from __future__ import annotations

import threading
from typing import Any

from surefoot.sandbox._http import Route

__all__ = ["RouteGroup", "Traffic"]


class RouteGroup:
    """Routes with their own state. ``clear`` and ``stats`` are called with the lock held."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def routes(self) -> dict[str, Route]:
        """First path segment -> route."""
        raise NotImplementedError

    def clear(self) -> None:
        """Reset this group's state and counters (caller holds the lock)."""

    def stats(self) -> dict[str, Any]:
        """This group's part of :meth:`SandboxApp.stats` (caller holds the lock)."""
        return {}


class Traffic:
    """Request ids and the per-endpoint counters. Callers hold the application's lock."""

    def __init__(self) -> None:
        self._request_id = 0  # not cleared: request ids stay unique across resets
        self.clear()

    def clear(self) -> None:
        self._requests = 0
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._429s = 0

    def next_id(self) -> int:
        self._request_id += 1
        return self._request_id

    def record(self, group: str, label: str) -> None:
        self._requests += 1
        ep = self._endpoints.get(group)
        if ep is None:
            ep = self._endpoints[group] = {"requests": 0, "statuses": {}}
        ep["requests"] += 1
        statuses = ep["statuses"]
        statuses[label] = statuses.get(label, 0) + 1
        if label == "429":
            self._429s += 1

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self._requests,
            "endpoints": {
                name: {"requests": ep["requests"], "statuses": dict(ep["statuses"])}
                for name, ep in sorted(self._endpoints.items())
            },
            "429s": self._429s,
        }
