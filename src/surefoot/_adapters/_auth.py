"""The public auth objects. Each is an :class:`~surefoot._core._pipeline.AuthStrategy`
for surefoot's adapters and, used on its own, a requests auth (``session.auth = ...``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from surefoot._core._origin import origin_of
from surefoot._core._pipeline import FetchToken
from surefoot.oauth._cache import TokenCache
from surefoot.oauth._token import Token

__all__ = []


try:  # with httpx installed, the auth objects are httpx.Auth too: httpx.Client(auth=...)
    from httpx import Auth as _HttpxAuth
except ImportError:  # pragma: no cover - httpx is optional
    _HttpxAuth = object  # type: ignore[assignment,misc]


@dataclass(frozen=True, slots=True)
class _SendRequest:
    request: Any


class _AuthObject(_HttpxAuth):
    """What both auth objects share: requests' callable protocol (``session.auth =
    auth``) and httpx's generator auth flow (``httpx.Client(auth=auth)``).

    The httpx flow — attach, send, on 401 refresh once and replay once — is written once
    (:meth:`_challenge`) and driven by both the sync and the async httpx loops; only
    token work differs (blocking in the sync flow, in a worker thread in the async one).
    """

    requires_request_body = True  # the body is signed, and replayed after a 401
    signs_body = False

    def __call__(self, request: Any) -> Any:
        from surefoot._adapters._requests import apply_auth

        return apply_auth(self, request)

    @property
    def credential_headers(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def token_cache(self) -> TokenCache | None:
        return None

    def attempt_headers(
        self,
        method: str,
        url: str,
        body: bytes | None,
        token: Token | None,
        now: float,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        raise NotImplementedError

    def _apply(self, request: Any, token: Token | None, now: float) -> None:
        request.headers.update(
            self.attempt_headers(request.method, str(request.url), request.content or None,
                                 token, now, request.headers)
        )
        # Marks where these credentials belong: surefoot's httpx transports strip them
        # from a redirect hop to another origin (httpx itself strips only Authorization).
        request.extensions["surefoot.credentials"] = (
            origin_of(str(request.url)),
            self.credential_headers,
            self,
            (request.method, str(request.url)),
        )

    def _challenge(self, request: Any) -> Generator[Any, Any, None]:
        cache = self.token_cache
        token: Token | None = None
        if cache is not None:
            token = yield FetchToken(cache, None)
        self._apply(request, token, self._wall())
        response = yield _SendRequest(request)
        if response.status_code == 401 and cache is not None and token is not None:
            token = yield FetchToken(cache, None, stale=token)
            self._apply(request, token, self._wall())
            yield _SendRequest(request)

    def _wall(self) -> float:
        cache = self.token_cache
        if cache is not None:
            return float(cache.clock.wall())
        return float(getattr(self, "signer").clock.wall())  # noqa: B009

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        flow = self._challenge(request)
        value: Any = None
        while True:
            try:
                effect = flow.send(value)
            except StopIteration:
                return
            if isinstance(effect, FetchToken):
                cache = effect.cache
                value = (
                    cache.refresh_if_current(effect.stale)
                    if effect.stale is not None
                    else cache.get()
                )
            else:
                value = yield effect.request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        flow = self._challenge(request)
        value: Any = None
        while True:
            try:
                effect = flow.send(value)
            except StopIteration:
                return
            if isinstance(effect, FetchToken):
                cache = effect.cache
                value = await (
                    cache.refresh_if_current_async(effect.stale)
                    if effect.stale is not None
                    else cache.get_async()
                )
            else:
                value = yield effect.request




