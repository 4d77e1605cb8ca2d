"""Order statistics the benchmarks summarise their samples with."""

from __future__ import annotations

import math
import statistics

__all__ = ["jain", "nearest_rank", "quartiles"]


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles (inclusive method); one value: itself twice."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def nearest_rank(values: list[float], q: float) -> float | None:
    """The ``q`` quantile by the nearest-rank method (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def jain(values: list[float]) -> float | None:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else None
