"""The token cache: refresh before expiry, single-flight, invalidate-if-current on 401.

Rules:

* A fresh token is returned at once, without taking any lock.
* A token inside its refresh window (see :func:`~surefoot._core._tokens.leeway_for`) is
  still valid: one caller refreshes it, everyone else keeps using it meanwhile.
* An expired (or missing) token is never sent: callers wait for the one refresh in
  flight, bounded by their deadline. Nobody sends a request without a token.
* On 401, :meth:`TokenCache.refresh_if_current` refreshes only if the token that was
  sent is still the current one, so N concurrent 401s cause one refresh.
* Refreshes take the store's lock (a file lock for :class:`FileTokenStore`) and re-read
  the store under it, so several processes sharing a token file refresh once.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

from ._core._clock import Clock, default_clock
from ._core._errors import DeadlineExceeded, TokenEndpointError, TokenError, TransportError
from ._core._events import Event, EventKind, Hook, LoggingHook
from ._core._history import FailureKind
from ._core._policy import Failure, ResponseInfo, RetryPolicy, Verdict, decide
from ._core._tokens import (
    ClientCredentials,
    Freshness,
    HttpRequest,
    HttpResponse,
    Token,
    TokenFunction,
    freshness,
    token_from_callable_result,
)
from ._stores import MemoryTokenStore, TokenStore

__all__ = ["Sender", "TokenCache"]

Sender = Callable[[HttpRequest, "float | None"], HttpResponse]

_FETCH_POLICY = RetryPolicy(max_attempts=3, deadline=30.0, backoff_initial=0.2, backoff_max=2.0)


def _default_sender(request: HttpRequest, timeout: float | None) -> HttpResponse:
    from ._stdlib_http import send

    return send(request, timeout)


class TokenCache:
    """Holds the current bearer token for one source and refreshes it.

    ``source`` is a :class:`ClientCredentials` grant or a function returning a token
    string, a :class:`Token` or a token-response-like mapping. ``store`` defaults to
    memory; pass a :class:`FileTokenStore` to persist and share across processes.
    """

    def __init__(
        self,
        source: ClientCredentials | TokenFunction,
        *,
        store: TokenStore | None = None,
        key: str | None = None,
        leeway: float = 60.0,
        leeway_ratio: float = 0.1,
        clock: Clock | None = None,
        hook: Hook | None = None,
        sender: Sender | None = None,
        fetch_policy: RetryPolicy = _FETCH_POLICY,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.source = source
        self.store: TokenStore = store if store is not None else MemoryTokenStore()
        if key is None:
            key = (
                f"client_credentials:{source.client_id}@{source.token_url}"
                if isinstance(source, ClientCredentials)
                else "default"
            )
        self.key = key
        self.leeway = leeway
        self.leeway_ratio = leeway_ratio
        self.clock = clock or default_clock
        self.hook: Hook = hook or LoggingHook()
        self.sender: Sender = sender or _default_sender
        self.fetch_policy = fetch_policy
        self._rng = rng
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._loaded = False
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"TokenCache(key={self.key!r}, store={self.store!r}, token={self._token!r})"

    # -- reading ---------------------------------------------------------------------

    def _fresh(self, token: Token | None) -> Freshness:
        return freshness(
            token, self.clock.wall(), leeway=self.leeway, leeway_ratio=self.leeway_ratio
        )

    def peek(self) -> Token | None:
        """The current token, without refreshing (loads the store once)."""
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._token = self.store.load(self.key)
                    self._loaded = True
        return self._token

    def get(self, *, deadline: float | None = None) -> Token:
        """A token that may be sent now. ``deadline`` is a ``clock.monotonic()`` instant."""
        token = self.peek()
        state = self._fresh(token)
        if state is Freshness.FRESH:
            assert token is not None
            return token
        if state is Freshness.REFRESH_SOON:
            assert token is not None
            if not self._lock.acquire(blocking=False):
                return token  # someone is refreshing; ours is still valid
            try:
                return self._refresh_locked(
                    lambda cur: self._fresh(cur) is not Freshness.FRESH, deadline, "expiring"
                )
            except (TokenError, DeadlineExceeded) as exc:
                self._emit(EventKind.TOKEN_REFRESH_FAILED, f"early refresh failed: {exc}")
                return token
            finally:
                self._lock.release()
        return self._refresh(
            lambda cur: self._fresh(cur) is Freshness.EXPIRED, deadline, "expired"
        )

    def refresh_if_current(self, stale: Token, *, deadline: float | None = None) -> Token:
        """After a 401 for ``stale``: refresh unless someone already replaced it."""
        self._emit(EventKind.TOKEN_INVALIDATED, "server answered 401")
        return self._refresh(
            lambda cur: cur is None
            or cur.access_token == stale.access_token
            or self._fresh(cur) is Freshness.EXPIRED,
            deadline,
            "401",
        )

    # -- async -----------------------------------------------------------------------
    #
    # The event loop never blocks: a fresh token is returned inline; anything else (the
    # lock, the store's file lock, the token request) runs in a worker thread through the
    # same single-flight path as the sync methods, so tasks, threads and several event
    # loops sharing one cache still cause one refresh. A cancelled or timed-out caller
    # only stops waiting: the refresh in the worker completes, and no lock stays held and
    # no token is half-written.

    async def get_async(self, *, deadline: float | None = None) -> Token:
        if self._loaded:
            token = self._token
            state = self._fresh(token)
            if state is Freshness.FRESH:
                assert token is not None
                return token
            if state is Freshness.REFRESH_SOON and self._lock.locked():
                assert token is not None
                return token  # a refresh is running; ours is still valid
        return await self._in_worker(self.get, deadline)

    async def refresh_if_current_async(
        self, stale: Token, *, deadline: float | None = None
    ) -> Token:
        return await self._in_worker(
            lambda deadline: self.refresh_if_current(stale, deadline=deadline), deadline
        )

    async def _in_worker(
        self, call: Callable[..., Token], deadline: float | None
    ) -> Token:
        work = asyncio.ensure_future(asyncio.to_thread(call, deadline=deadline))
        # Nobody may be waiting any more when it ends: consume its outcome.
        work.add_done_callback(lambda done: done.cancelled() or done.exception())
        remaining = self._remaining(deadline)
        try:
            return await asyncio.wait_for(asyncio.shield(work), remaining)
        except asyncio.TimeoutError:
            raise DeadlineExceeded("deadline reached while waiting for a token") from None

    def clear(self) -> None:
        with self._lock:
            self._token = None
            self._loaded = True
            self.store.delete(self.key)

    # -- refreshing ------------------------------------------------------------------

    def _remaining(self, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        return deadline - self.clock.monotonic()

    def _refresh(
        self, needed: Callable[[Token | None], bool], deadline: float | None, why: str
    ) -> Token:
        remaining = self._remaining(deadline)
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("deadline reached while waiting for a token")
        acquired = self._lock.acquire(timeout=-1 if remaining is None else remaining)
        if not acquired:
            raise DeadlineExceeded("deadline reached while waiting for a token refresh")
        try:
            return self._refresh_locked(needed, deadline, why)
        finally:
            self._lock.release()

    def _refresh_locked(
        self, needed: Callable[[Token | None], bool], deadline: float | None, why: str
    ) -> Token:
        """Holding the thread lock: take the store's lock, re-read, refresh if still due."""
        with self.store.lock(self.key, timeout=self._remaining(deadline)):
            current = self.store.load(self.key)
            self._loaded = True
            if not needed(current):
                assert current is not None
                self._token = current
                return current
            previous_version = current.version if current is not None else 0
            try:
                new = self._fetch(deadline)
            except (TokenError, DeadlineExceeded) as exc:
                self._emit(EventKind.TOKEN_REFRESH_FAILED, f"{why}: {exc}")
                raise
            new = Token(
                access_token=new.access_token,
                token_type=new.token_type,
                expires_at=new.expires_at,
                obtained_at=new.obtained_at,
                refresh_token=new.refresh_token,
                scope=new.scope,
                version=previous_version + 1,
            )
            self.store.save(self.key, new)
            self._token = new
            self.refreshes += 1
            self._emit(EventKind.TOKEN_REFRESHED, f"{why}; now {new!r}")
            return new

    def _emit(self, kind: EventKind, reason: str) -> None:
        self.hook(Event(kind=kind, reason=reason))

    def _fetch(self, deadline: float | None) -> Token:
        source = self.source
        if not isinstance(source, ClientCredentials):
            try:
                result: Any = source()
            except TokenError:
                raise
            except Exception as exc:
                raise TokenError(f"token function failed: {type(exc).__name__}") from exc
            return token_from_callable_result(result, now=self.clock.wall())
        request = source.build_request()
        policy = self.fetch_policy
        start = self.clock.monotonic()
        attempt = 0
        while True:
            attempt += 1
            timeout = self._remaining(deadline)
            if policy.deadline is not None:
                own = policy.deadline - (self.clock.monotonic() - start)
                timeout = own if timeout is None else min(timeout, own)
            if timeout is not None and timeout <= 0:
                raise DeadlineExceeded("deadline reached while fetching a token")
            response: HttpResponse | None = None
            try:
                response = self.sender(request, timeout)
                outcome: ResponseInfo | Failure = ResponseInfo(response.status, response.headers)
            except TransportError as exc:
                outcome = Failure(FailureKind(exc.kind), str(exc))
            if response is not None and response.status < 500 and response.status not in (
                408,
                429,
            ):
                return source.parse_response(response, now=self.clock.wall())
            decision = decide(
                policy,
                outcome,
                attempt=attempt,
                idempotent=True,
                elapsed=self.clock.monotonic() - start,
                wall_now=self.clock.wall(),
                rng=self._rng,
            )
            if decision.verdict is Verdict.RETRY:
                if deadline is not None and self.clock.monotonic() + decision.wait >= deadline:
                    raise DeadlineExceeded(f"token endpoint: {decision.reason}")
                self.clock.sleep(decision.wait)
                continue
            if response is not None:
                return source.parse_response(response, now=self.clock.wall())
            raise TokenEndpointError("unreachable", f"token endpoint: {decision.reason}")
