"""Pacing state (limiter, adaptive rate, breaker, demand, retry budget) in SQLite.

Every operation is one ``BEGIN IMMEDIATE`` transaction: load the partition's row, apply
the same pure logic as the in-process state (:class:`LocalPacerState`, loaded with just
that partition), write the row back. The write lock is taken first, so processes never
interleave a read and a write. Times inside the database are Unix times
(``time.time()``): every process of the host reads the same clock.

While the database is unavailable (locked past the busy timeout) and the store fails
open, the operations run on a local state primed with what the database last showed,
and a partition whose row is gone gets its learned quota back (see
:mod:`surefoot.stores._pacing_fallback`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from surefoot.pacing._breaker import Admission
from surefoot.pacing._config import PacingPolicy, Report
from surefoot.pacing._gcra import Reservation
from surefoot.pacing._state import LocalPacerState
from surefoot.stores._failure import FailureMode
from surefoot.stores._pacing_fallback import PacingFallback
from surefoot.stores._sqlite._connection import SQLiteConnection

__all__ = ["SQLitePacerState"]

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS surefoot_pacing ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL, updated REAL NOT NULL)"
)
_BUDGET = "\x00budget"


class SQLitePacerState:
    """A :class:`~surefoot.pacing._pacer.PacerState` shared by the processes of one host."""

    does_io = True

    __slots__ = ("_conn", "_failure", "_fallback", "namespace", "pacing")

    def __init__(
        self,
        conn: SQLiteConnection,
        failure: FailureMode,
        pacing: PacingPolicy,
        *,
        namespace: str = "default",
    ) -> None:
        conn.add_schema(_SCHEMA)
        self._conn = conn
        self._failure = failure
        self.pacing = pacing
        self.namespace = namespace
        #: Used while the database is unavailable and the store fails open.
        self._fallback = PacingFallback(pacing)

    def __repr__(self) -> str:
        return f"SQLitePacerState({self._conn!r}, namespace={self.namespace!r})"

    def _key(self, partition: str) -> str:
        return f"pacing:{self.namespace}:{partition}"

    def _apply(
        self,
        partition: str | None,
        budget: bool,
        now: float,
        what: str,
        operation: Callable[[LocalPacerState, float, Callable[[float], float]], T],
        fallback: Callable[[], T],
        done: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``operation(engine, t, local)`` on the stored state, in one transaction:
        ``t`` is the store's clock, ``local`` turns its instants into the caller's clock;
        the result is handed to ``done`` too. On a store failure: ``fallback()`` (the
        same operation on the local state, failing open) or raise (failing closed)."""

        def backend() -> T:
            started = time.monotonic()
            with self._conn.transaction() as db:
                # Read after the write lock is ours: that wait is on the caller's clock too.
                store_now = time.time()
                offset = now + (time.monotonic() - started) - store_now
                engine = LocalPacerState(self.pacing)
                keys = []
                if partition is not None:
                    keys.append(self._key(partition))
                if budget:
                    keys.append(self._key(_BUDGET))
                rows = {
                    key: value
                    for key in keys
                    for (value,) in db.execute(
                        "SELECT value FROM surefoot_pacing WHERE key = ?", (key,)
                    ).fetchall()
                }
                merged = -math.inf
                if partition is not None:
                    engine.import_partition(partition, _loads(rows.get(self._key(partition))))
                    merged = self._fallback.prepare(
                        engine, partition, store_now, lambda x: x - offset
                    )
                if budget:
                    engine.import_budget(_loads(rows.get(self._key(_BUDGET))))
                result = operation(engine, store_now, lambda x: x + offset)
                writes = []
                if partition is not None:
                    writes.append(
                        (self._key(partition), json.dumps(engine.export_partition(partition)))
                    )
                if budget:
                    writes.append((self._key(_BUDGET), json.dumps(engine.export_budget())))
                db.executemany(
                    "INSERT INTO surefoot_pacing (key, value, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                    "updated = excluded.updated",
                    [(key, value, store_now) for key, value in writes],
                )
            if partition is not None:  # committed
                self._fallback.observe(engine, partition, store_now, merged)
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
        transaction, the slot moved onto the database's clock as :meth:`reserve` moves
        it off."""

        def op(engine: LocalPacerState, t: float, local: Callable[[float], float]) -> None:
            at = reservation.at + (t - local(t))
            engine.release(partition, reservation._replace(at=at), now=t)

        self._apply(
            partition, False, now, "release", op,
            lambda: self._fallback.release(partition, reservation, now=now),
        )

    def admit(self, partition: str, *, now: float) -> Admission:
        def op(engine: LocalPacerState, t: float, local: Callable[[float], float]) -> Admission:
            got = engine.admit(partition, now=t)
            if got.retry_at is None:
                return got
            return Admission(got.allowed, got.state, got.probe, local(got.retry_at))

        return self._apply(
            partition, False, now, "admit", op,
            lambda: self._fallback.admit(partition, now=now),
        )

    def on_request(self, partition: str, *, now: float) -> None:
        self._apply(
            partition,
            self.pacing.budget is not None,
            now,
            "on_request",
            lambda engine, t, _: engine.on_request(partition, now=t),
            lambda: self._fallback.on_request(partition, now=now),
        )

    def try_retry(self, *, now: float) -> bool:
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


def _loads(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None
