"""A custom transport's pair of byte streams, seen as the socket the transport reads.

``ClusterManager.connect`` and ``process_messages`` take a ``(reader, writer)`` pair, as in
Julia. A connected socket given as both is used as it is. Any other pair -- pipes of a
process, file objects, file descriptors -- is bridged: two daemon threads copy bytes between
the pair and one end of a ``socket.socketpair()``, whose other end is returned.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from typing import Any

__all__ = ("as_socket", "streams_of")

_CHUNK = 1 << 16

# Bridged socket -> the (reader, writer) pair it stands for.
_pairs: weakref.WeakKeyDictionary[socket.socket, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def streams_of(sock: socket.socket) -> tuple[Any, ...]:
    """The ``(reader, writer)`` pair ``sock`` was bridged to, or ``()``."""
    return _pairs.get(sock, ())


def as_socket(reader: Any, writer: Any) -> socket.socket:
    """A connected socket carrying what ``reader`` yields and taking what goes to ``writer``.

    ``reader`` and ``writer`` may each be a socket, a binary file object (with ``read1`` or
    ``read``, and ``write``) or a file descriptor. ``reader`` alone stands for both when it
    is a socket and ``writer`` is ``None`` or the same object.

    Raises:
        TypeError: ``reader`` cannot be read or ``writer`` cannot be written.
    """
    if isinstance(reader, socket.socket) and (writer is None or writer is reader):
        return reader
    if isinstance(reader, int) and (writer is None or writer == reader):
        try:
            return socket.socket(fileno=reader)
        except OSError:
            pass  # not a socket: bridge the descriptor
    if not (isinstance(reader, int | socket.socket) or callable(getattr(reader, "read", None))):
        raise TypeError(f"cannot read from {type(reader).__name__}")
    if writer is None:
        writer = reader
    if not (isinstance(writer, int | socket.socket) or callable(getattr(writer, "write", None))):
        raise TypeError(f"cannot write to {type(writer).__name__}")
    ours, theirs = socket.socketpair()
    _pairs[ours] = (reader, writer)
    threading.Thread(
        target=_copy_in, args=(reader, theirs), name="pydistributed-stream-in", daemon=True
    ).start()
    threading.Thread(
        target=_copy_out, args=(theirs, writer), name="pydistributed-stream-out", daemon=True
    ).start()
    return ours


def _read(reader: Any) -> bytes:
    if isinstance(reader, socket.socket):
        return reader.recv(_CHUNK)
    if isinstance(reader, int):
        return os.read(reader, _CHUNK)
    read1 = getattr(reader, "read1", None)
    data = read1(_CHUNK) if callable(read1) else reader.read(_CHUNK)
    return bytes(data or b"")


def _write(writer: Any, data: bytes) -> None:
    if isinstance(writer, socket.socket):
        writer.sendall(data)
        return
    view = memoryview(data)
    while view:
        written = os.write(writer, view) if isinstance(writer, int) else writer.write(view)
        view = view[len(view) if written is None else written :]
    flush = getattr(writer, "flush", None)
    if callable(flush):
        flush()


def _copy_in(reader: Any, theirs: socket.socket) -> None:
    """reader -> socket, until the reader ends or the socket is closed."""
    try:
        while data := _read(reader):
            theirs.sendall(data)
    except (OSError, ValueError):
        pass
    try:
        theirs.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _copy_out(theirs: socket.socket, writer: Any) -> None:
    """socket -> writer, until the connection is closed; then close the writer."""
    try:
        while data := theirs.recv(_CHUNK):
            _write(writer, data)
    except (OSError, ValueError):
        pass
    finally:
        theirs.close()
        close = getattr(writer, "close", None)
        try:
            if isinstance(writer, int):
                os.close(writer)
            elif callable(close):
                close()
        except OSError:
            pass
