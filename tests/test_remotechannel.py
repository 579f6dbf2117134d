"""RemoteChannel, and the low-level reference API (remoteref_id, channel_from_id,
worker_id_from_socket), on real worker processes."""

from __future__ import annotations

import gc
import math
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import pydistributed as dist
from pydistributed import Channel, ChannelClosed, RemoteChannel
from pydistributed._cluster import PGRP
from support import eventually, identity, in_threads

BLOCKED = 0.3  # how long a call that must block is watched
PROMPT = 10.0  # how long a call that must finish is given

# Module state, separate on each process that imports this module.
KEPT: dict[str, Any] = {}


def keep(key: str, value: Any) -> None:
    KEPT[key] = value


def drop(key: str) -> None:
    KEPT.pop(key, None)
    gc.collect()


def put_into_kept(key: str, v: Any) -> None:
    KEPT[key]["rc"].put(v)


def master_id_from_socket() -> int:
    conn = PGRP.workers[1].conn
    assert conn is not None
    return dist.worker_id_from_socket(conn.sock)


def store_info(rrid: dist.RRID) -> tuple[int, str, float]:
    store = dist.channel_from_id(rrid)
    return dist.myid(), type(store).__name__, getattr(store, "size", -1)


def has_store(rrid: dist.RRID) -> bool:
    try:
        dist.channel_from_id(rrid)
    except KeyError:
        return False
    return True


def take_outcome(rc: RemoteChannel) -> Any:
    """Take from ``rc`` here; return the item or the name of the exception raised."""
    try:
        return rc.take()
    except Exception as exc:
        return type(exc).__name__


class ListStore:
    """A channel-like store without ``timeout`` keywords: any such object may back a channel."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.closed = False

    def put(self, v: Any) -> None:
        if self.closed:
            raise ChannelClosed()
        self.items.append(v)

    def take(self) -> Any:
        if not self.items:
            raise ChannelClosed() if self.closed else LookupError("empty")
        return self.items.pop()  # LIFO: shows that this store, not a Channel, is used

    def fetch(self) -> Any:
        return self.items[-1]

    def isready(self) -> bool:
        return bool(self.items)

    def wait(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


# -- construction and the basic operations --------------------------------------------------


def test_default_store_is_channel_of_one_on_the_owner(cluster: list[int]) -> None:
    a, _ = cluster
    rc = RemoteChannel(pid=a)
    assert rc.where == a
    assert dist.remotecall_fetch(store_info, a, dist.remoteref_id(rc)) == (a, "Channel", 1)
    assert not rc.isready()
    assert rc.put("x") is rc
    assert rc.isready()
    assert rc.fetch() == "x"
    assert rc.wait() is rc
    assert rc.take() == "x"
    # Channel(1) is full after one put.
    rc.put(1)
    with pytest.raises(TimeoutError):
        rc.put(2, timeout=0.2)
    assert rc.take() == 1


def test_constructor_forms(cluster: list[int]) -> None:
    a, b = cluster
    assert RemoteChannel().where == 1
    assert RemoteChannel(b).where == b
    rc = RemoteChannel(lambda: Channel(10), a)
    assert dist.remotecall_fetch(store_info, a, dist.remoteref_id(rc)) == (a, "Channel", 10)
    rc = RemoteChannel(lambda: Channel(math.inf), pid=b)
    for i in range(100):
        rc.put(i)
    assert [rc.take() for _ in range(100)] == list(range(100))
    # Made on this process: the store is the very object the factory returned.
    local = RemoteChannel(lambda: Channel(3))
    assert dist.channel_from_id(dist.remoteref_id(local)).size == 3


def test_any_channel_like_object_can_back_it(cluster: list[int]) -> None:
    rc = RemoteChannel(ListStore, cluster[0])
    assert dist.remotecall_fetch(store_info, cluster[0], rc.rrid)[1] == "ListStore"
    rc.put(1)
    rc.put(2)
    assert rc.isready()
    assert rc.fetch() == 2
    assert rc.take() == 2
    assert rc.wait() is rc
    rc.close()
    assert list(rc) == [1]


def test_constructor_errors(cluster: list[int]) -> None:
    with pytest.raises(TypeError):
        RemoteChannel("not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RemoteChannel(cluster[0], cluster[1])
    with pytest.raises(TypeError):
        RemoteChannel(Channel, pid="2")  # type: ignore[arg-type]
    with pytest.raises(dist.RemoteException) as info:
        RemoteChannel(lambda: 1 / 0, cluster[0])
    assert isinstance(info.value.exception, ZeroDivisionError)
    with pytest.raises(ValueError):
        RemoteChannel(pid=10**6)


def test_a_failed_constructor_leaves_nothing_to_release(
    cluster: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    for make in (
        lambda: RemoteChannel(pid=10**6),
        lambda: RemoteChannel(lambda: 1 / 0, cluster[0]),
    ):
        with pytest.raises((ValueError, dist.RemoteException)):
            make()
        gc.collect()
    assert unraisable == []


def test_timeouts_are_raised_unwrapped(cluster: list[int]) -> None:
    rc = RemoteChannel(cluster[0])
    for op in (rc.take, rc.fetch):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            op(timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 3
    with pytest.raises(TimeoutError):
        rc.wait(0.1)


def test_iteration_until_closed_and_drained(cluster: list[int]) -> None:
    rc = RemoteChannel(lambda: Channel(10), cluster[0])

    def produce(c: RemoteChannel) -> None:
        for i in range(5):
            c.put(i)
        c.close()

    dist.remotecall_wait(produce, cluster[1], rc)
    assert list(rc) == [0, 1, 2, 3, 4]
    assert list(rc) == []


# -- blocking, rendezvous, close ------------------------------------------------------------


def test_rendezvous_of_an_unbuffered_channel(cluster: list[int]) -> None:
    a, b = cluster
    rc = RemoteChannel(lambda: Channel(0), a)
    events: list[str] = []
    with ThreadPoolExecutor(2) as pool:

        def put(v: str) -> None:
            rc.put(v)
            events.append(f"put {v} returned")

        first = pool.submit(put, "one")
        time.sleep(BLOCKED)
        assert not first.done(), "put on an unbuffered channel returned before a take"
        assert rc.isready()  # a putter is waiting
        assert rc.fetch() == "one"
        assert not first.done()
        # Another process takes: that releases the putter.
        events.append("taking")
        assert dist.remotecall_fetch(take_outcome, b, rc) == "one"
        first.result(PROMPT)
        assert events == ["taking", "put one returned"]
        # A take that comes first waits for the put.
        taker = pool.submit(rc.take)
        time.sleep(BLOCKED)
        assert not taker.done()
        dist.remotecall_fetch(lambda c: c.put("two") and None, b, rc)
        assert taker.result(PROMPT) == "two"
    assert not rc.isready()


def test_blocked_take_blocks_neither_the_owner_nor_other_puts(cluster: list[int]) -> None:
    a, b = cluster
    rc = RemoteChannel(a)
    with ThreadPoolExecutor(1) as pool:
        taker = pool.submit(rc.take)
        time.sleep(BLOCKED)
        assert not taker.done()
        # The owner still answers other calls at once, several times over.
        t0 = time.monotonic()
        for _ in range(20):
            assert dist.remotecall_fetch(identity, a, 7) == 7
        assert time.monotonic() - t0 < 5
        # A take waiting on worker `b` does not stop a put from here either.
        on_b = dist.remotecall(take_outcome, b, rc)
        time.sleep(BLOCKED)
        dist.remotecall_fetch(lambda c: c.put("from b") and None, b, rc)
        rc.put("from master")
        got = {taker.result(PROMPT), on_b.fetch(timeout=PROMPT)}
    assert got == {"from b", "from master"}


def test_a_blocked_take_does_not_slow_other_calls_down(cluster: list[int]) -> None:
    a, b = cluster
    rc = RemoteChannel(lambda: Channel(1000), a)

    def median_call_seconds() -> float:
        times = []
        for _ in range(60):
            t0 = time.perf_counter()
            rc.put(1)
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    idle = median_call_seconds()
    assert [rc.take() for _ in range(60)] == [1] * 60
    blocked = RemoteChannel(a)
    on_b = dist.remotecall(take_outcome, b, blocked)  # a call waits on worker a from now on
    time.sleep(BLOCKED)
    busy = median_call_seconds()
    blocked.put("done")
    assert on_b.fetch(timeout=PROMPT) == "done"
    # A waiting call once delayed every later call by the engine's 2 ms hand-over delay.
    assert busy - idle < 0.001, f"{busy * 1e6:.0f} µs per call vs {idle * 1e6:.0f} µs idle"


def test_close_wakes_every_blocked_caller(cluster: list[int]) -> None:
    a, b = cluster
    rc = RemoteChannel(a)
    with ThreadPoolExecutor(2) as pool:
        here = pool.submit(rc.take)
        fetcher = pool.submit(rc.fetch)
        there = dist.remotecall(take_outcome, b, rc)
        time.sleep(BLOCKED)
        assert not here.done()
        assert not there.isready()
        rc.close()
        with pytest.raises(ChannelClosed) as info:
            here.result(PROMPT)
        assert type(info.value) is ChannelClosed
        with pytest.raises(ChannelClosed):
            fetcher.result(PROMPT)
    assert there.fetch(timeout=PROMPT) == "ChannelClosed"


@pytest.mark.parametrize("owner", ["local", "worker"])
def test_closed_channel_raises_channelclosed_itself(cluster: list[int], owner: str) -> None:
    rc = RemoteChannel(lambda: Channel(3), None if owner == "local" else cluster[0])
    rc.put(1)
    rc.close()
    for op in (lambda: rc.put(2), lambda: rc.put(2, timeout=1)):
        with pytest.raises(ChannelClosed) as info:
            op()
        assert type(info.value) is ChannelClosed
    # What was put before the close can still be taken.
    assert rc.isready()
    assert rc.take() == 1
    for op in (rc.take, rc.fetch, rc.wait):
        with pytest.raises(ChannelClosed) as info:
            op()
        assert type(info.value) is ChannelClosed
    rc.close()  # twice is harmless
    local = Channel(1)
    local.close()
    with pytest.raises(ChannelClosed):
        local.put(1)


def test_owner_death_fails_every_blocked_process(workers2: list[int]) -> None:
    a, b = workers2
    rc = RemoteChannel(a)
    ospid = dist.remotecall_fetch(os.getpid, a)
    with ThreadPoolExecutor(1) as pool:
        here = pool.submit(rc.take)
        there = dist.remotecall(take_outcome, b, rc)
        time.sleep(BLOCKED)
        assert not here.done()
        t0 = time.monotonic()
        os.kill(ospid, signal.SIGKILL)
        with pytest.raises(dist.ProcessExitedException) as info:
            here.result(PROMPT)
        assert info.value.worker_id == a
        assert there.fetch(timeout=PROMPT) == "ProcessExitedException"
        assert time.monotonic() - t0 < 5
    with pytest.raises(dist.ProcessExitedException):
        rc.put(1)


# -- references travel ------------------------------------------------------------------------


def test_copies_in_other_processes_refer_to_the_same_store(cluster: list[int]) -> None:
    a, b = cluster
    rc = RemoteChannel(lambda: Channel(10), a)
    back = dist.remotecall_fetch(identity, b, {"channels": [rc]})["channels"][0]
    assert back == rc
    assert hash(back) == hash(rc)
    assert back is not rc
    back.put("via copy")
    assert rc.take() == "via copy"
    # Stored inside another object on a worker, then used there.
    dist.remotecall_fetch(keep, b, "box", {"rc": rc})
    dist.remotecall_fetch(put_into_kept, b, "box", "from b")
    assert rc.take() == "from b"
    dist.remotecall_fetch(drop, b, "box")


def test_made_on_a_worker_used_from_another_and_the_master(cluster: list[int]) -> None:
    a, b = cluster
    rc = dist.remotecall_fetch(lambda: RemoteChannel(lambda: Channel(10)), a)
    assert rc.where == a
    assert rc.whence == a
    rc.put("master")
    assert dist.remotecall_fetch(take_outcome, b, rc) == "master"
    dist.remotecall_fetch(lambda c: c.put("b") and None, b, rc)
    assert rc.take() == "b"
    # Made on worker a, owned by worker b.
    rc2 = dist.remotecall_fetch(lambda p: RemoteChannel(p), a, b)
    assert (rc2.where, rc2.whence) == (b, a)
    rc2.put(1)
    assert dist.remotecall_fetch(take_outcome, b, rc2) == 1


def test_the_owner_frees_the_store_once_nobody_holds_it(cluster: list[int]) -> None:
    a, b = cluster
    rc = RemoteChannel(lambda: Channel(10), a)
    rrid = dist.remoteref_id(rc)
    dist.remotecall_fetch(keep, b, "rc", rc)
    del rc
    gc.collect()
    # Worker b still holds a copy: the store stays.
    time.sleep(0.3)
    assert dist.remotecall_fetch(has_store, a, rrid)
    dist.remotecall_fetch(drop, b, "rc")
    assert eventually(lambda: not dist.remotecall_fetch(has_store, a, rrid), timeout=PROMPT)
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(dist.channel_from_id, a, rrid)
    assert isinstance(info.value.exception, KeyError)


def test_a_store_owned_here_is_freed_too(cluster: list[int]) -> None:
    rc = RemoteChannel(lambda: Channel(10))
    rrid = dist.remoteref_id(rc)
    assert has_store(rrid)
    dist.remotecall_fetch(identity, cluster[0], rc)  # a copy came and went
    del rc
    gc.collect()
    assert eventually(lambda: not has_store(rrid), timeout=PROMPT)


# -- concurrency ------------------------------------------------------------------------------


def test_many_master_threads_at_once(cluster: list[int]) -> None:
    n_threads, n_calls = 8, 200
    shared = RemoteChannel(lambda: Channel(math.inf), cluster[0])
    own = [RemoteChannel(lambda: Channel(1), cluster[t % 2]) for t in range(n_threads)]
    errors: list[str] = []

    def run(t: int) -> None:
        rc = own[t]
        for i in range(n_calls):
            if i % 2:
                rc.put((t, i))
                got = rc.take()
            else:
                got = dist.remotecall_fetch(identity, cluster[(t + i) % 2], (t, i))
            if got != (t, i):
                errors.append(f"thread {t} call {i}: got {got!r}")
            if i % 20 == 0:
                dist.put(shared, (t, i))

    in_threads(run, n_threads, timeout=50)
    assert not errors
    expected = {(t, i) for t in range(n_threads) for i in range(0, n_calls, 20)}
    assert {shared.take() for _ in expected} == expected
    assert not shared.isready()


def test_worker_code_uses_channels_and_calls(cluster: list[int]) -> None:
    a, b = cluster
    results = RemoteChannel(lambda: Channel(10))

    def on_a(out: RemoteChannel, other: int) -> str:
        # Make a channel here, have another worker fill it, then forward to the master.
        mine = RemoteChannel(lambda: Channel(2))
        dist.remotecall_wait(lambda c: c.put(dist.myid()) and None, other, mine)
        value = dist.take(mine)
        dist.put(out, ("on", dist.myid(), "from", value))
        return "done"

    assert dist.remotecall_fetch(on_a, a, results, b) == "done"
    assert results.take() == ("on", a, "from", b)


# -- the low-level reference API --------------------------------------------------------------


def test_remoteref_id(cluster: list[int]) -> None:
    rc = RemoteChannel(cluster[0])
    rrid = dist.remoteref_id(rc)
    assert isinstance(rrid, dist.RRID)
    assert isinstance(rrid, tuple)
    assert rrid == (rc.whence, rc.id) == (1, rrid.id)
    future = dist.remotecall(identity, cluster[0], 1)
    assert dist.remoteref_id(future) == dist.RRID(future.whence, future.id)
    assert dist.remoteref_id(dist.remotecall_fetch(identity, cluster[1], rc)) == rrid
    with pytest.raises(TypeError):
        dist.remoteref_id(Channel(1))


def test_channel_from_id(cluster: list[int]) -> None:
    a, _ = cluster
    rc = RemoteChannel(lambda: Channel(4), a)
    rrid = dist.remoteref_id(rc)
    assert dist.remotecall_fetch(store_info, a, rrid) == (a, "Channel", 4)
    # Not here: a clear error.
    with pytest.raises(KeyError, match="no reference"):
        dist.channel_from_id(rrid)
    # A Future's owner keeps its store of the value.
    future = dist.remotecall(identity, a, "v")
    future.wait()
    store = dist.remotecall_fetch(
        lambda r: (dist.channel_from_id(r).isready(), dist.channel_from_id(r).fetch()),
        a,
        dist.remoteref_id(future),
    )
    assert store == (True, "v")
    local = RemoteChannel(lambda: Channel(4))
    assert dist.channel_from_id(tuple(dist.remoteref_id(local))).size == 4


def test_worker_id_from_socket(cluster: list[int]) -> None:
    a = cluster[0]
    for pid in cluster:
        assert dist.worker_id_from_socket(PGRP.workers[pid].conn.sock) == pid  # type: ignore[union-attr]
    # On a worker, its connection to the master.
    assert dist.remotecall_fetch(master_id_from_socket, a) == 1
    # Sockets that are not cluster connections, and things that are not sockets.
    with socket.socket() as sock:
        assert dist.worker_id_from_socket(sock) == -1
    closed = socket.socket()
    closed.close()
    assert dist.worker_id_from_socket(closed) == -1
    left, right = socket.socketpair()
    with left, right:
        assert dist.worker_id_from_socket(left) == -1
    assert dist.worker_id_from_socket(object()) == -1
