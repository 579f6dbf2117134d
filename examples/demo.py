"""A tour of pydistributed on four local worker processes.

Run it with ``bash scripts/demo.sh`` (which sets up a virtual environment first).
"""

from __future__ import annotations

import operator
import time

import pydistributed as dist


def slow_square(x: int) -> int:
    """A stand-in for real work."""
    time.sleep(0.05)
    return x * x


def main() -> None:
    t0 = time.perf_counter()
    ids = dist.addprocs(4)
    print(f"added workers {ids} in {time.perf_counter() - t0:.2f} s; nprocs() = {dist.nprocs()}")

    # remotecall returns a Future at once; fetch waits for the value.
    futures = [dist.remotecall(slow_square, pid, pid) for pid in ids]
    print("squares of the worker ids:", [f.fetch() for f in futures])

    # Closures and lambdas travel by value.
    offset = 100
    print("lambda on a worker:", dist.remotecall_fetch(lambda x: x + offset, ids[1], 1))

    # Workers call each other directly.
    answer = dist.remotecall_fetch(lambda: dist.remotecall_fetch(dist.myid, ids[0]), ids[3])
    print(f"worker {ids[3]} asked worker {ids[0]} for its id: {answer}")

    # Output of workers reaches the master, prefixed.
    dist.remotecall_wait(print, ids[2], "hello from a worker")

    # A Future passed to another worker resolves there from its owner.
    future = dist.remotecall(slow_square, ids[0], 12)
    print("fetched on another worker:", dist.remotecall_fetch(dist.fetch, ids[1], future))

    # Failures come back as RemoteException; the worker keeps serving.
    try:
        dist.remotecall_fetch(lambda: 1 / 0, ids[0])
    except dist.RemoteException as exc:
        print(f"remote failure on worker {exc.pid}: {type(exc.exception).__name__}")
    print("worker still serving:", dist.remotecall_fetch(sum, ids[0], [1, 2, 3]))

    # Parallel patterns.
    t0 = time.perf_counter()
    squares = dist.pmap(slow_square, range(16))
    print(f"pmap of 16 slow squares on 4 workers: {time.perf_counter() - t0:.2f} s -> {squares}")
    total = dist.distributed(operator.add, range(1_000_000))(lambda i: i)
    print("distributed sum of range(10**6):", total)
    dist.everywhere("import math")
    pi = dist.fetchfrom(ids[2], lambda: __import__("__main__").math.pi)
    print("everywhere: math imported in __main__ of every process; on a worker pi =", pi)

    # A RemoteChannel shared by the master and a worker.
    channel = dist.RemoteChannel(lambda: dist.Channel(10), ids[0])
    dist.remote_do(lambda c: [c.put(i * i) for i in range(5)], ids[1], channel)
    print("taken from a remote channel:", [channel.take() for _ in range(5)])

    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        dist.remotecall_fetch(abs, ids[0], -1)
    elapsed = time.perf_counter() - t0
    print(f"{n} sequential remotecall_fetch round trips: {elapsed / n * 1e6:.0f} µs each")

    dist.rmprocs(ids)
    print("workers removed; procs() =", dist.procs())


if __name__ == "__main__":
    main()
