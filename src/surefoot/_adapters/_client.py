"""A small convenience client for the tutorial's ``APIClient`` use case, on requests."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["SyncVerbs", "passed"]

R = TypeVar("R")


class SyncVerbs(Generic[R]):
    """``get/post/put/patch/delete`` in terms of ``request``, for the sync clients."""

    def request(self, method: str, path: str, **kwargs: object) -> R:
        raise NotImplementedError

    def get(self, path: str, **kwargs: object) -> R:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: object) -> R:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: object) -> R:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: object) -> R:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: object) -> R:
        return self.request("DELETE", path, **kwargs)


def passed(kwargs: dict[str, object]) -> dict[str, Any]:
    """Keyword arguments of the HTTP library's own, handed to it unchanged (typed by the
    library's signature, which checks them)."""
    return kwargs
