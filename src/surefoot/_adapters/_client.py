"""What the front doors' convenience clients share: a base URL and the verbs."""

from __future__ import annotations

from typing import Any, Generic, TypeVar
from urllib.parse import urljoin, urlsplit

from surefoot.errors import ConfigurationError

__all__ = ["BaseUrl", "SyncVerbs", "passed"]

R = TypeVar("R")


class BaseUrl:
    """A client's base URL: absolute http(s), checked when the client is built; paths are
    resolved against it (an absolute URL is used as it is)."""

    base_url: str

    def _set_base_url(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError("base_url must be an absolute http(s) URL")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"

    def url_for(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url, path.lstrip("/"))


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
