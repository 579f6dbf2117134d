"""pydistributed with shared memory turned off (``PYDISTRIBUTED_SHM=0``): buffers go by TCP.

Only the bandwidth family uses it, to show the TCP path next to the shared-memory one.
"""

from __future__ import annotations

import os

from benchmarks import _pydist
from benchmarks._pydist import caller, ready, server_pids, stop, submit_all

__all__ = ("HOW", "caller", "ready", "server_pids", "start", "stop", "submit_all")

HOW = {
    **_pydist.HOW,
    "bandwidth": "remotecall_fetch(func, pid, array), workers with PYDISTRIBUTED_SHM=0",
}


def start(n: int) -> list[int]:
    # The workers inherit it: they refuse shared memory, so both directions use the socket.
    os.environ["PYDISTRIBUTED_SHM"] = "0"
    return _pydist.start(n)
