"""``bench/_hosts.py``: the latency proxy delays every chunk and never reorders them; the
hosts' layout and the clock skew.

The proxy runs as the benchmarks run it (a subprocess), in front of an echo server on
loopback; no root, namespace or Redis needed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import _hosts  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="timerfd, SO_TIMESTAMPNS")


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A loopback server echoing what each connection sends, at once."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[:2]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def start_proxy(tmp_path: Path, echo: tuple[str, int], base_ms: float,
                jitter_ms: float) -> _hosts.ProxyProcess:
    counters = str(tmp_path / "counters")
    _hosts.make_counters(counters)
    host = _hosts.Host(0, 0.0, base_ms, jitter_ms, counters=counters)
    return _hosts.ProxyProcess(host, f"{echo[0]}:{echo[1]}", seed=7).__enter__()


def connect(proxy: _hosts.ProxyProcess) -> socket.socket:
    sock = socket.create_connection((proxy.address, proxy.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the proxy closed the connection"
        data += chunk
    return data


def test_each_round_trip_is_delayed_both_ways_and_counted(
    tmp_path: Path, echo: tuple[str, int]
) -> None:
    base_ms, jitter_ms, trips = 5.0, 2.0, 20
    proxy = start_proxy(tmp_path, echo, base_ms, jitter_ms)
    try:
        counters = _hosts.Counters(proxy.host.counters)
        with connect(proxy) as sock:
            port = sock.getsockname()[1]
            rtts = []
            for i in range(trips):
                message = f"ping {i}\n".encode()
                started = time.perf_counter()
                sock.sendall(message)
                assert recv_exactly(sock, len(message)) == message
                rtts.append(time.perf_counter() - started)
            held = counters.held(port)
            header = counters.header()
        # every round trip waited at least the two one-way delays' floor
        assert min(rtts) >= 2 * base_ms / 1000
        assert max(rtts) < 2.0
        # what the proxy says it held: at least the delays drawn, within the round trips
        assert header[_hosts.H_ROUND_TRIPS] == trips
        assert counters.c[_hosts.ROUND_TRIPS + port] == trips
        assert header[_hosts.H_CHUNKS] == 2 * trips
        assert held >= header[_hosts.H_NOMINAL] - 1e-6
        assert header[_hosts.H_NOMINAL] >= 2 * trips * base_ms / 1000
        assert header[_hosts.H_NOMINAL] <= 2 * trips * (base_ms + jitter_ms) / 1000 + 1e-6
        assert held <= sum(rtts)
        figures = _hosts.proxy_figures([[0.0] * len(header)], [header])
        assert base_ms <= figures["mean_nominal_one_way_ms"] <= base_ms + jitter_ms
    finally:
        proxy.stop()


def test_chunks_keep_their_order_whatever_their_delays(
    tmp_path: Path, echo: tuple[str, int]
) -> None:
    # a jitter much larger than the gap between sends: a proxy that scheduled each chunk
    # on its own delay would reorder them
    proxy = start_proxy(tmp_path, echo, base_ms=0.5, jitter_ms=8.0)
    try:
        with connect(proxy) as sock:
            sent = b""
            for i in range(200):
                chunk = f"<{i}>".encode()
                sock.sendall(chunk)
                sent += chunk
                time.sleep(0.0002)
            assert recv_exactly(sock, len(sent)) == sent
            header = _hosts.Counters(proxy.host.counters).header()
        assert header[_hosts.H_CHUNKS] >= 2  # several chunks each way, delayed apart
    finally:
        proxy.stop()


def test_closing_the_client_closes_upstream(tmp_path: Path, echo: tuple[str, int]) -> None:
    proxy = start_proxy(tmp_path, echo, base_ms=1.0, jitter_ms=0.0)
    try:
        for _ in range(3):  # connections come and go
            with connect(proxy) as sock:
                sock.sendall(b"x")
                assert recv_exactly(sock, 1) == b"x"
        assert _hosts.Counters(proxy.host.counters).header()[_hosts.H_CONNECTIONS] == 3
    finally:
        proxy.stop()
    assert proxy.process is None


def test_layout_spreads_clocks_and_delays() -> None:
    hosts = _hosts.layout(4, (0.5, 2.0), 2.0)
    assert [round(h.skew, 3) for h in hosts] == [-2.0, -0.667, 0.667, 2.0]
    for h in hosts:
        assert h.base_ms >= 0.5
        assert h.base_ms + h.jitter_ms <= 2.0 + 1e-9
    assert hosts[0].base_ms == 0.5
    assert hosts[-1].base_ms + hosts[-1].jitter_ms == pytest.approx(2.0)
    (one,) = _hosts.layout(1, (0.5, 2.0), 2.0)
    assert (one.skew, one.base_ms, one.jitter_ms) == (0.0, 0.5, 1.5)
    assert _hosts.parse_latency("0.5,2") == (0.5, 2.0)
    assert _hosts.parse_latency("1") == (1.0, 1.0)


def test_skew_clock_moves_every_clock_function_and_back() -> None:
    real_time, real_mono = time.time(), time.monotonic()
    try:
        _hosts.skew_clock(-2.0)
        assert time.time() - real_time == pytest.approx(-2.0, abs=0.5)
        assert time.monotonic() - real_mono == pytest.approx(-2.0, abs=0.5)
        assert time.time_ns() / 1e9 - real_time == pytest.approx(-2.0, abs=0.5)
        assert time.monotonic_ns() / 1e9 - real_mono == pytest.approx(-2.0, abs=0.5)
        assert _hosts.clock_skew() == -2.0
    finally:
        _hosts.skew_clock(0.0)
    assert time.time() == pytest.approx(_hosts.REAL_CLOCKS["time"](), abs=0.01)
    assert time.monotonic is _hosts.REAL_CLOCKS["monotonic"]
    assert _hosts.clock_skew() == 0.0


def _nice_of_threads(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
            for task in sorted(tasks.iterdir())]


def test_prioritize_renices_every_thread_and_those_they_start() -> None:
    """A niceness is a thread's own on Linux: set on the pid alone, it left a threaded
    server's accept loop (and every handler thread it started) at 0, while the bench
    printed "sandbox: nice -10". Raising it (5) needs no root."""
    code = (
        "import sys, threading, time\n"
        "def child(): time.sleep(30)\n"
        "def server():\n"
        "    sys.stdin.readline()\n"  # started after the renice, by a reniced thread
        "    threading.Thread(target=child, daemon=True).start()\n"
        "    print('started', flush=True); time.sleep(30)\n"
        "threading.Thread(target=server, daemon=True).start()\n"
        "print('ready', flush=True); time.sleep(30)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        assert process.stdout.readline().strip() == "ready"
        assert len(_nice_of_threads(process.pid)) == 2
        assert _hosts.prioritize(process.pid, 5)
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "started"
        nice = _nice_of_threads(process.pid)
        assert len(nice) == 3
        assert nice == [5, 5, 5]
    finally:
        process.kill()
        process.wait()


def test_cost_figures_give_the_p99_after_each_threads_first_attempt() -> None:
    # [redis_s, injected_s, calls, round_trips, store_s, redis_cpu_s, store_cpu_s,
    #  the thread's attempts before, seconds since the start]
    first = [(0.200, 0.002, 1, 1, 0.2, 0.001, 0.001, 0, 0.1)] * 5
    early = [(0.050, 0.002, 1, 1, 0.05, 0.001, 0.001, 1, 1.0)] * 5
    later = [(0.004, 0.002, 1, 1, 0.004, 0.001, 0.001, i, 6.0) for i in range(1, 91)]
    figures = _hosts.cost_figures(first + early + later)
    assert figures["added_latency_p99_ms"] == pytest.approx(198.0)
    assert figures["added_latency_later_p99_ms"] == pytest.approx(48.0)
    assert figures["added_latency_later_p50_ms"] == pytest.approx(2.0)
    assert figures["added_latency_settled_p99_ms"] == pytest.approx(2.0)
    assert figures["attempts_settled"] == 90
