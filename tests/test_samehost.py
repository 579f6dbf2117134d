"""Processes of one machine connect over Unix sockets, which still require the cookie."""

from __future__ import annotations

import os
import socket

import pytest

import pydistributed as dist
from pydistributed import _samehost
from pydistributed._cluster import PGRP
from pydistributed.protocol import HELLO_SIZE
from support import dropped, identity, send_quietly

pytestmark = pytest.mark.skipif(not _samehost.enabled, reason="no abstract Unix sockets here")


def family_to(pid: int) -> int:
    """The address family of this process's connection to ``pid`` (made if needed)."""
    dist.remotecall_fetch(identity, pid, None)
    return int(PGRP.connection(pid).sock.family)


def still_serving(cluster: list[int]) -> None:
    a, b = cluster
    assert dist.remotecall_fetch(identity, a, "still serving") == "still serving"
    assert dist.remotecall_fetch(dist.remotecall_fetch, b, dist.myid, a) == a


def test_local_workers_are_reached_over_unix_sockets(cluster: list[int]) -> None:
    a, b = cluster
    assert family_to(a) == socket.AF_UNIX
    # Worker to worker too, both ways round.
    assert dist.remotecall_fetch(family_to, b, a) == socket.AF_UNIX
    assert dist.remotecall_fetch(family_to, a, b) == socket.AF_UNIX


def test_a_unix_socket_refuses_a_wrong_cookie(cluster: list[int]) -> None:
    sock = _samehost.connect(PGRP.workers[cluster[0]].unix)
    assert sock is not None
    with sock:
        send_quietly(sock, b"PYDIST\x00\x01" + b"\x11" * 32 + b"\x22" * 32)
        assert dropped(sock)
    still_serving(cluster)


def test_a_unix_socket_refuses_junk(cluster: list[int]) -> None:
    sock = _samehost.connect(PGRP.workers[cluster[0]].unix)
    assert sock is not None
    with sock:
        send_quietly(sock, os.urandom(HELLO_SIZE * 3))
        assert dropped(sock)
    still_serving(cluster)


def test_a_name_held_by_another_process_is_not_used() -> None:
    # A listener whose name claims another process id: connect() sees who is really there.
    claimed = _samehost.address(os.getpid() + 1_000_000)
    assert claimed is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as impostor:
        impostor.bind(claimed)
        impostor.listen(1)
        assert _samehost.connect(claimed) is None


def test_names_of_another_machine_are_not_tried() -> None:
    # Even when such a name exists here, and is this very process.
    foreign = f"\0pydistributed-another-boot-0-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(foreign)
        listener.listen(1)
        assert _samehost.connect(foreign) is None
    assert _samehost.connect(None) is None


def test_turned_off_the_workers_use_tcp() -> None:
    pids = dist.addprocs(2, env={"PYDISTRIBUTED_UNIX_SOCKETS": "0"})
    try:
        a, b = pids
        assert family_to(a) == socket.AF_INET
        assert dist.remotecall_fetch(family_to, b, a) == socket.AF_INET
    finally:
        dist.rmprocs(pids, waitfor=20)
