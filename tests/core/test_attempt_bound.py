"""The pieces that end an attempt on time (``surefoot._adapters._deadline``): the lateness
estimate and its margin, the per-request reserve, and the watchdog that shuts down the
socket of an attempt past its end."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from surefoot._adapters._deadline import GRACE, Lateness, Reserve, Watchdog, reserve
from surefoot._core._clock import FakeClock


def test_one_late_attempt_alone_sets_no_margin() -> None:
    late = Lateness()
    now = time.monotonic()
    late.note(now, now - 0.2)  # one stall: a collector's pause, say
    assert late.margin() == 0.0


def test_the_margin_is_a_high_quantile_of_recent_lateness() -> None:
    late = Lateness()
    now = time.monotonic()
    for seconds in (0.010, 0.020, 0.030, 0.200):
        late.note(now, now - seconds)
    assert late.margin() == pytest.approx(0.030)  # the 95th percentile: 0.2 s is an outlier


def test_the_margin_is_capped() -> None:
    late = Lateness()
    now = time.monotonic()
    for _ in range(3):
        late.note(now, now - 5.0)
    assert late.margin() == Lateness.MAX_MARGIN


def test_an_attempt_that_ended_before_its_time_is_not_a_sample() -> None:
    late = Lateness()
    now = time.monotonic()
    for _ in range(3):
        late.note(now - 0.1, now)  # ended 100 ms early (a failure, not a timeout)
    assert late.margin() == 0.0


def test_the_margin_follows_the_95th_percentile_of_the_last_samples() -> None:
    late = Lateness()
    now = time.monotonic()
    for i in range(200):  # the first hundred (up to 0.2 s late) are no longer counted
        late.note(now, now - (0.2 if i < 100 else (i - 100) / 1000))
    assert late.margin() == pytest.approx(0.094)


def test_old_samples_are_forgotten() -> None:
    late = Lateness()
    long_ago = time.monotonic() - Lateness.WINDOW - 1
    for _ in range(3):
        late.note(long_ago, long_ago - 0.05)
    assert late.margin() == 0.0


def test_no_reserve_while_attempts_end_on_time_or_without_a_deadline() -> None:
    assert reserve(FakeClock(), Lateness(), 10.0) is None
    assert reserve(FakeClock(), _late(0.05), None) is None


def _late(seconds: float) -> Lateness:
    late = Lateness()
    now = time.monotonic()
    for _ in range(3):
        late.note(now, now - seconds)
    return late


def test_the_reserve_cuts_only_the_attempts_that_would_end_at_the_deadline() -> None:
    clock = FakeClock()
    spare = Reserve(clock, _late(0.05), deadline=2.0)
    assert spare.cap(0.5) == 0.5  # ends 1.5 s before the deadline
    assert not spare.cut
    assert spare.cap(None) is None
    clock.advance(1.5)
    assert spare.cap(0.5) == pytest.approx(0.45)  # would end at the deadline
    assert spare.cut
    clock.advance(0.02)
    assert spare.cap(0.48) == pytest.approx(0.43)  # its own timeout, 20 ms before it
    clock.advance(0.44)
    assert spare.cap(0.04) == pytest.approx(0.02)  # never less than half of its time


def test_a_timed_out_last_attempt_spends_the_rest_of_the_deadline() -> None:
    """The flow then sees its deadline reached (DeadlineExceeded at once), rather than a
    few milliseconds left to squeeze another attempt into."""
    clock = FakeClock()
    spare = Reserve(clock, _late(0.05), deadline=2.0)
    start = spare.monotonic()
    clock.advance(1.7)
    cap = spare.cap(0.3)
    assert cap is not None
    clock.advance(cap)  # the attempt timed out at its (shortened) limit
    spare.spend()
    assert spare.monotonic() == pytest.approx(start + 2.0 + Reserve.PAST)
    spare.spend()  # once only
    assert spare.monotonic() == pytest.approx(start + 2.0 + Reserve.PAST)
    assert spare.wall() == clock.wall()  # wall time (signatures, HTTP dates) untouched


def test_an_attempt_that_was_not_cut_spends_nothing() -> None:
    clock = FakeClock()
    spare = Reserve(clock, _late(0.05), deadline=2.0)
    start = spare.monotonic()
    spare.cap(0.5)
    clock.advance(0.5)
    spare.spend()
    assert spare.monotonic() == pytest.approx(start + 0.5)


class _Conn:
    """What the watchdog sees of a urllib3 / http.client connection."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock


def test_the_watchdog_cuts_a_blocked_read_at_the_attempt_end() -> None:
    dog = Watchdog()
    ours, theirs = socket.socketpair()
    try:
        ours.settimeout(5)
        watch = dog.watch(time.monotonic() + 0.2)
        watch.attach(_Conn(ours))
        start = time.monotonic()
        got = ours.recv(10)  # nothing comes: returns when the watchdog shuts it down
        took = time.monotonic() - start
        assert got == b""
        assert watch.finish() is True
        assert 0.2 <= took < 0.2 + GRACE + 0.1
    finally:
        ours.close()
        theirs.close()


def test_the_watchdog_leaves_finished_and_detached_attempts_alone() -> None:
    dog = Watchdog()
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        finished = dog.watch(time.monotonic() + 0.05)
        finished.attach(_Conn(pairs[0][0]))
        assert finished.finish() is False
        conn = _Conn(pairs[1][0])
        detached = dog.watch(time.monotonic() + 0.05)
        detached.attach(conn)
        detached.detach(conn)  # back to its pool: another attempt may use it now
        time.sleep(0.2)
        for ours, theirs in pairs:
            theirs.sendall(b"x")
            ours.settimeout(1)
            assert ours.recv(1) == b"x"  # still open
        assert detached.finish() is False
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_the_watchdog_handles_many_attempts_in_any_order() -> None:
    """Attempts registered from many threads, ending in any order: each one past its end
    is cut, none before it."""
    dog = Watchdog()
    cut: list[tuple[float, float]] = []
    lock = threading.Lock()

    def one(delay: float) -> None:
        ours, theirs = socket.socketpair()
        try:
            ours.settimeout(5)
            ends = time.monotonic() + delay
            watch = dog.watch(ends)
            watch.attach(_Conn(ours))
            ours.recv(10)
            with lock:
                cut.append((ends, time.monotonic()))
            watch.finish()
        finally:
            ours.close()
            theirs.close()

    threads = [threading.Thread(target=one, args=(0.05 + (i * 37 % 20) / 100,))
               for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(cut) == 20
    assert all(ended >= ends for ends, ended in cut)
    assert max(ended - ends for ends, ended in cut) < 0.2
