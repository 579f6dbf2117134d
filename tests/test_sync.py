"""sync(): waiting for the Futures started inside a block."""

from __future__ import annotations

import os
import threading
import time

import pytest

import pydistributed as dist
from pydistributed import _future
from support import identity, in_threads


def fail_after(delay: float, message: str) -> None:
    time.sleep(delay)
    raise ValueError(message)


def test_waits_for_every_future_started_inside(cluster: list[int]) -> None:
    t0 = time.monotonic()
    with dist.sync() as block:
        futures = [dist.remotecall(time.sleep, p, 0.3) for p in cluster]
        futures.append(dist.remotecall(time.sleep, dist.myid(), 0.3))
        futures.append(dist.spawnat(cluster[1], time.sleep, 0.3))
        futures.append(dist.spawnat(dist.myid(), time.sleep, 0.3))  # Julia's @async
        futures.append(dist.spawn(time.sleep, 0.3))
        futures.append(dist.remotecall_wait(identity, cluster[0], 1))
        assert time.monotonic() - t0 < 0.25
    assert time.monotonic() - t0 >= 0.3
    assert all(f.isready() for f in futures)
    assert block.futures == []
    assert _future._track is None  # the hot path is back to a None check


def test_raises_the_first_failure_after_all_finished(cluster: list[int]) -> None:
    a, b = cluster
    futures: list[dist.Future] = []

    def block() -> None:
        with dist.sync():
            futures.append(dist.remotecall(fail_after, a, 0.3, "first"))
            futures.append(dist.remotecall(fail_after, b, 0.0, "second"))
            futures.append(dist.remotecall(time.sleep, b, 0.6))

    with pytest.raises(dist.RemoteException) as info:
        block()
    first, second, slow = futures
    assert isinstance(info.value.exception, ValueError)
    assert str(info.value.exception) == "first"
    assert info.value.pid == a
    assert first.isready()
    assert second.isready()
    assert slow.isready()


def test_a_local_failure_is_a_remote_exception_too() -> None:
    with pytest.raises(dist.RemoteException) as info, dist.sync():
        dist.remotecall(fail_after, dist.myid(), 0.0, "here")
    assert str(info.value.exception) == "here"


def test_fetched_futures_are_checked_without_asking_the_owner(cluster: list[int]) -> None:
    def block() -> None:
        with dist.sync():
            failing = dist.remotecall(fail_after, cluster[0], 0.0, "x")
            with pytest.raises(dist.RemoteException):
                failing.fetch()

    with pytest.raises(dist.RemoteException):
        block()
    with dist.sync():
        ok = dist.remotecall(identity, cluster[0], 1)
        assert ok.fetch() == 1


def test_nested_blocks(cluster: list[int]) -> None:
    a, b = cluster
    with dist.sync() as outer:
        slow = dist.remotecall(time.sleep, a, 0.6)
        with dist.sync() as inner:
            quick = dist.remotecall(time.sleep, b, 0.1)
        assert quick.isready()
        assert not slow.isready()  # the inner block waited for its own only
        assert inner.futures == []
        assert outer.futures == [slow]
    assert slow.isready()


def test_inner_failure_is_raised_by_the_inner_block(cluster: list[int]) -> None:
    with dist.sync():
        with pytest.raises(dist.RemoteException), dist.sync():
            dist.remotecall(fail_after, cluster[0], 0.0, "inner")
        ok = dist.remotecall(identity, cluster[1], 1)
    # The outer block does not raise the inner failure a second time.
    assert ok.isready()


def test_a_block_left_by_an_exception_does_not_wait(cluster: list[int]) -> None:
    started: list[dist.Future] = []

    def block() -> None:
        with dist.sync():
            started.append(dist.remotecall(time.sleep, cluster[0], 1.0))
            raise KeyError("body")

    t0 = time.monotonic()
    with pytest.raises(KeyError):
        block()
    assert time.monotonic() - t0 < 0.8
    assert not started[0].isready()
    started[0].wait()


def test_an_enclosing_block_waits_for_an_inner_block_left_by_an_exception(
    cluster: list[int],
) -> None:
    with dist.sync():
        try:
            with dist.sync():
                slow = dist.remotecall(time.sleep, cluster[0], 0.4)
                raise KeyError("body")
        except KeyError:
            assert not slow.isready()
    assert slow.isready()


def test_futures_of_other_threads_are_not_waited_for(cluster: list[int]) -> None:
    made = threading.Event()
    other: list[dist.Future] = []

    def start() -> None:
        other.append(dist.remotecall(time.sleep, cluster[0], 1.0))
        made.set()

    t0 = time.monotonic()
    with dist.sync():
        thread = threading.Thread(target=start)
        thread.start()
        assert made.wait(5)
    assert time.monotonic() - t0 < 0.8
    thread.join()
    other[0].wait()


def test_received_futures_are_not_waited_for(cluster: list[int]) -> None:
    # A Future made on the worker and sent here is nobody's call of this block: it is never
    # set, and waiting for it would hang.
    t0 = time.monotonic()
    with dist.sync():
        received = dist.remotecall_fetch(dist.Future, cluster[0])
        assert isinstance(received, dist.Future)
    assert time.monotonic() - t0 < 2


def test_threads_have_their_own_blocks(cluster: list[int]) -> None:
    def run(n: int) -> None:
        for _ in range(5):
            with dist.sync():
                futures = [dist.remotecall(identity, p, n) for p in cluster]
            assert all(f.isready() for f in futures), "a block ended before its futures"
        if n % 2:
            with pytest.raises(dist.RemoteException), dist.sync():
                dist.remotecall(fail_after, cluster[0], 0.0, str(n))

    in_threads(run, 8)
    assert _future._track is None


def test_sync_in_worker_code(cluster: list[int]) -> None:
    a, b = cluster

    def fan_out(other: int) -> bool:
        with dist.sync():
            futures = [dist.remotecall(time.sleep, other, 0.2) for _ in range(3)]
        return all(f.isready() for f in futures)

    assert dist.remotecall_fetch(fan_out, a, b) is True


def test_a_dead_owner_raises_process_exited(workers2: list[int]) -> None:
    a, b = workers2

    def block() -> None:
        with dist.sync():
            dist.remotecall(os._exit, a, 1)
            dist.remotecall(time.sleep, b, 0.1)

    with pytest.raises(dist.ProcessExitedException) as info:
        block()
    assert info.value.worker_id == a


def test_an_empty_future_made_inside_is_not_waited_for() -> None:
    # As Julia's @sync: only what was started (a call) is waited for; nothing would ever
    # set this one, and the block must not hang on it.
    with dist.sync():
        empty = dist.Future()
        started = dist.remotecall(time.sleep, dist.myid(), 0.2)  # a Future() made here too
    assert started.isready()
    assert not empty.isready()
