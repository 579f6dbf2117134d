"""``multiprocessing.Pool`` (the platform's default start method)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from benchmarks._harness import reach_every_worker
from benchmarks._tasks import pid_after

HOW = {
    "roundtrip": "pool.apply(func, (x,))",
    "throughput": "pool.apply_async(func, (x,)) for all, then .get() each",
    "map": "pool.map(func, items) (default chunksize)",
    "bandwidth": "pool.apply(func, (array,))",
}


def start(n: int) -> Any:
    return multiprocessing.Pool(n)


def ready(pool: Any, n: int) -> None:
    reach_every_worker(lambda delays: pool.map(pid_after, delays, chunksize=1), n)


def caller(pool: Any, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(x: Any) -> Any:
        return pool.apply(func, (x,))

    return call


def submit_all(pool: Any, func: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    pending = [pool.apply_async(func, (a,)) for a in args]
    return [p.get() for p in pending]


def map(pool: Any, func: Callable[[Any], Any], items: list[Any], variant: str) -> list[Any]:
    return pool.map(func, items)


def stop(pool: Any) -> None:
    pool.close()
    pool.join()
