"""The floor: worker processes answering framed pickles over a raw loopback TCP socket."""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks._peers import _wire

_SPAWN = multiprocessing.get_context("spawn")

HOW = {
    "roundtrip": "pickle (func, x) -> sendall -> recv_into -> pickle result back",
    "bandwidth": "sendall(buffer) / recv_into(a reused buffer), no pickling",
}


@dataclass
class Handle:
    listener: socket.socket
    procs: list[Any] = field(default_factory=list)
    socks: list[socket.socket] = field(default_factory=list)
    head: bytearray = field(default_factory=lambda: bytearray(_wire.HEADER.size))
    echo_buffer: Any = None  # reused between echoes of the same size


def start(n: int, *, unix: bool = False) -> Handle:
    """Start ``n`` echo processes connected over loopback TCP (or a Unix socket)."""
    address: int | str
    if unix:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = f"\0pydistributed-bench-{os.getpid()}-{id(listener)}"
        listener.bind(address)
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        address = listener.getsockname()[1]
    listener.listen(n)
    listener.settimeout(60)
    handle = Handle(listener)
    try:
        for _ in range(n):
            # spawn: this also runs inside other peers' sessions, whose threads make fork unsafe
            proc = _SPAWN.Process(target=_wire.serve, args=(address,), daemon=True)
            proc.start()
            handle.procs.append(proc)
        for _ in range(n):
            sock, _addr = listener.accept()
            sock.settimeout(None)
            if not unix:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            handle.socks.append(sock)
    except BaseException:
        stop(handle)
        raise
    return handle


def ready(handle: Handle, n: int) -> None:
    from benchmarks._tasks import identity

    for sock in handle.socks:
        _wire.call(sock, handle.head, identity, 1)


def server_pids(handle: Handle) -> list[int]:
    """OS process id of the process that :func:`caller` calls."""
    return [int(handle.procs[0].pid)]


def caller(handle: Handle, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    sock, head = handle.socks[0], handle.head

    def call(x: Any) -> Any:
        return _wire.call(sock, head, func, x)

    return call


def bandwidth_sum(handle: Handle, array: Any) -> float:
    sock = handle.socks[0]
    sock.sendall(_wire.HEADER.pack(_wire.SUM_RAW, array.nbytes))
    sock.sendall(memoryview(array).cast("B"))
    out = bytearray(_wire.DOUBLE.size)
    _wire.recv_exact(sock, memoryview(out))
    return float(_wire.DOUBLE.unpack(out)[0])


def bandwidth_echo(handle: Handle, array: Any) -> Any:
    import numpy

    sock = handle.socks[0]
    sock.sendall(_wire.HEADER.pack(_wire.ECHO_RAW, array.nbytes))
    sock.sendall(memoryview(array).cast("B"))
    out = handle.echo_buffer
    if out is None or out.shape != array.shape:
        out = handle.echo_buffer = numpy.empty_like(array)
    _wire.recv_exact(sock, memoryview(out).cast("B"))
    return out


def stop(handle: Handle) -> None:
    for sock in handle.socks:
        try:
            sock.sendall(_wire.HEADER.pack(_wire.EXIT, 0))
        except OSError:
            pass
        sock.close()
    handle.listener.close()
    for proc in handle.procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
