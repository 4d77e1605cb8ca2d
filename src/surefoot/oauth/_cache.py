"""The token cache: refresh before expiry, single-flight, invalidate-if-current on 401.

Rules:

* A fresh token is returned at once, without taking any lock.
* A token inside its refresh window (see :func:`~surefoot.oauth._grants.leeway_for`) is
  still valid: one caller refreshes it, everyone else keeps using it meanwhile.
* An expired (or missing) token is never sent: callers wait for the one refresh in
  flight, bounded by their deadline. Nobody sends a request without a token.
* On 401, :meth:`TokenCache.refresh_if_current` refreshes only if the token that was
  sent is still the current one, so N concurrent 401s cause one refresh.
* Across processes and hosts (a shared store: file, SQLite, Redis), refresh is
  single-flight behind the store's lease. One thread per process goes to the store (the
  others wait on the thread lock); it reads the token, and if it still needs a refresh,
  tries the lease. The holder re-reads the token (another worker may have just
  refreshed it), fetches, and writes the new token with a compare-and-set on its
  version, so a holder whose lease ran out cannot overwrite a newer token (it adopts
  that one instead). The version is the key's (``load_versioned``): a deleted or
  expired token leaves it behind, so it never goes back and a stale holder's write
  is refused even then (a store without ``load_versioned``: the token's, 0 with none).
  A thread renews the lease while the fetch runs. Everyone else
  polls the token every 10-50 ms (jittered) until it changes or the lease comes free,
  and gives up at the caller's deadline with :class:`~surefoot.DeadlineExceeded`.
* The token carries its refresh token: a grant's request is built from the *current*
  token (a :class:`~surefoot.RefreshTokenGrant` sends its refresh token), a rotated
  refresh token is replaced in the same fenced write, and two refreshes never run at
  once. A refresh answered ``invalid_grant`` re-reads the store: if another process
  rotated the token meanwhile (a lease that ran out), its token is used — that is not an
  error. Otherwise :class:`~surefoot.InvalidGrant` is raised, never retried, and the
  rejected refresh token is remembered, so it is never sent again by this cache.
* :meth:`TokenCache.revoke` (or ``close(revoke=True)``) revokes the token at the
  grant's RFC 7009 endpoint and forgets it, here and in the store.
* A store that fails (set to fail closed) raises :class:`~surefoot.StoreUnavailable`,
  except for a token that is still valid (it is used) or one that was just obtained
  (it is kept in this process, unshared). Secrets never reach logs, reprs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import random
import threading
from collections.abc import Callable
from typing import Any

from surefoot._core._clock import Clock, default_clock
from surefoot._core._effects import Send
from surefoot._core._history import FailureKind
from surefoot._core._messages import HttpRequest, HttpResponse
from surefoot._core._pipeline import RequestView, request_flow
from surefoot._core._policy import Failure, ResponseInfo, RetryPolicy
from surefoot._core._state import REQUEST_EVENTS
from surefoot._drivers import Outcome, drive_sync
from surefoot._log import logger
from surefoot.errors import (
    ConfigurationError,
    DeadlineExceeded,
    InvalidGrant,
    RequestFailed,
    StoreError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    TransportError,
)
from surefoot.events import Event, EventKind, Hook, LoggingHook, redact_url
from surefoot.oauth._grants import (
    Grant,
    RefreshTokenGrant,
    RevocableGrant,
    parse_revocation_response,
)
from surefoot.oauth._lease import LeaseRenewer, new_owner
from surefoot.oauth._token import (
    Freshness,
    StaticToken,
    Token,
    TokenFunction,
    freshness,
    token_from_callable_result,
)
from surefoot.stores._memory import MemoryTokenStore
from surefoot.stores._protocols import Store, TokenStore, load_versioned

__all__ = ["Sender", "TokenCache"]

Sender = Callable[[HttpRequest, "float | None"], HttpResponse]



_FETCH_POLICY = RetryPolicy(max_attempts=3, deadline=30.0, backoff_initial=0.2, backoff_max=2.0)
#: Waiters poll the store for the new token this often (seconds, jittered in between).
_POLL_MIN = 0.01
_POLL_MAX = 0.05
#: Rejected refresh tokens a cache remembers (see ``TokenCache._dead_refresh``).
_MAX_DEAD = 64


def _keep(response: HttpResponse) -> None:
    """A buffered answer holds no connection: nothing to release."""


def _default_sender(request: HttpRequest, timeout: float | None) -> HttpResponse:
    from surefoot.oauth._sender import send

    return send(request, timeout)


class TokenCache:
    """Holds the current bearer token for one source and refreshes it.

    ``source`` is a grant (:class:`ClientCredentials`, :class:`RefreshTokenGrant`, or
    any :class:`~surefoot.oauth._grants.Grant`) or a function returning a token
    string, a :class:`Token` or a token-response-like mapping. ``store`` defaults to
    memory; pass a :class:`FileTokenStore` (one host), or a shared store (SQLite for one
    host, Redis for a fleet: its ``tokens`` are used) to persist and share the token
    across processes. ``lease_ttl`` is how long a refresh lease lasts without renewal
    (seconds): it is renewed every third of it while the token request runs, so it only
    matters when its holder dies.
    """

    def __init__(
        self,
        source: Grant | TokenFunction | str,
        *,
        store: TokenStore | Store | None = None,
        key: str | None = None,
        leeway: float = 60.0,
        leeway_ratio: float = 0.1,
        clock: Clock | None = None,
        hook: Hook | None = None,
        sender: Sender | None = None,
        fetch_policy: RetryPolicy = _FETCH_POLICY,
        rng: Callable[[], float] = random.random,
        lease_ttl: float = 10.0,
        revoke_on_close: bool = False,
    ) -> None:
        if isinstance(source, str):
            source = StaticToken(source)
        elif not (isinstance(source, Grant) or callable(source)):
            raise ConfigurationError(
                "the token source must be a token (str), a function returning one, or a "
                "grant (surefoot.oauth.ClientCredentials, RefreshTokenGrant ...); not "
                f"{type(source).__name__}")
        tokens = getattr(store, "tokens", None)
        if not isinstance(store, TokenStore) and isinstance(tokens, TokenStore):
            store = tokens  # a shared store (SQLiteStore, RedisStore ...): its token part
        if store is not None and not isinstance(store, TokenStore):
            raise ConfigurationError(
                "store must implement TokenStore (load, save with expected_version, "
                "delete, try_lease, renew_lease, release_lease)"
            )
        if not lease_ttl > 0:
            raise ConfigurationError("lease_ttl must be positive")
        if revoke_on_close and not (
            isinstance(source, RevocableGrant) and source.revocation_url
        ):
            # Refused now: closing a client must not skip a revocation it was asked for.
            raise ConfigurationError("revoke_on_close needs a grant with a revocation_url")
        self.source = source
        self.store: TokenStore = store if store is not None else MemoryTokenStore()
        self.lease_ttl = lease_ttl
        self.revoke_on_close = revoke_on_close
        if key is None:
            key = source.cache_key if isinstance(source, Grant) else "default"
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
        #: Fingerprints of refresh tokens the server rejected (or we revoked): never sent
        #: again by this cache. The newest :data:`_MAX_DEAD` only (insertion order): a
        #: cache rotating through endless rejected tokens does not grow without bound.
        self._dead_refresh: dict[str, None] = {}

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
                new = self._refresh_locked(
                    lambda cur: self._fresh(cur) is not Freshness.FRESH,
                    deadline,
                    "expiring",
                    wait=False,
                )
            except (TokenError, DeadlineExceeded, StoreError) as exc:
                self._emit(EventKind.TOKEN_REFRESH_FAILED, f"early refresh failed: {exc}")
                return token
            finally:
                self._lock.release()
            # None: another process is refreshing; ours is still valid meanwhile.
            return token if new is None else new
        return self._refresh(
            lambda cur: self._fresh(cur) is Freshness.EXPIRED,
            deadline,
            "expired" if token is not None else "first token",
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
            token = self._refresh_locked(needed, deadline, why)
        finally:
            self._lock.release()
        assert token is not None  # waiting rounds end with a token or an exception
        return token

    def _refresh_locked(
        self,
        needed: Callable[[Token | None], bool],
        deadline: float | None,
        why: str,
        *,
        wait: bool = True,
    ) -> Token | None:
        """Holding the thread lock: lease-or-poll until the token no longer needs a refresh.

        Each round reads the store; if the token there is good, it is adopted. Otherwise
        this process tries the store's refresh lease: the holder re-reads and refreshes,
        everyone else polls the token (not the lease) every 10-50 ms until it changes,
        the lease comes free (its holder died or failed), or the deadline passes. With
        ``wait=False`` (early refresh of a still-valid token) a held lease means
        ``None``: keep using the current token.
        """
        if self._loaded and not needed(self._token):
            return self._token  # another thread of this process just refreshed it
        store = self.store
        while True:
            current = store.load(self.key)
            self._loaded = True
            if not needed(current):
                return self._adopt(current)
            owner = new_owner()
            if store.try_lease(self.key, owner, self.lease_ttl):
                try:
                    return self._refresh_leased(needed, deadline, why, owner)
                except _LostRace:
                    continue  # another holder rotated (or is rotating): read it again
            if not wait:
                return None
            remaining = self._remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(
                    "deadline reached waiting for another process's token refresh"
                )
            pause = _POLL_MIN + (_POLL_MAX - _POLL_MIN) * self._rng()
            self.clock.sleep(pause if remaining is None else min(pause, remaining))

    def _adopt(self, token: Token | None) -> Token:
        assert token is not None
        self._token = token
        return token

    def _refresh_leased(
        self,
        needed: Callable[[Token | None], bool],
        deadline: float | None,
        why: str,
        owner: str,
    ) -> Token:
        """Holding the store's lease: re-read, fetch if still due, write fenced."""
        store = self.store
        renewer: LeaseRenewer | None = None
        try:
            # The key's version even when it holds no token (deleted, expired, corrupt):
            # what the fenced write must expect, never a version it had before.
            current, base = load_versioned(store, self.key)
            if not needed(current):
                return self._adopt(current)  # another process refreshed meanwhile
            self._check_not_dead(current)
            renewer = LeaseRenewer(store, self.key, owner, self.lease_ttl)
            try:
                fetched = self._fetch(current, deadline)
            except InvalidGrant as exc:
                self._after_invalid_grant(current, base, owner, renewer, why, exc)
                raise
            except (TokenError, DeadlineExceeded) as exc:
                self._emit(EventKind.TOKEN_REFRESH_FAILED, f"{why}: {exc}")
                raise
            new = dataclasses.replace(fetched, version=base + 1)
            return self._publish(new, base, why)
        finally:
            if renewer is not None:
                renewer.stop()
            with contextlib.suppress(StoreError):  # if so, the lease expires on its own
                store.release_lease(self.key, owner)

    def _bury(self, refresh: str) -> None:
        """Remember ``refresh`` as dead (see ``_dead_refresh``)."""
        dead = self._dead_refresh
        dead[_fingerprint(refresh)] = None
        while len(dead) > _MAX_DEAD:
            del dead[next(iter(dead))]

    def _check_not_dead(self, current: Token | None) -> None:
        """A refresh token the server already rejected is not sent again."""
        source = self.source
        if not self._dead_refresh or not isinstance(source, RefreshTokenGrant):
            return
        refresh = source.refresh_token_for(current)
        if refresh is not None and _fingerprint(refresh) in self._dead_refresh:
            raise InvalidGrant(
                "invalid_grant",
                "this refresh token was already rejected (or revoked); a new "
                "authorization is needed",
            )

    def _after_invalid_grant(
        self,
        current: Token | None,
        base: int,
        owner: str,
        renewer: LeaseRenewer,
        why: str,
        exc: InvalidGrant,
    ) -> None:
        """``invalid_grant`` for the refresh token of ``current``: if another holder
        rotated it meanwhile (our lease ran out), raise :class:`_LostRace` so the caller
        reads the store again; else remember the token as dead (the caller raises)."""
        try:
            moved = load_versioned(self.store, self.key)[1] != base
            # Someone else holds the lease now: their rotation may not be stored yet.
            lost = not moved and (
                renewer.lost or not self.store.renew_lease(self.key, owner, self.lease_ttl)
            )
        except StoreError:
            moved = lost = False
        if moved or lost:
            self._emit(
                EventKind.TOKEN_REFRESHED,
                f"{why}: the refresh token was rotated by another holder meanwhile; "
                "using theirs",
            )
            raise _LostRace from exc
        source = self.source
        if isinstance(source, RefreshTokenGrant):
            refresh = source.refresh_token_for(current)
            if refresh is not None:
                self._bury(refresh)
        self._emit(EventKind.TOKEN_REFRESH_FAILED, f"{why}: {exc}")

    def _publish(self, new: Token, base: int, why: str) -> Token:
        """Write ``new`` over version ``base`` (fenced). A newer stored token wins; a
        token we obtained is never dropped because the store failed."""
        store = self.store
        for _ in range(2):
            try:
                written = store.save(self.key, new, expected_version=base)
                stored, version = (None, base) if written else load_versioned(store, self.key)
            except StoreError as exc:
                # Fail-closed store down (a fail-open one falls back by itself): the
                # token is good, keep it in this process.
                logger.warning(
                    "surefoot: the new token could not be stored (%s); this process keeps "
                    "it without sharing it",
                    exc,
                )
                return self._refreshed(new, f"{why}; now {new!r}, not stored")
            if written:
                return self._refreshed(new, f"{why}; now {new!r}")
            if (
                stored is not None
                and version > base
                and self._fresh(stored) is not Freshness.EXPIRED
            ):
                # Fenced off: our lease ran out and another holder wrote a newer token.
                self._emit(
                    EventKind.TOKEN_REFRESHED,
                    f"{why}; a newer token was stored meanwhile, using it: {stored!r}",
                )
                return self._adopt(stored)
            # The stored token moved on but is unusable (or vanished: its version stays):
            # write over it.
            base = version
            new = dataclasses.replace(new, version=base + 1)
        return self._refreshed(new, f"{why}; now {new!r}, not stored (kept losing the race)")

    def _refreshed(self, new: Token, reason: str) -> Token:
        self._token = new
        self.refreshes += 1
        self._emit(EventKind.TOKEN_REFRESHED, reason)
        return new

    def _emit(self, kind: EventKind, reason: str) -> None:
        """To the cache's hook and, for token work done for a logical request, to that
        request's hook too (with its id; once when both are the same hook)."""
        request = REQUEST_EVENTS.get()
        if request is not None:
            request.emit(kind, reason=reason)
            if request.hook == self.hook:
                return
        try:  # an instrument never breaks a token refresh
            self.hook(Event(kind=kind, reason=reason) if request is None
                      else request.event(kind, reason))
        except Exception:
            logger.exception("surefoot event hook %r failed", self.hook)

    def _fetch(self, current: Token | None, deadline: float | None) -> Token:
        """A new token from the source; a grant's request is built from ``current``."""
        source = self.source
        if not isinstance(source, Grant):
            try:
                result: Any = source()
            except TokenError:
                raise
            except Exception as exc:
                failed = type(exc).__name__
            else:
                return token_from_callable_result(result, now=self.clock.wall())
            # Raised out of the handler and not chained, as RequestFailed is: neither as
            # __cause__ nor as __context__ does the function's exception (whose message may
            # hold the very secret it was fetching) reach a traceback or a logger.
            raise TokenError(f"token function failed: {failed}") from None
        try:
            response = self._exchange(
                lambda: source.build_request(current, now=self.clock.wall()), deadline,
                "token",
            )
            return source.parse_response(response, now=self.clock.wall(), current=current)
        except (TokenEndpointError, TokenResponseError) as exc:
            url = getattr(source, "token_url", None)
            if isinstance(url, str) and url:  # which endpoint said so (redacted)
                exc.args = (f"{exc.args[0] if exc.args else exc} (from {redact_url(url)})",)
            raise

    def _exchange(
        self, build: Callable[[], HttpRequest], deadline: float | None, what: str
    ) -> HttpResponse:
        """Send a request built afresh for each attempt (a client assertion is never
        replayed) through the pipeline, retrying 5xx/408/429 and transport failures under
        ``fetch_policy`` (bounded by ``deadline`` too). Returns the answer to interpret."""
        first = build()
        policy = self._policy_for(first.method, deadline, what)
        view = RequestView(first.method, first.url, first.headers, first.body or None)
        flow = request_flow(view, policy=policy, auth=None, clock=self.clock, hook=self.hook,
                            rng=self._rng)
        pending = [first]

        def send(attempt: Send) -> Outcome:
            request = pending.pop() if pending else build()
            try:
                response = self.sender(request, attempt.timeout)
            except TransportError as exc:
                return Failure(FailureKind(exc.kind), str(exc)), exc
            return ResponseInfo(response.status, response.headers), response

        try:
            answer: HttpResponse
            answer, _ = drive_sync(flow, send=send, discard=_keep, clock=self.clock)
        except RequestFailed as exc:
            if isinstance(exc.response, HttpResponse):
                return exc.response  # the server's last answer: its error is interpreted
            if isinstance(exc, DeadlineExceeded):
                raise DeadlineExceeded(
                    f"deadline reached while calling the {what} endpoint", history=exc.history
                ) from None
            raise TokenEndpointError("unreachable", f"{what} endpoint: {exc}") from None
        return answer

    def _policy_for(self, method: str, deadline: float | None, what: str) -> RetryPolicy:
        """``fetch_policy`` for a token-endpoint call: its method may be repeated (token
        requests are: a refresh-token grant answers ``invalid_grant`` to a consumed refresh
        token, handled above), and its deadline is cut to what is left of the caller's."""
        policy = self.fetch_policy.replace(
            idempotent_methods=self.fetch_policy.idempotent_methods | {method}
        )
        if deadline is None:
            return policy
        left = deadline - self.clock.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"deadline reached while calling the {what} endpoint")
        if policy.deadline is None or left < policy.deadline:
            return policy.replace(deadline=left)
        return policy

    # -- revocation ------------------------------------------------------------------

    def revoke(self, *, deadline: float | None = None) -> bool:
        """Revoke the current token at the grant's RFC 7009 ``revocation_url`` — the
        refresh token (the server then drops its access tokens too) and the access
        token — and forget it, here and in the store. ``False`` if there was no token.

        The token is shared through the store, so this ends it for every process using
        it; with a :class:`RefreshTokenGrant` the grant is over (a new authorization is
        needed). The store's lease is held meanwhile (waiting for a refresh in flight,
        up to the deadline), so no refresh races the revocation. Raises
        :class:`TokenEndpointError` if the server refuses to revoke the refresh token
        (the token stays in place); a server that cannot revoke access tokens
        (``unsupported_token_type``) is fine.
        """
        source = self.source
        if not isinstance(source, RevocableGrant) or not source.revocation_url:
            raise ConfigurationError("revocation needs a grant with a revocation_url")
        if deadline is None:
            deadline = self.clock.monotonic() + 30.0
        acquired = self._lock.acquire(timeout=max(self._remaining(deadline) or 0.0, 0.0))
        if not acquired:
            raise DeadlineExceeded("deadline reached while waiting to revoke the token")
        owner = new_owner()
        leased = False
        try:
            leased = self._lease_for_revocation(owner, deadline)
            try:
                token = self.store.load(self.key)
            except StoreError:
                token = None
            token = token or self._token
            if token is None:
                return False
            if token.refresh_token:  # first: the server ends its access tokens too
                self._revoke_one(source, token.refresh_token, "refresh_token", deadline)
                self._bury(token.refresh_token)
            failure: TokenEndpointError | None = None
            try:
                self._revoke_one(source, token.access_token, "access_token", deadline)
            except TokenEndpointError as exc:
                # RFC 7009 §2.2.1: a server may not revoke access tokens; it expires.
                if exc.error != "unsupported_token_type":
                    if not token.refresh_token:
                        raise
                    failure = exc  # the grant is revoked all the same: forget it
            self._token = None
            self._loaded = True
            with contextlib.suppress(StoreError):
                self.store.delete(self.key)
            self._emit(EventKind.TOKEN_INVALIDATED, f"revoked {token!r}")
            if failure is not None:
                raise failure
            return True
        finally:
            if leased:
                with contextlib.suppress(StoreError):
                    self.store.release_lease(self.key, owner)
            self._lock.release()

    def _revoke_one(
        self, source: RevocableGrant, value: str, hint: str, deadline: float | None
    ) -> None:
        build = functools.partial(self._revocation_request, source, value, hint)
        parse_revocation_response(self._exchange(build, deadline, "revocation"))

    def _revocation_request(
        self, source: RevocableGrant, value: str, hint: str
    ) -> HttpRequest:
        return source.build_revocation_request(value, hint, now=self.clock.wall())

    def _lease_for_revocation(self, owner: str, deadline: float) -> bool:
        while True:
            try:
                if self.store.try_lease(self.key, owner, self.lease_ttl):
                    return True
            except StoreError:
                return False
            remaining = self._remaining(deadline)
            if remaining is None or remaining <= 0:
                return False  # revoke anyway: the token we can see is the one to end
            self.clock.sleep(min(_POLL_MAX, remaining))

    def close(self, *, revoke: bool | None = None, deadline: float | None = None) -> None:
        """Done with this cache. With ``revoke`` (default: ``revoke_on_close``), the
        token is revoked first (see :meth:`revoke`; its errors are raised).

        Closing a surefoot client (``surefoot.Client``, ``surefoot.httpx.Client``,
        ``surefoot.httpx.AsyncClient``) whose auth's cache has ``revoke_on_close`` calls
        this once, within a few seconds, and only logs a failure."""
        if revoke is None:
            revoke = self.revoke_on_close
        if revoke:
            self.revoke(deadline=deadline)


class _LostRace(Exception):
    """A refresh lost to another holder's rotation: read the store again."""


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


