"""remotecall, remotecall_wait, remotecall_fetch and remote_do on a shared two-worker cluster."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

import pydistributed as dist
from support import eventually, identity, in_threads

# Module state, living separately on each process that imports this module.
EVENT = threading.Event()
STORE: dict[str, Any] = {}


def wait_for_event(timeout: float) -> bool:
    return EVENT.wait(timeout)


def set_event() -> None:
    EVENT.set()


def clear_event() -> None:
    EVENT.clear()


def store(key: str, value: Any) -> None:
    STORE[key] = value


def stored(key: str) -> Any:
    return STORE.get(key)


def signature(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def test_remotecall_returns_at_once(cluster: list[int]) -> None:
    t0 = time.monotonic()
    future = dist.remotecall(time.sleep, cluster[0], 1.0)
    assert time.monotonic() - t0 < 0.5
    assert isinstance(future, dist.Future)
    assert future.where == cluster[0]
    assert future.fetch() is None
    assert time.monotonic() - t0 >= 1.0


def test_remotecall_wait_returns_when_done(cluster: list[int]) -> None:
    t0 = time.monotonic()
    future = dist.remotecall_wait(time.sleep, cluster[0], 0.3)
    assert time.monotonic() - t0 >= 0.3
    assert isinstance(future, dist.Future)
    assert future.isready()
    assert future.fetch() is None


@pytest.mark.parametrize("how", ["remotecall", "remotecall_wait", "remotecall_fetch"])
def test_positional_and_keyword_arguments(cluster: list[int], how: str) -> None:
    call = getattr(dist, how)
    # Keywords named like the library's own parameters go to the function.
    result = call(signature, cluster[1], 1, "two", f=3, pid=4, args=5, kwargs=6)
    if how != "remotecall_fetch":
        result = result.fetch()
    assert result == ((1, "two"), {"f": 3, "pid": 4, "args": 5, "kwargs": 6})


def test_remote_do_by_pid(cluster: list[int]) -> None:
    a, b = cluster
    assert dist.remote_do(store, a, "k", value=[a]) is None
    assert eventually(lambda: dist.remotecall_fetch(stored, a, "k") == [a])
    assert dist.remotecall_fetch(stored, b, "k") is None
    assert stored("k") is None


def touch(path: str) -> None:
    with open(path, "w"):
        pass


@pytest.mark.parametrize("idle", [0.0, 0.7])
def test_a_lone_remote_do_leaves_by_itself(cluster: list[int], tmp_path: Any, idle: float) -> None:
    # Deferred frames wait for the caller's next message or wait; with neither (here the
    # caller only sleeps and looks at files), they still leave within milliseconds, also
    # the first after the process sat idle.
    time.sleep(idle)
    for i in range(3):
        path = str(tmp_path / f"done{i}")
        t0 = time.monotonic()
        dist.remote_do(touch, cluster[0], path)
        while not os.path.exists(path):
            assert time.monotonic() - t0 < 2.0, "the one-way message was not sent"
            time.sleep(0.001)


def test_one_way_messages_and_a_call_keep_their_order(cluster: list[int]) -> None:
    a = cluster[0]
    for i in range(200):
        dist.remote_do(store, a, "order", i)
        if i % 7 == 0:
            assert dist.remotecall_fetch(stored, a, "order") == i
    assert dist.remotecall_fetch(stored, a, "order") == 199


def test_results_are_values_from_the_worker(cluster: list[int]) -> None:
    for pid in cluster:
        assert dist.remotecall_fetch(dist.myid, pid) == pid
        assert dist.remotecall(dist.myid, pid).fetch() == pid
        assert dist.remotecall_wait(dist.myid, pid).fetch() == pid


def test_calls_run_concurrently_on_a_worker(cluster: list[int]) -> None:
    a = cluster[0]
    dist.remotecall_fetch(clear_event, a)
    waiting = dist.remotecall(wait_for_event, a, 10.0)
    time.sleep(0.1)
    assert not waiting.isready()
    # This call must run while the first one blocks.
    dist.remotecall_fetch(set_event, a)
    assert waiting.fetch(timeout=5) is True


def test_blocked_fetch_does_not_stop_the_worker(cluster: list[int]) -> None:
    a = cluster[0]
    dist.remotecall_fetch(clear_event, a)
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(dist.remotecall_fetch(wait_for_event, a, 10.0))
    )
    thread.start()
    try:
        time.sleep(0.1)
        assert thread.is_alive()
        dist.remote_do(set_event, a)
    finally:
        thread.join(5)
    assert result == [True]


def test_many_sleeping_calls_overlap(cluster: list[int]) -> None:
    t0 = time.monotonic()
    futures = [dist.remotecall(time.sleep, cluster[i % 2], 0.5) for i in range(20)]
    for future in futures:
        future.wait()
    # Ten 0.5 s calls per worker, one after the other, would take 5 s.
    assert time.monotonic() - t0 < 2.5


def test_many_threads_call_at_once(cluster: list[int]) -> None:
    def run(n: int) -> None:
        for i in range(20):
            pid = cluster[(n + i) % 2]
            assert dist.remotecall_fetch(identity, pid, (n, i)) == (n, i)
            assert dist.remotecall(identity, pid, i).fetch() == i

    in_threads(run, 8)


def call_back(pid: int) -> int:
    return int(dist.remotecall_fetch(dist.myid, pid))


def test_worker_calls_worker_and_master(cluster: list[int]) -> None:
    a, b = cluster
    assert dist.remotecall_fetch(call_back, a, b) == b
    assert dist.remotecall_fetch(call_back, b, a) == a
    assert dist.remotecall_fetch(call_back, a, 1) == 1
    # Three levels: master -> a -> b -> master.
    assert dist.remotecall_fetch(dist.remotecall_fetch, a, call_back, b, 1) == 1


def test_calls_to_myid_run_in_process(cluster: list[int]) -> None:
    me = dist.myid()
    obj = object()
    assert dist.remotecall_fetch(identity, me, obj) is obj
    assert dist.remotecall(identity, me, obj).fetch() is obj
    assert dist.remotecall_wait(identity, me, obj).fetch() is obj
    assert dist.remotecall_wait(lambda *, x: x, me, x=obj).fetch() is obj
    box: list[Any] = []
    dist.remote_do(box.append, me, obj)
    assert eventually(lambda: box == [obj])
    assert box[0] is obj


def test_calls_to_myid_on_a_worker_run_there(cluster: list[int]) -> None:
    a = cluster[0]

    def same_object() -> bool:
        obj = object()
        me = dist.myid()
        return bool(
            dist.remotecall_fetch(identity, me, obj) is obj
            and dist.remotecall(identity, me, obj).fetch() is obj
        )

    assert dist.remotecall_fetch(same_object, a) is True


def test_remotecall_to_an_unknown_process(cluster: list[int]) -> None:
    with pytest.raises((ValueError, dist.DistributedError)):
        dist.remotecall_fetch(identity, 10_000, 1)
    with pytest.raises((ValueError, dist.DistributedError)):
        dist.remotecall(identity, 10_000, 1)


@pytest.mark.parametrize("bad", ["2", 2.0, True, None])
def test_pid_must_be_an_int(cluster: list[int], bad: Any) -> None:
    with pytest.raises((TypeError, KeyError)):
        dist.remotecall_fetch(identity, bad, 1)
