"""``multiprocessing.Queue`` between processes: the reference for the channel family."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks._tasks import consume, produce

# Items a stream's queue buffers (the same bound as the pydistributed channel's).
STREAM_BUFFER = 1000

HOW = {
    "channel_rt": "q_in.put(x); q_out.get(), a child process echoing q_out.put(q_in.get())",
    "channel_stream": (
        f"producer process q.put(i) N times, consumer process q.get() N times, "
        f"Queue(maxsize={STREAM_BUFFER})"
    ),
}


def _echo(q_in: Any, q_out: Any) -> None:
    while (x := q_in.get()) is not None:
        q_out.put(x)


def _produce(q: Any, n: int, go: Any) -> None:
    go.wait()
    produce(q.put, n)


def _consume(q: Any, n: int, go: Any, out: Any) -> None:
    go.wait()
    out.put(consume(q.get, n))


@dataclass
class Handle:
    q_in: Any
    q_out: Any
    echo: Any


def start(n: int) -> Handle:
    q_in, q_out = multiprocessing.Queue(), multiprocessing.Queue()
    echo = multiprocessing.Process(target=_echo, args=(q_in, q_out), daemon=True)
    echo.start()
    return Handle(q_in, q_out, echo)


def ready(handle: Handle, n: int) -> None:
    handle.q_in.put(1)
    handle.q_out.get(timeout=60)


def channel_caller(handle: Handle) -> Callable[[Any], Any]:
    q_in, q_out = handle.q_in, handle.q_out

    def call(x: Any) -> Any:
        q_in.put(x)
        return q_out.get()

    return call


def channel_stream(handle: Handle, items: int) -> tuple[float, int]:
    """Seconds from the go signal until the consumer has taken ``items``; and their sum."""
    q: Any = multiprocessing.Queue(STREAM_BUFFER)
    out: Any = multiprocessing.Queue()
    go = multiprocessing.Event()
    procs = [
        multiprocessing.Process(target=_produce, args=(q, items, go), daemon=True),
        multiprocessing.Process(target=_consume, args=(q, items, go, out), daemon=True),
    ]
    for proc in procs:
        proc.start()
    try:
        t0 = time.perf_counter()
        go.set()
        total = out.get(timeout=600)
        seconds = time.perf_counter() - t0
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return seconds, total


def stop(handle: Handle) -> None:
    handle.q_in.put(None)
    handle.echo.join(timeout=5)
    if handle.echo.is_alive():
        handle.echo.kill()
        handle.echo.join()
