"""Pacing state (limiter, adaptive rate, breaker, demand, retry budget) in Redis.

One Lua script (``_redis_pacing.lua``) holds the logic; each operation is one call of it,
by SHA, atomic on the server. Time is Redis ``TIME``: hosts with skewed clocks agree on
slots. The script returns delays, which are added to the caller's own clock.

Keys: ``<prefix>{<namespace>:<partition>}:pacing`` (a hash, one per partition) and
``<prefix>{<namespace>}:budget``; both expire two hours after their last use.
"""

from __future__ import annotations

import json
import time
from importlib.resources import files
from typing import Any

from surefoot.errors import StoreError
from surefoot.pacing._breaker import Admission
from surefoot.pacing._config import PacingPolicy, Report
from surefoot.pacing._gcra import Reservation
from surefoot.pacing._state import LocalPacerState
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis._connection import RedisConnection

__all__ = ["RedisPacerState"]

_SCRIPT = files(__package__).joinpath("_pacing.lua").read_text(encoding="utf-8")
_DEMAND_WINDOW = 5.0
_TTL_MS = 2 * 3600 * 1000


class RedisPacerState:
    """A :class:`~surefoot.pacing._pacer.PacerState` shared by a fleet through Redis."""

    does_io = True

    __slots__ = ("_budget_args", "_config", "_conn", "_failure", "_local", "namespace", "pacing")

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
        self._local = LocalPacerState(pacing)
        config: dict[str, Any] = {
            "conf": [[q.interval, (q.burst - 1) * q.interval] for q in pacing.quotas],
            "demand": _DEMAND_WINDOW,
            "release_factor": pacing.release_factor,
            "ttl_ms": _TTL_MS,
        }
        if pacing.adaptive is not None:
            ada = pacing.adaptive
            config["ada"] = _no_none(
                {
                    "initial_rate": ada.initial_rate,
                    "floor": ada.floor,
                    "ceiling": ada.ceiling,
                    "beta": ada.beta,
                    "c": ada.c,
                    "max_growth": ada.max_growth,
                }
            )
        if pacing.breaker is not None:
            brk = pacing.breaker
            config["brk"] = _no_none(
                {
                    "failure_threshold": brk.failure_threshold,
                    "failure_ratio": brk.failure_ratio,
                    "window": brk.window,
                    "min_throughput": brk.min_throughput,
                    "open_for": brk.open_for,
                    "half_open_probes": brk.half_open_probes,
                    "close_after": brk.close_after,
                }
            )
        self._config = config
        budget = pacing.budget
        self._budget_args = (
            None
            if budget is None
            else {
                "window": budget.window,
                "ratio": budget.ratio,
                "reserve": budget.min_retries_per_second * budget.window,
                "ttl_ms": _TTL_MS,
            }
        )

    def __repr__(self) -> str:
        return f"RedisPacerState({self._conn!r}, namespace={self.namespace!r})"

    def _key(self, partition: str) -> str:
        return self._conn.key(f"{self.namespace}:{partition}", "pacing")

    def _run(self, key: str, op: str, args: dict[str, Any]) -> Any:
        return self._conn.run(
            "pacing", _SCRIPT, [key], [op, json.dumps(args, separators=(",", ":"))]
        )

    def _call(self, what: str, remote: Any, local: Any) -> Any:
        return self._failure.guard(what, remote, local)

    # -- PacerState ------------------------------------------------------------------

    def reserve(
        self, partition: str, previous: Reservation | None, *, now: float, adaptive: bool
    ) -> Reservation:
        def remote() -> Reservation:
            args = dict(self._config, adaptive=adaptive)
            if previous is not None:
                args["prev"] = previous.generation
            sent = time.monotonic()
            reply = self._run(self._key(partition), "reserve", args)
            # The delay counts from when Redis read its clock, somewhere in the round
            # trip: count it from the reply, so that slots are never early.
            elapsed = time.monotonic() - sent
            delay, generation = _text(reply[0]), int(reply[1])
            if delay == "prev" and previous is not None:
                return previous
            return Reservation(partition, now + elapsed + float(delay), generation)

        return self._call(  # type: ignore[no-any-return]
            "reserve",
            remote,
            lambda: self._local.reserve(partition, previous, now=now, adaptive=adaptive),
        )

    def admit(self, partition: str, *, now: float) -> Admission:
        def remote() -> Admission:
            sent = time.monotonic()
            allowed, state, probe, retry_in = self._run(
                self._key(partition), "admit", self._config
            )
            elapsed = time.monotonic() - sent
            retry = _text(retry_in)
            return Admission(
                bool(int(allowed)),
                _text(state),  # type: ignore[arg-type]
                bool(int(probe)),
                None if retry == "" else now + elapsed + float(retry),
            )

        return self._call(  # type: ignore[no-any-return]
            "admit", remote, lambda: self._local.admit(partition, now=now)
        )

    def on_request(self, partition: str, *, now: float) -> None:
        def remote() -> None:
            # Two steps, each atomic: the budget and the partition live in different
            # Cluster slots.
            if self._budget_args is not None:
                self._run(self._budget_key(), "budget_request", self._budget_args)
            self._run(self._key(partition), "arrive", self._config)

        self._call("on_request", remote, lambda: self._local.on_request(partition, now=now))

    def _budget_key(self) -> str:
        return self._conn.key(self.namespace, "budget")

    def try_retry(self, *, now: float) -> bool:
        if self._budget_args is None:
            return True
        budget_args = self._budget_args
        return bool(
            self._call(
                "try_retry",
                lambda: int(self._run(self._budget_key(), "budget_spend", budget_args)) == 1,
                lambda: self._local.try_retry(now=now),
            )
        )

    def report(self, partition: str, report: Report, *, now: float) -> None:
        args = dict(self._config)
        args.update(
            _no_none(
                {
                    "healthy": report.healthy,
                    "probe": report.probe,
                    "learned": [[q.limit, q.period, q.burst, q.safety] for q in report.learned],
                    "tighten": [list(t) for t in report.tighten],
                    "pause": report.pause,
                    "throttled": report.throttled,
                    "age": report.age,
                }
            )
        )
        self._call(
            "report",
            lambda: self._run(self._key(partition), "report", args),
            lambda: self._local.report(partition, report, now=now),
        )

    def snapshot(self, partition: str) -> dict[str, str]:
        """The partition's raw hash (for tests and debugging)."""
        reply = self._run(self._key(partition), "snapshot", {"ttl_ms": _TTL_MS})
        items = [_text(x) for x in reply]
        return dict(zip(items[::2], items[1::2], strict=False))


def _no_none(d: dict[str, Any]) -> dict[str, Any]:
    # JSON null would reach Lua as cjson.null, which is not nil: leave such keys out.
    return {k: v for k, v in d.items() if v is not None}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii")
    if isinstance(value, (str, int, float)):
        return str(value)
    raise StoreError(f"unexpected reply from the pacing script: {type(value).__name__}")
