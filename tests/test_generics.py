"""The module-level generics fetch, wait, put, take and isready."""

from __future__ import annotations

import time
from typing import Any

import pytest

import pydistributed as dist
from pydistributed import Channel, RemoteChannel
from support import identity


class Pool:
    """Anything with put/take/wait/isready works with the generics (as worker pools do)."""

    def __init__(self) -> None:
        self.free = [2, 3]

    def put(self, pid: int) -> None:
        self.free.append(pid)

    def take(self) -> int:
        return self.free.pop(0)

    def wait(self) -> None:
        pass

    def isready(self) -> bool:
        return bool(self.free)


def test_fetch(cluster: list[int]) -> None:
    a, _ = cluster
    assert dist.fetch(dist.remotecall(identity, a, [1, 2])) == [1, 2]
    rc = RemoteChannel(a)
    rc.put("peeked")
    assert dist.fetch(rc) == "peeked"
    assert dist.fetch(rc) == "peeked"  # fetch does not take
    ch = Channel(1)
    ch.put(3)
    assert dist.fetch(ch) == 3
    assert ch.isready()
    # Anything else is returned as it is.
    for x in (None, 5, "text", [dist.remotecall(identity, a, 1)], Pool()):
        assert dist.fetch(x) is x


def test_fetch_failure_and_timeout(cluster: list[int]) -> None:
    with pytest.raises(dist.RemoteException):
        dist.fetch(dist.remotecall(lambda: 1 / 0, cluster[0]))
    with pytest.raises(TimeoutError):
        dist.fetch(dist.remotecall(time.sleep, cluster[0], 2), timeout=0.1)
    with pytest.raises(TimeoutError):
        dist.fetch(RemoteChannel(cluster[1]), timeout=0.1)
    with pytest.raises(TimeoutError):
        dist.fetch(Channel(1), timeout=0.05)


def test_wait(cluster: list[int]) -> None:
    a, b = cluster
    future = dist.remotecall(time.sleep, a, 0.2)
    assert dist.wait(future) is future
    assert future.isready()
    rc = RemoteChannel(b)
    rc.put(1)
    assert dist.wait(rc) is rc
    ch = Channel(1)
    ch.put(1)
    assert dist.wait(ch) is ch
    # A failed call does not raise in wait.
    failed = dist.remotecall(lambda: 1 / 0, a)
    assert dist.wait(failed) is failed
    with pytest.raises(TypeError):
        dist.wait(5)


def test_wait_for_a_list(cluster: list[int]) -> None:
    t0 = time.monotonic()
    futures = [dist.remotecall(time.sleep, cluster[i % 2], 0.1 * (i + 1)) for i in range(4)]
    assert dist.wait(futures) is futures
    assert time.monotonic() - t0 >= 0.4
    assert all(f.isready() for f in futures)
    rc = RemoteChannel(cluster[0])
    rc.put(0)
    both = (rc, dist.remotecall(identity, cluster[1], 1))
    assert dist.wait(both) is both
    slow = [dist.remotecall(identity, cluster[0], 1), dist.remotecall(time.sleep, cluster[1], 3)]
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        dist.wait(slow, timeout=0.3)
    assert time.monotonic() - t0 < 2


def test_put_and_take(cluster: list[int]) -> None:
    rc = RemoteChannel(lambda: Channel(2), cluster[0])
    assert dist.put(rc, "a") is rc
    assert dist.isready(rc)
    assert dist.take(rc) == "a"
    assert not dist.isready(rc)
    with pytest.raises(TimeoutError):
        dist.take(rc, timeout=0.1)
    dist.put(rc, 1)
    dist.put(rc, 2)
    with pytest.raises(TimeoutError):
        dist.put(rc, 3, timeout=0.1)
    ch = Channel(2)
    assert dist.put(ch, "v") == "v"
    assert dist.take(ch) == "v"
    future = dist.Future()
    assert dist.put(future, 10) is future
    assert dist.isready(future)
    assert dist.fetch(future) == 10
    with pytest.raises(dist.FutureAlreadySet):
        dist.put(future, 11)
    remote = dist.Future(cluster[1])
    dist.put(remote, "remote value")
    assert dist.remotecall_fetch(dist.fetch, cluster[0], remote) == "remote value"


def test_take_on_a_future_is_a_type_error(cluster: list[int]) -> None:
    future = dist.remotecall(identity, cluster[0], 1)
    with pytest.raises(TypeError):
        dist.take(future)
    with pytest.raises(TypeError):
        dist.take(future, timeout=1)
    assert dist.fetch(future) == 1
    for x in (5, None, [1]):
        with pytest.raises(TypeError):
            dist.take(x)
        with pytest.raises(TypeError):
            dist.put(x, 1)
        with pytest.raises(TypeError):
            dist.isready(x)


def test_closed_channels_raise_channelclosed(cluster: list[int]) -> None:
    for ch in (Channel(1), RemoteChannel(cluster[0])):
        dist.put(ch, 1)
        ch.close()
        with pytest.raises(dist.ChannelClosed) as info:
            dist.put(ch, 2)
        assert type(info.value) is dist.ChannelClosed
        assert dist.take(ch) == 1
        with pytest.raises(dist.ChannelClosed):
            dist.take(ch)
        with pytest.raises(dist.ChannelClosed):
            dist.fetch(ch)
        with pytest.raises(dist.ChannelClosed):
            dist.wait(ch)


def test_duck_typed_objects() -> None:
    pool = Pool()
    assert dist.isready(pool)
    assert dist.take(pool) == 2
    dist.put(pool, 4)
    assert dist.wait(pool) is pool
    assert pool.free == [3, 4]


def test_generics_in_worker_code(cluster: list[int]) -> None:
    a, b = cluster
    jobs = RemoteChannel(lambda: Channel(10))
    for i in range(5):
        dist.put(jobs, i)
    jobs.close()

    def work(jobs: RemoteChannel, helper: int) -> list[Any]:
        out = []
        for job in jobs:
            out.append(dist.fetch(dist.remotecall(lambda x: x * x, helper, job)))
        return out

    assert dist.remotecall_fetch(work, a, jobs, b) == [0, 1, 4, 9, 16]
