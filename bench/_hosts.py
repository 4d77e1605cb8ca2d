"""Simulated hosts for the fleet benchmarks: a network to Redis with latency, skewed clocks.

``quota.py --fleet --hosts H`` and ``refresh_storm.py --hosts H`` spread their worker
processes over H simulated hosts (default 4). What makes a host:

* **Its own network path to Redis**: a latency-injecting TCP proxy per host
  (:class:`ProxyProcess`, a process of its own, ``python bench/_hosts.py proxy ...``) in
  front of the one ``redis-server``; the host's workers reach Redis only
  through it. Every chunk read from either side is held for a one-way delay drawn per
  chunk, ``base_h + U(0, jitter)`` ms, then written on; chunks of one direction of one
  connection are never reordered (a chunk waits for the one before it, as on a FIFO
  link). With the default ``--latency-ms 0.5,2`` the jitter is 0.5 ms and the hosts'
  bases are spread evenly over [0.5, 1.5] ms: every one-way delay lies in [0.5, 2] ms,
  host 0 the nearest to Redis, the last host the farthest (see :func:`layout`). The
  connection handshake itself is not delayed. The proxy is one ``epoll`` loop that
  sleeps on a ``timerfd`` until the next chunk is due (microseconds; an ``epoll``
  timeout is whole milliseconds); a chunk's delay runs from the kernel's receive
  timestamp (``SO_TIMESTAMPNS``), so the time the proxy took to wake up is part of the
  hold, not added to it. Per client port it records the time each chunk was actually
  held (from the kernel's receipt to the write) and the round trips (a request burst
  after a reply, or the first), in a shared-memory counters file that the workers read.
  This stands in for ``tc qdisc ... netem``, which this machine's kernel lacks
  (``sch_netem``), and works without root.
* **Its own network namespace** (``--netns auto|on|off``; ``auto``: when root can create
  them, else loopback): namespace ``sfb<pid>h<i>`` joined to the root namespace by a veth
  pair, 10.201.<i>.2 inside, 10.201.<i>.1 outside (default route), with the host's proxy
  listening on 10.201.<i>.1 and the sandbox (the HTTP API) bound to 10.201.0.1, reachable
  from every namespace. Without namespaces every address is 127.0.0.1. No delay is added
  on the HTTP path: the simulated latency is the one between the hosts and Redis.
  Namespaces and veths are removed on exit (``try``/``finally``, ``atexit``, SIGTERM and
  SIGHUP turned into ``SystemExit``), and those of a run that was killed (its pid gone)
  at the next start.
* **Its own clock**: an offset spread evenly over [-skew, +skew] s across the hosts
  (-2, -0.67, +0.67, +2 for 4 hosts and ``--skew-s 2``). It is applied by patching
  ``time.time``, ``time.time_ns``, ``time.monotonic`` and ``time.monotonic_ns`` in the
  host's launcher process before it imports surefoot (:func:`skew_clock`); the workers
  are forked from it. Pacing must keep working, as surefoot's shared pacing state runs on
  Redis ``TIME``. Code that bound a clock function at its import (the standard
  library's ``threading``, ``queue``) keeps the real one: only the offset differs, and
  every duration is the same on both.

**Launchers.** Each host is one process spawned by the parent (:class:`Launchers`): it
makes itself a process group, enters the host's namespace, skews its clock, imports the
target and forks the host's workers from itself (``fork``: 100 workers cost 4
imports of surefoot, not 100). With ``light_main=True`` the launcher is spawned with this
module as its ``__main__`` (not the parent's script, which imports surefoot), so that
nothing imports surefoot before the clock is skewed; the target is then given as
``(module, function)``. The parent ends a host by its process group.

**Costs per attempt** (:class:`RedisCosts`, installed in each worker): redis-py's
``send_packed_command`` (one per round trip: a command, or a pipeline) and surefoot's
``RedisConnection.call`` (one per call the Redis store makes, NOSCRIPT's second round
trip included) are timed per thread, and the pacer's state calls (``reserve``,
``report``..., lock waits included) through a wrapper around ``Pacer.state``. For each
round trip the worker reads its port's ``held`` counter before sending and after the
call, so it knows exactly how long the proxy held that call's request and reply.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import ctypes.util
import dataclasses
import heapq
import itertools
import math
import mmap
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _sandbox_process import QuotaSandbox, SandboxProcess

__all__ = [
    "REAL_CLOCKS",
    "Host",
    "HostsEnv",
    "Launchers",
    "LogTally",
    "ProxyProcess",
    "RedisCosts",
    "layout",
    "skew_clock",
]

#: Default one-way delay range per direction (ms) and clock skew range (s).
LATENCY_MS = (0.5, 2.0)
SKEW_S = 2.0
NETNS_PREFIX = "sfb"
#: The hosts' addresses: 10.<second>.<host>.1 / .2, with the first second octet from
#: 201 up that no address of this machine uses yet (another run's, say).
SUBNETS = range(201, 251)
CLONE_NEWNET = 0x40000000

# -- the counters file shared by a proxy and its host's workers (float64 slots) ----------
H_CHUNKS = 0  # chunks forwarded (both directions)
H_BYTES = 1
H_ROUND_TRIPS = 2  # request bursts: a client chunk after a reply (or the first)
H_NOMINAL = 3  # sum of the delays drawn, s
H_HELD = 4  # sum of the time chunks were actually held, s
H_LATE_MAX = 5  # the most a chunk was written after its due time, s
H_CONNECTIONS = 6
H_HIST = 16  # lateness histogram: LATE_BIN wide bins, the last one open-ended
LATE_BIN = 50e-6
LATE_BINS = 200
HELD = 1024  # + client port: seconds its chunks were held, both directions
ROUND_TRIPS = HELD + 65536  # + client port: round trips
SLOTS = ROUND_TRIPS + 65536
#: A chunk due within this is written now rather than after another wake-up.
SLACK = 20e-6


# -- the layout -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Host:
    """One simulated host (picklable; no surefoot type in it)."""

    index: int
    skew: float  # seconds added to the host's clocks
    base_ms: float  # one-way delay = base + U(0, jitter), per direction, per chunk
    jitter_ms: float
    netns: str | None = None  # the namespace its workers run in (None: the root one)
    address: str = "127.0.0.1"  # where the host's proxy listens (the host side)
    proxy_port: int = 0
    counters: str = ""  # the proxy's counters file

    @property
    def redis_url(self) -> str:
        return f"redis://{self.address}:{self.proxy_port}/0"

    @property
    def mean_one_way_ms(self) -> float:
        return self.base_ms + self.jitter_ms / 2

    def describe(self) -> str:
        where = f"netns {self.netns}" if self.netns else "loopback"
        return (f"host {self.index}: clock {self.skew:+.2f} s, Redis one-way "
                f"{self.base_ms:.2f}-{self.base_ms + self.jitter_ms:.2f} ms (RTT "
                f"~{2 * self.mean_one_way_ms:.2f} ms), {where}, proxy {self.address}:"
                f"{self.proxy_port}")


def layout(hosts: int, latency_ms: Sequence[float] = LATENCY_MS,
           skew_s: float = SKEW_S) -> list[Host]:
    """H hosts: clock offsets evenly over [-skew, +skew]; one-way delays within
    ``latency_ms`` = (lo, hi): a jitter of (hi - lo) / 3 on a per-host base spread evenly
    over [lo, hi - jitter] (one host: the whole range as jitter)."""
    lo, hi = float(latency_ms[0]), float(latency_ms[1])
    if not 0 <= lo <= hi:
        raise ValueError(f"latency range {lo}-{hi} ms")
    if hosts < 1:
        raise ValueError("at least one host")
    if hosts == 1:
        return [Host(0, 0.0, lo, hi - lo)]
    jitter = (hi - lo) / 3
    return [
        Host(
            index=i,
            skew=-skew_s + 2 * skew_s * i / (hosts - 1),
            base_ms=lo + (hi - lo - jitter) * i / (hosts - 1),
            jitter_ms=jitter,
        )
        for i in range(hosts)
    ]


def parse_latency(text: str) -> tuple[float, float]:
    """``"0.5,2"`` -> (0.5, 2.0); ``"1"`` -> (1.0, 1.0)."""
    parts = [float(p) for p in text.split(",") if p.strip()]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(f"expected LO,HI in ms with 0 <= LO <= HI: {text!r}")
    return parts[0], parts[1]


def add_arguments(parser: argparse.ArgumentParser, *, hosts_help: str) -> None:
    """The hosts options shared by quota.py and refresh_storm.py."""
    parser.add_argument("--hosts", type=int, default=0, help=hosts_help)
    parser.add_argument("--latency-ms", type=parse_latency, default=LATENCY_MS,
                        metavar="LO,HI",
                        help="--hosts: one-way delay between a host and Redis, per "
                        "direction, drawn per chunk (0.5,2)")
    parser.add_argument("--skew-s", type=float, default=SKEW_S,
                        help="--hosts: host clocks spread evenly over +-SKEW s (2)")
    parser.add_argument("--netns", choices=("auto", "on", "off"), default="auto",
                        help="--hosts: a network namespace per host (auto: when it works)")


# -- clock skew ---------------------------------------------------------------------------

#: The real clock functions (as this module found them).
REAL_CLOCKS = {name: getattr(time, name)
               for name in ("time", "time_ns", "monotonic", "monotonic_ns")}
_REAL = REAL_CLOCKS
_skew = [0.0]


def skew_clock(offset: float) -> None:
    """Move this process's ``time.time``/``time_ns``/``monotonic``/``monotonic_ns`` by
    ``offset`` seconds (call before importing what should see it)."""
    _skew[0] = offset
    if not offset:
        for name, function in _REAL.items():
            setattr(time, name, function)
        return
    real_time, real_time_ns = _REAL["time"], _REAL["time_ns"]
    real_mono, real_mono_ns = _REAL["monotonic"], _REAL["monotonic_ns"]
    offset_ns = round(offset * 1e9)

    def skewed_time() -> float:
        return real_time() + offset

    def skewed_time_ns() -> int:
        return real_time_ns() + offset_ns

    def skewed_monotonic() -> float:
        return real_mono() + offset

    def skewed_monotonic_ns() -> int:
        return real_mono_ns() + offset_ns

    time.time, time.time_ns = skewed_time, skewed_time_ns  # type: ignore[assignment]
    time.monotonic = skewed_monotonic  # type: ignore[assignment]
    time.monotonic_ns = skewed_monotonic_ns  # type: ignore[assignment]


def clock_skew() -> float:
    """The offset :func:`skew_clock` applied in this process (0.0: none)."""
    return _skew[0]


#: Whether surefoot was already imported when :func:`host_main` skewed the clock.
_surefoot_before_skew = [False]


def surefoot_imported_before_skew() -> bool:
    return _surefoot_before_skew[0]


# -- network namespaces ---------------------------------------------------------------------


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def enter_netns(name: str) -> None:
    """Move the calling thread (call it while the process has one thread) into the named
    network namespace (``/run/netns/<name>``)."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Remove the namespaces and veths of runs whose process is gone (``sfb<pid>...``)."""
    removed: list[str] = []
    if not shutil.which("ip"):
        return removed
    names: list[str] = []
    with contextlib.suppress(OSError):
        names += [n for n in os.listdir("/run/netns") if n.startswith(NETNS_PREFIX)]
    with contextlib.suppress(OSError):
        names += [n for n in os.listdir("/sys/class/net") if n.startswith(NETNS_PREFIX)]
    for name in names:
        digits = name[len(NETNS_PREFIX):].split("h")[0].split("v")[0]
        if not digits.isdigit() or _pid_alive(int(digits)):
            continue
        with contextlib.suppress(OSError):
            if os.path.exists(f"/run/netns/{name}"):
                _ip("netns", "del", name)
            else:
                _ip("link", "del", name)
            removed.append(name)
    return removed


class Netns:
    """One namespace per host, joined to the root namespace by a veth pair."""

    def __init__(self, hosts: int) -> None:
        self.tag = f"{NETNS_PREFIX}{os.getpid()}"
        self.hosts = hosts
        self.created: list[str] = []
        self.links: list[str] = []
        self.subnet = f"10.{SUBNETS[0]}"

    def name(self, i: int) -> str:
        return f"{self.tag}h{i}"

    def address(self, i: int, inside: bool = False) -> str:
        return f"{self.subnet}.{i}.{2 if inside else 1}"

    def _free_subnet(self) -> str:
        listed = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                                text=True, check=False).stdout
        for second in SUBNETS:
            if f" 10.{second}." not in listed:
                return f"10.{second}"
        raise OSError("no free 10.x.0.0/16 for the hosts' addresses")

    def create(self) -> None:
        if self.hosts > 250:
            raise OSError("at most 250 hosts with namespaces")
        self.subnet = self._free_subnet()
        for i in range(self.hosts):
            ns, outer, inner = self.name(i), f"{self.tag}v{i}", f"{self.tag}n{i}"
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self.links.append(outer)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"{self.address(i)}/24", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i, inside=True)}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.address(i))

    def delete(self) -> None:
        for ns in self.created:
            with contextlib.suppress(OSError):
                _ip("netns", "del", ns)
        for link in self.links:  # gone with its peer's namespace, normally
            if os.path.exists(f"/sys/class/net/{link}"):
                with contextlib.suppress(OSError):
                    _ip("link", "del", link)
        self.created, self.links = [], []

    def probe(self, i: int, timeout: float = 5.0) -> None:
        """A process in namespace ``i`` can reach 10.201.0.1 and 10.201.<i>.1 (raises
        if not)."""
        targets = {self.address(0), self.address(i)}
        servers = []
        try:
            for address in targets:
                server = socket.create_server((address, 0))
                servers.append(server)
            code = "; ".join(
                ["import socket"]
                + [f"socket.create_connection({s.getsockname()[:2]!r}, {timeout}).close()"
                   for s in servers]
            )
            done = subprocess.run(["ip", "netns", "exec", self.name(i), sys.executable,
                                   "-c", code], capture_output=True, text=True,
                                  timeout=timeout * 3, check=False)
            if done.returncode != 0:
                raise OSError(f"namespace {self.name(i)} cannot reach the host side: "
                              f"{done.stderr.strip()[-300:]}")
        finally:
            for server in servers:
                server.close()


# -- the latency proxy (runs in its own process) ------------------------------------------


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same
_ANCILLARY = socket.CMSG_SPACE(16)  # one struct timespec


class _Timerfd:
    """A ``timerfd`` (CLOCK_MONOTONIC, the clock of ``time.monotonic``) armed at absolute
    instants: the proxy sleeps in ``epoll`` until the next chunk is due, to the
    microsecond (an ``epoll`` timeout is whole milliseconds)."""

    class _Spec(ctypes.Structure):
        _fields_ = [("interval_s", ctypes.c_long), ("interval_ns", ctypes.c_long),
                    ("value_s", ctypes.c_long), ("value_ns", ctypes.c_long)]

    def __init__(self) -> None:
        self.libc = _libc()
        self.fd = int(self.libc.timerfd_create(1, os.O_NONBLOCK | os.O_CLOEXEC))
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self.spec = self._Spec()

    def arm(self, when: float) -> None:
        when = max(when, 1e-6)  # 0 would disarm it
        seconds = math.floor(when)
        self.spec.value_s, self.spec.value_ns = seconds, int((when - seconds) * 1e9)
        self.libc.timerfd_settime(self.fd, 1, ctypes.byref(self.spec), None)  # ABSTIME

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)


class _End:
    """One socket of a proxied connection, and the delayed chunks to write to it."""

    __slots__ = ("client", "closing", "conn", "last_due", "outbuf", "peer", "queue",
                 "scheduled", "sock")

    def __init__(self, sock: socket.socket, conn: _Conn, client: bool) -> None:
        self.sock, self.conn, self.client = sock, conn, client
        self.peer: _End | None = None
        #: chunks to write here: (due, arrived, nominal delay, data or None for "close")
        self.queue: deque[tuple[float, float, float, bytes | None]] = deque()
        self.last_due = 0.0
        self.scheduled = False
        self.outbuf = b""  # what the socket did not take yet
        self.closing = False


class _Conn:
    __slots__ = ("awaiting", "port")

    def __init__(self, port: int) -> None:
        self.port = port
        self.awaiting = False  # a request went up and no reply came back yet


class _Proxy:
    """A latency-injecting TCP proxy: one ``epoll`` loop, one ``timerfd``."""

    def __init__(self, listen: str, upstream: tuple[str, int], base: float, jitter: float,
                 seed: int, counters: str) -> None:
        self.upstream, self.base, self.jitter = upstream, base, jitter
        self.rng = random.Random(seed)
        handle = open(counters, "r+b")  # noqa: SIM115 - kept for the process's life
        self.mm = mmap.mmap(handle.fileno(), SLOTS * 8)
        self.c = memoryview(self.mm).cast("d")
        self.epoll = select.epoll()
        self.listener = socket.create_server((listen, 0), backlog=4096)
        self.listener.setblocking(False)
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        self.timer = _Timerfd()
        self.epoll.register(self.timer.fd, select.EPOLLIN)
        self.ends: dict[int, _End] = {}
        self.heap: list[tuple[float, int, _End]] = []
        self.seq = itertools.count()
        self.armed = math.inf

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return host, port

    def serve(self, stop: Callable[[], bool]) -> None:
        """Until ``stop()`` (asked about once a second: each syscall counts here)."""
        poll, ends = self.epoll.poll, self.ends
        listener, timer = self.listener.fileno(), self.timer.fd
        check_at = 0.0
        while True:
            if time.monotonic() >= check_at:
                if stop():
                    return
                check_at = time.monotonic() + 1.0
            for fd, event in poll(1.0):
                if fd == timer:
                    self.timer.clear()
                elif fd == listener:
                    self._accept()
                else:
                    end = ends.get(fd)
                    if end is None:
                        continue
                    if event & select.EPOLLOUT:
                        self._drain(end)
                    if event & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self._read(end)
            self._due()

    # -- connections ---------------------------------------------------------------------

    def _prepare(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.listener.accept()
            except BlockingIOError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                sock.close()
                continue
            conn = _Conn(int(peer[1]))
            client, server = _End(sock, conn, True), _End(up, conn, False)
            client.peer, server.peer = server, client
            for end in (client, server):
                self._prepare(end.sock)
                self.ends[end.sock.fileno()] = end
                self.epoll.register(end.sock.fileno(), select.EPOLLIN)
            self.c[H_CONNECTIONS] += 1

    def _close(self, end: _End) -> None:
        fd = end.sock.fileno()
        if fd >= 0:
            self.ends.pop(fd, None)
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)
            end.sock.close()
        end.queue.clear()
        end.outbuf = b""

    def _read(self, end: _End) -> None:
        try:
            data, ancillary, _, _ = end.sock.recvmsg(262144, _ANCILLARY)
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        now = time.monotonic()
        arrived = now
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                seconds, nanos = struct.unpack("@ll", payload[:16])
                # the kernel's receive time (CLOCK_REALTIME), on the monotonic clock
                arrived = min(now, now - (time.time() - (seconds + nanos * 1e-9)))
        peer = end.peer
        assert peer is not None
        if not data:  # EOF or error: close, and the other side after what is in flight
            self._close(end)
            self._put(peer, None, arrived)
            return
        conn = end.conn
        if end.client:
            if not conn.awaiting:
                conn.awaiting = True
                self.c[ROUND_TRIPS + conn.port] += 1
                self.c[H_ROUND_TRIPS] += 1
        else:
            conn.awaiting = False
        self._put(peer, data, arrived)

    def _put(self, end: _End, data: bytes | None, arrived: float) -> None:
        """Write ``data`` to ``end`` (``None``: close it) after a delay from ``arrived``."""
        nominal = self.base + self.rng.random() * self.jitter
        due = max(arrived + nominal, end.last_due)  # never overtake the chunk before
        end.last_due = due
        end.queue.append((due, arrived, nominal, data))
        if not end.scheduled:
            end.scheduled = True
            self._push(due, end)

    # -- the schedule ----------------------------------------------------------------------

    def _push(self, due: float, end: _End) -> None:
        heapq.heappush(self.heap, (due, next(self.seq), end))
        if due < self.armed:
            self.armed = due
            self.timer.arm(due)

    def _due(self) -> None:
        heap = self.heap
        now = time.monotonic()
        while heap and heap[0][0] <= now + SLACK:
            self._flush(heapq.heappop(heap)[2], now)
            now = time.monotonic()
        if heap and heap[0][0] != self.armed:
            self.armed = heap[0][0]
            self.timer.arm(self.armed)
        elif not heap:
            self.armed = math.inf

    def _flush(self, end: _End, now: float) -> None:
        queue, c = end.queue, self.c
        port = end.conn.port
        while queue and queue[0][0] <= now + SLACK:
            due, arrived, nominal, data = queue.popleft()
            if data is None:
                end.closing = True
                if not end.outbuf:
                    self._close(end)
                continue
            if end.sock.fileno() < 0:
                continue
            # counted before the write: a worker that has the reply reads it complete
            written = time.monotonic()
            held = written - arrived
            late = max(0.0, written - due)
            c[HELD + port] += held
            c[H_CHUNKS] += 1
            c[H_BYTES] += len(data)
            c[H_NOMINAL] += nominal
            c[H_HELD] += held
            if late > c[H_LATE_MAX]:
                c[H_LATE_MAX] = late
            c[H_HIST + min(int(late / LATE_BIN), LATE_BINS - 1)] += 1
            self._write(end, data)
        if queue:
            self._push(queue[0][0], end)
        else:
            end.scheduled = False

    def _write(self, end: _End, data: bytes) -> None:
        if end.outbuf:
            end.outbuf += data
            return
        try:
            sent = end.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(end)
            return
        if sent < len(data):
            end.outbuf = data[sent:]
            self.epoll.modify(end.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def _drain(self, end: _End) -> None:
        try:
            sent = end.sock.send(end.outbuf)
        except BlockingIOError:
            return
        except OSError:
            self._close(end)
            return
        end.outbuf = end.outbuf[sent:]
        if not end.outbuf:
            if end.closing:
                self._close(end)
            else:
                self.epoll.modify(end.sock.fileno(), select.EPOLLIN)


def proxy_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="_hosts.py proxy",
                                     description="a latency-injecting TCP proxy")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--upstream", required=True, help="HOST:PORT")
    parser.add_argument("--base-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--counters", required=True, help="the counters file (made by "
                        "make_counters)")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    proxy = _Proxy(args.listen, (host, int(port)), args.base_ms / 1000, args.jitter_ms / 1000,
                   args.seed, args.counters)
    stopping = [False]

    def _stop(signum: int, frame: Any) -> None:
        stopping[0] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    bound = proxy.address
    print(f"{bound[0]}:{bound[1]}", flush=True)
    parent = os.getppid()
    proxy.serve(lambda: stopping[0] or os.getppid() != parent)  # also when orphaned
    return 0


def make_counters(path: str) -> None:
    with open(path, "wb") as handle:
        handle.truncate(SLOTS * 8)


class Counters:
    """A read-only view of a proxy's counters file."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as handle:
            self.mm = mmap.mmap(handle.fileno(), SLOTS * 8, access=mmap.ACCESS_READ)
        self.c = memoryview(self.mm).cast("d")

    def held(self, port: int) -> float:
        return float(self.c[HELD + port])

    def header(self) -> list[float]:
        return list(self.c[:H_HIST + LATE_BINS])


class ProxyProcess(SandboxProcess):
    """``python bench/_hosts.py proxy ...``: prints ``address:port`` first."""

    def __init__(self, host: Host, upstream: str, seed: int) -> None:
        super().__init__()
        self.host, self.upstream, self.seed = host, upstream, seed
        self.address = ""
        self.port = 0

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "proxy", "--listen",
                self.host.address, "--upstream", self.upstream,
                "--base-ms", repr(self.host.base_ms), "--jitter-ms", repr(self.host.jitter_ms),
                "--seed", str(self.seed), "--counters", self.host.counters]

    def __enter__(self) -> ProxyProcess:
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)
        try:
            line = self._first_line().strip()
            address, _, port = line.rpartition(":")
            if address != self.host.address or not port.isdigit():
                raise RuntimeError(f"the proxy printed {line!r}")
            self.address, self.port = address, int(port)
        except BaseException:
            self.stop()
            raise
        return self


# -- a sandbox bound to another address than 127.0.0.1 ----------------------------------


class _Bound:
    """A sandbox subprocess bound to ``bind`` (``--host``)."""

    bind = "127.0.0.1"
    process: subprocess.Popen[str] | None
    url: str
    command: Callable[[], list[str]]
    url_from: Callable[[str], str]
    _first_line: Callable[[], str]
    stop: Callable[[], None]

    def _enter_bound(self) -> None:
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, text=True)
        try:
            self.url = self.url_from(self._first_line())
            if not self.url.startswith(f"http://{self.bind}:"):
                raise RuntimeError(f"sandbox printed {self.url!r}, not an address of "
                                   f"{self.bind}")
        except BaseException:
            self.stop()
            raise


class BoundSandbox(_Bound, SandboxProcess):
    def __init__(self, bind: str, options: Sequence[str] = ()) -> None:
        super().__init__([*options, "--host", bind])
        self.bind = bind

    def __enter__(self) -> BoundSandbox:
        self._enter_bound()
        return self


class BoundQuotaSandbox(_Bound, QuotaSandbox):
    def __init__(self, rate: float, burst: int, bind: str) -> None:
        super().__init__(rate, burst)
        self.options += ["--host", bind]
        self.bind = bind

    def __enter__(self) -> BoundQuotaSandbox:
        self._enter_bound()
        return self


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process (``/proc``), ``None`` if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine so far, all cores (``/proc/stat``)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / tick, sum(values) / tick


def _threads(pid: int) -> list[int]:
    """The process's threads (Linux: ``/proc/<pid>/task``; else just ``pid``). A niceness
    or a scheduling class is a thread's own on Linux: set on ``pid`` alone, it leaves the
    threads the process already runs (a threaded server's accept loop, and so every
    handler thread it starts later) as they were."""
    try:
        tids = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return [pid]
    return sorted(tids) or [pid]


def _each_thread(pid: int, apply: Callable[[int], None]) -> bool:
    """``apply(tid)`` to every thread of the process; whether it was done (``False``
    when the system refused, e.g. not root)."""
    try:
        for tid in _threads(pid):
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                apply(tid)
    except (OSError, AttributeError):
        return False
    return True


def prioritize(pid: int, niceness: int) -> bool:
    """Renice a process, every thread of it (threads it starts later inherit the
    niceness of the thread starting them; root only: lowering the niceness); whether it
    was done."""
    return _each_thread(pid, lambda tid: os.setpriority(os.PRIO_PROCESS, tid, niceness))


def realtime(pid: int, priority: int = 10) -> bool:
    """Put a process in the SCHED_FIFO class (root only); whether it was done. For the
    proxies, which stand for the network: they sleep in ``epoll`` between chunks (and the
    kernel keeps 5 % of each second for the other classes anyway)."""
    return _each_thread(
        pid, lambda tid: os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    )


# -- the hosts environment (parent side) --------------------------------------------------


class HostsEnv:
    """The hosts of a run: their namespaces (or loopback), proxies and counters. A context
    manager; everything it made is removed on exit, and at interpreter exit if that was
    skipped. ``upstream``: the Redis server, ``host:port`` (in the root namespace)."""

    def __init__(self, hosts: int, upstream: str, *, latency_ms: Sequence[float] = LATENCY_MS,
                 skew_s: float = SKEW_S, netns: str = "auto", seed: int = 1,
                 nice: int = -10, log: Callable[[str], None] = print) -> None:
        self.plan = layout(hosts, latency_ms, skew_s)
        self.upstream, self.netns_mode, self.seed = upstream, netns, seed
        self.nice, self.log = nice, log
        self.latency_ms, self.skew_s = tuple(latency_ms), skew_s
        self.hosts: list[Host] = []
        self.netns: Netns | None = None
        self.netns_note = ""
        self.proxies: list[ProxyProcess] = []
        self.workdir = ""
        self.sandbox_bind = "127.0.0.1"
        self.proxy_priority = "default"
        self.server_priority = "default"
        self._closed = True

    # -- setup and teardown -------------------------------------------------------------

    def __enter__(self) -> HostsEnv:
        self._closed = False
        atexit.register(self.close)
        _catch_termination()
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        stale = cleanup_stale()
        if stale:
            self.log(f"removed namespaces/links of killed runs: {', '.join(stale)}")
        use_netns = self.netns_mode != "off"
        if use_netns:
            netns = Netns(len(self.plan))
            try:
                if os.geteuid() != 0:
                    raise OSError("not root")
                if not shutil.which("ip"):
                    raise OSError("no ip (iproute2)")
                self.netns = netns  # so that close() removes what create() made
                netns.create()
                for i in range(len(self.plan)):
                    netns.probe(i)
            except (OSError, subprocess.SubprocessError) as exc:
                netns.delete()
                self.netns = None
                if self.netns_mode == "on":
                    raise
                self.netns_note = f"no namespaces ({exc}): loopback proxies"
                use_netns = False
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.workdir = tempfile.mkdtemp(prefix="surefoot-hosts-", dir=shm)
        for host in self.plan:
            counters = os.path.join(self.workdir, f"host{host.index}.counters")
            make_counters(counters)
            address = (self.netns.address(host.index) if use_netns and self.netns
                       else "127.0.0.1")
            planned = dataclasses.replace(
                host, counters=counters, address=address,
                netns=self.netns.name(host.index) if use_netns and self.netns else None)
            proxy = ProxyProcess(planned, self.upstream, self.seed * 1000 + host.index)
            self.proxies.append(proxy)
            proxy.__enter__()
            self.hosts.append(dataclasses.replace(planned, proxy_port=proxy.port))
            assert proxy.process is not None
            if realtime(proxy.process.pid):
                self.proxy_priority = "SCHED_FIFO 10"
            elif prioritize(proxy.process.pid, self.nice):
                self.proxy_priority = f"nice {self.nice}"
        self.sandbox_bind = (self.netns.address(0) if use_netns and self.netns
                             else "127.0.0.1")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                proxy.stop()
        self.proxies = []
        if self.netns is not None:
            self.netns.delete()
            self.netns = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    # -- what the benchmarks ask --------------------------------------------------------

    @property
    def uses_netns(self) -> bool:
        return any(h.netns for h in self.hosts)

    def describe(self) -> list[str]:
        lines = [h.describe() for h in self.hosts]
        if self.netns_note:
            lines.append(self.netns_note)
        return lines

    def prioritize_servers(self, pids: Sequence[int]) -> str:
        """Give the servers (redis-server, the sandbox: other machines in the simulation)
        precedence over the hosts' processes (root only); what was done."""
        done = [prioritize(pid, self.nice) for pid in pids]  # every one, then judge
        if all(done):
            self.server_priority = f"nice {self.nice}"
        return self.server_priority

    def priorities(self) -> str:
        return (f"proxies: {self.proxy_priority}; redis-server and sandbox: "
                f"{self.server_priority}")

    def proxy_pids(self) -> list[int]:
        return [p.process.pid for p in self.proxies if p.process is not None]

    def snapshot(self) -> list[list[float]]:
        """Every proxy's counters header (totals so far)."""
        return [Counters(h.counters).header() for h in self.hosts]

    def info(self) -> dict[str, Any]:
        return {
            "hosts": len(self.hosts),
            "netns": self.uses_netns,
            "netns_note": self.netns_note,
            "latency_ms": list(self.latency_ms),
            "skew_s": self.skew_s,
            "proxy_priority": self.proxy_priority,
            "server_priority": self.server_priority,
            "per_host": [
                {"host": h.index, "skew_s": round(h.skew, 4), "one_way_ms":
                 [round(h.base_ms, 4), round(h.base_ms + h.jitter_ms, 4)],
                 "mean_rtt_ms": round(2 * h.mean_one_way_ms, 4), "netns": h.netns,
                 "proxy": f"{h.address}:{h.proxy_port}"}
                for h in self.hosts
            ],
        }


def proxy_figures(before: list[list[float]], after: list[list[float]]) -> dict[str, Any]:
    """What the proxies did between two :meth:`HostsEnv.snapshot` calls."""
    d = [[a - b for a, b in zip(x, y, strict=True)] for x, y in zip(after, before, strict=True)]
    chunks = sum(h[H_CHUNKS] for h in d)
    hist = [sum(h[H_HIST + i] for h in d) for i in range(LATE_BINS)]

    def late_q(q: float) -> float | None:
        if not chunks:
            return None
        rank, seen = q * sum(hist), 0.0
        for i, count in enumerate(hist):
            seen += count
            if seen >= rank:
                return (i + 1) * LATE_BIN * 1000
        return None

    return {
        "round_trips": round(sum(h[H_ROUND_TRIPS] for h in d)),
        "chunks": round(chunks),
        "bytes": round(sum(h[H_BYTES] for h in d)),
        "connections": round(sum(h[H_CONNECTIONS] for h in d)),
        "mean_nominal_one_way_ms": 1000 * sum(h[H_NOMINAL] for h in d) / chunks if chunks else None,
        "mean_held_one_way_ms": 1000 * sum(h[H_HELD] for h in d) / chunks if chunks else None,
        "late_p50_ms": late_q(0.50),
        "late_p99_ms": late_q(0.99),
        "late_max_ms": 1000 * max(a[H_LATE_MAX] for a in after),
        "round_trips_per_host": [round(h[H_ROUND_TRIPS]) for h in d],
    }


def _catch_termination() -> None:
    """SIGTERM and SIGHUP end the main thread with ``SystemExit``, so that ``finally``
    blocks and ``atexit`` remove the namespaces (Ctrl-C does so as KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _exit)


# -- launchers: one process per host, forking its workers ----------------------------------


@contextlib.contextmanager
def _light_main() -> Iterator[None]:
    """Processes spawned meanwhile run this module as their ``__main__`` (not the
    parent's script, which imports surefoot)."""
    import importlib.machinery

    main = sys.modules["__main__"]
    missing = object()
    saved = main.__dict__.get("__spec__", missing)
    main.__spec__ = importlib.machinery.ModuleSpec(__name__, None)  # type: ignore[assignment]
    try:
        yield
    finally:
        if saved is missing:
            del main.__spec__
        else:
            main.__spec__ = saved  # type: ignore[assignment]


def _resolve(target: Any) -> Any:
    """A function, or ``(module, name)``: imported now."""
    if isinstance(target, tuple):
        import importlib

        return getattr(importlib.import_module(target[0]), target[1])
    return target


def host_main(host: Host, target: Any, jobs: list[tuple[Any, ...]], name: str,
              warm: tuple[Any, tuple[Any, ...]] | None = None) -> None:
    """A host's launcher: its own process group, namespace and clock, then its workers
    (``target(*job)`` each, forked from here). ``warm``: ``(function, args)`` called
    before forking, to load here what every worker would otherwise import lazily (it
    must start no thread: a thread does not survive a fork)."""
    import multiprocessing as mp

    os.setpgid(0, 0)  # the parent ends this host by its process group
    if host.netns:
        enter_netns(host.netns)
    _surefoot_before_skew[0] = "surefoot" in sys.modules
    skew_clock(host.skew)
    target = _resolve(target)  # (module, function): imported now, on the skewed clock
    if warm is not None:
        _resolve(warm[0])(*warm[1])
        if threading.active_count() > 1:
            print(f"_hosts: host {host.index}'s launcher has "
                  f"{threading.active_count()} threads before forking", file=sys.stderr)
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=target, args=job, name=f"{name}-h{host.index}-{i}")
               for i, job in enumerate(jobs)]
    for worker in workers:
        worker.start()
    parent = os.getppid()
    for worker in workers:
        while worker.is_alive():
            worker.join(timeout=1.0)
            if os.getppid() != parent:  # the parent died: end this host
                os.killpg(0, signal.SIGKILL)


class Launchers:
    """One launcher process per host (spawned), each forking its share of the workers."""

    def __init__(self, env: HostsEnv, target: Any, jobs: list[list[tuple[Any, ...]]], *,
                 name: str, light_main: bool,
                 warm: Callable[[Host], tuple[Any, tuple[Any, ...]]] | None = None) -> None:
        import multiprocessing as mp

        self.processes: list[Any] = []
        ctx = mp.get_context("spawn")
        with _light_main() if light_main else contextlib.nullcontext():
            for host, host_jobs in zip(env.hosts, jobs, strict=True):
                args = (host, target, host_jobs, name, None if warm is None else warm(host))
                process = ctx.Process(target=host_main, args=args,
                                      name=f"{name}-host{host.index}")
                process.start()
                self.processes.append(process)

    def stop(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` for the hosts to end, then end them (their groups)."""
        give_up = time.monotonic() + timeout
        for process in self.processes:
            process.join(timeout=max(0.0, give_up - time.monotonic()))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self.processes if p.is_alive()]
            if not alive:
                break
            for process in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
            for process in alive:
                process.join(timeout=10)
        for process in self.processes:  # workers left behind by a launcher that died
            if process.exitcode != 0:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> Launchers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(timeout=0 if exc[0] is not None else 30.0)


def spread(processes: int, hosts: int) -> list[int]:
    """The host of each process: round robin (host ``i % H``)."""
    return [i % hosts for i in range(processes)]


# -- per-attempt costs (in a worker) ------------------------------------------------------


class RedisCosts:
    """Per thread, what the Redis store cost since the thread's last attempt ended:
    ``[redis_s, injected_s, calls, round_trips, store_s, redis_cpu_s, store_cpu_s]``
    (time in ``RedisConnection.call``, the part of it the proxy held the chunks, the
    calls, the round trips (``send_packed_command``), time in the pacer state's methods,
    and the thread's CPU time in the first and in the last).
    :meth:`close_attempt` turns it into one sample, with the thread's count of attempts
    before it (0: its first, which meets the fleet's cold start) and when it ended
    (seconds since :meth:`reset`)."""

    def __init__(self, counters_path: str | None) -> None:
        self.counters = Counters(counters_path) if counters_path else None
        self.local = threading.local()
        self.samples: list[tuple[float, ...]] = []
        self.t0 = time.monotonic()
        self._totals: list[list[int]] = []  # per thread: [round trips], whatever the caller
        self.installed = False

    def _acc(self) -> list[Any]:
        acc = getattr(self.local, "acc", None)
        if acc is None:
            acc = self.local.acc = [0.0, 0.0, 0, 0, 0.0, 0.0, 0.0]
            self.local.ports = None
            self.local.total = [0]
            self._totals.append(self.local.total)
        return acc

    @property
    def round_trips(self) -> int:
        """Round trips (``send_packed_command`` calls) of every thread since :meth:`reset`."""
        return sum(total[0] for total in self._totals)

    def reset(self) -> None:
        """Forget the samples and round trips so far (call while no thread sends)."""
        self.samples = []
        self.t0 = time.monotonic()
        for total in self._totals:
            total[0] = 0

    def install(self) -> None:
        """Patch redis-py's connection and surefoot's ``RedisConnection`` (this process)."""
        import redis.connection

        costs = self
        held = self.counters.held if self.counters is not None else (lambda port: 0.0)
        send = redis.connection.AbstractConnection.send_packed_command

        def send_packed_command(conn: Any, command: Any, check_health: bool = True) -> Any:
            if conn._sock is None:  # connect first (its handshake comes through here)
                connect = getattr(conn, "connect_check_health", None)
                if connect is not None:
                    connect(check_health=False)
                else:
                    conn.connect()
            acc = costs._acc()
            ports = costs.local.ports
            if ports is not None and conn._sock is not None:
                port = conn._sock.getsockname()[1]
                if port not in ports:
                    ports[port] = held(port)
            acc[3] += 1
            costs.local.total[0] += 1
            return send(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
        try:
            from surefoot.stores._redis._connection import RedisConnection
        except ImportError:
            self.installed = True
            return
        call = RedisConnection.call

        def timed_call(conn: Any, function: Any, *args: Any, **kwargs: Any) -> Any:
            acc = costs._acc()
            local = costs.local
            if local.ports is not None:  # nested: counted by the outer call
                return call(conn, function, *args, **kwargs)
            local.ports = {}
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return call(conn, function, *args, **kwargs)
            finally:
                acc[0] += time.perf_counter() - started
                acc[5] += time.thread_time() - cpu
                acc[1] += sum(held(port) - before for port, before in local.ports.items())
                acc[2] += 1
                local.ports = None

        RedisConnection.call = timed_call  # type: ignore[method-assign]
        self.installed = True

    def wrap_state(self, pacer: Any) -> None:
        """Time the calls of ``pacer`` to its (shared) state."""
        pacer.state = _TimedState(pacer.state, self)

    def close_attempt(self) -> None:
        acc = self._acc()
        index = getattr(self.local, "attempts", 0)
        self.local.attempts = index + 1
        self.samples.append((*acc, index, time.monotonic() - self.t0))
        acc[:] = [0.0, 0.0, 0, 0, 0.0, 0.0, 0.0]


class LogTally:
    """Counts the ``surefoot`` logger's warnings and errors by message template, with the
    first formatted message of each (in a worker: did the store fail open?)."""

    def __init__(self) -> None:
        import logging

        class _Handler(logging.Handler):
            def __init__(self, tally: LogTally) -> None:
                super().__init__(logging.WARNING)
                self.tally = tally

            def emit(self, record: logging.LogRecord) -> None:
                key = str(record.msg)[:120]
                counts = self.tally.counts
                counts[key] = counts.get(key, 0) + 1
                if key not in self.tally.samples:
                    self.tally.samples[key] = record.getMessage()[:300]

        self.counts: dict[str, int] = {}
        self.samples: dict[str, str] = {}
        self.handler = _Handler(self)
        logging.getLogger("surefoot").addHandler(self.handler)

    def reset(self) -> None:
        self.counts, self.samples = {}, {}


def merge_tallies(tallies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Reports' ``{"counts": ..., "samples": ...}`` merged: ``{template: {count, sample}}``."""
    merged: dict[str, dict[str, Any]] = {}
    for tally in tallies:
        for key, count in tally["counts"].items():
            entry = merged.setdefault(key, {"count": 0, "processes": 0,
                                            "sample": tally["samples"].get(key, "")})
            entry["count"] += count
            entry["processes"] += 1
    return dict(sorted(merged.items(), key=lambda kv: -kv[1]["count"]))


class _TimedState:
    """A pacer state that times its public methods (the outermost call per thread)."""

    def __init__(self, inner: Any, costs: RedisCosts) -> None:
        self._inner, self._costs = inner, costs
        self._wrapped: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Timed({self._inner!r})"

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name.startswith("_") or not callable(value):
            return value
        wrapped = self._wrapped.get(name)
        if wrapped is None:
            costs = self._costs
            inner = self._inner

            def wrapped(*args: Any, **kwargs: Any) -> Any:
                local = costs.local
                acc = costs._acc()
                if getattr(local, "in_state", False):
                    return getattr(inner, name)(*args, **kwargs)
                local.in_state = True
                started, cpu = time.perf_counter(), time.thread_time()
                try:
                    return getattr(inner, name)(*args, **kwargs)
                finally:
                    acc[4] += time.perf_counter() - started
                    acc[6] += time.thread_time() - cpu
                    local.in_state = False

            self._wrapped[name] = wrapped
        return wrapped


#: See ``added_latency_settled_*`` in :func:`cost_figures` (seconds after the barrier).
SETTLE_S = 5.0


def cost_figures(samples: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Per attempt: added latency (Redis time minus what the proxy held), its parts."""
    if not samples:
        return {}

    def q(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    redis_ms = [1000 * s[0] for s in samples]
    added = [1000 * (s[0] - s[1]) for s in samples]
    # Each thread's later attempts (its first met the fleet's cold start: every process's
    # first contact at the barrier, at once), and the attempts that ended SETTLE_S or
    # more after the barrier (the fleet's first seconds left out).
    later = [a for a, s in zip(added, samples, strict=True) if s[7] > 0]
    settled = [a for a, s in zip(added, samples, strict=True) if s[8] >= SETTLE_S]
    injected = [1000 * s[1] for s in samples]
    store = [1000 * s[4] for s in samples]
    redis_cpu = [1000 * s[5] for s in samples]
    store_cpu = [1000 * s[6] for s in samples]
    calls = [float(s[2]) for s in samples]
    trips = [float(s[3]) for s in samples]
    n = len(samples)
    return {
        "attempts_sampled": n,
        "added_latency_p50_ms": q(added, 0.50),
        "added_latency_p99_ms": q(added, 0.99),
        "added_latency_max_ms": max(added),
        "added_latency_later_p50_ms": q(later, 0.50) if later else None,
        "added_latency_later_p99_ms": q(later, 0.99) if later else None,
        "added_latency_settled_p50_ms": q(settled, 0.50) if settled else None,
        "added_latency_settled_p99_ms": q(settled, 0.99) if settled else None,
        "attempts_settled": len(settled),
        "redis_time_p50_ms": q(redis_ms, 0.50),
        "redis_time_p99_ms": q(redis_ms, 0.99),
        "injected_p50_ms": q(injected, 0.50),
        "injected_p99_ms": q(injected, 0.99),
        "store_time_p50_ms": q(store, 0.50),
        "store_time_p99_ms": q(store, 0.99),
        "redis_cpu_p50_ms": q(redis_cpu, 0.50),
        "redis_cpu_p99_ms": q(redis_cpu, 0.99),
        "store_cpu_p50_ms": q(store_cpu, 0.50),
        "store_cpu_p99_ms": q(store_cpu, 0.99),
        "redis_calls_per_attempt": sum(calls) / n,
        "redis_calls_per_attempt_p99": q(calls, 0.99),
        "round_trips_per_attempt": sum(trips) / n,
        "round_trips_per_attempt_p99": q(trips, 0.99),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["proxy"]:
        sys.exit(proxy_main(sys.argv[2:]))
    if sys.argv[1:2] == ["cleanup"]:
        print("\n".join(cleanup_stale()) or "nothing to remove")
        sys.exit(0)
    sys.exit("usage: _hosts.py proxy --upstream HOST:PORT --base-ms MS --counters PATH | "
             "_hosts.py cleanup")
