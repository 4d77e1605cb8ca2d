"""What the front doors' convenience clients share: a base URL, the verbs, and the
revocation of their token on close."""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

from surefoot._log import logger
from surefoot.errors import ConfigurationError
from surefoot.events import redact_url

__all__ = ["REVOKE_ON_CLOSE_TIMEOUT", "BaseUrl", "RevokesOnClose", "SyncVerbs", "passed"]

R = TypeVar("R")


#: How long closing a client may spend revoking its token (seconds, all attempts).
REVOKE_ON_CLOSE_TIMEOUT = 5.0


class BaseUrl:
    """A client's base URL: absolute http(s), checked when the client is built; paths are
    resolved against it (an absolute URL is used as it is)."""

    base_url: str
    _appends = False

    def _set_base_url(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError("base_url must be an absolute http(s) URL")
        # The path ends with "/" (paths are resolved under it): appended to the path, not
        # after a query or a fragment.
        if not parts.path.endswith("/"):
            base_url = urlunsplit(parts._replace(path=parts.path + "/"))
        self.base_url = base_url
        #: A relative path is appended as it is (what ``urljoin`` makes of it) when the
        #: base has no query or fragment for it to replace.
        self._appends = "?" not in base_url and "#" not in base_url

    @property
    def _shown_base_url(self) -> str:
        """The base URL as a repr shows it: redacted (userinfo, credential parameters)."""
        return redact_url(self.base_url)

    def url_for(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        relative = path.lstrip("/")
        if self._appends and _appendable(relative):
            return self.base_url + relative
        return urljoin(self.base_url, relative)


def _appendable(relative: str) -> bool:
    """Would ``urljoin`` append ``relative`` to a base path ending in "/" as it is? Yes
    unless it has a scheme, a dot or empty segment, a fragment or parameters, an empty
    query, or anything ``urlsplit`` strips (conservative: ``urljoin`` decides the rest)."""
    if (
        ":" in relative
        or "#" in relative
        or ";" in relative
        or "//" in relative
        or relative.endswith("?")
        or not relative.isprintable()
        or relative.strip() != relative
    ):
        return False
    path = relative.partition("?")[0]
    if "." in path:
        segments = path.split("/")
        return "." not in segments and ".." not in segments
    return True


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


class RevokesOnClose:
    """Closing a client whose auth's token cache has ``revoke_on_close`` revokes its token
    (RFC 7009): once per client, best-effort (a failure is logged, never raised) and
    within :data:`REVOKE_ON_CLOSE_TIMEOUT`."""

    _revoked_on_close = False

    def _revoke_on_close(self, auth: object) -> None:
        if self._revoked_on_close:
            return
        self._revoked_on_close = True
        revoke_on_close(auth)

    async def _arevoke_on_close(self, auth: object) -> None:
        if self._revoked_on_close:
            return
        self._revoked_on_close = True
        if _revocable_cache(auth) is not None:
            # the cache's locks, store and token request block: not on the event loop
            await asyncio.to_thread(revoke_on_close, auth)


def _revocable_cache(auth: object) -> Any:
    """``auth``'s token cache if it is to be revoked on close, else ``None``."""
    cache = getattr(auth, "token_source", None)
    if cache is None:
        return None
    from surefoot.oauth._cache import TokenCache

    if isinstance(cache, TokenCache) and cache.revoke_on_close:
        return cache
    return None


def revoke_on_close(auth: object) -> None:
    """Revoke ``auth``'s token if its cache has ``revoke_on_close``; never raises."""
    try:
        cache = _revocable_cache(auth)
        if cache is None:
            return
        cache.close(deadline=cache.clock.monotonic() + REVOKE_ON_CLOSE_TIMEOUT)
    except Exception as exc:  # best-effort: closing must not fail because of it
        # The type and the RFC 6749 error code only: a server's description may echo
        # what it was sent.
        code = getattr(exc, "error", None)
        logger.warning(
            "surefoot: revoking the token on close failed (%s%s); it stays valid until "
            "it expires",
            type(exc).__name__,
            f": {code}" if isinstance(code, str) else "",
        )
