"""The peers, one module each, all with the same small interface.

A peer module (imported only inside the measuring subprocess, so it may import its library at
top level) provides:

- ``start(n) -> handle``: start ``n`` workers; ``ready(handle, n)``: return once a call has run on
  every worker (as well as the peer allows); ``stop(handle)``: shut everything down.
- ``caller(handle, func) -> call``: ``call(x)`` runs ``func(x)`` on one worker and returns it.
- ``submit_all(handle, func, args) -> list``: submit every call first, then collect all results.
- ``map(handle, func, items, variant) -> list``: the peer's own parallel map.
- ``HOW``: a short description of the call used for each operation (shown in the tables).

Optional: ``MAP_VARIANTS`` (default ``("",)``), ``bandwidth_sum(handle, array) -> float`` and
``bandwidth_echo(handle, array) -> array`` (else ``caller`` is used), ``reduce(handle, n)``,
``everywhere_import(handle)``, and for the channel family ``channel_caller(handle) -> call``
(``call(x)`` puts ``x`` through a channel and takes it back) and ``channel_stream(handle,
items) -> (seconds, sum)`` (a producer process streams ``range(items)`` to a consumer).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class PeerInfo:
    """What the runner knows about a peer without importing it."""

    name: str
    label: str
    module: str
    requires: tuple[str, ...] = ()
    heavy: bool = False  # slow to start: skipped for the larger sizes under --quick

    def missing(self) -> str | None:
        """Name of the first required distribution that is not importable, else ``None``."""
        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:
                return mod
        return None


PEERS: dict[str, PeerInfo] = {
    p.name: p
    for p in (
        PeerInfo("raw_tcp", "raw TCP (floor)", "benchmarks._peers.raw_tcp"),
        PeerInfo("raw_unix", "raw Unix socket", "benchmarks._peers.raw_unix"),
        PeerInfo("mp_pipe", "multiprocessing.Pipe", "benchmarks._peers.mp_pipe"),
        PeerInfo("mp_queue", "multiprocessing.Queue", "benchmarks._peers.mp_queue"),
        PeerInfo("pydistributed", "pydistributed", "benchmarks._pydist", ("pydistributed",)),
        PeerInfo(
            "pydistributed_tcp",
            "pydistributed, TCP only",
            "benchmarks._peers.pydist_tcp",
            ("pydistributed",),
        ),
        PeerInfo("mp_pool", "multiprocessing.Pool", "benchmarks._peers.mp_pool"),
        PeerInfo("cf_executor", "ProcessPoolExecutor", "benchmarks._peers.cf_executor"),
        PeerInfo("loky", "loky", "benchmarks._peers.loky_executor", ("loky",)),
        PeerInfo(
            "dask", "Dask distributed", "benchmarks._peers.dask_cluster", ("distributed",), True
        ),
        PeerInfo("ray", "Ray", "benchmarks._peers.ray_tasks", ("ray",), True),
        PeerInfo(
            "ipyparallel", "ipyparallel", "benchmarks._peers.ipp_cluster", ("ipyparallel",), True
        ),
        PeerInfo("sequential", "sequential (master)", "benchmarks._peers.sequential"),
    )
}
