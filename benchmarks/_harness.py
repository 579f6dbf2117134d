"""Timing and statistics shared by the measurement code (no I/O, no peers)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (mean of the two middle ones for an even count)."""
    data = sorted(values)
    if not data:
        raise ValueError("median of no values")
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of ``values``."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(pct / 100 * len(data)))
    return data[min(rank, len(data)) - 1]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn()`` once; return (seconds, its result)."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def latencies(call: Callable[[Any], Any], arg: Any, calls: int, warmup: int) -> list[float]:
    """Per-call seconds of ``calls`` sequential ``call(arg)`` after ``warmup`` untimed ones.

    Raises:
        AssertionError: when a call does not return ``arg``.
    """
    for _ in range(warmup):
        if call(arg) != arg:
            raise AssertionError("round trip returned a wrong value")
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(calls):
        t0 = clock()
        result = call(arg)
        out.append((clock() - t0) * 1e-9)
        if result != arg:
            raise AssertionError("round trip returned a wrong value")
    return out


def reach_every_worker(
    run_batch: Callable[[list[float]], Iterable[int]], n: int, *, timeout: float = 120.0
) -> int:
    """Run rounds of ``n`` short tasks until ``n`` distinct worker processes have answered.

    For peers that cannot address one worker: ``run_batch(delays)`` must run
    ``pid_after(d)`` for each ``d`` on the pool and return the pids. Returns the rounds used.

    Raises:
        TimeoutError: when fewer than ``n`` workers answered within ``timeout`` seconds.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    rounds = 0
    while len(seen) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen)} of {n} workers answered")
        rounds += 1
        seen.update(run_batch([0.002] * n))
    return rounds


__all__ = ("latencies", "median", "percentile", "reach_every_worker", "timed")
