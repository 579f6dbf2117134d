"""The ``topology`` keyword of addprocs: all_to_all, master_worker and custom graphs.

Ported from the idea of Julia's ``test/topology.jl``: a cluster manager that tags the local
workers it starts with ``WorkerConfig.ident`` / ``connect_idents``, then a check from every
worker of which peers it can reach.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterator
from typing import Any

import pytest

import pydistributed as dist
from pydistributed import LocalManager, WorkerConfig
from pydistributed._cluster import PGRP
from support import eventually


class GraphManager(LocalManager):
    """Local workers, one per key of ``graph``: the worker of ident ``i`` has ``ident=i`` and
    ``connect_idents=graph[i]``. ``idents`` maps each registered pid to its ident."""

    def __init__(self, graph: dict[Hashable, list[Hashable]]) -> None:
        super().__init__(len(graph))
        self.graph = graph
        self.idents: dict[int, Hashable] = {}

    def launch(
        self, params: dict[str, Any], launched: list[WorkerConfig], launch_ntfy: threading.Condition
    ) -> None:
        staged: list[WorkerConfig] = []
        super().launch(params, staged, threading.Condition())
        for ident, config in zip(self.graph, staged, strict=True):
            config.ident = ident
            config.connect_idents = list(self.graph[ident])
            with launch_ntfy:
                launched.append(config)
                launch_ntfy.notify_all()

    def manage(self, pid: int, config: WorkerConfig, op: Any) -> None:
        if op == "register":
            self.idents[pid] = config.ident
        super().manage(pid, config, op)

    def pid_of(self, ident: Hashable) -> int:
        return next(pid for pid, i in self.idents.items() if i == ident)


# -- run on the workers --------------------------------------------------------------------


def reach(peer: int) -> int:
    """Call ``peer`` from this worker; return the id it reports."""
    return int(dist.remotecall_fetch(dist.myid, peer))


def reach_or_error(peer: int) -> int | BaseException:
    """Like :func:`reach`, but return the exception instead of raising it."""
    try:
        return reach(peer)
    except Exception as exc:
        return exc


def topology() -> str:
    return PGRP.topology


def view() -> tuple[list[int], list[int], int, int]:
    return dist.procs(), dist.workers(), dist.nprocs(), dist.nworkers()


def connected_peers() -> list[int]:
    """Workers this worker has an open connection to (the master left out)."""
    return sorted(
        pid
        for pid, w in list(PGRP.workers.items())
        if pid != 1 and w.conn is not None and not w.conn.closed
    )


def remotecall_then_remote_do(peer: int) -> list[str]:
    """Try the two calls that return at once; report what each raised."""
    raised = []
    for call in (dist.remotecall, dist.remote_do):
        try:
            call(dist.myid, peer)
        except dist.DistributedError as exc:
            raised.append(str(exc))
    return raised


# -- helpers on the master -----------------------------------------------------------------


@pytest.fixture
def cleanup() -> Iterator[list[int]]:
    """A list the test appends its workers to; they are removed after the test."""
    pids: list[int] = []
    yield pids
    dist.rmprocs(pids, waitfor=20)


def assert_unreachable(src: int, dst: int, topology: str) -> None:
    """A call from ``src`` to ``dst`` fails at once with an error naming both and the topology."""
    start = time.monotonic()
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(reach, src, dst)
    assert time.monotonic() - start < 10
    assert info.value.pid == src
    error = info.value.exception
    assert type(error) is dist.DistributedError
    message = str(error)
    assert f"process {dst} " in message
    assert f"process {src}:" in message
    assert repr(topology) in message


# -- master_worker -------------------------------------------------------------------------


def test_master_worker_workers_know_only_the_master(cleanup: list[int]) -> None:
    pids = dist.addprocs(3, topology="master_worker")
    cleanup.extend(pids)
    assert dist.procs() == [1, *pids]
    for p in pids:
        assert dist.remotecall_fetch(view, p) == ([1, p], [p], 2, 1)
        assert dist.remotecall_fetch(connected_peers, p) == []


def test_master_worker_call_between_workers_fails_cleanly(cleanup: list[int]) -> None:
    pids = dist.addprocs(3, topology="master_worker")
    cleanup.extend(pids)
    a, b, c = pids
    for src, dst in ((a, b), (b, a), (c, a)):
        assert_unreachable(src, dst, "master_worker")
    raised = dist.remotecall_fetch(remotecall_then_remote_do, a, c)
    assert len(raised) == 2
    assert all("master_worker" in text for text in raised)
    # Nothing broke: every worker still serves the master, and knows no more peers.
    assert dist.pmap(lambda x: x * 2, range(12)) == [x * 2 for x in range(12)]
    assert [dist.remotecall_fetch(dist.myid, p) for p in pids] == pids
    assert [dist.remotecall_fetch(view, p)[0] for p in pids] == [[1, p] for p in pids]


def test_master_worker_call_to_a_removed_worker(cleanup: list[int]) -> None:
    a, b = dist.addprocs(2, topology="master_worker")
    cleanup.append(a)
    dist.rmprocs(b, waitfor=20)

    def exited() -> bool:
        error = dist.remotecall_fetch(reach_or_error, a, b)
        return isinstance(error, dist.ProcessExitedException) and error.worker_id == b

    assert eventually(exited)


# -- the topology is a cluster-wide setting --------------------------------------------------


def test_topology_is_fixed_while_workers_exist(cleanup: list[int]) -> None:
    first = dist.addprocs(1, topology="master_worker")
    cleanup.extend(first)
    with pytest.raises(ValueError, match="master_worker"):
        dist.addprocs(1)
    with pytest.raises(ValueError, match="'custom' cannot be set"):
        dist.addprocs(GraphManager({0: []}), topology="custom")
    assert dist.procs() == [1, *first]
    second = dist.addprocs(1, topology="master_worker")
    cleanup.extend(second)
    assert_unreachable(second[0], first[0], "master_worker")
    assert_unreachable(first[0], second[0], "master_worker")
    dist.rmprocs(first + second, waitfor=20)
    # Once every worker is gone the next addprocs chooses again.
    third = dist.addprocs(2)
    cleanup.extend(third)
    assert dist.remotecall_fetch(reach, third[1], third[0]) == third[0]
    assert dist.remotecall_fetch(topology, third[0]) == "all_to_all"


# -- custom --------------------------------------------------------------------------------

RING = {0: [1], 1: [2], 2: [3], 3: [0]}  # 0-1-2-3-0: 0/2 and 1/3 are not linked
# Julia's test/topology.jl graph: each ident lists the higher idents of the same parity, so
# every link is asked for by the worker that joins first.
PARITY = {i: list(range(i + 2, 6, 2)) for i in range(6)}


def links(graph: dict[Hashable, list[Hashable]]) -> set[frozenset[Hashable]]:
    return {frozenset((i, j)) for i, listed in graph.items() for j in listed}


def check_graph(idents: dict[int, Hashable], graph: dict[Hashable, list[Hashable]]) -> None:
    """From every worker (pid -> ident): calls reach exactly the linked peers, and procs()
    lists exactly them."""
    linked = links(graph)
    pids = sorted(idents)
    for src in pids:
        peers = [p for p in pids if frozenset((idents[src], idents[p])) in linked]
        procs, _, _, _ = dist.remotecall_fetch(view, src)
        assert procs == sorted([1, src, *peers])
        for dst in pids:
            if dst == src:
                continue
            if dst in peers:
                assert dist.remotecall_fetch(reach, src, dst) == dst
            else:
                assert_unreachable(src, dst, "custom")


@pytest.mark.parametrize("graph", [RING, PARITY], ids=["ring", "parity"])
@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
def test_custom_graph(
    graph: dict[Hashable, list[Hashable]], lazy: bool, cleanup: list[int]
) -> None:
    manager = GraphManager(graph)
    pids = dist.addprocs(manager, topology="custom", lazy=lazy)
    cleanup.extend(pids)
    assert sorted(manager.idents) == pids
    linked = links(graph)

    def neighbours(p: int) -> list[int]:
        return [q for q in pids if frozenset((manager.idents[p], manager.idents[q])) in linked]

    if lazy:
        assert all(dist.remotecall_fetch(connected_peers, p) == [] for p in pids)
    else:
        # Every link is made during addprocs (the accepting side registers it just after
        # acknowledging, hence the short poll).
        for p in pids:
            assert eventually(
                lambda p=p: dist.remotecall_fetch(connected_peers, p) == neighbours(p)
            )
    check_graph(manager.idents, graph)
    # Calls made the lazy links, and only those.
    for p in pids:
        assert eventually(lambda p=p: dist.remotecall_fetch(connected_peers, p) == neighbours(p))


def test_custom_links_across_addprocs(cleanup: list[int]) -> None:
    """A star grown in two addprocs: new leaves list the existing hub; a leaf that lists an
    ident nobody has links to nothing more."""
    hub = GraphManager({"hub": []})
    cleanup.extend(dist.addprocs(hub, topology="custom", lazy=False))
    leaves = GraphManager({"leaf1": ["hub"], "leaf2": ["hub", "nobody"], "leaf3": ["hub"]})
    cleanup.extend(dist.addprocs(leaves, topology="custom", lazy=False))
    star: dict[Hashable, list[Hashable]] = {"leaf1": ["hub"], "leaf2": ["hub"], "leaf3": ["hub"]}
    check_graph({**hub.idents, **leaves.idents}, star)
    h = hub.pid_of("hub")
    assert dist.remotecall_fetch(connected_peers, h) == sorted(leaves.idents)


def test_custom_without_idents_is_master_worker(cleanup: list[int]) -> None:
    """Workers whose manager sets no idents are linked to nobody."""
    pids = dist.addprocs(2, topology="custom")
    cleanup.extend(pids)
    assert_unreachable(pids[0], pids[1], "custom")
    assert_unreachable(pids[1], pids[0], "custom")
    assert dist.remotecall_fetch(view, pids[0])[0] == [1, pids[0]]


def test_custom_call_to_a_removed_peer(cleanup: list[int]) -> None:
    manager = GraphManager({0: [1], 1: []})
    pids = dist.addprocs(manager, topology="custom")
    a, b = manager.pid_of(0), manager.pid_of(1)
    cleanup.append(a)
    assert dist.remotecall_fetch(reach, a, b) == b
    dist.rmprocs(b, waitfor=20)
    assert sorted(pids) == sorted([a, b])

    def exited() -> bool:
        error = dist.remotecall_fetch(reach_or_error, a, b)
        return isinstance(error, dist.ProcessExitedException) and error.worker_id == b

    assert eventually(exited)
    assert dist.remotecall_fetch(view, a)[0] == [1, a]
