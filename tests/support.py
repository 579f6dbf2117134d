"""Helpers shared by the tests.

``tests/`` is on the master's ``sys.path`` (pytest puts it there) and local workers inherit
that path, so the functions here are importable on the workers: they travel by reference.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pydistributed as dist
from pydistributed._cluster import PGRP


def eventually(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return bool(result)
        time.sleep(interval)


def in_threads(run: Callable[[int], Any], n: int, timeout: float = 30.0) -> None:
    """Run ``run(0)`` ... ``run(n - 1)`` in ``n`` threads at once; fail if one is still
    running after ``timeout`` seconds, or re-raise the first error one of them raised."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            run(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    if errors:
        raise errors[0]


def live_parents() -> dict[int, int]:
    """Parent of every live (non-zombie) process, by process id."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parent[int(entry)] = int(fields[1])
    return parent


def os_pid_state(ospid: int) -> str:
    """The state letter of OS process ``ospid`` in /proc ("R", "S", "T", "Z", ...; "" if gone)."""
    try:
        with open(f"/proc/{ospid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def os_pid_alive(ospid: int) -> bool:
    """Whether OS process ``ospid`` exists and is not a zombie (whoever its parent is)."""
    return os_pid_state(ospid) not in ("", "Z")


def stop_process(ospid: int) -> None:
    """SIGSTOP OS process ``ospid`` and wait until it is stopped."""
    os.kill(ospid, signal.SIGSTOP)
    assert eventually(lambda: os_pid_state(ospid) == "T"), f"{os_pid_state(ospid)!r}"


def ospid_of(pid: int) -> int:
    """The OS process id of worker ``pid``, as the worker reports it."""
    return int(dist.remotecall_fetch(os.getpid, pid))


def identity(x: Any) -> Any:
    """Return the argument (importable, so it travels by reference)."""
    return x


def worker_address(pid: int) -> tuple[str, int]:
    """Host and port worker ``pid`` listens on, as the master knows them."""
    worker = PGRP.workers[pid]
    return worker.host, worker.port


def dropped(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the peer closes ``sock`` within ``timeout`` (reading whatever it sends first)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass
