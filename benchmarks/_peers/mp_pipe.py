"""``multiprocessing.Pipe`` ping-pong: one child process per worker, ``send``/``recv`` pickles."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HOW = {
    "roundtrip": "conn.send((func, x)); conn.recv()",
    "bandwidth": "conn.send((func, array)); conn.recv()",
}


def _serve(conn: Any) -> None:
    with conn:
        while True:
            msg = conn.recv()
            if msg is None:
                return
            func, arg = msg
            conn.send(func(arg))


@dataclass
class Handle:
    procs: list[Any] = field(default_factory=list)
    conns: list[Any] = field(default_factory=list)


def start(n: int) -> Handle:
    handle = Handle()
    try:
        for _ in range(n):
            here, there = multiprocessing.Pipe()
            proc = multiprocessing.Process(target=_serve, args=(there,), daemon=True)
            proc.start()
            there.close()
            handle.procs.append(proc)
            handle.conns.append(here)
    except BaseException:
        stop(handle)
        raise
    return handle


def ready(handle: Handle, n: int) -> None:
    from benchmarks._tasks import identity

    for conn in handle.conns:
        conn.send((identity, 1))
        conn.recv()


def caller(handle: Handle, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    conn = handle.conns[0]

    def call(x: Any) -> Any:
        conn.send((func, x))
        return conn.recv()

    return call


def stop(handle: Handle) -> None:
    for conn in handle.conns:
        try:
            conn.send(None)
        except OSError:
            pass
        conn.close()
    for proc in handle.procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
