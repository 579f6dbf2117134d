"""Futures: write-once values, caching, waiting, asyncio, and distributed reference counting."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from typing import Any

import pytest

import pydistributed as dist
from pydistributed._refs import RRID
from support import eventually, identity, in_threads

KEPT: list[Any] = []


def owner_holds(rrid: tuple[int, int]) -> bool:
    """On the owner: whether its reference table still has ``rrid``."""
    from pydistributed._refs import TABLE

    return RRID(*rrid) in TABLE.values


def held_on(pid: int, future: dist.Future) -> bool:
    return bool(dist.remotecall_fetch(owner_holds, pid, (future.whence, future.id)))


def keep(x: Any) -> None:
    KEPT.append(x)


def put_kept(value: Any) -> None:
    KEPT[0].put(value)


def forget() -> None:
    KEPT.clear()
    gc.collect()


def fetch_it(future: dist.Future) -> Any:
    return future.fetch()


def put_it(future: dist.Future, value: Any) -> None:
    future.put(value)


def slow(value: Any, delay: float) -> Any:
    time.sleep(delay)
    return value


def fail(message: str) -> None:
    raise ValueError(message)


# -- write-once -------------------------------------------------------------------------------


def test_local_future_put_fetch() -> None:
    future = dist.Future()
    assert future.where == dist.myid()
    assert not future.isready()
    assert future.put([1]) is future
    assert future.isready()
    assert future.fetch() == [1]
    with pytest.raises(dist.FutureAlreadySet):
        future.put(2)
    assert future.fetch() == [1]


def test_put_twice_on_a_remote_future(cluster: list[int]) -> None:
    a, b = cluster
    future = dist.Future(a)
    assert future.where == a
    assert not future.isready()
    future.put("first")
    with pytest.raises(dist.FutureAlreadySet):
        future.put("second")
    # Another process that did not see the first put is refused by the owner.
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(put_it, b, future, "third")
    assert isinstance(info.value.exception, dist.FutureAlreadySet)
    assert dist.remotecall_fetch(fetch_it, b, future) == "first"


def test_take_is_not_defined() -> None:
    future = dist.Future()
    future.put(1)
    with pytest.raises(TypeError):
        future.take()


def test_fetch_caches(cluster: list[int]) -> None:
    future = dist.remotecall(list, cluster[0], "abc")
    value = future.fetch()
    assert value == ["a", "b", "c"]
    assert future.fetch() is value
    # Cached: still there after the owner dropped it.
    assert eventually(lambda: not held_on(cluster[0], future))
    assert future.isready()
    assert future.fetch() is value


def test_wait_and_isready(cluster: list[int]) -> None:
    future = dist.remotecall(slow, cluster[0], "v", 0.3)
    assert not future.isready()
    assert future.wait() is future
    assert future.isready()
    assert future.fetch() == "v"


@pytest.mark.parametrize("where", ["local", "remote"])
def test_timeouts(cluster: list[int], where: str) -> None:
    future = dist.Future() if where == "local" else dist.Future(cluster[0])
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        future.fetch(timeout=0.2)
    with pytest.raises(TimeoutError):
        future.wait(timeout=0.2)
    assert 0.4 <= time.monotonic() - t0 < 2.0
    future.put(5)
    assert future.wait(timeout=1) is future
    assert future.fetch(timeout=1) == 5


def test_timeout_on_a_running_call(cluster: list[int]) -> None:
    future = dist.remotecall(slow, cluster[1], "late", 0.6)
    with pytest.raises(TimeoutError):
        future.fetch(timeout=0.1)
    assert future.fetch(timeout=5) == "late"


def test_failed_call_raises_on_every_fetch(cluster: list[int]) -> None:
    future = dist.remotecall(fail, cluster[0], "nope")
    for _ in range(2):
        with pytest.raises(dist.RemoteException, match="nope"):
            future.fetch()
    assert future.isready()


def test_wait_on_a_failed_call(cluster: list[int]) -> None:
    # As in Julia: wait() returns once the call ended, even if it failed; fetch() and
    # remotecall_wait() raise.
    future = dist.remotecall(fail, cluster[0], "bad wait")
    assert future.wait() is future
    assert future.isready()
    with pytest.raises(dist.RemoteException, match="bad wait"):
        future.fetch()
    with pytest.raises(dist.RemoteException, match="bad remotecall_wait"):
        dist.remotecall_wait(fail, cluster[0], "bad remotecall_wait")


def test_await_in_asyncio(cluster: list[int]) -> None:
    async def main() -> list[Any]:
        futures = [dist.remotecall(slow, pid, pid, 0.3) for pid in cluster]
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        task = asyncio.create_task(ticker())
        values = await asyncio.gather(*futures)
        task.cancel()
        # The event loop kept running while the Futures were awaited.
        assert ticks >= 5
        local = dist.Future()
        local.put("here")
        return [*values, await local, await futures[0]]

    assert asyncio.run(main()) == [*cluster, "here", cluster[0]]


def test_await_a_failed_future(cluster: list[int]) -> None:
    async def main() -> None:
        await dist.remotecall(fail, cluster[0], "async failure")

    with pytest.raises(dist.RemoteException, match="async failure"):
        asyncio.run(main())


def test_fetch_from_many_threads(cluster: list[int]) -> None:
    future = dist.remotecall(slow, cluster[0], "shared", 0.2)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(future.fetch())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["shared"] * 6


def test_questions_racing_with_pushed_results(cluster: list[int]) -> None:
    # Small results are pushed to the caller unasked; a wait/isready/fetch already on its way
    # to the owner must still be answered (the owner must not have dropped the value).
    def run(n: int) -> None:
        for i in range(40):
            future = dist.remotecall(identity, cluster[(n + i) % 2], i)
            if (n + i) % 3 == 0:
                future.wait(timeout=5)
            elif (n + i) % 3 == 1:
                future.isready()
            assert future.fetch(timeout=5) == i

    in_threads(run, 6)


# -- Futures passed around ---------------------------------------------------------------------


def test_master_future_resolves_on_a_worker(cluster: list[int]) -> None:
    future = dist.Future()
    pending = dist.remotecall(fetch_it, cluster[0], future)
    time.sleep(0.1)
    assert not pending.isready()
    future.put({"from": "master"})
    assert pending.fetch(timeout=5) == {"from": "master"}


def test_worker_future_resolves_on_another_worker(cluster: list[int]) -> None:
    a, b = cluster
    future = dist.remotecall(slow, a, "from a", 0.2)
    assert dist.remotecall_fetch(fetch_it, b, future) == "from a"
    assert future.fetch() == "from a"


def test_future_put_by_a_worker(cluster: list[int]) -> None:
    a, b = cluster
    future = dist.Future(a)
    dist.remotecall_fetch(put_it, b, future, 42)
    assert future.fetch(timeout=5) == 42


def test_fetched_future_travels_with_its_value(cluster: list[int]) -> None:
    future = dist.remotecall(identity, cluster[0], "value")
    assert future.fetch() == "value"
    assert eventually(lambda: not held_on(cluster[0], future))
    # The owner dropped it; the copy sent still resolves, from the cached value.
    assert dist.remotecall_fetch(fetch_it, cluster[1], future) == "value"


# -- distributed reference counting ---------------------------------------------------------------


def test_owner_frees_after_fetch(cluster: list[int]) -> None:
    future = dist.remotecall(identity, cluster[0], "x" * 1000)
    future.wait()
    assert held_on(cluster[0], future)
    future.fetch()
    assert eventually(lambda: not held_on(cluster[0], future))


def test_owner_frees_after_the_reference_is_dropped(cluster: list[int]) -> None:
    future = dist.remotecall(identity, cluster[0], 1)
    future.wait()
    rrid = (future.whence, future.id)
    assert dist.remotecall_fetch(owner_holds, cluster[0], rrid)
    del future
    gc.collect()
    assert eventually(lambda: not dist.remotecall_fetch(owner_holds, cluster[0], rrid))


def test_owner_keeps_the_value_while_another_process_holds_it(cluster: list[int]) -> None:
    a, b = cluster
    # Not fetched (nor ready) here: the copy b gets is a bare reference counted by the owner.
    future = dist.remotecall(slow, a, "kept", 0.2)
    rrid = (future.whence, future.id)
    dist.remotecall_fetch(keep, b, future)
    del future
    gc.collect()
    time.sleep(0.4)
    assert dist.remotecall_fetch(owner_holds, a, rrid)
    dist.remotecall_fetch(forget, b)
    assert eventually(lambda: not dist.remotecall_fetch(owner_holds, a, rrid))


def test_master_owned_future_freed_after_workers_drop_it(cluster: list[int]) -> None:
    from pydistributed._refs import TABLE

    a, b = cluster
    future = dist.Future()
    rrid = RRID(future.whence, future.id)
    for pid in cluster:
        dist.remotecall_fetch(keep, pid, future)
    del future
    gc.collect()
    time.sleep(0.2)
    assert rrid in TABLE.values
    # b sets it through its copy (and caches the value); a still holds a bare reference.
    dist.remotecall_fetch(put_kept, b, "set by b")
    dist.remotecall_fetch(forget, b)
    time.sleep(0.2)
    assert rrid in TABLE.values
    assert TABLE.values[rrid].store.fetch(timeout=1) == "set by b"
    dist.remotecall_fetch(forget, a)
    assert eventually(lambda: rrid not in TABLE.values)


def test_no_references_left_behind(cluster: list[int]) -> None:
    futures = [dist.remotecall(identity, cluster[i % 2], i) for i in range(50)]
    assert [f.fetch() for f in futures] == list(range(50))
    rrids = [(f.whence, f.id) for f in futures]
    del futures
    gc.collect()

    def none_held() -> bool:
        return not any(
            dist.remotecall_fetch(owner_holds, cluster[i % 2], rrid) for i, rrid in enumerate(rrids)
        )

    assert eventually(none_held)


def test_futures_compare_by_reference(cluster: list[int]) -> None:
    future = dist.remotecall(identity, cluster[0], 1)
    back = dist.remotecall_fetch(identity, cluster[1], future)  # a copy, via another process
    assert back == future
    assert hash(back) == hash(future)
    assert {future: "x"}[back] == "x"
    assert future != dist.remotecall(identity, cluster[0], 1)
    assert future != "not a future"


@pytest.mark.parametrize("pid", ["2", 2.0, True])
def test_future_with_a_bad_pid_raises_type_error(
    pid: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    ignored: list[Any] = []  # what "Exception ignored in ... __del__" would report
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    with pytest.raises(TypeError, match="pid"):
        dist.Future(pid)  # type: ignore[arg-type]
    gc.collect()
    assert ignored == []
