"""The shared pacer states (SQLite, Redis) through an outage of their backend, and after
it: the fail-open fallback paces at what the backend last showed (the learned quota,
scaled by this process's share of the fleet's sends), a partition the backend lost gets
its quota back, the fallback's slots and the shared schedule do not run side by side,
and a slot a caller gives up goes back to the shared schedule.

Real backends, real time (short intervals, generous tolerances): a redis-server killed
and restarted empty, an SQLite file held under BEGIN EXCLUSIVE.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from surefoot import Pacer, PacingPolicy
from surefoot.pacing import Quota
from surefoot.pacing._config import Report
from surefoot.stores import RedisStore, SQLiteStore, _failure

TOL = 0.04  # seconds of scheduling slack on a loaded 2-core machine
POLICY = PacingPolicy(budget=None)


class Backend:
    """Stores of one kind on one backend (each store object: one process's worth)."""

    def __init__(self, kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.namespace = uuid.uuid4().hex
        self.stores: list[Any] = []
        if kind == "redis":
            self.url = request.getfixturevalue("redis_url")
            self.server = request.getfixturevalue("redis_server")
        else:
            self.path = tmp_path / "state.db"

    def store(self) -> Any:
        store: Any = (
            RedisStore(self.url, on_failure="open", timeout=0.3)
            if self.kind == "redis"
            else SQLiteStore(self.path, on_failure="open", busy_timeout=0.05)
        )
        self.stores.append(store)
        return store

    def state(self, pacing: PacingPolicy = POLICY) -> Any:
        state = self.store().pacer_state(pacing, namespace=self.namespace)
        state.on_request("warm-up", now=time.monotonic())  # the schema, the connection
        return state

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Redis killed (and restarted empty after), or the SQLite file locked."""
        if self.kind == "redis":
            self.server.kill()
            try:
                yield
            finally:
                self.server.start()
        else:
            holder = sqlite3.connect(self.path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                holder.execute("ROLLBACK")
                holder.close()
        time.sleep(0.06)  # past RETRY_BACKEND_AFTER: the backend is tried again

    def forget(self) -> None:
        """The backend loses the partitions (Redis restarted empty, the rows gone)."""
        if self.kind == "redis":
            import redis

            with redis.Redis.from_url(self.url) as client:
                client.flushall()
        else:
            with contextlib.closing(sqlite3.connect(self.path)) as db, db:
                db.execute("DELETE FROM surefoot_pacing")

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path, monkeypatch) -> Iterator[Backend]:
    monkeypatch.setattr(_failure, "RETRY_BACKEND_AFTER", 0.05)
    made = Backend(request.param, tmp_path, request)
    yield made
    made.close()


def reserve(state: Any, partition: str = "p") -> float:
    return state.reserve(partition, None, now=time.monotonic(), adaptive=False).at


def learn(state: Any, limit: float, partition: str = "p") -> None:
    state.report(partition, Report(None, False, learned=(Quota(limit=limit),)),
                 now=time.monotonic())


def gaps(slots: list[float]) -> list[float]:
    return [b - a for a, b in zip(slots, slots[1:])]


# -- failing over ------------------------------------------------------------------------


def test_a_fleet_falling_back_together_paces_at_about_the_quota_between_them(backend):
    """Three processes pacing one partition at a learned 30/s through the backend lose
    it: each goes on locally at its share of the quota (about 10/s), after its own last
    shared slot, not unpaced (nor each at the whole 30/s)."""
    states = [backend.state() for _ in range(3)]
    learn(states[0], 30.0)
    last = {}
    for _ in range(6):
        for i, state in enumerate(states):
            last[i] = reserve(state)
    rates = []
    with backend.down():
        for i, state in enumerate(states):
            got = [reserve(state) for _ in range(4)]
            quota, factor, share = state._fallback.mirrored("p")
            assert quota == Quota(limit=30.0)
            assert factor == 1.0
            assert 0.3 <= share <= 0.4
            interval = 1 / (30.0 * share)
            assert gaps(got) == pytest.approx([interval] * 3, abs=0.002)
            assert got[0] == pytest.approx(last[i] + interval, abs=TOL)
            rates.append(1 / interval)
    assert sum(rates) == pytest.approx(30.0, rel=0.15)


def test_a_quota_learned_during_the_outage_is_used_and_put_back_after_it(backend):
    """Nothing was known when the backend went away; a response meanwhile states 20/s:
    the fallback paces at it, and the backend, back without it (Redis restarted empty,
    or no row ever written for the partition), is given it before its first operation."""
    state = backend.state()
    with backend.down():
        learn(state, 20.0)
        assert gaps([reserve(state) for _ in range(3)]) == pytest.approx([0.05] * 2, abs=0.002)
    start = time.monotonic()
    got = [reserve(state) - start for _ in range(3)]
    assert gaps(got) == pytest.approx([0.05] * 2, abs=TOL)


# -- coming back -------------------------------------------------------------------------


def test_a_partition_the_backend_lost_gets_its_quota_back_paced_from_now(backend):
    state = backend.state()
    learn(state, 20.0)
    for _ in range(10):
        reserve(state)  # the schedule is 0.5 s ahead
    backend.forget()
    start = time.monotonic()
    got = [reserve(state) - start for _ in range(3)]
    assert got == pytest.approx([0.0, 0.05, 0.1], abs=TOL)


def test_a_quota_told_again_after_a_restart_does_not_charge_the_blank_partitions_sends(
    backend,
):
    """After the backend lost the partition, a process that never saw its quota sends 60
    requests unpaced; the quota told again does not push the schedule 3 s ahead (the
    lock-out bench/soak.py saw after a Redis restart): the partition had it back at
    once."""
    state = backend.state()
    learn(state, 20.0)
    reserve(state)
    backend.forget()
    stranger = backend.state()
    reserve(stranger)  # first contact: its answer states no quota (a 503, say)
    stranger.report("p", Report(None, False), now=time.monotonic())
    for _ in range(60):
        reserve(stranger)
    learn(state, 20.0)  # the pacer's retell
    start = time.monotonic()
    assert reserve(state) - start < 0.1


def test_the_shared_schedule_goes_on_after_the_fallbacks_slots(backend):
    """The fallback handed out slots up to 2 s ahead; when the backend is back, its
    schedule goes on after them instead of beside them (twice the rate meanwhile)."""
    state = backend.state()
    learn(state, 2.0)
    start = time.monotonic()
    shared = [reserve(state) - start for _ in range(2)]
    assert shared == pytest.approx([0.0, 0.5], abs=TOL)
    with backend.down():
        local = [reserve(state) - start for _ in range(3)]
    assert local == pytest.approx([1.0, 1.5, 2.0], abs=TOL)
    assert reserve(state) - start == pytest.approx(2.5, abs=TOL)
    assert reserve(state) - start == pytest.approx(3.0, abs=TOL)  # merged once


# -- giving a slot back ------------------------------------------------------------------


def test_a_slot_given_up_goes_back_to_the_shared_schedule(backend):
    """The pipeline's Release (a caller that gives up in the gate) through a Pacer on a
    shared store: the slot is booked again, by this process or another one."""
    policy = PacingPolicy(quotas=(Quota.per_second(10),), budget=None)
    a, b = (Pacer(policy, store=backend.store()) for _ in range(2))
    start = time.monotonic()
    got = [a.reserve("p", now=time.monotonic()) for _ in range(4)]
    assert [r.at - start for r in got] == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=TOL)
    a.release("p", got[-1], now=time.monotonic())
    assert b.reserve("p", now=time.monotonic()).at - start == pytest.approx(0.3, abs=TOL)
    # callers that give up do not push the schedule ahead: 30 of them, and the next
    # slot is still the next one (not 3 s later)
    for _ in range(30):
        pacer = (a, b)[_ % 2]
        pacer.release("p", pacer.reserve("p", now=time.monotonic()), now=time.monotonic())
    assert a.reserve("p", now=time.monotonic()).at - start == pytest.approx(0.4, abs=TOL)
