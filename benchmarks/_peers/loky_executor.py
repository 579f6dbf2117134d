"""loky's reusable executor (spawned workers, cloudpickle)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import loky

from benchmarks._harness import reach_every_worker
from benchmarks._tasks import pid_after

HOW = {
    "roundtrip": "executor.submit(func, x).result()",
    "throughput": "executor.submit(func, x) for all, then .result() each",
    "map": "executor.map(func, items, chunksize=len/(4*workers))",
    "bandwidth": "executor.submit(func, array).result()",
}


def start(n: int) -> Any:
    return loky.get_reusable_executor(max_workers=n, reuse=False)


def ready(ex: Any, n: int) -> None:
    reach_every_worker(lambda delays: ex.map(pid_after, delays), n)


def caller(ex: Any, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(x: Any) -> Any:
        return ex.submit(func, x).result()

    return call


def submit_all(ex: Any, func: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    futures = [ex.submit(func, a) for a in args]
    return [f.result() for f in futures]


def map(ex: Any, func: Callable[[Any], Any], items: list[Any], variant: str) -> list[Any]:
    chunksize = max(1, len(items) // (4 * ex._max_workers))
    return list(ex.map(func, items, chunksize=chunksize))


def stop(ex: Any) -> None:
    ex.shutdown(wait=True)
