"""Refresh storm: P processes x T threads share one token, and it expires, round after round.

The sandbox runs in a subprocess and counts the token requests it answers (``GET /stats``:
``tokens_issued``); a redis-server is started on a free port. Each contender runs in P
worker processes (spawned; default 4) of T threads (default 64). Every thread keeps one
keep-alive connection to the sandbox and, in each round, gets a token and calls
``GET /protected`` with it; on a 401 it asks for a new token once and calls again. A round
ends when every thread is done.

What makes the token expire, every round:

* round 1: the shared store holds an expired token (the tutorial: a token file with an
  expired token) when the processes start;
* later rounds: the token's lifetime is over on both sides at once: the sandbox forgets
  every token (``POST /admin/revoke-tokens``, so an old token gets 401) and the workers'
  clocks move one token lifetime (3600 s) forward, so the token cached in memory and in
  the store is expired too. (Waiting out a real lifetime would give the same picture.)

Contenders, one after another in the same run against the same sandbox:

* ``tutorial`` — a re-creation of the tutorial's token manager (``AuthenticationManager``):
  per process, "if no token, fetch one" without a lock, a token file written in place,
  and on 401 "forget the token, fetch again";
* ``surefoot_file`` — ``TokenCache`` over ``FileTokenStore`` (one host: flock lease);
* ``surefoot_sqlite`` — ``TokenCache`` over ``SQLiteTokenStore`` (one host);
* ``surefoot_redis`` — ``TokenCache`` over ``RedisTokenStore`` (a fleet).

The store's integrity, every round (surefoot contenders). Each worker wraps its store in
``AuditedStore`` and adds a logging handler (``StoreAudit``) to the ``surefoot`` logger. A
**corrupt read** is any of:

* a worker's ``load()`` of the shared store that returns anything but a valid token
  (a ``Token``; its value the seeded one or one shaped like the sandbox's; finite expiry;
  a version not below one this process already saw, and the same value as every other
  read or write of that version, in any process), or ``None``: a token always exists (the
  parent stores one before the workers start and nothing deletes it);
* a ``load()`` during which the store logged its corruption warning (the file store's
  "is corrupt" / "is unreadable"; SQLite and Redis return ``None`` silently on garbage,
  which the check above catches), or that raised the SQLite store's "not a database
  (corrupt?)" error; such a warning logged outside ``load()`` (in ``save()``'s
  read-modify-write) counts once per warning;
* a token the sandbox refuses with 401 after the one refresh a thread may ask for;
* the parent's own read after the round: not a valid token, the version not moved on,
  or another value than the workers saw for that version.

After every round the parent checks the **modes** of the files holding the token: the
file store's token file, the SQLite database and its ``-wal`` (which holds the token's
pages) must be 0600, and no worker may have logged the file store's "was readable by ...
made it 0600". The other files (the ``.lock``, ``-shm``, ``.setup-lock``) are reported.

Targets, per store: exactly 1 token request per expiry (every round), 0 corrupt reads,
0600 after every round, every call answered 200.

    .venv/bin/python bench/refresh_storm.py [--quick] [--rounds N] [--processes P]
                                            [--threads T] [--contenders a,b]
    .venv/bin/python bench/refresh_storm.py --cycles [--quick]

``--cycles`` is the hardening issue's run: the three stores, 8 processes x 4 threads,
500 expiries each (``--quick``: 5), written to ``bench/results/refresh_storm_cycles.json``
(``refresh_storm_cycles_quick.json``). Otherwise ``bench/results/refresh_storm.json``.

``--hosts H`` (issue 16) spreads the processes over H simulated hosts (``bench/_hosts.py``:
a latency-injecting proxy in front of Redis per host, a network namespace per host when
root can make them, skewed host clocks): ``surefoot_redis`` only, 100 processes x 16
threads, 10 expiries (``--quick``: 20 processes, 3 expiries), every round's token
requests printed; ``bench/results/refresh_storm_hosts.json``
(``refresh_storm_hosts_quick.json``).

    .venv/bin/python bench/refresh_storm.py --hosts 4 [--quick] [--latency-ms 0.5,2]
                                            [--skew-s 2] [--netns auto|on|off]
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import datetime as dt
import http.client
import json
import logging
import math
import multiprocessing
import os
import platform
import re
import stat
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import surefoot
from _env import output, source_state
from _env import version as _version
from _hosts import BoundSandbox, HostsEnv, Launchers, spread
from _hosts import add_arguments as add_hosts_arguments
from _sandbox_process import SandboxProcess
from surefoot.errors import StoreError
from surefoot.sandbox import RedisServer
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis._connection import RedisConnection
from surefoot.stores._redis._tokens import RedisTokenStore
from surefoot.stores._sqlite._connection import SQLiteConnection
from surefoot.stores._sqlite._tokens import SQLiteTokenStore

RESULTS = Path(__file__).resolve().parent / "results"
CONTENDERS = ("tutorial", "surefoot_file", "surefoot_sqlite", "surefoot_redis")
STORES = ("surefoot_file", "surefoot_sqlite", "surefoot_redis")
#: What --hosts runs: the store hosts can share.
HOSTS_CONTENDERS = ("surefoot_redis",)
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"
LIFETIME = 3600.0  # the sandbox's token lifetime; the clocks jump this far (+5 s) a round
DEADLINE = 30.0  # of one thread's call, seconds
SEED_TOKEN = "expired-token"  # the expired token stored before the workers start
#: What the sandbox issues: ``secrets.token_urlsafe(32)``.
SANDBOX_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
PRIVATE = 0o600
#: The files whose mode the parent checks after each round: (name, holds the token).
#: A file that holds the token must be 0600 (when it exists: the ``-wal`` may not yet).
STORE_FILES: dict[str, tuple[tuple[str, str, bool], ...]] = {
    # (where-key, suffix, holds the token)
    "surefoot_file": (("file", "", True), ("file", ".lock", False)),
    "surefoot_sqlite": (("sqlite", "", True), ("sqlite", "-wal", True),
                        ("sqlite", "-shm", False), ("sqlite", ".setup-lock", False)),
    "surefoot_redis": (),
}
#: Fields of a round that go to the JSON's ``per_round`` columns.
ROUND_FIELDS = ("token_requests", "calls", "ok", "unauthorized_seen",
                "unauthorized_after_refresh", "errors", "loads", "corrupt_reads",
                "mode_ok", "store_version", "cache_refreshes", "p50_ms", "p99_ms", "max_ms",
                "round_s")
# -- the tutorial's token manager, re-created -------------------------------------------


class TutorialTokenManager:
    """What the tutorial's ``AuthenticationManager`` does, for a real token endpoint:
    the token file is read once at start (an expired token counts as none); ``get``
    fetches when it holds no token (check-then-fetch, no lock, nothing shared between
    processes but the file it writes in place); ``invalidate`` (after a 401) forgets the
    token and empties the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.token: str | None = None
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if data.get("expires_at", 0) > time.time():
                self.token = data.get("access_token")
        except (FileNotFoundError, ValueError):
            pass

    def get(self, conn: Connection) -> str:
        if not self.token:
            token, lifetime = conn.fetch_token()
            with open(self.path, "w", encoding="utf-8") as handle:
                json.dump({"access_token": token, "expires_at": time.time() + lifetime}, handle)
            self.token = token
        return self.token

    def invalidate(self) -> None:
        self.token = None
        with contextlib.suppress(OSError), open(self.path, "w", encoding="utf-8") as handle:
            json.dump({}, handle)


# -- one thread's keep-alive connection -------------------------------------------------


class Connection:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=DEADLINE)
        self.conn.connect()

    def request(self, method: str, path: str, headers: dict[str, str],
                body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):  # one reconnect if the keep-alive connection was dropped
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=DEADLINE)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def protected(self, token: str) -> int:
        status, _ = self.request("GET", "/protected", {"Authorization": f"Bearer {token}"})
        return status

    def fetch_token(self) -> tuple[str, float]:
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        status, body = self.request(
            "POST", "/oauth/token",
            {"Authorization": f"Basic {basic}",
             "Content-Type": "application/x-www-form-urlencoded"},
            urlencode({"grant_type": "client_credentials"}).encode(),
        )
        if status != 200:
            raise RuntimeError(f"token endpoint answered {status}")
        data = json.loads(body)
        return data["access_token"], float(data["expires_in"])


# -- surefoot's side ----------------------------------------------------------------------


class OffsetClock:
    """The real clock, with wall time moved forward by the round's offset."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset  # a multiprocessing Value, set by the parent per round

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time() + self.offset.value

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:  # pragma: no cover - not used here
        raise NotImplementedError


def make_store(contender: str, where: dict[str, str]) -> Any:
    if contender == "surefoot_file":
        return surefoot.stores.FileTokenStore(where["file"])
    failure = FailureMode("closed", contender)
    if contender == "surefoot_sqlite":
        return SQLiteTokenStore(SQLiteConnection(where["sqlite"]), failure)
    if contender == "surefoot_redis":
        return RedisTokenStore(RedisConnection(where["redis"]), failure)
    raise ValueError(contender)


def cache_key(base_url: str) -> str:
    return f"client_credentials:{CLIENT_ID}@{base_url}/oauth/token"


# -- the audit of the store, in each worker -----------------------------------------------


def valid_token(token: surefoot.oauth.Token) -> bool:
    """A token as this benchmark stores them: the seeded one (version 0) or one shaped
    like the sandbox's, a bearer token with a finite expiry."""
    value = token.access_token
    return (
        ((value == SEED_TOKEN and token.version == 0)
         or (token.version > 0 and SANDBOX_TOKEN.fullmatch(value) is not None))
        and token.token_type.lower() == "bearer"
        and token.expires_at is not None and math.isfinite(token.expires_at)
    )


def warning_kind(message: str) -> str:
    """A ``surefoot`` warning: ``corrupt`` (the file store's "is corrupt" and "is
    unreadable"), ``mode`` (its "was readable by ... made it 0600") or ``other``."""
    text = message.lower()
    if "corrupt" in text or "unreadable" in text:
        return "corrupt"
    if "readable by" in text:
        return "mode"
    return "other"


class StoreAudit(logging.Handler):
    """One worker process's tally of its reads of the shared store, and of the warnings
    the ``surefoot`` logger gets (a handler on it). Counts are per round (:meth:`take`);
    the versions seen are remembered for the whole run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()
        self.tally_lock = threading.Lock()
        self.highest = -1  # the highest version this process read or wrote
        self.versions: dict[int, str] = {}  # version -> fingerprint of its value
        self._reset()

    def _reset(self) -> None:
        self.loads = 0
        self.load_errors = 0
        self.corrupt: collections.Counter[str] = collections.Counter()
        self.warnings: collections.Counter[str] = collections.Counter()
        self.samples: list[str] = []
        self.new_versions: dict[int, str] = {}

    def take(self) -> dict[str, Any]:
        with self.tally_lock:
            tally = {"loads": self.loads, "load_errors": self.load_errors,
                     "corrupt": dict(self.corrupt), "warnings": dict(self.warnings),
                     "samples": self.samples, "new_versions": self.new_versions}
            self._reset()
        return tally

    def _sample(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text[:300])

    # -- logging.Handler ---------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        kind = warning_kind(message)
        with self.tally_lock:
            self.warnings[kind] += 1
            self._sample(f"{record.levelname}: {message}")
            if kind == "corrupt":
                if getattr(self.local, "in_load", False):
                    self.local.warned = True  # counted with its load
                else:
                    self.corrupt["warned_outside_load"] += 1

    # -- what AuditedStore reports ----------------------------------------------------

    def loaded(self, result: object, *, warned: bool, raised: str | None = None) -> None:
        with self.tally_lock:
            self.loads += 1
            kind = None
            if raised is not None:
                if "corrupt" not in raised.lower():
                    self.load_errors += 1  # the call fails: counted as an error there
                    return
                kind = "raised_corrupt"
            elif result is None:
                kind = "none"  # a token always exists (seeded; nothing deletes it)
            elif not isinstance(result, surefoot.oauth.Token):
                kind = "not_a_token"
            elif not valid_token(result):
                kind = "invalid"
            elif result.version < self.highest:
                kind = "stale"
            elif self._conflicts(result):
                kind = "conflict"
            elif warned:
                kind = "warned"
            if kind is not None:
                self.corrupt[kind] += 1
                # A Token's repr shows its fingerprint, never its value.
                what = repr(result) if isinstance(result, surefoot.oauth.Token) else (
                    raised or type(result).__name__)
                self._sample(f"corrupt read ({kind}): {what}")
                return
            assert isinstance(result, surefoot.oauth.Token)
            self.highest = max(self.highest, result.version)

    def saved(self, token: surefoot.oauth.Token) -> None:
        with self.tally_lock:
            if self._conflicts(token):  # a second value written under one version
                self.corrupt["conflict"] += 1
                self._sample(f"written over a version seen with another value: {token!r}")
            self.highest = max(self.highest, token.version)

    def _conflicts(self, token: surefoot.oauth.Token) -> bool:
        known = self.versions.get(token.version)
        if known is None:
            self.versions[token.version] = self.new_versions[token.version] = token.fingerprint
            return False
        return known != token.fingerprint


class AuditedStore:
    """A token store that reports every load and every written token to a
    :class:`StoreAudit`; everything else is passed through unchanged."""

    def __init__(self, store: Any, audit: StoreAudit) -> None:
        self.store = store
        self.audit = audit

    def __repr__(self) -> str:
        return f"AuditedStore({self.store!r})"

    def load(self, key: str) -> surefoot.oauth.Token | None:
        local = self.audit.local
        local.in_load, local.warned = True, False
        try:
            result = self.store.load(key)
        except StoreError as exc:
            self.audit.loaded(None, warned=local.warned, raised=str(exc))
            raise
        finally:
            local.in_load = False
        self.audit.loaded(result, warned=local.warned)
        return result  # type: ignore[no-any-return]

    def save(self, key: str, token: surefoot.oauth.Token, *,
             expected_version: int | None = None) -> bool:
        written = bool(self.store.save(key, token, expected_version=expected_version))
        if written:
            self.audit.saved(token)
        return written

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        return bool(self.store.try_lease(key, owner, ttl))

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        return bool(self.store.renew_lease(key, owner, ttl))

    def release_lease(self, key: str, owner: str) -> None:
        self.store.release_lease(key, owner)


# -- the worker process -----------------------------------------------------------------


def worker(contender: str, where: dict[str, str], base_url: str, threads: int,
           rounds: int, offset: Any, barrier: Any, results: Any) -> None:
    audit: StoreAudit | None = None
    try:
        conns = [Connection(base_url) for _ in range(threads)]
        if contender == "tutorial":
            manager: Any = TutorialTokenManager(where["tutorial"])
        else:
            audit = StoreAudit()
            logging.getLogger("surefoot").addHandler(audit)
            grant = surefoot.oauth.ClientCredentials(
                token_url=f"{base_url}/oauth/token", client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET)
            store = AuditedStore(make_store(contender, where), audit)
            manager = surefoot.oauth.TokenCache(grant, store=store,
                                                clock=OffsetClock(offset), hook=lambda e: None)
            manager.peek()  # loads the stored (expired) token, as a running worker has it
    except BaseException:
        results.put({"error": traceback.format_exc()})
        barrier.abort()
        raise
    for _ in range(rounds):
        barrier.wait(120)  # the parent has expired the token
        refreshes = 0 if audit is None else manager.refreshes
        outcome = storm(contender, manager, conns)
        if audit is not None:
            outcome["audit"] = {**audit.take(), "refreshes": manager.refreshes - refreshes}
        results.put(outcome)
        barrier.wait(120)  # everyone is done: the parent counts
    for conn in conns:
        conn.conn.close()


def storm(contender: str, manager: Any, conns: list[Connection]) -> dict[str, Any]:
    n = len(conns)
    start = threading.Barrier(n)
    latencies: list[float] = [0.0] * n
    statuses: list[int] = [0] * n
    unauthorized = [0] * n
    refused_again = [0] * n  # 401 for the token got after the one allowed refresh
    errors: list[str] = []

    def call(i: int) -> None:
        conn = conns[i]
        try:
            start.wait(60)
            t0 = time.perf_counter()
            if contender == "tutorial":
                status = conn.protected(manager.get(conn))
                if status == 401:
                    unauthorized[i] += 1
                    manager.invalidate()
                    status = conn.protected(manager.get(conn))
            else:
                deadline = time.monotonic() + DEADLINE
                token = manager.get(deadline=deadline)
                status = conn.protected(token.access_token)
                if status == 401:
                    unauthorized[i] += 1
                    token = manager.refresh_if_current(token, deadline=deadline)
                    status = conn.protected(token.access_token)
                    refused_again[i] += status == 401
            latencies[i] = time.perf_counter() - t0
            statuses[i] = status
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])

    pool = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(DEADLINE * 2)
    return {"latencies": latencies, "statuses": statuses,
            "unauthorized": sum(unauthorized), "unauthorized_after_refresh": sum(refused_again),
            "errors": errors}
# -- the parent -------------------------------------------------------------------------


def sandbox_post(base_url: str, path: str) -> None:
    conn = Connection(base_url)
    try:
        status, _ = conn.request("POST", path, {"Content-Length": "0"})
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    finally:
        conn.conn.close()


def tokens_issued(base_url: str) -> int:
    conn = Connection(base_url)
    try:
        _, body = conn.request("GET", "/stats", {})
    finally:
        conn.conn.close()
    return int(json.loads(body)["tokens_issued"])


def seed_expired(contender: str, where: dict[str, str], base_url: str) -> None:
    """The shared state holds an expired token when the processes start."""
    past = time.time() - 60
    if contender == "tutorial":
        with open(where["tutorial"], "w", encoding="utf-8") as handle:
            json.dump({"access_token": SEED_TOKEN, "expires_at": past}, handle)
        return
    store = make_store(contender, where)
    store.save(cache_key(base_url), surefoot.oauth.Token(
        access_token=SEED_TOKEN, expires_at=past, obtained_at=past - LIFETIME))


def file_modes(contender: str, where: dict[str, str]) -> dict[str, str | None]:
    """The permission bits (``"0600"``) of the store's files; ``None``: not there."""
    modes: dict[str, str | None] = {}
    for place, suffix, _ in STORE_FILES.get(contender, ()):
        path = where[place] + suffix
        try:
            modes[os.path.basename(path)] = f"{stat.S_IMODE(os.lstat(path).st_mode):04o}"
        except FileNotFoundError:
            modes[os.path.basename(path)] = None
    return modes


def modes_ok(contender: str, where: dict[str, str], modes: dict[str, str | None]) -> bool:
    """Every file that holds the token is 0600 (the main one must exist)."""
    for place, suffix, private in STORE_FILES.get(contender, ()):
        if not private:
            continue
        mode = modes[os.path.basename(where[place] + suffix)]
        if (mode is None and suffix == "") or (mode is not None and mode != f"{PRIVATE:04o}"):
            return False
    return True


class StoreCheck:
    """The parent's read of the store after each round: a valid token, a version that
    moved on, the same value the workers saw for that version."""

    def __init__(self, contender: str, where: dict[str, str], key: str) -> None:
        self.store = make_store(contender, where)
        self.key = key
        self.version = -1
        self.versions: dict[int, str] = {}  # version -> fingerprint, from every process

    def merge(self, reported: dict[int, str]) -> int:
        """The versions workers saw first this round; conflicting values between them."""
        conflicts = 0
        for version, fingerprint in reported.items():
            if self.versions.setdefault(int(version), fingerprint) != fingerprint:
                conflicts += 1
        return conflicts

    def check(self) -> tuple[int | None, str | None]:
        """The stored version, and what is wrong (``None``: nothing)."""
        try:
            token = self.store.load(self.key)
        except StoreError as exc:
            return None, f"the parent's read failed: {exc}"
        if not isinstance(token, surefoot.oauth.Token) or not valid_token(token):
            return None, f"the parent read {token!r}"
        problem = None
        if token.version <= self.version:
            problem = f"version {token.version} after {self.version}: no new token stored"
        elif self.versions.setdefault(token.version, token.fingerprint) != token.fingerprint:
            problem = f"version {token.version} holds another value than the workers saw"
        self.version = max(self.version, token.version)
        return token.version, problem


def run_contender(contender: str, where: dict[str, str], base_url: str, *, processes: int,
                  threads: int, rounds: int, log: Any,
                  hosts: HostsEnv | None = None) -> dict[str, Any]:
    """One contender's rounds (``hosts``: the processes spread over simulated hosts, each
    host's reaching Redis through its own proxy)."""
    sandbox_post(base_url, "/admin/reset")
    seed_expired(contender, where, base_url)
    audited = contender != "tutorial"
    checker = StoreCheck(contender, where, cache_key(base_url)) if audited else None
    if checker is not None:
        checker.check()  # the seeded token (version 0)
    ctx = multiprocessing.get_context("spawn")
    offset = ctx.Value("d", 0.0)
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    launchers: Launchers | None = None
    procs: list[Any] = []
    if hosts is None:
        procs = [ctx.Process(target=worker, args=(contender, where, base_url, threads, rounds,
                                                      offset, barrier, results))
                 for _ in range(processes)]
        for p in procs:
            p.start()
    else:  # each host's launcher forks its workers, on its clock, in its namespace
        jobs: list[list[tuple[Any, ...]]] = [[] for _ in hosts.hosts]
        for h in spread(processes, len(hosts.hosts)):
            host_where = {**where, "redis": hosts.hosts[h].redis_url}
            jobs[h].append((contender, host_where, base_url, threads, rounds, offset,
                            barrier, results))
        launchers = Launchers(hosts, worker, jobs, name=f"storm-{contender}",
                              light_main=False)
    per_round: list[dict[str, Any]] = []
    # log at most ~10 rounds, and every anomaly; with hosts every round
    every = 1 if hosts is not None else max(1, rounds // 10)
    try:
        for r in range(rounds):
            if r > 0:  # the token's lifetime is over: server side and client side
                sandbox_post(base_url, "/admin/revoke-tokens")
                offset.value = r * (LIFETIME + 5.0)
            before = tokens_issued(base_url)
            t0 = time.perf_counter()
            try:
                barrier.wait(180)
                outcomes = [results.get(timeout=180) for _ in range(processes)]
                wall = time.perf_counter() - t0
                failed = [o["error"] for o in outcomes if "error" in o]
                if failed:
                    raise RuntimeError(f"a worker failed:\n{failed[0]}")
                issued = tokens_issued(base_url) - before
                record = round_record(contender, where, outcomes, issued, wall, checker)
                barrier.wait(60)  # the workers wait here while the parent counts
            except threading.BrokenBarrierError:
                try:
                    reason = results.get(timeout=5).get("error", "?")
                except Exception:
                    reason = "(no report)"
                raise RuntimeError(f"a {contender} worker failed:\n{reason}") from None
            per_round.append(record)
            if record["anomalies"] or r % every == 0 or r == rounds - 1:
                log(f"  {contender:16s} round {r + 1}: {issued:4d} token requests, "
                    f"{record['ok']}/{record['calls']} ok, p99 {record['p99_ms']:.0f} ms"
                    + (f", {record['corrupt_reads']} corrupt reads, modes {record['modes']}"
                       if audited else "")
                    + (f"  << {'; '.join(record['anomalies'])}" if record["anomalies"] else ""))
    except BaseException:
        barrier.abort()  # the workers stop waiting
        raise
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join(5)
        if launchers is not None:
            launchers.stop(timeout=30.0 if len(per_round) == rounds else 0.0)
    return summarise(contender, where, per_round)


def round_record(contender: str, where: dict[str, str], outcomes: list[dict[str, Any]],
                 issued: int, wall: float, checker: StoreCheck | None) -> dict[str, Any]:
    """One round's figures; ``anomalies`` says what was off in it."""
    latencies = [x for o in outcomes for x in o["latencies"]]
    statuses = [s for o in outcomes for s in o["statuses"]]
    errors = [e for o in outcomes for e in o["errors"]]
    record: dict[str, Any] = {
        "token_requests": issued,
        "calls": len(statuses),
        "ok": sum(1 for s in statuses if s == 200),
        "statuses": dict(collections.Counter(str(s) for s in statuses if s != 200)),
        "unauthorized_seen": sum(o["unauthorized"] for o in outcomes),
        "unauthorized_after_refresh": sum(o["unauthorized_after_refresh"] for o in outcomes),
        "errors": len(errors),
        "error_samples": errors[:3],
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * _quantile(latencies, 0.99),
        "max_ms": 1000 * max(latencies),
        "round_s": wall,
        "loads": None, "corrupt_reads": None, "mode_ok": None, "store_version": None,
        "cache_refreshes": None,
    }
    anomalies = []
    if issued != 1:
        anomalies.append(f"{issued} token requests")
    if record["ok"] != record["calls"] or errors:
        anomalies.append(f"{record['calls'] - record['ok']} calls not 200 "
                         f"{record['statuses'] or ''} {errors[:1] or ''}".rstrip())
    if checker is not None:
        audits = [o["audit"] for o in outcomes]
        corrupt: collections.Counter[str] = collections.Counter()
        warnings: collections.Counter[str] = collections.Counter()
        for a in audits:
            corrupt.update(a["corrupt"])
            warnings.update(a["warnings"])
        corrupt["conflict_across_processes"] = sum(checker.merge(a["new_versions"])
                                                   for a in audits)
        corrupt["401_after_refresh"] = record["unauthorized_after_refresh"]
        modes = file_modes(contender, where)  # before the parent's read (it would tighten)
        version, problem = checker.check()
        corrupt["parent_check"] = int(problem is not None)
        corrupt = +corrupt  # drop the zeros
        mode_ok = None if not STORE_FILES[contender] else (
            modes_ok(contender, where, modes) and not warnings["mode"])
        record.update({
            "loads": sum(a["loads"] for a in audits),
            "load_errors": sum(a["load_errors"] for a in audits),
            "corrupt_reads": sum(corrupt.values()),
            "corrupt": dict(corrupt),
            "warnings": dict(+warnings),
            "samples": [s for a in audits for s in a["samples"]][:5]
            + ([problem] if problem else []),
            "modes": modes,
            "mode_ok": mode_ok,
            "store_version": version,
            "cache_refreshes": sum(a["refreshes"] for a in audits),
        })
        if corrupt:
            anomalies.append(f"corrupt reads {dict(corrupt)}")
        if warnings:
            anomalies.append(f"warnings {dict(+warnings)}")
        if mode_ok is False:
            anomalies.append(f"modes {modes}")
    record["anomalies"] = anomalies
    return record


def summarise(contender: str, where: dict[str, str],
              per_round: list[dict[str, Any]]) -> dict[str, Any]:
    requests_ = [x["token_requests"] for x in per_round]
    calls = sum(x["calls"] for x in per_round)
    ok = sum(x["ok"] for x in per_round)
    audited = contender != "tutorial"
    figures: dict[str, Any] = {
        "expiries": len(per_round),
        "token_requests_per_expiry_mean": statistics.fmean(requests_),
        "token_requests_per_expiry_min": min(requests_),
        "token_requests_per_expiry_max": max(requests_),
        "token_requests_total": sum(requests_),
        "rounds_not_1_token_request": sum(1 for x in requests_ if x != 1),
        "calls": calls,
        "ok": ok,
        "ok_ratio": ok / calls,
        "unauthorized_seen": sum(x["unauthorized_seen"] for x in per_round),
        "unauthorized_after_refresh": sum(x["unauthorized_after_refresh"] for x in per_round),
        "errors": sum(x["errors"] for x in per_round),
        "p50_ms": statistics.median(x["p50_ms"] for x in per_round),
        "p99_ms_max": max(x["p99_ms"] for x in per_round),
        "max_ms": max(x["max_ms"] for x in per_round),
    }
    targets: dict[str, bool | None] = {
        "refreshes_per_expiry": all(x == 1 for x in requests_),
        "calls_200": ok == calls,
    }
    if audited:
        corrupt: collections.Counter[str] = collections.Counter()
        warnings: collections.Counter[str] = collections.Counter()
        mode_counts: dict[str, collections.Counter[str]] = {}
        for x in per_round:
            corrupt.update(x["corrupt"])
            warnings.update(x["warnings"])
            for name, mode in x["modes"].items():
                mode_counts.setdefault(name, collections.Counter())[mode or "absent"] += 1
        checked = [x["mode_ok"] for x in per_round if x["mode_ok"] is not None]
        private = [os.path.basename(where[place] + suffix)
                   for place, suffix, holds in STORE_FILES[contender] if holds]
        figures.update({
            "loads": sum(x["loads"] for x in per_round),
            "load_errors": sum(x["load_errors"] for x in per_round),
            "corrupt_reads": sum(corrupt.values()),
            "corrupt_by_kind": dict(corrupt),
            "warnings": dict(warnings),
            "warning_samples": [s for x in per_round for s in x["samples"]][:10],
            "cache_refreshes": sum(x["cache_refreshes"] for x in per_round),
            "final_store_version": per_round[-1]["store_version"],
            "mode_files_0600": private,
            "mode_0600_rounds": sum(checked) if checked else None,
            "mode_rounds_checked": len(checked),
            "modes_seen": {name: dict(c) for name, c in mode_counts.items()},
        })
        targets["corrupt_reads"] = not corrupt
        targets["mode_0600"] = all(checked) if checked else None  # None: no file (Redis)
    figures["targets"] = targets
    figures["target_met"] = all(v for v in targets.values() if v is not None)
    figures["per_round"] = {f: [x[f] for x in per_round] for f in ROUND_FIELDS}
    figures["anomalous_rounds"] = sum(1 for x in per_round if x["anomalies"])
    figures["anomalies"] = [
        {"round": i + 1, **{k: v for k, v in x.items() if k not in ("latencies",)}}
        for i, x in enumerate(per_round) if x["anomalies"]
    ][:20]
    return figures


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "MISSED"


def print_table(figures: dict[str, dict[str, Any]], rounds: int) -> None:
    print()
    header = (f"{'contender':16s} {'tok req/expiry':>15s} {'max':>5s} {'ok':>11s} "
              f"{'401s':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s}  target")
    print(header)
    print("-" * len(header))
    for name, f in figures.items():
        print(f"{name:16s} {f['token_requests_per_expiry_mean']:15.2f} "
              f"{f['token_requests_per_expiry_max']:5d} "
              f"{f['ok']:5d}/{f['calls']:<5d} {f['unauthorized_seen']:6d} "
              f"{f['p50_ms']:7.1f} {f['p99_ms_max']:7.1f} {f['max_ms']:7.1f}  "
              f"{_mark(f['target_met'])}")
    print(f"\n{rounds} expiries each; target: exactly 1 token request per expiry, all calls 200"
          "\n(surefoot: and 0 corrupt reads, 0600 after every round: see below)")


def print_integrity(figures: dict[str, dict[str, Any]], processes: int, threads: int) -> None:
    stores = {name: f for name, f in figures.items() if "corrupt_reads" in f}
    if not stores:
        return
    print(f"\nstore integrity: {processes} processes x {threads} threads per store, the "
          "token expiring every round")
    header = (f"{'store':7s} {'expiries':>8s} {'refreshes/expiry':>16s} {'min':>4s} "
              f"{'max':>4s} {'':6s}  {'corrupt reads':>13s} {'loads':>7s} {'':6s}  "
              f"{'0600 after round':>16s} {'':6s}  {'calls 200':>13s} {'':6s}")
    print(header)
    print("-" * len(header))
    for name, f in stores.items():
        t = f["targets"]
        mode = ("no file" if f["mode_0600_rounds"] is None
                else f"{f['mode_0600_rounds']}/{f['mode_rounds_checked']}")
        print(f"{name.removeprefix('surefoot_'):7s} {f['expiries']:8d} "
              f"{f['token_requests_per_expiry_mean']:16.3f} "
              f"{f['token_requests_per_expiry_min']:4d} {f['token_requests_per_expiry_max']:4d} "
              f"{_mark(t['refreshes_per_expiry']):6s}  "
              f"{f['corrupt_reads']:13d} {f['loads']:7d} {_mark(t['corrupt_reads']):6s}  "
              f"{mode:>16s} {_mark(t['mode_0600']):6s}  "
              f"{f['ok']:>6d}/{f['calls']:<6d} {_mark(t['calls_200']):6s}")
    print("\ntargets: exactly 1 token request per expiry (sandbox count / expiries; min and "
          "max of a round), 0 corrupt reads, 0600 after every round, every call 200")
    for name, f in stores.items():
        seen = ", ".join(f"{file} {'/'.join(sorted(c))}" for file, c in f["modes_seen"].items())
        print(f"  {name.removeprefix('surefoot_'):7s} 0600 checked on: "
              f"{', '.join(f['mode_files_0600']) or '-'}; modes seen: {seen or '-'}; "
              f"401 then refreshed: {f['unauthorized_seen']}; token requests "
              f"{f['token_requests_total']} (caches counted {f['cache_refreshes']}); "
              f"store version {f['final_store_version']}")
        if f["corrupt_by_kind"] or f["warnings"]:
            print(f"          corrupt reads by kind {f['corrupt_by_kind']}, surefoot "
                  f"warnings {f['warnings']}")
            for sample in f["warning_samples"][:5]:
                print(f"          - {sample}")


def machine_info(redis_binary: str) -> dict[str, Any]:
    redis_version = output(redis_binary, "--version", check=False)
    return {
        **source_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "surefoot": surefoot.__version__,
        "redis-py": _version("redis"),
        "redis-server": redis_version,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 expiries per contender (--cycles: 5); about 10 s")
    parser.add_argument("--cycles", action="store_true",
                        help="the hardening run: the three stores, 8 processes x 4 threads, "
                             "500 expiries each (a few minutes); refresh_storm_cycles.json")
    parser.add_argument("--rounds", type=int, default=None,
                        help="expiries per contender (10; --cycles: 500)")
    parser.add_argument("--processes", type=int, default=None, help="(4; --cycles: 8)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per process (64; --cycles: 4)")
    parser.add_argument("--contenders", default="",
                        help=f"comma-separated subset of {', '.join(CONTENDERS)} "
                             "(--cycles: the three surefoot stores)")
    parser.add_argument("--output", type=Path, default=None,
                        help="refresh_storm.json; --cycles: refresh_storm_cycles.json "
                             "(--quick: refresh_storm_cycles_quick.json); --hosts: "
                             "refresh_storm_hosts.json (--quick: refresh_storm_hosts_quick.json)")
    add_hosts_arguments(parser, hosts_help="spread the processes over H simulated hosts "
                        "(bench/_hosts.py: a latency proxy to Redis, a namespace and a "
                        "skewed clock each); surefoot_redis only; 100 processes x 16 "
                        "threads, 10 expiries (--quick: 20 processes, 3 expiries)")
    args = parser.parse_args(argv)
    if args.hosts < 0 or (args.hosts and args.cycles):
        parser.error("--hosts takes a positive number, and not with --cycles")
    if args.rounds is None:
        args.rounds = (5 if args.quick else 500) if args.cycles else (3 if args.quick else 10)
    if args.processes is None:
        args.processes = (20 if args.quick else 100) if args.hosts else (
            8 if args.cycles else 4)
    if args.threads is None:
        args.threads = 16 if args.hosts else 4 if args.cycles else 64
    if args.output is None:
        if args.hosts:
            name = "refresh_storm_hosts_quick.json" if args.quick else "refresh_storm_hosts.json"
        elif args.cycles:
            name = ("refresh_storm_cycles_quick.json" if args.quick
                    else "refresh_storm_cycles.json")
        else:
            name = "refresh_storm.json"
        args.output = RESULTS / name
    if min(args.rounds, args.processes, args.threads) < 1:
        parser.error("--rounds, --processes and --threads must be at least 1")
    default = HOSTS_CONTENDERS if args.hosts else STORES if args.cycles else CONTENDERS
    chosen = [c for c in args.contenders.split(",") if c] or list(default)
    unknown = [c for c in chosen if c not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contenders {unknown}")
    if args.hosts and set(chosen) - set(HOSTS_CONTENDERS):
        parser.error(f"--hosts runs {', '.join(HOSTS_CONTENDERS)} only (the others share "
                     "files, which hosts do not)")
    args.contender_list = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    hosts_info: dict[str, Any] | None = None
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer())
        hosts: HostsEnv | None = None
        if args.hosts:
            upstream = redis_server.url.split("://", 1)[1].split("/", 1)[0]
            hosts = stack.enter_context(HostsEnv(
                args.hosts, upstream, latency_ms=args.latency_ms, skew_s=args.skew_s,
                netns=args.netns))
            sandbox: SandboxProcess = stack.enter_context(BoundSandbox(hosts.sandbox_bind))
            _prioritize_servers(hosts, sandbox, redis_server.url)
            hosts_info = hosts.info()
        else:
            sandbox = stack.enter_context(SandboxProcess())
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="refresh-storm-"))
        info = machine_info(redis_server.binary)
        print(f"surefoot at {info['commit']}" + (" (src/ modified)" if info["src_modified"]
                                                 else ""))
        print(f"python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs; "
              f"{info['redis-server']}")
        print(f"{args.processes} processes x {args.threads} threads, {args.rounds} expiries "
              "per contender" + ("" if hosts is None else
                                 f", over {len(hosts.hosts)} hosts (sandbox at {sandbox.url})"))
        for line in [] if hosts is None else [*hosts.describe(), hosts.priorities()]:
            print(f"  {line}")
        print()
        where = {
            "tutorial": os.path.join(tmp, "auth_token.json"),
            "file": os.path.join(tmp, "tokens.json"),
            "sqlite": os.path.join(tmp, "state.db"),
            "redis": redis_server.url,
        }
        figures: dict[str, dict[str, Any]] = {}
        for contender in args.contender_list:
            figures[contender] = run_contender(
                contender, where, sandbox.url, processes=args.processes,
                threads=args.threads, rounds=args.rounds, log=print, hosts=hosts)
    print_table(figures, args.rounds)
    if hosts_info is not None:
        for name, f in figures.items():
            print(f"{name}: token requests the sandbox answered, per round: "
                  f"{f['per_round']['token_requests']} (target: exactly 1 each)")
    print_integrity(figures, args.processes, args.threads)
    elapsed = time.monotonic() - started
    print(f"({elapsed:.1f} s)")
    result = {
        "machine": info,
        "parameters": {
            "processes": args.processes, "threads": args.threads, "rounds": args.rounds,
            "quick": args.quick, "cycles": args.cycles, "contenders": args.contender_list,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(elapsed, 1),
            "hosts": hosts_info,
            "surefoot_path": os.path.dirname(surefoot.__file__),
        },
        "target": "exactly 1 token request per expiry; every call answered 200; surefoot "
                  "stores: 0 corrupt reads and the token's files 0600 after every round",
        "results": _round(figures),
        "targets_met": {name: f["target_met"] for name, f in figures.items()
                        if name.startswith("surefoot")},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(_dumps(result) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(result["targets_met"].values()) else 1


def _prioritize_servers(hosts: HostsEnv, sandbox: SandboxProcess, redis_url: str) -> None:
    """The sandbox and redis-server stand for other machines: precedence over the hosts'
    processes (``HostsEnv.prioritize_servers``; root only)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        pids = [int(client.info("server")["process_id"])]
    finally:
        client.close()
    if sandbox.process is not None:
        pids.append(sandbox.process.pid)
    hosts.prioritize_servers(pids)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _dumps(value: Any, indent: int = 0) -> str:
    """``json.dumps(value, indent=2)``, but a list of plain values (a round's column) or a
    dict of them on one line."""
    def flat(v: Any) -> bool:
        if isinstance(v, (list, dict)):
            items = v.values() if isinstance(v, dict) else v
            return all(not isinstance(x, (list, dict)) for x in items)
        return True

    pad = "  " * (indent + 1)
    if isinstance(value, dict) and value and not (indent > 1 and flat(value)):
        body = ",\n".join(f"{pad}{json.dumps(k)}: {_dumps(v, indent + 1)}"
                          for k, v in value.items())
        return "{\n" + body + "\n" + "  " * indent + "}"
    if isinstance(value, list) and value and not flat(value):
        body = ",\n".join(pad + _dumps(v, indent + 1) for v in value)
        return "[\n" + body + "\n" + "  " * indent + "]"
    return json.dumps(value, ensure_ascii=False)


if __name__ == "__main__":
    sys.exit(main())
