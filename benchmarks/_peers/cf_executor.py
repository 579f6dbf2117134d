"""``concurrent.futures.ProcessPoolExecutor`` (the platform's default start method)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from benchmarks._harness import reach_every_worker
from benchmarks._tasks import pid_after

HOW = {
    "roundtrip": "executor.submit(func, x).result()",
    "throughput": "executor.submit(func, x) for all, then .result() each",
    "map": "executor.map(func, items, chunksize=...)",
    "bandwidth": "executor.submit(func, array).result()",
}


def start(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=n)


def ready(ex: ProcessPoolExecutor, n: int) -> None:
    reach_every_worker(lambda delays: ex.map(pid_after, delays), n)


def server_pids(ex: ProcessPoolExecutor) -> list[int]:
    """OS process ids of the processes that run the calls (every worker: any may)."""
    return [int(pid) for pid in ex._processes]


def caller(ex: ProcessPoolExecutor, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(x: Any) -> Any:
        return ex.submit(func, x).result()

    return call


def submit_all(ex: ProcessPoolExecutor, func: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    futures = [ex.submit(func, a) for a in args]
    return [f.result() for f in futures]


def map(
    ex: ProcessPoolExecutor, func: Callable[[Any], Any], items: list[Any], variant: str
) -> list[Any]:
    per_quarter = max(1, len(items) // (4 * ex._max_workers))
    chunksize = 1 if variant == "chunksize=1" else per_quarter
    return list(ex.map(func, items, chunksize=chunksize))


def stop(ex: ProcessPoolExecutor) -> None:
    ex.shutdown(wait=True)
