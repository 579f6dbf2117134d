"""A minimal framed protocol over a stream socket, for the raw TCP floor (and raw Unix socket).

A frame is a 9-byte header (kind, payload length) then the payload. ``CALL`` carries a pickled
``(func, arg)`` and is answered by a ``CALL`` frame with the pickled result; ``SUM_RAW`` carries
float64 bytes and is answered by 8 bytes (their sum); ``ECHO_RAW`` is answered by the same bytes.
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

HEADER = struct.Struct("!BQ")
DOUBLE = struct.Struct("!d")
CALL, SUM_RAW, ECHO_RAW, EXIT = range(4)


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``; raise ``EOFError`` if the peer closes first."""
    while view:
        got = sock.recv_into(view)
        if not got:
            raise EOFError("peer closed the connection")
        view = view[got:]


def recv_frame(sock: socket.socket, head: bytearray) -> tuple[int, bytearray]:
    """Read one frame whose payload fits in memory; ``head`` is a reusable 9-byte buffer."""
    recv_exact(sock, memoryview(head))
    kind, length = HEADER.unpack(head)
    payload = bytearray(length)
    recv_exact(sock, memoryview(payload))
    return kind, payload


def call(sock: socket.socket, head: bytearray, func: Any, arg: Any) -> Any:
    """Send ``(func, arg)``, wait for the answer and return the unpickled result."""
    data = pickle.dumps((func, arg), protocol=5)
    sock.sendall(HEADER.pack(CALL, len(data)) + data)
    _, payload = recv_frame(sock, head)
    return pickle.loads(payload)


def serve(address: int | str) -> None:
    """Worker body: connect to 127.0.0.1:``address`` (a port) or to the Unix socket
    ``address`` (a name) and answer frames until ``EXIT``.

    Raw frames are received into a buffer kept between frames of the same size, so that the
    floor measures the socket rather than page faults of fresh allocations.
    """
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
    else:
        sock = socket.create_connection(("127.0.0.1", address))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = bytearray(HEADER.size)
    raw = bytearray()
    with sock:
        while True:
            recv_exact(sock, memoryview(head))
            kind, length = HEADER.unpack(head)
            if kind == EXIT:
                return
            if kind == CALL:
                payload = bytearray(length)
                recv_exact(sock, memoryview(payload))
                func, arg = pickle.loads(payload)
                out = pickle.dumps(func(arg), protocol=5)
                sock.sendall(HEADER.pack(CALL, len(out)) + out)
                continue
            if len(raw) != length:
                raw = bytearray(length)
            recv_exact(sock, memoryview(raw))
            if kind == SUM_RAW:
                import numpy

                total = float(numpy.frombuffer(raw, dtype=numpy.float64).sum())
                sock.sendall(DOUBLE.pack(total))
            elif kind == ECHO_RAW:
                sock.sendall(raw)
