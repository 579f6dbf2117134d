"""pydistributed, driven only through its public API (``/work/shared/API.md``)."""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pydistributed as dist
from benchmarks._tasks import consume, identity, produce

MAP_VARIANTS = ("batch_size=1", 'batch_size="auto"')
HOW = {
    "startup": "addprocs(n), then remotecall_fetch(identity, p, 1) on each worker",
    "teardown": "rmprocs(workers())",
    "roundtrip": "remotecall_fetch(func, pid, x)",
    "throughput": "remotecall(func, pid, x) round-robin for all, then fetch each",
    "map": "pmap(func, items, batch_size=...)",
    "bandwidth": "remotecall_fetch(func, pid, array)",
    "reduce": "distributed(operator.add, range(N))(identity)",
    "everywhere": 'everywhere("import numpy")',
    "channel_rt": "rc.put(x); rc.take() on RemoteChannel(pid=first worker) (a Channel(1))",
    "channel_stream": (
        "producer worker rc.put(i) N times into RemoteChannel(Channel(1000)) owned by the "
        "consumer worker, which takes N"
    ),
}
# Items a stream's channel buffers (the same bound as the multiprocessing.Queue's).
STREAM_BUFFER = 1000


def start(n: int) -> list[int]:
    return list(dist.addprocs(n))


def ready(pids: list[int], n: int) -> None:
    for pid in pids:
        if dist.remotecall_fetch(identity, pid, 1) != 1:
            raise AssertionError(f"worker {pid} returned a wrong value")


def server_pids(pids: list[int]) -> list[int]:
    """OS process id of the worker that :func:`caller` calls."""
    return [int(dist.remotecall_fetch(os.getpid, pids[0]))]


def caller(pids: list[int], func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    pid = pids[0]

    def call(x: Any) -> Any:
        return dist.remotecall_fetch(func, pid, x)

    return call


def submit_all(pids: list[int], func: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    count = len(pids)
    futures = [dist.remotecall(func, pids[i % count], a) for i, a in enumerate(args)]
    return [dist.fetch(f) for f in futures]


def map(pids: list[int], func: Callable[[Any], Any], items: list[Any], variant: str) -> list[Any]:
    batch_size: int | str = "auto" if "auto" in variant else 1
    return list(dist.pmap(func, items, batch_size=batch_size))


def channel_caller(pids: list[int]) -> Callable[[Any], Any]:
    rc = dist.RemoteChannel(pids[0])

    def call(x: Any) -> Any:
        rc.put(x)
        return rc.take()

    return call


def channel_stream(pids: list[int], items: int) -> tuple[float, int]:
    """Seconds from starting both ends until the consumer has taken ``items``; their sum."""
    if len(pids) < 2:
        raise ValueError("a stream between two workers needs two workers")
    producer, consumer = pids[0], pids[1]
    rc = dist.RemoteChannel(partial(dist.Channel, STREAM_BUFFER), consumer)
    t0 = time.perf_counter()
    done = dist.remotecall(consume, consumer, rc.take, items)
    dist.remotecall(produce, producer, rc.put, items)
    total = dist.fetch(done)
    return time.perf_counter() - t0, total


def reduce(pids: list[int], n: int) -> Any:
    return dist.distributed(operator.add, range(n))(identity)


def everywhere_import(pids: list[int]) -> None:
    dist.everywhere("import numpy")


def stop(pids: list[int]) -> None:
    alive = [p for p in dist.workers() if p != 1]
    if alive:
        dist.rmprocs(alive)
