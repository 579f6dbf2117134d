"""The raw floor over a Unix socket instead of loopback TCP (what local pydistributed workers
use): shown next to the TCP floor, which the ratios are taken against."""

from __future__ import annotations

from benchmarks._peers import raw_tcp
from benchmarks._peers.raw_tcp import Handle, caller, ready, server_pids, stop

__all__ = ("HOW", "caller", "ready", "server_pids", "start", "stop")

HOW = {"roundtrip": "as raw TCP, over a Unix socket (socketpair-like AF_UNIX stream)"}


def start(n: int) -> Handle:
    return raw_tcp.start(n, unix=True)
