"""Shared fixtures: a cluster of real worker processes, and a check that none is left behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

import pydistributed as dist
from support import live_parents, os_pid_alive


def _children() -> set[int]:
    """Ids of the live (non-zombie) processes whose parent is this process."""
    me = os.getpid()
    return {pid for pid, parent in live_parents().items() if parent == me}


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """Fail a test that leaves worker processes running."""
    before = _children()
    yield
    deadline = time.monotonic() + 10
    while (left := _children() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"test left processes running: {sorted(left)}"


@pytest.fixture
def workers2() -> Iterator[list[int]]:
    """Two fresh local workers, removed after the test."""
    pids = dist.addprocs(2)
    yield pids
    dist.rmprocs(pids, waitfor=20)


@pytest.fixture
def workers4() -> Iterator[list[int]]:
    """Four fresh local workers, removed after the test."""
    pids = dist.addprocs(4)
    yield pids
    dist.rmprocs(pids, waitfor=20)


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[int]]:
    """Two local workers shared by the tests of one module (tests that kill workers use
    ``workers2``); at the end they are removed and their processes checked gone."""
    pids = dist.addprocs(2)
    ospids = [dist.remotecall_fetch(os.getpid, pid) for pid in pids]
    yield pids
    dist.rmprocs(pids, waitfor=20)
    deadline = time.monotonic() + 10
    while (alive := [p for p in ospids if os_pid_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, f"module cluster left processes running: {alive}"
