"""Write-behind puts into a remote buffered channel (``_credits.py``), on real workers.

A put that spends a credit returns before its value reached the owner; these tests check
what must hold all the same: order, a process seeing its own puts, nothing accepted after a
close, reserved room given back to a putter that needs it, and to a process that dies.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest

import pydistributed as dist
from pydistributed import Channel, ChannelClosed, RemoteChannel, _credits
from support import eventually

PROMPT = 10.0


def credits_here(rc: RemoteChannel) -> int:
    """Credits this process holds for ``rc`` (0 if none)."""
    sender = _credits._senders.get((rc.where, (rc.whence, rc.id)))
    return 0 if sender is None else sender.credits


def put_all(rc: RemoteChannel, values: list[Any]) -> int:
    for v in values:
        rc.put(v)
    return credits_here(rc)


def take_n(rc: RemoteChannel, n: int) -> list[Any]:
    return [rc.take() for _ in range(n)]


def buffered(size: int) -> Any:
    return lambda: Channel(size)


def test_puts_spend_credits_and_keep_order(cluster: list[int]) -> None:
    rc = RemoteChannel(buffered(1000), cluster[0])
    rc.put(-1)  # a call: the answer brings credits
    assert credits_here(rc) == 250
    for i in range(200):
        rc.put(i)
    assert credits_here(rc) >= 50  # 250 granted, 200 spent; more if topped up already
    assert take_n(rc, 201) == [-1, *range(200)]
    assert not rc.isready()


def test_a_process_sees_its_own_puts(cluster: list[int]) -> None:
    rc = RemoteChannel(buffered(16), cluster[0])
    rc.put("first")
    assert credits_here(rc) > 0
    previous: Any = "first"
    for i in range(50):
        rc.put(i)  # one-way
        assert rc.fetch() == previous
        assert rc.take() == previous
        assert rc.isready()  # i itself, though it may still have been on its way
        previous = i
    assert rc.take() == 49
    assert not rc.isready()


def test_stream_between_workers_in_order(cluster: list[int]) -> None:
    producer, owner = cluster
    rc = RemoteChannel(buffered(100), owner)
    n = 20_000
    sent = dist.remotecall(put_all, producer, rc, list(range(n)))
    assert dist.remotecall_fetch(take_n, owner, rc, n) == list(range(n))
    sent.fetch()


def test_threads_of_one_process_share_credits(cluster: list[int]) -> None:
    rc = RemoteChannel(buffered(64), cluster[0])
    threads = [
        threading.Thread(target=put_all, args=(rc, [(t, i) for i in range(300)])) for t in range(4)
    ]
    for thread in threads:
        thread.start()
    got = take_n(rc, 1200)
    for thread in threads:
        thread.join(PROMPT)
    for t in range(4):
        assert [i for (who, i) in got if who == t] == list(range(300))


def test_the_value_is_taken_at_the_put(cluster: list[int]) -> None:
    rc = RemoteChannel(buffered(10), cluster[0])
    rc.put(0)
    items = [1, 2, 3]
    rc.put(items)  # one-way: pickled now
    items.append(4)
    array = np.arange(100_000, dtype=np.float64)  # out-of-band buffer: sent before return
    rc.put(array)
    array[:] = -1
    assert rc.take() == 0
    assert rc.take() == [1, 2, 3]
    np.testing.assert_array_equal(rc.take(), np.arange(100_000, dtype=np.float64))


def test_a_value_that_cannot_be_pickled_raises_and_the_next_ones_arrive(
    cluster: list[int],
) -> None:
    rc = RemoteChannel(buffered(10), cluster[0])
    rc.put(0)
    assert credits_here(rc) > 0
    with pytest.raises(TypeError):
        rc.put(threading.Lock())
    rc.put(1)
    rc.put(2)
    assert take_n(rc, 3) == [0, 1, 2]
    assert not rc.isready()


def close_it(rc: RemoteChannel) -> None:
    rc.close()


def test_no_put_is_accepted_after_a_close_elsewhere(cluster: list[int]) -> None:
    rc = RemoteChannel(buffered(100), cluster[0])
    rc.put(0)
    rc.put(1)  # one-way
    assert credits_here(rc) > 0
    dist.remotecall_fetch(close_it, cluster[1], rc)
    assert credits_here(rc) == 0  # revoked before the close returned
    with pytest.raises(ChannelClosed):
        rc.put(2)
    assert take_n(rc, 2) == [0, 1]  # what was accepted stays
    with pytest.raises(ChannelClosed):
        rc.take()


def fill(rc: RemoteChannel, n: int) -> list[float]:
    """Put ``n`` items; return how long each put took."""
    took = []
    for i in range(n):
        start = time.monotonic()
        rc.put(i)
        took.append(time.monotonic() - start)
    return took


def test_reserved_room_goes_to_a_putter_that_needs_it(cluster: list[int]) -> None:
    rc = RemoteChannel(buffered(8), cluster[0])
    rc.put("idle")  # this process holds credits and puts nothing more
    held = credits_here(rc)
    assert held > 0
    # Worker 3 needs every free slot: its last puts wait until the master's room is revoked.
    free = 8 - 1
    took = dist.remotecall(fill, cluster[1], rc, free).fetch(timeout=PROMPT)
    assert len(took) == free
    assert credits_here(rc) == 0
    assert dist.remotecall_fetch(_n_avail, cluster[0], rc) == 8
    with pytest.raises(TimeoutError):
        rc.put("full", timeout=0.2)
    assert rc.take() == "idle"
    rc.put("again")
    assert take_n(rc, 8) == [*range(free), "again"]


def _n_avail(rc: RemoteChannel) -> int:
    return int(dist.channel_from_id(dist.remoteref_id(rc)).n_avail())


def put_then_report(rc: RemoteChannel, n: int) -> tuple[int, int]:
    for i in range(n):
        rc.put(i)
    return os.getpid(), credits_here(rc)


def test_room_held_by_a_dead_process_is_freed(workers2: list[int]) -> None:
    producer, owner = workers2
    rc = RemoteChannel(buffered(8), owner)
    ospid, held = dist.remotecall_fetch(put_then_report, producer, rc, 2)
    assert held > 0
    os.kill(ospid, signal.SIGKILL)
    assert eventually(lambda: producer not in dist.workers(), PROMPT)
    for i in range(6):  # 8 slots: 2 taken by the dead producer's puts, the rest free again
        rc.put(("master", i), timeout=PROMPT)
    assert take_n(rc, 8) == [0, 1, *[("master", i) for i in range(6)]]


def test_puts_after_the_owner_died_raise(workers2: list[int]) -> None:
    owner = workers2[0]
    rc = RemoteChannel(buffered(100), owner)
    rc.put(0)
    assert credits_here(rc) > 0
    os.kill(int(dist.remotecall_fetch(os.getpid, owner)), signal.SIGKILL)
    assert eventually(lambda: owner not in dist.workers(), PROMPT)
    with pytest.raises(dist.ProcessExitedException):
        rc.put(1)


def test_a_future_put_one_way_keeps_its_value_alive(cluster: list[int]) -> None:
    rc = RemoteChannel(buffered(10), cluster[0])
    rc.put(None)
    future = dist.remotecall(lambda: "kept", cluster[1])
    rc.put(future)  # one-way, pickled for the owner: the owner counts itself a holder
    del future
    assert rc.take() is None
    got = rc.take()
    assert got.fetch() == "kept"


def test_a_single_slot_channel_gets_credits_with_a_take(cluster: list[int]) -> None:
    rc = RemoteChannel(cluster[0])  # Channel(1)
    rc.put("a")
    assert credits_here(rc) == 0  # full: no room to give
    assert rc.take() == "a"
    assert credits_here(rc) == 1  # the room this take made, for this process's next put
    rc.put("b")  # one-way
    assert credits_here(rc) == 0
    assert rc.take() == "b"
    assert credits_here(rc) == 1
    # Another process's put is not kept waiting by the room held here: it is revoked.
    dist.remotecall(put_all, cluster[1], rc, ["c"]).fetch(timeout=PROMPT)
    assert credits_here(rc) == 0
    assert rc.take() == "c"


def test_an_unbuffered_channel_takes_no_credits(cluster: list[int]) -> None:
    rc = RemoteChannel(lambda: Channel(0), cluster[0])
    for v in ("x", "y"):
        taker = dist.remotecall(take_n, cluster[1], rc, 1)
        rc.put(v)
        assert taker.fetch() == [v]
        assert credits_here(rc) == 0
