"""pydistributed over TCP only: shared memory and Unix sockets turned off
(``PYDISTRIBUTED_SHM=0``, ``PYDISTRIBUTED_UNIX_SOCKETS=0``).

The bandwidth and pinned round-trip families use it, to show the TCP path next to the
default one (local workers use Unix sockets, and shared memory for large buffers).
"""

from __future__ import annotations

import os

from benchmarks import _pydist
from benchmarks._pydist import caller, ready, server_pids, stop, submit_all

__all__ = ("HOW", "caller", "ready", "server_pids", "start", "stop", "submit_all")

HOW = {
    **_pydist.HOW,
    "roundtrip": "remotecall_fetch(func, pid, x), workers with PYDISTRIBUTED_UNIX_SOCKETS=0",
    "bandwidth": "remotecall_fetch(func, pid, array), workers with PYDISTRIBUTED_SHM=0 and "
    "PYDISTRIBUTED_UNIX_SOCKETS=0",
}


def start(n: int) -> list[int]:
    # The workers inherit these: they refuse shared memory and listen on TCP only, so both
    # directions use a TCP socket.
    os.environ["PYDISTRIBUTED_SHM"] = "0"
    os.environ["PYDISTRIBUTED_UNIX_SOCKETS"] = "0"
    return _pydist.start(n)
