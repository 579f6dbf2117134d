"""Worker pools (Julia's workerpool.jl and the pool blocks of test/distributed_exec.jl)."""

from __future__ import annotations

import gc
import os
import pickle
import signal
import threading

import pytest

import pydistributed as dist
from pydistributed._refs import TABLE
from pydistributed._workerpool import _FN_CACHE
from support import eventually, ospid_of

# -- functions the workers import by reference --------------------------------------------------

_kept: dict[str, object] = {}


def keep(name: str, value: object) -> None:
    _kept[name] = value


def forget(name: str) -> None:
    _kept.pop(name, None)


def pool_len(name: str) -> int:
    return len(_kept[name])  # type: ignore[arg-type]


def cached_keys() -> int:
    return len(_FN_CACHE)


def take_and_put(pool: dist.WorkerPool) -> tuple[int, int, bool]:
    pid = pool.take()
    busy = pool.isready()
    pool.put(pid)
    return pid, len(pool), busy


def wait_on(pool: dist.WorkerPool) -> str:
    pool.wait()
    return "free"


def sleeper(seconds: float) -> int:
    import time

    time.sleep(seconds)
    return dist.myid()


# -- WorkerPool ---------------------------------------------------------------------------------


def test_workerpool_members_take_put(cluster: list[int]) -> None:
    pool = dist.WorkerPool(cluster)
    assert len(pool) == 2
    assert pool.workers() == set(cluster)
    assert pool.isready()
    first = pool.take()
    second = pool.take()
    assert {first, second} == set(cluster)
    assert not pool.isready()
    assert len(pool) == 2  # busy workers are still members
    pool.put(first)
    assert pool.isready()
    assert pool.take() == first
    pool.put(first)
    pool.put(second)
    pool.put(second)  # a worker that is already free is not added twice
    assert sorted([pool.take(), pool.take()]) == sorted(cluster)
    assert not pool.isready()


def test_push_and_put_of_a_non_member(cluster: list[int]) -> None:
    pool = dist.WorkerPool([])
    assert len(pool) == 0
    assert pool.workers() == set()
    pool.put(cluster[0])  # not a member: ignored
    assert not pool.isready()
    assert pool.push(cluster[0]) is pool
    pool.push(cluster[0])
    assert len(pool) == 1
    assert pool.take() == cluster[0]


def test_empty_pool_raises_on_take(cluster: list[int]) -> None:
    with pytest.raises(dist.DistributedError, match="no active worker"):
        dist.WorkerPool([]).take()


def test_wait_local_and_remote(cluster: list[int]) -> None:
    # Julia: "wait on worker pool", local and remote call to wait.
    pool = dist.WorkerPool(cluster[:1])
    w = pool.take()
    assert not pool.isready()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (pool.wait(), done.set()))
    thread.start()
    assert not done.wait(0.2)
    pool.put(w)
    assert done.wait(10)
    thread.join()

    pool.take()
    future = dist.spawnat(w, wait_on, pool)
    assert not future.isready()
    pool.put(w)
    assert dist.timedwait(future.isready, 10) == "ok"
    assert future.fetch() == "free"


def test_remotecall_on_pool(cluster: list[int]) -> None:
    pool = dist.WorkerPool(cluster)
    assert dist.fetch(dist.remotecall(dist.myid, pool)) in pool.workers()
    assert dist.remotecall_fetch(dist.myid, pool) in cluster
    assert dist.remotecall_wait(dist.myid, pool).fetch() in cluster
    with pytest.raises(dist.RemoteException):
        dist.fetch(dist.remotecall(int, pool, "not a number"))
    with pytest.raises(dist.RemoteException):
        dist.remotecall_fetch(int, pool, "not a number")
    assert dist.timedwait(lambda: len(pool) == 2 and pool.isready(), 10) == "ok"
    assert sorted([pool.take(), pool.take()]) == sorted(cluster)


def test_remote_do_gives_the_worker_back_at_once(cluster: list[int]) -> None:
    pool = dist.WorkerPool(cluster[:1])
    dist.remote_do(sleeper, pool, 2.0)
    assert pool.isready()


@pytest.mark.parametrize("pool_type", [dist.WorkerPool, dist.CachingPool])
def test_remotecall_keeps_the_worker_until_done(cluster: list[int], pool_type: type) -> None:
    # Julia: remotecall(f, ::AbstractWorkerPool) keeps the worker out of the pool until the
    # underlying call has finished.
    channel = dist.RemoteChannel(cluster[0])
    pool = pool_type([cluster[0]])
    future = dist.remotecall(lambda: channel.take(), pool)
    assert not pool.isready()
    channel.put(1)
    assert future.fetch() == 1
    assert dist.timedwait(pool.isready, 10) == "ok"


def test_remote(cluster: list[int]) -> None:
    pool = dist.WorkerPool(cluster[1:])
    assert dist.remote(dist.myid, pool)() == cluster[1]
    assert dist.remote(divmod)(7, 2) == (3, 1)
    assert dist.remote(lambda x, *, k: x * k)(3, k=2) == 6


def test_pool_as_argument_forwards_to_its_owner(cluster: list[int]) -> None:
    pool = dist.WorkerPool(cluster)
    pid, length, ready = dist.remotecall_fetch(take_and_put, cluster[0], pool)
    assert pid in cluster
    assert length == 2
    assert ready  # the other worker was still free
    assert pool.isready()
    assert len(pool) == 2
    # pmap on a worker over the master's pool uses every worker of the pool
    used = dist.remotecall_fetch(
        lambda wp: sorted(set(dist.pmap(lambda _: dist.myid(), range(40), pool=wp))),
        cluster[0],
        pool,
    )
    assert used == sorted(cluster)


def test_pool_outlives_the_owners_handle_while_referenced(cluster: list[int]) -> None:
    pool = dist.WorkerPool(cluster)
    rrid = pool.rrid
    dist.remotecall_fetch(keep, cluster[0], "pool", pool)
    del pool
    gc.collect()
    TABLE.flush()
    assert TABLE.get(rrid) is not None
    assert dist.remotecall_fetch(pool_len, cluster[0], "pool") == 2
    dist.remotecall_fetch(forget, cluster[0], "pool")
    dist.remotecall_fetch(gc.collect, cluster[0])
    assert eventually(lambda: TABLE.get(rrid) is None, timeout=10)


def test_workerpool_pickles_as_a_reference(cluster: list[int]) -> None:
    pool = dist.WorkerPool(cluster)
    copy = pickle.loads(pickle.dumps(pool))
    assert copy.rrid == pool.rrid
    assert copy.take() in cluster
    assert len(pool) == 2


# -- the default pool -------------------------------------------------------------------------


def test_default_worker_pool(cluster: list[int]) -> None:
    pool = dist.default_worker_pool()
    assert pool is dist.default_worker_pool()
    assert set(cluster) <= pool.workers()
    assert pool.workers() == set(dist.workers())
    on_worker = dist.remotecall_fetch(
        lambda: sorted(dist.default_worker_pool().workers()), cluster[0]
    )
    assert on_worker == sorted(pool.workers())
    assert dist.remotecall_fetch(dist.myid, pool) in cluster


def test_default_pool_follows_the_cluster(cluster: list[int]) -> None:
    pool = dist.default_worker_pool()
    (new,) = dist.addprocs(1)
    try:
        assert new in pool.workers()
    finally:
        dist.rmprocs(new, waitfor=20)
    assert new not in pool.workers()
    assert set(cluster) <= pool.workers()


def test_take_never_hands_out_a_dead_worker(workers2: list[int]) -> None:
    pool = dist.WorkerPool(workers2)
    dead = workers2[0]
    os.kill(ospid_of(dead), signal.SIGKILL)
    assert eventually(lambda: dead not in dist.procs(), timeout=10)
    assert pool.workers() == {workers2[1]}
    assert pool.take() == workers2[1]
    assert not pool.isready()


def test_take_skips_a_worker_being_removed(workers2: list[int]) -> None:
    pool = dist.WorkerPool(workers2)
    dist.rmprocs(workers2[0], waitfor=0)
    for _ in range(3):
        pid = pool.take()
        assert pid == workers2[1]
        pool.put(pid)


def test_takers_give_up_when_the_last_worker_dies(workers2: list[int]) -> None:
    pool = dist.WorkerPool(workers2[:1])
    pid = pool.take()
    errors: list[BaseException] = []

    def taker() -> None:
        try:
            pool.take()
        except dist.DistributedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=taker)
    thread.start()
    dist.rmprocs(pid, waitfor=20)
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1


# -- CachingPool --------------------------------------------------------------------------------


def test_cachingpool_basics(cluster: list[int]) -> None:
    # Julia: CachingPool tests.
    pool = dist.CachingPool(cluster)
    assert dist.pmap(lambda x: x, range(100), pool=pool) == list(range(100))
    assert dist.fetch(dist.remotecall(dist.myid, pool)) in pool.workers()
    with pytest.raises(dist.RemoteException):
        dist.fetch(dist.remotecall(int, pool, "x"))
    assert pool._cache
    assert dist.clear(pool) is pool
    assert not pool._cache


def test_cachingpool_sends_each_function_once_per_worker(cluster: list[int]) -> None:
    pool = dist.CachingPool(cluster)
    before = {p: dist.remotecall_fetch(cached_keys, p) for p in cluster}
    state = {"calls": 0}

    def count() -> tuple[int, int]:
        state["calls"] += 1
        return dist.myid(), state["calls"]

    seen: dict[int, list[int]] = {p: [] for p in cluster}
    for _ in range(10):
        pid, n = dist.remotecall_fetch(count, pool)
        seen[pid].append(n)
    for counts in seen.values():
        # The closure's state persists on each worker: it counts 1, 2, 3, ...
        assert counts == list(range(1, len(counts) + 1))
    assert state["calls"] == 0
    after = {p: dist.remotecall_fetch(cached_keys, p) for p in cluster}
    for p in cluster:
        if seen[p]:
            assert after[p] == before[p] + 1
    pool.clear()
    assert eventually(
        lambda: all(dist.remotecall_fetch(cached_keys, p) == before[p] for p in cluster)
    )
    # After clear the function is sent again: its state starts over.
    pid, n = dist.remotecall_fetch(count, pool)
    assert n == 1


def test_cachingpool_all_call_kinds(cluster: list[int]) -> None:
    pool = dist.CachingPool(cluster)
    f = lambda x: x + 1  # noqa: E731
    assert dist.remotecall_fetch(f, pool, 1) == 2
    assert dist.remotecall_wait(f, pool, 2).fetch() == 3
    assert dist.remotecall(f, pool, 3).fetch() == 4
    channel = dist.RemoteChannel(lambda: dist.Channel(10))
    g = lambda v: channel.put(v)  # noqa: E731
    dist.remote_do(g, pool, "done")
    assert channel.take(timeout=10) == "done"
    assert dist.timedwait(lambda: len(pool) == 2 and pool.isready(), 10) == "ok"


def test_cachingpool_is_not_sent(cluster: list[int]) -> None:
    pool = dist.CachingPool(cluster)
    with pytest.raises(TypeError):
        pickle.dumps(pool)


def test_cachingpool_cleared_when_collected(cluster: list[int]) -> None:
    pool = dist.CachingPool(cluster[:1])
    before = dist.remotecall_fetch(cached_keys, cluster[0])
    dist.remotecall_fetch(lambda: 1, pool)
    assert dist.remotecall_fetch(cached_keys, cluster[0]) == before + 1
    del pool
    gc.collect()
    assert eventually(lambda: dist.remotecall_fetch(cached_keys, cluster[0]) == before)


def test_cachingpool_resends_a_function_missing_on_the_worker(cluster: list[int]) -> None:
    pool = dist.CachingPool(cluster[:1])
    f = lambda: "value"  # noqa: E731
    assert dist.remotecall_fetch(f, pool) == "value"
    dist.remotecall_fetch(_FN_CACHE.clear, cluster[0])  # behind the pool's back
    assert dist.remotecall_fetch(f, pool) == "value"


def test_not_a_pool() -> None:
    with pytest.raises(TypeError, match="worker pool"):
        dist.remotecall_fetch(dist.myid, "two")


def test_custom_pool_subclass(cluster: list[int]) -> None:
    class Fixed(dist.AbstractWorkerPool):
        def __init__(self, pid: int) -> None:
            self.pid = pid
            self.given_back: list[int] = []

        def take(self) -> int:
            return self.pid

        def put(self, pid: int) -> None:
            self.given_back.append(pid)

        def workers(self) -> set[int]:
            return {self.pid}

        def __len__(self) -> int:
            return 1

    pool = Fixed(cluster[1])
    assert dist.remotecall_fetch(dist.myid, pool) == cluster[1]
    assert pool.given_back == [cluster[1]]
    assert dist.pmap(lambda x: (x, dist.myid()), [1, 2], pool=pool) == [
        (1, cluster[1]),
        (2, cluster[1]),
    ]
