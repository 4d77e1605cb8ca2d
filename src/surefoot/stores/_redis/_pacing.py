"""Pacing state (limiter, adaptive rate, breaker, demand, retry budget) in Redis.

The pacing logic lives only in Python: every operation loads the stored state into a
throw-away :class:`LocalPacerState` (:meth:`~LocalPacerState.import_partition`,
:meth:`~LocalPacerState.import_budget`), applies the operation there and writes the
result back with a compare-and-set, as the SQLite store does inside a transaction:

1. ``_LOAD`` (one script call, atomic): the key's JSON blob, its version and Redis
   ``TIME``. The operation runs on Redis' clock, so hosts with skewed clocks agree on
   slots; the instants it hands back are moved onto the caller's clock by the offset
   measured at the reply (so that a slot is never early).
2. ``_SAVE``: writes the new blob only if the version is still the one loaded, bumping
   it. On a conflict it answers with the current blob, version and ``TIME``, and the
   operation is applied again on that. After :data:`MAX_ATTEMPTS` conflicts in a row
   the operation fails like an unreachable store (:class:`FailureMode`: local state
   when failing open, :class:`~surefoot.StoreUnavailable` when closed). A state that
   the operation left unchanged is not written.

A process has at most one compare-and-set in flight per key (a lock per key), so
conflicts come only from other processes; the operations that other threads queued on
the key meanwhile are applied, in order, in the next one (one round of scripts for a
whole burst). Each script touches one key: an operation on the retry budget
and a partition (``on_request``) is two compare-and-set steps, the budget first, since
the two keys live in different Redis Cluster slots.

While Redis is unavailable and the store fails open, the operations run on a local
state primed with what Redis last showed, and a partition Redis lost (a restart, an
expired key) gets its learned quota back (see :mod:`surefoot.stores._pacing_fallback`).

Keys: ``<prefix>{<namespace>:<partition>}:pacing`` and ``<prefix>{<namespace>}:budget``,
hashes with fields ``s`` (the JSON state) and ``v`` (its version); both expire two hours
after their last use. A blob that does not parse gives a fresh partition (or budget).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from surefoot.errors import StoreError, StoreUnavailable
from surefoot.pacing._breaker import Admission
from surefoot.pacing._config import PacingPolicy, Report
from surefoot.pacing._gcra import Reservation
from surefoot.pacing._state import LocalPacerState
from surefoot.stores._deadline import wait_for
from surefoot.stores._failure import FailureMode
from surefoot.stores._pacing_fallback import PacingFallback
from surefoot.stores._redis._connection import RedisConnection

__all__ = ["MAX_ATTEMPTS", "RedisPacerState"]

T = TypeVar("T")
#: ``operation(engine, t, local)``: ``t`` is the store's clock, ``local`` moves its
#: instants onto the caller's clock.
Operation = Callable[[LocalPacerState, float, Callable[[float], float]], T]

#: Compare-and-set attempts per step before the operation counts as a store failure.
MAX_ATTEMPTS = 50
#: Conflicts in a row after which each retry first sleeps a little (randomized).
_BACKOFF_AFTER = 3
_BACKOFF_BASE = 0.0002
_TTL_MS = 2 * 3600 * 1000
#: Keys whose lock and queue are kept before the table is cleared (it would otherwise
#: grow with every partition ever seen; clearing costs at most a CAS conflict, never a
#: lost update).
_MAX_KEYS = 4096

_LOAD = """
-- KEYS[1]: a pacing hash. ARGV[1]: ttl in ms. Returns {blob|nil, version, TIME s, us}.
local got = redis.call('HMGET', KEYS[1], 's', 'v')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local t = redis.call('TIME')
return {got[1], got[2] or '0', t[1], t[2]}
"""

_SAVE = """
-- KEYS[1]: a pacing hash. ARGV: expected version, new blob, ttl in ms.
-- Returns {1} when written, else {0, blob|nil, version, TIME s, us} (reload from there).
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v == ARGV[1] then
  redis.call('HSET', KEYS[1], 's', ARGV[2], 'v', (tonumber(v) or 0) + 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1}
end
local t = redis.call('TIME')
return {0, redis.call('HGET', KEYS[1], 's'), v, t[1], t[2]}
"""


class RedisPacerState:
    """A :class:`~surefoot.pacing._pacer.PacerState` shared by a fleet through Redis."""

    does_io = True

    __slots__ = (
        "_conn",
        "_failure",
        "_fallback",
        "_keys",
        "_keys_guard",
        "namespace",
        "pacing",
    )

    def __init__(
        self,
        conn: RedisConnection,
        failure: FailureMode,
        pacing: PacingPolicy,
        *,
        namespace: str = "default",
    ) -> None:
        self._conn = conn
        self._failure = failure
        self.pacing = pacing
        self.namespace = namespace
        #: Used while Redis is unavailable and the store fails open.
        self._fallback = PacingFallback(pacing)
        self._keys: dict[str, _KeyState] = {}
        self._keys_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisPacerState({self._conn!r}, namespace={self.namespace!r})"

    def _key(self, partition: str) -> str:
        return self._conn.key(f"{self.namespace}:{partition}", "pacing")

    def _budget_key(self) -> str:
        return self._conn.key(self.namespace, "budget")

    def _key_state(self, key: str) -> _KeyState:
        ks = self._keys.get(key)
        if ks is None:
            with self._keys_guard:
                ks = self._keys.get(key)
                if ks is None:
                    if len(self._keys) >= _MAX_KEYS:
                        self._keys.clear()
                    ks = self._keys[key] = _KeyState()
        return ks

    # -- one compare-and-set step ------------------------------------------------------

    def _step(self, partition: str | None, pending: _Pending[T]) -> T:
        """Apply ``pending``'s operation to one stored key (the partition's, or the
        budget's when ``partition`` is None), atomically.

        One thread per process and key at a time does the I/O (it holds the key's
        lock); operations that queued up meanwhile are applied by it too, in order, in
        the same compare-and-set: a burst of calls from many threads costs one round of
        scripts, and only other processes cause conflicts."""
        key = self._budget_key() if partition is None else self._key(partition)
        ks = self._key_state(key)
        with ks.guard:
            ks.queue.append(pending)
        # Bounded, so that callers queued behind a hung call do not wait for each one
        # (nor past what their request's deadline leaves them).
        if not ks.lock.acquire(timeout=wait_for(2 * self._conn.timeout)):
            with ks.guard:
                if pending in ks.queue:  # not taken up yet: give up on the store
                    ks.queue.remove(pending)
                    raise StoreUnavailable(
                        "Redis is unavailable: pacing calls are queued too long"
                    )
            # Being applied now, by a call bounded by its own timeouts; with a deadline,
            # wait no longer than it leaves (the outcome is then unknown, as after a
            # call that timed out).
            left = wait_for(None)
            if not ks.lock.acquire(timeout=-1 if left is None else left):
                raise StoreUnavailable("Redis is unavailable: pacing calls are queued too long")
        try:
            if not pending.done:
                with ks.guard:
                    batch, ks.queue = ks.queue, []
                self._run(key, partition, batch)
        finally:
            ks.lock.release()
        return pending.outcome()

    def _run(self, key: str, partition: str | None, batch: list[_Pending[Any]]) -> None:
        try:
            if self._failure.fail_open and self._failure.skip_backend():
                # The call these queued behind has just failed: go local at once.
                raise StoreUnavailable("Redis is unavailable (a call just failed)")
            results = self._cas(key, partition, batch)
        except BaseException as exc:
            for p in batch:
                p.error, p.done = exc, True
            raise
        for p, result in zip(batch, results, strict=True):
            p.result, p.done = result, True

    def _cas(self, key: str, partition: str | None, batch: list[_Pending[Any]]) -> list[Any]:
        reply = self._conn.run("pacing_load", _LOAD, [key], [_TTL_MS])
        blob, version, store_now = _text(reply[0]), _text(reply[1]), _time(reply[2:4])
        for attempt in range(1, MAX_ATTEMPTS + 1):
            engine = _engine(self.pacing, partition, blob)
            clock = time.monotonic()
            merged = -math.inf
            if partition is not None:
                first = batch[0]
                to_store = functools.partial(
                    _shift, store_now - first.now - (clock - first.started)
                )
                merged = self._fallback.prepare(engine, partition, store_now, to_store)
            results = []
            for p in batch:
                # ``p.now`` was read at ``p.started`` on this process' monotonic clock.
                offset = p.now + (clock - p.started) - store_now
                results.append(p.operation(engine, store_now, functools.partial(_shift, offset)))
            state = engine.export_budget() if partition is None else engine.export_partition(
                partition
            )
            new = json.dumps(state, separators=(",", ":"))
            reply = (
                None  # nothing changed: nothing to write
                if new == blob
                else self._conn.run("pacing_save", _SAVE, [key], [version, new, _TTL_MS])
            )
            if reply is None or int(reply[0]) == 1:
                if partition is not None:
                    self._fallback.observe(engine, partition, store_now, merged)
                return results
            # Another process wrote first: apply the operations again on its state.
            blob, version, store_now = _text(reply[1]), _text(reply[2]), _time(reply[3:5])
            if _BACKOFF_AFTER <= attempt < MAX_ATTEMPTS:
                exp = min(attempt - _BACKOFF_AFTER, 5)
                time.sleep(random.uniform(0, _BACKOFF_BASE * 2**exp))
                # The reply's state and clock reading are stale after a sleep.
                reply = self._conn.run("pacing_load", _LOAD, [key], [_TTL_MS])
                blob, version, store_now = _text(reply[0]), _text(reply[1]), _time(reply[2:4])
        raise StoreUnavailable(
            f"Redis pacing state: {MAX_ATTEMPTS} compare-and-set conflicts in a row"
        )

    def _apply(
        self,
        partition: str | None,
        budget: bool,
        now: float,
        what: str,
        operation: Operation[T],
        fallback: Callable[[], T],
        done: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``operation`` on the budget (if ``budget``), then on the partition (if
        any; ``None`` with ``budget``: the budget alone), each step atomic; the result
        is the last step's, handed to ``done`` too. On a store failure: ``fallback()``
        (the same operation on the local state, failing open) or raise (failing
        closed)."""

        def backend() -> T:
            started = time.monotonic()
            if budget and partition is not None:
                self._step(None, _Pending(operation, now, started))  # the budget first
            result = self._step(partition, _Pending(operation, now, started))
            if done is not None:
                done(result)
            return result

        return self._failure.guard(what, backend, fallback)

    # -- PacerState ------------------------------------------------------------------

    def reserve(
        self, partition: str, previous: Reservation | None, *, now: float, adaptive: bool
    ) -> Reservation:
        def op(engine: LocalPacerState, t: float, local: Callable[[float], float]) -> Reservation:
            got = engine.reserve(partition, previous, now=t, adaptive=adaptive)
            if got is previous:
                return got
            return got._replace(at=local(got.at))

        fallback = self._fallback
        return self._apply(
            partition, False, now, "reserve", op,
            lambda: fallback.reserve(partition, previous, now=now, adaptive=adaptive),
            lambda got: fallback.reserved(partition, previous, got, now),
        )

    def release(self, partition: str, reservation: Reservation, *, now: float) -> None:
        """Give back a slot its holder will not use (see ``RateLimiter.release``): one
        step, the slot moved onto Redis' clock as :meth:`reserve` moves it off."""

        def op(engine: LocalPacerState, t: float, local: Callable[[float], float]) -> None:
            at = reservation.at + (t - local(t))
            engine.release(partition, reservation._replace(at=at), now=t)

        self._apply(
            partition, False, now, "release", op,
            lambda: self._fallback.release(partition, reservation, now=now),
        )

    def admit(self, partition: str, *, now: float) -> Admission:
        if self.pacing.breaker is None:  # no state to read: the answer is always yes
            return self._fallback.admit(partition, now=now)

        def op(engine: LocalPacerState, t: float, local: Callable[[float], float]) -> Admission:
            got = engine.admit(partition, now=t)
            if got.retry_at is None:
                return got
            return dataclasses.replace(got, retry_at=local(got.retry_at))

        return self._apply(
            partition, False, now, "admit", op,
            lambda: self._fallback.admit(partition, now=now),
        )

    def on_request(self, partition: str, *, now: float) -> None:
        # The budget step counts the first attempt, the partition step the demand.
        self._apply(
            partition,
            self.pacing.budget is not None,
            now,
            "on_request",
            lambda engine, t, _: engine.on_request(partition, now=t),
            lambda: self._fallback.on_request(partition, now=now),
        )

    def try_retry(self, *, now: float) -> bool:
        if self.pacing.budget is None:
            return True
        return self._apply(
            None, True, now, "try_retry", lambda engine, t, _: engine.try_retry(now=t),
            lambda: self._fallback.try_retry(now=now),
        )

    def report(self, partition: str, report: Report, *, now: float) -> None:
        self._apply(
            partition,
            False,
            now,
            "report",
            lambda engine, t, _: engine.report(partition, report, now=t),
            lambda: self._fallback.report(partition, report, now=now),
        )

    def snapshot(self, partition: str | None) -> object:
        """The stored state of a partition (``None``: the retry budget), as decoded JSON
        (for tests and debugging)."""
        key = self._budget_key() if partition is None else self._key(partition)
        return _loads(_text(self._conn.run("pacing_load", _LOAD, [key], [_TTL_MS])[0]))


class _Pending(Generic[T]):
    """One operation waiting for its key's compare-and-set."""

    __slots__ = ("done", "error", "now", "operation", "result", "started")

    def __init__(self, operation: Operation[T], now: float, started: float) -> None:
        self.operation = operation
        self.now = now
        self.started = started
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        error = self.error
        if error is not None:
            if isinstance(error, StoreError):  # a fresh one per caller (own traceback)
                raise type(error)(*error.args) from None
            raise error
        return self.result  # type: ignore[return-value]


class _KeyState:
    """A key's lock (held by the thread doing its I/O) and the operations queued."""

    __slots__ = ("guard", "lock", "queue")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.guard = threading.Lock()
        self.queue: list[_Pending[Any]] = []


def _engine(pacing: PacingPolicy, partition: str | None, blob: str | None) -> LocalPacerState:
    """A throw-away engine holding one stored key's state (garbage: a fresh one)."""
    engine = LocalPacerState(pacing)
    state = _loads(blob)
    if state is None:
        return engine
    try:
        if partition is None:
            engine.import_budget(state)
        else:
            engine.import_partition(partition, state)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return LocalPacerState(pacing)
    return engine


def _shift(offset: float, instant: float) -> float:
    return instant + offset


def _loads(blob: str | None) -> Any:
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (str, int)):
        return str(value)
    raise StoreError(f"unexpected reply from a pacing script: {type(value).__name__}")


def _time(reply: Any) -> float:
    """Redis ``TIME`` (seconds, microseconds) as seconds."""
    try:
        seconds, micros = reply
        return int(seconds) + int(micros) / 1e6
    except (TypeError, ValueError) as exc:
        raise StoreError("unexpected reply from a pacing script: not a TIME") from exc
