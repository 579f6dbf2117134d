"""Forwarding a worker's output to the master's stdout, line by line."""

from __future__ import annotations

import os
import sys
import threading
from typing import IO

__all__ = ("forward_output",)


def _emit(pid: int, line: bytes) -> None:
    text = line.decode(errors="replace").rstrip("\r")
    try:
        out = sys.stdout
        out.write(f"From worker {pid}: {text}\n")
        out.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _pump(pid: int, stream: IO[bytes], head: bytes) -> None:
    fd = stream.fileno()
    pending = head
    try:
        while True:
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _emit(pid, line)
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
        if pending:
            _emit(pid, pending)
    finally:
        try:
            stream.close()
        except OSError:
            pass


def forward_output(pid: int, stream: IO[bytes], head: bytes = b"") -> threading.Thread:
    """Start a thread writing each line of ``stream`` (after ``head``) to the current
    ``sys.stdout`` as ``From worker N: <line>``; it ends at EOF and closes the stream."""
    thread = threading.Thread(
        target=_pump, args=(pid, stream, head), name=f"pydistributed-output-{pid}", daemon=True
    )
    thread.start()
    return thread
