"""Pacing state (limiter, adaptive rate, breaker, demand, retry budget) in Redis.

**The happy path: one script call per attempt.** A partition whose schedule is a plain
GCRA (past its first contact, its breaker quiet: see ``RateLimiter.schedule``) keeps
that schedule in its hash (``fg`` generation, ``fe`` earliest slot, ``fq`` the quotas'
intervals and tolerances, ``fb`` the breaker is quiet, ``fx`` when a paced release's
quota stops counting) beside the quotas' theoretical arrival times (``t.<quota>``). A
schedule that changes with time (a derated quota, a paced release) holds until ``fu``;
the first gate call after that renews it (a whole load and write) and holds a lease
(``fl``) meanwhile, while the others go on booking from it. The
``_GATE`` script books an attempt's slot from them, admits it and counts its arrival
and send, atomically, on Redis' clock: one round trip, whatever the number of
processes (Redis runs scripts one at a time: no conflict, no retry). What the answers
mean for the state rides along on the next gate call of the process instead of costing
a call of its own: successes while the breaker is quiet (``cc``), answers that were not
throttles (``co``), a late send (``cl``). A waiter woken at its slot asks whether
its slot still stands (one call: a pause elsewhere voids it, and a slot sent on after
that is sent beside the restarted schedule's: a fleet's waiters doing so for a fraction
of a second after each 429 drew more 429s, each a new pause); a quiet breaker admits
without a call while this process saw it quiet less than :data:`FRESH` seconds ago. The
retry
budget's deposits (one per logical request) are counted in the process and added to
the budget's key now and then (:data:`BUDGET_FLUSH`) and before every retry, in the
call that spends it (one script call each: see Keys below).

**Everything else: the whole state, in Python.** The pacing logic lives in Python:
an operation the gate cannot do (a 429, a learned quota, an open breaker, a first
contact, a pause ...) loads the key into a throw-away :class:`LocalPacerState`
(:meth:`~LocalPacerState.import_partition`, and :meth:`~LocalPacerState.take_in` of
what the gates did since the last load), applies the operation and writes the result
back with a compare-and-set (``_SAVE``), with the schedule the gates are to use from
then on (or none). The operation runs on Redis' clock (``TIME``), so hosts with skewed
clocks agree on slots; the instants it hands back are moved onto the caller's clock by
the offset measured at the reply (so that a slot is never early). A conflict (another
process wrote first) loads again; after :data:`MAX_ATTEMPTS` conflicts in a row the
operation fails like an unreachable store (:class:`FailureMode`: local state when
failing open, :class:`~surefoot.StoreUnavailable` when closed). An operation queued
too long behind the process's other calls on the key is busy
(:class:`~surefoot.stores._failure.StoreBusy`): that one call runs on local state when
failing open (Redis answers: it is not taken for down), and raises when closed. A
state the operation left unchanged is not written. The gates never conflict with a
compare-and-set: the times they move forward are written back as the later of the
two, unless the operation restarted the schedule (a pause: a new generation) or no
schedule was in force.

A process has at most one compare-and-set in flight per key (a lock per key), so
conflicts come only from other processes; the operations other threads queued on the
key meanwhile are applied, in order, in the next one. Each script touches one key (one
Redis Cluster slot).

While Redis is unavailable and the store fails open, the operations run on a local
state primed with what Redis last showed, and a partition Redis lost (a restart, an
expired key) gets its learned quota back (see :mod:`surefoot.stores._pacing_fallback`).

Keys: ``<prefix>{<namespace>:<partition>}:pacing``, a hash with fields ``s`` (the JSON
state), ``v`` (its version), the gate's fields above and its counts (``ca``, ``cs``,
``co``, ``cc`` since ``c0``; ``cu`` unpaced slots since ``cus``); and
``<prefix>{<namespace>}:budget``, the retry budget as counts per bucket of its window
(``_BUDGET``: one script call adds, spends or refuses, never a compare-and-set, so a
fleet retrying at once does not contend). Both expire after their last use. A blob
that does not parse gives a fresh partition; a count that does not parse counts
nothing.
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

from surefoot.errors import ConfigurationError, StoreError, StoreUnavailable
from surefoot.pacing._breaker import Admission
from surefoot.pacing._config import _SEND_WINDOW, PacingPolicy, Report
from surefoot.pacing._gcra import LATE_GRACE, LATE_MIN, LATE_SLOTS, Quota, Reservation
from surefoot.pacing._state import Elsewhere, LocalPacerState, SharedSchedule
from surefoot.stores._deadline import wait_for
from surefoot.stores._failure import FailureMode, StoreBusy
from surefoot.stores._pacing_fallback import PacingFallback
from surefoot.stores._redis._connection import RedisConnection

__all__ = ["BUDGET_FLUSH", "FRESH", "MAX_ATTEMPTS", "RedisPacerState"]

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
#: Seconds for which a quiet breaker a reply showed admits an attempt without asking
#: again: a breaker opened elsewhere reaches this process's waiters at most this late
#: (its next gate call sees it at once).
FRESH = 0.25
#: A schedule due for renewal (``fu``: a derated rate, a paced release) is renewed by
#: the first gate call after it is due, which holds this lease (seconds) while it loads
#: and writes the whole state; the other calls book from it meanwhile (100 processes
#: would otherwise all load it at once), but not once it is this late (seconds).
_RENEW_LEASE = 0.25
_RENEW_LATE = 2.0
#: Seconds the retry budget's deposits are kept in the process at most before they
#: are added to the shared budget (a retry adds them first in any case).
BUDGET_FLUSH = 2.0

_ALLOWED = Admission(allowed=True, state="closed", probe=False, retry_at=None)

_GATE = """
-- KEYS[1]: a partition's pacing hash. ARGV: ttl in ms; arrival (1/0); what is asked:
-- 'new' (an attempt's slot), 'rebook' (another slot for the same attempt) or a
-- generation (is the caller's slot of it still valid? else rebook);
-- then what this process' answers showed since its last call: successes, answers that
-- were not throttles, a late mark ('' none); then the renewal lease and the most a
-- schedule due for renewal is still booked from, in seconds.
-- Returns {1, TIME s, us, generation, slot, quotas, sends counted, since} (booked),
-- {2, TIME s, us, generation, '', quotas} (the caller's slot stands) or {0, TIME s, us}
-- (no schedule here: load the whole state).
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function count(field, n)
  if n > 0 then
    redis.call('HSETNX', key, 'c0', string.format('%.6f', now))
    redis.call('HINCRBY', key, field, n)
  end
end
count('cc', tonumber(ARGV[4]) or 0)
count('co', tonumber(ARGV[5]) or 0)
local mark = tonumber(ARGV[6])
if mark and mark > (tonumber(redis.call('HGET', key, 'cl') or '0') or 0) then
  redis.call('HSET', key, 'cl', ARGV[6])
end
local f = redis.call('HMGET', key, 'fg', 'fe', 'fq', 'fb', 'fu', 'fx', 'fl')
if not f[1] or f[4] ~= '1' then
  return {0, t[1], t[2]}
end
local due = tonumber(f[5])
if due and now >= due then
  -- Due for renewal (a derated rate, a paced release): the first caller renews it (a
  -- whole load) and holds the lease ARGV[7] seconds meanwhile, while the others go on
  -- booking from it; past ARGV[8] seconds overdue, nobody books from it.
  if now >= due + tonumber(ARGV[8]) then return {0, t[1], t[2]} end
  if now >= (tonumber(f[7]) or 0) then
    redis.call('HSET', key, 'fl', string.format('%.6f', now + tonumber(ARGV[7])))
    return {0, t[1], t[2]}
  end
end
redis.call('PEXPIRE', key, ARGV[1])
if ARGV[3] == 'new' then
  count('cs', 1)
elseif ARGV[3] == f[1] then
  return {2, t[1], t[2], f[1], '', f[3]}
end
local sent = redis.call('HMGET', key, 'cs', 'c0')
if ARGV[2] == '1' then count('ca', 1) end
local slot = math.max(now, tonumber(f[2]) or now)
-- A paced release: the quota named 'recovery' counts while now < hard and either now <
-- until or its tat is still ahead (RateLimiter.schedule).
local r_until, r_hard = string.match(f[6] or '', '^([^,]+),([^,]+)$')
r_until, r_hard = tonumber(r_until), tonumber(r_hard)
local names, steps, tats = {}, {}, {}
for name, interval, tau in string.gmatch(f[3], '([^,;]+),([^,;]+),([^,;]+)') do
  local tat = tonumber(redis.call('HGET', key, 't.' .. name) or '') or now
  if name ~= 'recovery' or not r_hard or (now < r_hard and (now < r_until or tat > now)) then
    names[#names + 1], steps[#steps + 1], tats[#tats + 1] = name, tonumber(interval), tat
    slot = math.max(slot, tat - tonumber(tau))
  end
end
if #names == 0 and redis.call('HINCRBY', key, 'cu', 1) == 1 then
  redis.call('HSET', key, 'cus', string.format('%.6f', slot))
end
for i = 1, #names do
  redis.call('HSET', key, 't.' .. names[i],
             string.format('%.6f', math.max(tats[i], slot) + steps[i]))
end
return {1, t[1], t[2], f[1], string.format('%.6f', slot), f[3], sent[1], sent[2]}
"""

_RELEASE = """
-- KEYS[1]: a partition's pacing hash. ARGV: the slot's generation, the slot (on Redis'
-- clock). Gives the slot back to the gates' schedule: each quota's last one, if it is
-- still ahead (see RateLimiter.release). Returns 0 when no schedule is in the hash
-- (load the whole state), else 1.
local key = KEYS[1]
local f = redis.call('HMGET', key, 'fg', 'fq')
if not f[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if f[1] ~= ARGV[1] or tonumber(ARGV[2]) <= now then return 1 end
for name, interval in string.gmatch(f[2], '([^,;]+),([^,;]+),[^,;]+') do
  local tat = tonumber(redis.call('HGET', key, 't.' .. name) or '')
  if tat and tat - tonumber(interval) >= now then
    redis.call('HSET', key, 't.' .. name, string.format('%.6f', tat - tonumber(interval)))
  end
end
return 1
"""

_LOAD = """
-- KEYS[1]: a pacing hash. ARGV[1]: ttl in ms. Returns {HGETALL, TIME s, us}.
local got = redis.call('HGETALL', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local t = redis.call('TIME')
return {got, t[1], t[2]}
"""

_SAVE = """
-- KEYS[1]: a pacing hash. ARGV: [1] the version loaded, [2] the new state, [3] ttl in
-- ms, [4] 1: the stored times are replaced (the schedule restarted, or none was in
-- force), 0: each is kept if later (gates booked meanwhile), [5..10] the schedule (fg
-- fe fq fb fu fx; '' fg: none), [11..15] the counts taken in (cc co ca cs cu), [16]
-- when the counts left start (the load's TIME), then the times as name, value pairs.
-- Returns 1 when written, 0 if another write came first (load again).
local key = KEYS[1]
local v = redis.call('HGET', key, 'v') or '0'
if v ~= ARGV[1] then return 0 end
redis.call('HSET', key, 's', ARGV[2], 'v', (tonumber(v) or 0) + 1)
redis.call('HDEL', key, 'fl')
if ARGV[5] == '' then
  redis.call('HDEL', key, 'fg', 'fe', 'fq', 'fb', 'fu', 'fx')
else
  redis.call('HSET', key, 'fg', ARGV[5], 'fe', ARGV[6], 'fq', ARGV[7], 'fb', ARGV[8],
             'fu', ARGV[9], 'fx', ARGV[10])
end
local counts = {'cc', 'co', 'ca', 'cs', 'cu'}
local left = false
for i = 1, 5 do
  local n = tonumber(ARGV[10 + i]) or 0
  local now = n
  if n > 0 then now = redis.call('HINCRBY', key, counts[i], -n) else
    now = tonumber(redis.call('HGET', key, counts[i]) or '0') or 0 end
  if n > 0 and now <= 0 then
    redis.call('HDEL', key, counts[i])
    if i == 5 then redis.call('HDEL', key, 'cus') end
  elseif now > 0 and i < 5 then left = true end
end
if not left then redis.call('HDEL', key, 'c0')
elseif tonumber(ARGV[11]) + tonumber(ARGV[12]) + tonumber(ARGV[13]) + tonumber(ARGV[14]) > 0
then redis.call('HSET', key, 'c0', ARGV[16]) end
local keep = {}
for i = 17, #ARGV, 2 do
  local field = 't.' .. ARGV[i]
  keep[field] = true
  local stored = tonumber(redis.call('HGET', key, field) or '')
  if ARGV[4] == '1' or stored == nil or stored < tonumber(ARGV[i + 1]) then
    redis.call('HSET', key, field, ARGV[i + 1])
  end
end
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, 2) == 't.' and not keep[field] then
    redis.call('HDEL', key, field)
  end
end
redis.call('PEXPIRE', key, ARGV[3])
return 1
"""

#: What a booking operation answers when the load shows the gates' schedule in force
#: (the caller asks the gate script again), and how many times in a row at most.
_USE_GATE: Any = object()
_GATE_ROUNDS = 8

_BUDGET = """
-- KEYS[1]: the retry budget's hash: first attempts (``r.<bucket>``) and retries
-- (``x.<bucket>``) per bucket of ``width`` seconds of Redis' clock, the window being the
-- last ``n`` buckets (RetryBudget's rule and window, on counts a fleet shares). ARGV:
-- ttl in ms, width, n, ratio, reserve, first attempts a process counted (added first),
-- 1 to spend a retry (0: only add). Returns 1 (spent, or only added) or 0 (refused).
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local width, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket = math.floor(now / width)
local add = tonumber(ARGV[6]) or 0
if add > 0 then redis.call('HINCRBY', key, 'r.' .. bucket, add) end
local result = 1
if ARGV[7] == '1' then
  local names = {}
  for i = bucket - n + 1, bucket do
    names[#names + 1] = 'r.' .. i
    names[#names + 1] = 'x.' .. i
  end
  local got = redis.call('HMGET', key, unpack(names))
  local requests, retries = 0, 0
  for i = 1, #got, 2 do
    requests = requests + (tonumber(got[i]) or 0)
    retries = retries + (tonumber(got[i + 1]) or 0)
  end
  if tonumber(ARGV[5]) + tonumber(ARGV[4]) * requests - retries >= 1 - 1e-9 then
    redis.call('HINCRBY', key, 'x.' .. bucket, 1)
  else
    result = 0
  end
end
local old = {}
for i = bucket - 2 * n, bucket - n do
  old[#old + 1] = 'r.' .. i
  old[#old + 1] = 'x.' .. i
end
redis.call('HDEL', key, unpack(old))
redis.call('PEXPIRE', key, ARGV[1])
return result
"""

#: The buckets of the budget's window (as RetryBudget's).
_BUDGET_BUCKETS = 10

_COUNTS = ("cc", "co", "ca", "cs", "cu")
_SCHEDULE = ("fg", "fe", "fq", "fb", "fu", "fx")
_NO_COUNTS = (0, 0, 0, 0, 0)


class RedisPacerState:
    """A :class:`~surefoot.pacing._pacer.PacerState` shared by a fleet through Redis."""

    does_io = True

    __slots__ = (
        "_budget_guard",
        "_budget_pending",
        "_budget_since",
        "_clock",
        "_conn",
        "_failure",
        "_fallback",
        "_keys",
        "_keys_guard",
        "_views",
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
        #: What the last replies showed of each partition (see :class:`_View`).
        self._views: dict[str, _View] = {}
        #: Logical requests not yet added to the shared retry budget, since when.
        self._budget_pending = 0
        self._budget_since = 0.0
        self._budget_guard = threading.Lock()
        self._clock = _ClockOffset()

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

    def _view(self, partition: str) -> _View:
        view = self._views.get(partition)
        if view is None:
            with self._keys_guard:
                view = self._views.get(partition)
                if view is None:
                    if len(self._views) >= _MAX_KEYS:
                        self._views.clear()
                    view = self._views[partition] = _View()
        return view

    # -- the gate: one script call ---------------------------------------------------------

    def _gate_call(
        self, partition: str, ask: str, *, arrival: bool, now: float, anchor: float
    ) -> Reservation | bool | None:
        """Run ``_GATE`` for ``ask`` (see the script). Returns the slot booked, ``True``
        (the caller's reservation stands) or ``None`` (no schedule in the hash: the
        caller loads the whole state)."""
        if self._fallback.to_merge(partition):
            return None  # the fallback's slots are merged in by a whole load first
        view = self._view(partition)
        successes, oks, mark = view.take()
        try:
            reply = self._conn.run(
                "pacing_gate", _GATE, [self._key(partition)],
                [_TTL_MS, int(arrival), ask, successes, oks,
                 "" if mark is None else repr(mark), _RENEW_LEASE, _RENEW_LATE],
            )
        except BaseException:
            view.give_back(successes, oks, mark)
            raise
        seen = time.monotonic()
        code = int(reply[0])
        store_now = _time(reply[1:3])
        # Redis' clock onto the caller's (a slot so moved is never early).
        offset = self._clock.offset(seen, store_now) + (now - anchor)
        if code == 0:
            return None
        generation = int(reply[3])
        learned = view.saw(seen, offset, _text(reply[5]) or "")
        if learned is not None:
            self._fallback.learned_quota(partition, learned)
        if code == 2:
            return True
        got = Reservation(partition, float(reply[4]) + offset, generation)
        if ask == "new" and len(reply) >= 8:
            sent, since = _count_of(_text(reply[6])), _number(_text(reply[7]))
            if sent and since is not None:
                # The fleet's sends over the counting window, for the fallback's share.
                elapsed = store_now - since
                self._fallback.fleet_sends(
                    partition,
                    sent if elapsed <= _SEND_WINDOW else sent * _SEND_WINDOW / elapsed,
                )
        self._fallback.reserved(partition, None if ask == "new" else got, got, now)
        return got

    def gate(
        self, partition: str, *, arrival: bool, now: float, adaptive: bool
    ) -> tuple[Reservation, Admission | None]:
        """An attempt's start: its logical request's arrival (``arrival``), its slot
        and, when the breaker is quiet, its admission, in one script call; the whole
        state is loaded only when the partition's schedule is not in the hash."""
        anchor = time.monotonic()  # (when ``now`` was read, about)
        if arrival:
            self._count_request(now)
        fallback = self._fallback

        def op(
            engine: LocalPacerState, t: float, local: Callable[[float], float]
        ) -> tuple[Reservation, Admission | None]:
            reservation, admission = engine.gate(
                partition, arrival=arrival, now=t, adaptive=adaptive
            )
            reservation = reservation._replace(at=local(reservation.at))
            if admission is not None and admission.retry_at is not None:
                admission = dataclasses.replace(admission, retry_at=local(admission.retry_at))
            return reservation, admission

        def backend() -> tuple[Reservation, Admission | None]:
            for _ in range(_GATE_ROUNDS):
                got = self._gate_call(
                    partition, "new", arrival=arrival, now=now, anchor=anchor
                )
                if isinstance(got, Reservation):
                    return got, _ALLOWED
                result = self._step(
                    partition, _Pending(op, now, anchor, books=True)
                )
                if result is not _USE_GATE:
                    fallback.reserved(partition, None, result[0], now)
                    return result
            raise StoreBusy("Redis pacing state: the gates' schedule kept changing")

        def local() -> tuple[Reservation, Admission | None]:
            if arrival:
                fallback.on_request(partition, now=now)
            reservation = fallback.reserve(partition, None, now=now, adaptive=adaptive)
            if reservation.at > now:
                return reservation, None
            return reservation, fallback.admit(partition, now=now)

        return self._failure.guard("gate", backend, local)

    # -- one compare-and-set step ------------------------------------------------------

    def _step(self, partition: str, pending: _Pending[T]) -> T:
        """Apply ``pending``'s operation to the partition's stored state, atomically.

        One thread per process and key at a time does the I/O (it holds the key's
        lock); operations that queued up meanwhile are applied by it too, in order, in
        the same compare-and-set: a burst of calls from many threads costs one round of
        scripts, and only other processes cause conflicts."""
        key = self._key(partition)
        ks = self._key_state(key)
        with ks.guard:
            ks.queue.append(pending)
        # Bounded, so that callers queued behind a hung call do not wait for each one
        # (nor past what their request's deadline leaves them).
        if not ks.lock.acquire(timeout=wait_for(2 * self._conn.timeout)):
            with ks.guard:
                if pending in ks.queue:  # not taken up yet: give up on the store
                    ks.queue.remove(pending)
                    raise StoreBusy(
                        "Redis pacing state: this call queued too long behind the "
                        "process's other calls on the key"
                    )
            # Being applied now, by a call bounded by its own timeouts; with a deadline,
            # wait no longer than it leaves (the outcome is then unknown, as after a
            # call that timed out).
            left = wait_for(None)
            if not ks.lock.acquire(timeout=-1 if left is None else left):
                raise StoreBusy("Redis pacing state: this call queued too long behind the "
                                "process's other calls on the key")
        try:
            if not pending.done:
                with ks.guard:
                    batch, ks.queue = ks.queue, []
                self._run(key, partition, batch)
        finally:
            ks.lock.release()
        return pending.outcome()

    def _run(self, key: str, partition: str, batch: list[_Pending[Any]]) -> None:
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

    def _cas(self, key: str, partition: str, batch: list[_Pending[Any]]) -> list[Any]:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > _BACKOFF_AFTER:
                exp = min(attempt - _BACKOFF_AFTER - 1, 5)
                time.sleep(random.uniform(0, _BACKOFF_BASE * 2**exp))
            reply = self._conn.run("pacing_load", _LOAD, [key], [_TTL_MS])
            fields = _fields(reply[0])
            store_now = _time(reply[1:3])
            blob, version = fields.get("s"), fields.get("v", "0")
            engine = _engine(self.pacing, partition, blob)
            clock = time.monotonic()
            mono = self._clock.offset(clock, store_now)
            taken = _take_in(engine, partition, fields, store_now)
            before = engine.export_partition(partition)
            first = batch[0]
            # The caller's clock minus Redis'.
            offset = mono + first.now - first.started
            merged = self._fallback.prepare(
                engine, partition, store_now, functools.partial(_shift, -offset)
            )
            results = self._apply_batch(batch, engine, store_now, mono, fields)
            schedule = engine.shared_schedule(partition, now=store_now)
            state = engine.export_partition(partition)
            fast = _schedule_fields(schedule)
            loaded = tuple(fields.get(name, "") for name in _SCHEDULE)
            if state != before or fast != (loaded if loaded[0] else None):
                limiter = _limiter_state(state)
                # The stored times are replaced when no gate can have booked since the
                # load (no schedule was in force) or the schedule restarted (a pause).
                restarted = not loaded[0] or limiter.get("g") != _limiter_state(before).get("g")
                if not self._save(
                    key, version, json.dumps(state, separators=(",", ":")),
                    "1" if restarted else "0", fast, taken, repr(store_now),
                    _tats(limiter),
                ):
                    continue
            self._fallback.observe(engine, partition, store_now, merged)
            self._view(partition).loaded(schedule, clock, offset)
            return results
        # (not StoreBusy: a key that never stops changing would cost every call this
        # many rounds; the store is left alone for a while instead)
        raise StoreUnavailable(
            f"Redis pacing state: {MAX_ATTEMPTS} compare-and-set conflicts in a row"
        )

    @staticmethod
    def _apply_batch(
        batch: list[_Pending[Any]],
        engine: LocalPacerState,
        store_now: float,
        mono: float,
        fields: dict[str, str] | None = None,
    ) -> list[Any]:
        """``mono``: this process' monotonic clock minus Redis'. ``fields``: the hash
        as loaded (a partition's)."""
        results: list[Any] = []
        for p in batch:
            if p.books and fields is not None and "fg" in fields and fields.get("fb") == "1":
                # The gates may have booked since the load: only the gate script books
                # while their schedule is in force (also when it is due for renewal:
                # the others book from it while one caller renews it, in this write).
                results.append(_USE_GATE)
                continue
            # ``p.now`` was read at ``p.started`` on this process' monotonic clock.
            offset = mono + p.now - p.started
            results.append(p.operation(engine, store_now, functools.partial(_shift, offset)))
        return results

    def _save(
        self,
        key: str,
        version: str,
        state: str,
        restarted: str,
        fast: tuple[str, str, str, str, str, str] | None,
        taken: tuple[int, int, int, int, int],
        since: str,
        tats: dict[str, float],
    ) -> bool:
        args: list[Any] = [version, state, _TTL_MS, restarted]
        args.extend(fast or ("", "", "", "", "", ""))
        args.extend(taken)
        args.append(since or "0")
        for name, tat in tats.items():
            args.extend((name, repr(tat)))
        return int(self._conn.run("pacing_save", _SAVE, [key], args)) == 1

    def _apply(
        self,
        partition: str,
        now: float,
        what: str,
        operation: Operation[T],
        fallback: Callable[[], T],
        done: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``operation`` on the partition in one atomic step; the result is handed
        to ``done`` too. On a store failure: ``fallback()`` (the same operation on the
        local state, failing open) or raise (failing closed)."""

        anchor = time.monotonic()  # (when ``now`` was read, about)

        def backend() -> T:
            result = self._step(partition, _Pending(operation, now, anchor))
            if done is not None:
                done(result)
            return result

        return self._failure.guard(what, backend, fallback)

    # -- the retry budget's deposits ------------------------------------------------------

    def _count_request(self, now: float) -> None:
        if self.pacing.budget is None:
            return
        with self._budget_guard:
            if self._budget_pending == 0:
                self._budget_since = now
            self._budget_pending += 1

    def _take_requests(self, now: float) -> tuple[int, float]:
        with self._budget_guard:
            pending, since = self._budget_pending, self._budget_since
            self._budget_pending = 0
        return pending, now - since

    def _flush_requests(self, now: float) -> None:
        """Add the deposits counted in the process to the shared budget, if they have
        waited :data:`BUDGET_FLUSH` seconds."""
        with self._budget_guard:
            if not self._budget_pending or now - self._budget_since < BUDGET_FLUSH:
                return
        pending, _ = self._take_requests(now)

        # (failing open, the deposits are lost: the local budget counts its own)
        self._failure.guard("on_request", lambda: self._budget_call(pending, spend=False),
                            lambda: True)

    def _budget_call(self, deposits: int, *, spend: bool) -> bool:
        """One ``_BUDGET`` script call: never a compare-and-set, so a fleet's deposits
        and retries do not contend."""
        config = self.pacing.budget
        assert config is not None
        buckets = _BUDGET_BUCKETS
        return int(self._conn.run(
            "pacing_budget", _BUDGET, [self._budget_key()],
            [_TTL_MS, repr(config.window / buckets), buckets, repr(config.ratio),
             repr(config.min_retries_per_second * config.window), deposits,
             1 if spend else 0],
        )) == 1

    # -- PacerState ------------------------------------------------------------------

    def reserve(
        self, partition: str, previous: Reservation | None, *, now: float, adaptive: bool
    ) -> Reservation:
        anchor = time.monotonic()  # (when ``now`` was read, about)
        ask = "new" if previous is None else "rebook"
        if previous is not None and not previous.tentative:
            # Always asked, however recently this process saw the generation: a pause
            # elsewhere in between voided the slot, and the schedule restarted from the
            # pause's end (100 processes x 2 threads at R=150: 27 % of 429s when a
            # waiter's slot stood unasked for 0.25 s after the last reply, 0.7 % asked).
            ask = str(previous.generation)
        fallback = self._fallback

        def op(engine: LocalPacerState, t: float, local: Callable[[float], float]) -> Reservation:
            got = engine.reserve(partition, previous, now=t, adaptive=adaptive)
            if got is previous:
                return got
            return got._replace(at=local(got.at))

        def backend() -> Reservation:
            for _ in range(_GATE_ROUNDS):
                fast = self._gate_call(partition, ask, arrival=False, now=now, anchor=anchor)
                if fast is True:
                    assert previous is not None
                    return previous
                if isinstance(fast, Reservation):
                    return fast
                got = self._step(
                    partition, _Pending(op, now, anchor, books=True)
                )
                if got is not _USE_GATE:
                    fallback.reserved(partition, previous, got, now)
                    return got
            raise StoreBusy("Redis pacing state: the gates' schedule kept changing")

        return self._failure.guard(
            "reserve", backend,
            lambda: fallback.reserve(partition, previous, now=now, adaptive=adaptive),
        )

    def release(self, partition: str, reservation: Reservation, *, now: float) -> None:
        """Give back a slot its holder will not use (see ``RateLimiter.release``): one
        step, the slot moved onto Redis' clock as :meth:`reserve` moves it off."""

        def op(engine: LocalPacerState, t: float, local: Callable[[float], float]) -> None:
            at = reservation.at + (t - local(t))
            engine.release(partition, reservation._replace(at=at), now=t)

        def backend() -> None:
            if not reservation.tentative:
                # The gates' schedule first (a whole load would not see the slot's
                # time given back: the gates' times are kept if later).
                at = reservation.at - self._clock.estimate() - (now - anchor)
                given = self._conn.run(
                    "pacing_release", _RELEASE, [self._key(partition)],
                    [str(reservation.generation), repr(at)],
                )
                if int(given) == 1:
                    return
            self._step(partition, _Pending(op, now, anchor))

        anchor = time.monotonic()
        self._failure.guard(
            "release", backend,
            lambda: self._fallback.release(partition, reservation, now=now),
        )

    def admit(self, partition: str, *, now: float) -> Admission:
        if self.pacing.breaker is None:  # no state to read: the answer is always yes
            return self._fallback.admit(partition, now=now)
        view = self._views.get(partition)
        if view is not None and view.quiet_now():
            return _ALLOWED  # a quiet breaker, seen moments ago: no call

        def op(engine: LocalPacerState, t: float, local: Callable[[float], float]) -> Admission:
            got = engine.admit(partition, now=t)
            if got.retry_at is None:
                return got
            return dataclasses.replace(got, retry_at=local(got.retry_at))

        return self._apply(
            partition, now, "admit", op,
            lambda: self._fallback.admit(partition, now=now),
        )

    def on_request(self, partition: str, *, now: float) -> None:
        self._count_request(now)
        self._apply(
            partition,
            now,
            "on_request",
            lambda engine, t, _: engine.on_request(partition, now=t),
            lambda: self._fallback.on_request(partition, now=now),
        )

    def try_retry(self, *, now: float) -> bool:
        if self.pacing.budget is None:
            return True
        pending, _ = self._take_requests(now)
        return self._failure.guard(
            "try_retry", lambda: self._budget_call(pending, spend=True),
            lambda: self._fallback.try_retry(now=now),
        )

    def report(self, partition: str, report: Report, *, now: float) -> None:
        if self.pacing.budget is not None:
            self._flush_requests(now)
        view = self._views.get(partition)
        if view is not None and view.defer(report, now):
            return
        self._apply(
            partition,
            now,
            "report",
            lambda engine, t, _: engine.report(partition, report, now=t),
            lambda: self._fallback.report(partition, report, now=now),
        )

    def snapshot(self, partition: str | None) -> object:
        """The stored state of a partition, as decoded JSON with what the gates did
        since the last load taken in (``None``: the retry budget's counts per bucket),
        for tests and debugging."""
        key = self._budget_key() if partition is None else self._key(partition)
        reply = self._conn.run("pacing_load", _LOAD, [key], [_TTL_MS])
        fields = _fields(reply[0])
        if partition is None:
            return {name: _count_of(value) for name, value in fields.items()}
        engine = _engine(self.pacing, partition, fields.get("s"))
        _take_in(engine, partition, fields, _time(reply[1:3]))
        return engine.export_partition(partition)


class _ClockOffset:
    """This process' monotonic clock minus Redis' ``TIME``, from the replies: each one
    bounds it from above (``TIME`` was read before the reply arrived), so the least
    bound seen is the closest, and a Redis instant moved by it is never early. The
    estimate may rise by :data:`_DRIFT` per second (the clocks drift apart), and
    follows at once a bound more than :data:`_JUMP` above it (Redis' clock was set
    back)."""

    __slots__ = ("_at", "_guard", "_value")

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._value = math.inf
        self._at = 0.0

    def offset(self, seen: float, store_now: float) -> float:
        """Take the reply read at ``seen`` (monotonic) showing ``store_now`` into
        account; returns the estimate."""
        bound = seen - store_now
        with self._guard:
            value = self._value + _DRIFT * max(seen - self._at, 0.0)
            if bound < value or bound > value + _JUMP:
                value = bound
            self._value, self._at = value, seen
        return value

    def estimate(self) -> float:
        with self._guard:
            return self._value if math.isfinite(self._value) else 0.0


#: See :class:`_ClockOffset` (seconds per second, seconds).
_DRIFT = 0.001
_JUMP = 0.05


class _View:
    """What this process' last replies showed of one partition, and what its answers
    showed since (to ride along on the next gate call)."""

    __slots__ = (
        "guard", "late", "learned", "offset", "oks", "quiet", "quotas", "seen", "successes",
    )

    def __init__(self) -> None:
        self.guard = threading.Lock()
        #: When (``time.monotonic()``) a reply last showed the schedule in force.
        self.seen = -math.inf
        #: The caller's clock minus Redis' at that reply.
        self.offset = 0.0
        self.quotas = ""
        #: The learned quota's interval (for the late test; ``None``: none learned).
        self.learned: float | None = None
        self.quiet = False
        self.successes = 0
        self.oks = 0
        self.late: float | None = None

    def saw(self, seen: float, offset: float, quotas: str) -> Quota | None:
        """A gate call showed the schedule in force; returns the learned quota when it
        is not the one seen last."""
        with self.guard:
            if seen < self.seen:
                return None
            self.seen, self.offset = seen, offset
            self.quiet = True
            if quotas == self.quotas:
                return None
            self.quotas = quotas
            learned = _learned(quotas)
            self.learned = None if learned is None else learned.interval
            return learned

    def loaded(self, schedule: SharedSchedule | None, seen: float, offset: float) -> None:
        """A whole load of the state showed ``schedule`` (``None``: no gate can book)."""
        with self.guard:
            if seen < self.seen:
                return
            if schedule is None or not schedule.quiet:
                self.seen = -math.inf  # ask again next time
                self.quiet = False
                return
            self.seen = seen
            self.quiet = True
            self.offset = offset
            quotas = _quota_fields(schedule.quotas)
            if quotas != self.quotas:
                self.quotas = quotas
                learned = _learned(quotas)
                self.learned = None if learned is None else learned.interval

    def quiet_now(self) -> bool:
        return self.quiet and time.monotonic() - self.seen <= FRESH

    def defer(self, report: Report, now: float) -> bool:
        """Keep ``report`` for the next gate call if all it says is a success while
        the breaker is quiet, an answer that was not a throttle, a late send."""
        if (
            report.learned or report.tighten or report.pause is not None or report.quota
            or report.remaining is not None or report.probe or report.healthy is False
            or report.throttled
        ):
            return False
        with self.guard:
            # (a partition with an adaptive rate has no schedule: not seen)
            if self.seen == -math.inf or (report.healthy and not self.quiet):
                return False
            if report.healthy:
                self.successes += 1
            if report.throttled is False:
                self.oks += 1
            if report.late and self.learned is not None and report.late > max(
                LATE_SLOTS * self.learned, LATE_MIN
            ):
                mark = now - report.age - self.offset + LATE_GRACE
                self.late = mark if self.late is None else max(self.late, mark)
        return True

    def take(self) -> tuple[int, int, float | None]:
        with self.guard:
            taken = self.successes, self.oks, self.late
            self.successes = self.oks = 0
            self.late = None
        return taken

    def give_back(self, successes: int, oks: int, late: float | None) -> None:
        with self.guard:
            self.successes += successes
            self.oks += oks
            if late is not None:
                self.late = late if self.late is None else max(self.late, late)


def _limiter_state(state: dict[str, object] | None) -> dict[str, Any]:
    """The rate limiter's part of an exported partition (empty: none)."""
    limiter = None if state is None else state.get("lim")
    return limiter if isinstance(limiter, dict) else {}


def _tats(limiter: dict[str, Any]) -> dict[str, float]:
    tats = limiter.get("t")
    return {str(k): float(v) for k, v in tats.items()} if isinstance(tats, dict) else {}


def _quota_fields(quotas: tuple[tuple[str, float, float], ...]) -> str:
    return ";".join(f"{name},{interval!r},{tau!r}" for name, interval, tau in quotas)


def _learned(quotas: str) -> Quota | None:
    """The learned quota in a schedule's ``fq`` (as a rate per second and a burst)."""
    for item in quotas.split(";"):
        name, _, rest = item.partition(",")
        if name == "learned":
            try:
                interval, tau = (float(x) for x in rest.split(","))
                return Quota(limit=1.0 / interval, burst=max(round(tau / interval) + 1, 1))
            except (ValueError, ZeroDivisionError, ConfigurationError):
                return None
    return None


def _schedule_fields(
    schedule: SharedSchedule | None,
) -> tuple[str, str, str, str, str, str] | None:
    if schedule is None:
        return None
    recovery = schedule.recovery
    return (
        str(schedule.generation),
        repr(schedule.earliest),
        _quota_fields(schedule.quotas),
        "1" if schedule.quiet else "0",
        repr(schedule.until) if math.isfinite(schedule.until) else "",
        "" if recovery is None else f"{recovery[0]!r},{recovery[1]!r}",
    )


def _take_in(
    engine: LocalPacerState, partition: str, fields: dict[str, str], store_now: float
) -> tuple[int, int, int, int, int]:
    """Take in what the gates did since the last load (the hash's times and counts);
    returns the counts taken in (to be subtracted when the state is written)."""
    tats: dict[str, float] = {}
    for name, value in fields.items():
        if name.startswith("t."):
            number = _number(value)
            if number is not None:
                tats[name[2:]] = number
    taken = tuple(_count_of(fields.get(name)) for name in _COUNTS)
    cc, co, ca, cs, cu = taken
    late = _number(fields.get("cl")) or 0.0
    if not (tats or any(taken) or late):
        return _NO_COUNTS
    since = _number(fields.get("c0"))
    engine.take_in(
        partition,
        Elsewhere(
            tats,
            unpaced=cu,
            unpaced_since=_number(fields.get("cus")) or store_now,
            arrivals=ca,
            sends=cs,
            oks=co,
            successes=cc,
            late_until=late,
        ),
        since=store_now if since is None else min(since, store_now),
        now=store_now,
    )
    return cc, co, ca, cs, cu


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _count_of(value: str | None) -> int:
    number = _number(value)
    return int(number) if number is not None and 0 < number < 2**53 else 0


def _fields(reply: Any) -> dict[str, str]:
    """A flat HGETALL reply as a mapping of text."""
    if not isinstance(reply, (list, tuple)) or len(reply) % 2:
        raise StoreError("unexpected reply from a pacing script: not a hash")
    out: dict[str, str] = {}
    for i in range(0, len(reply), 2):
        name, value = _text(reply[i]), _text(reply[i + 1])
        if name is not None and value is not None:
            out[name] = value
    return out


class _Pending(Generic[T]):
    """One operation waiting for its key's compare-and-set."""

    __slots__ = ("books", "done", "error", "now", "operation", "result", "started")

    def __init__(
        self, operation: Operation[T], now: float, started: float, *, books: bool = False
    ) -> None:
        self.operation = operation
        self.now = now
        #: This process' monotonic clock when ``now`` (the caller's) was read.
        self.started = started
        #: The operation books a slot: see :data:`_USE_GATE`.
        self.books = books
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


def _engine(pacing: PacingPolicy, partition: str, blob: str | None) -> LocalPacerState:
    """A throw-away engine holding one partition's stored state (garbage: a fresh one)."""
    engine = LocalPacerState(pacing)
    state = _loads(blob)
    if state is None:
        return engine
    try:
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
