"""Large buffers through shared memory between processes of this machine (``_shm.py``)."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pydistributed as dist
from pydistributed import _serialize, _shm
from pydistributed._cluster import PGRP
from pydistributed.protocol import Reference
from support import eventually, identity, ospid_of

np = pytest.importorskip("numpy")

MB = 1 << 20
KEPT: dict[str, Any] = {}


# -- functions run on the workers -----------------------------------------------------------


def describe(x: Any) -> tuple[bool, float]:
    """Whether the array arrived writable (TCP) or read-only (shared memory), and its sum."""
    return bool(x.flags.writeable), float(x.sum())


def doubled(x: Any) -> Any:
    return x * 2


def relay(dest: int, x: Any) -> tuple[bool, float]:
    """Pass ``x`` (received here) on to worker ``dest``."""
    result: tuple[bool, float] = dist.remotecall_fetch(describe, dest, x)
    return result


def make_and_send(dest: int, n: int) -> None:
    """Make an array here and have worker ``dest`` keep it."""
    dist.remotecall_fetch(keep, dest, "from-peer", np.arange(n, dtype=np.float64))


def keep(key: str, x: Any) -> None:
    KEPT[key] = x


def kept_sum(key: str) -> float:
    return float(KEPT[key].sum())


def drop(key: str) -> None:
    KEPT.pop(key, None)


def sum_later(x: Any, delay: float) -> float:
    time.sleep(delay)
    return float(x.sum())


def try_to_write(x: Any) -> str:
    try:
        x[0] = 1
    except ValueError as exc:
        return str(exc)
    return "written"


def mapped_segments() -> int:
    """Peers' segments this process keeps mapped, once every unused one was dropped."""
    _shm.trim(0)
    return len(_shm._cache)


def holds_for(pid: int) -> int:
    return sum(1 for peer, _ in _shm._holds if peer == pid)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _nothing_in_dev_shm() -> Iterator[None]:
    """Segments are anonymous memfds: nothing may appear in /dev/shm."""
    before = set(os.listdir("/dev/shm"))
    yield
    assert set(os.listdir("/dev/shm")) <= before


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle() -> int:
    """Free every segment that can be freed; return this process's fd count then."""
    for _ in range(50):
        _shm.trim(0)
        if not _shm._holds:
            break
        time.sleep(0.05)
    return fd_count()


def big(seed: int = 0, n: int = 2 * MB) -> Any:
    return np.random.default_rng(seed).random(n // 8)


pytestmark = pytest.mark.skipif(not _shm.enabled, reason="shared memory is off here")


# -- both ways, peers, threshold --------------------------------------------------------------


def test_argument_and_result_both_ways(cluster: list[int]) -> None:
    a = big()
    assert dist.remotecall_fetch(describe, cluster[0], a) == (False, float(a.sum()))
    back = dist.remotecall_fetch(doubled, cluster[0], a)
    assert np.array_equal(back, a * 2)
    assert not back.flags.writeable


def test_echo_returns_an_equal_read_only_array(cluster: list[int]) -> None:
    a = big(1)
    for _ in range(3):
        back = dist.remotecall_fetch(identity, cluster[0], a)
        assert np.array_equal(back, a)
        assert not back.flags.writeable
        assert back.base is not None  # a view of the shared segment, no copy


def test_fortran_order_and_slices(cluster: list[int]) -> None:
    a = np.asfortranarray(big(8).reshape(512, 512))
    back = dist.remotecall_fetch(identity, cluster[0], a)
    assert np.array_equal(back, a)
    assert back.flags.f_contiguous
    part = back[:, 100:400]  # a view into the segment, sent on without a copy
    assert np.array_equal(dist.remotecall_fetch(identity, cluster[0], part), part)


def test_received_arrays_are_read_only_on_the_worker(cluster: list[int]) -> None:
    assert "read-only" in dist.remotecall_fetch(try_to_write, cluster[0], big())


def test_worker_to_worker(cluster: list[int]) -> None:
    a = big(2)
    # Worker 1 passes on the mapping it received, by reference.
    assert dist.remotecall_fetch(relay, cluster[0], cluster[1], a) == (False, float(a.sum()))
    # Worker 1 sends an array of its own.
    dist.remotecall_fetch(make_and_send, cluster[0], cluster[1], MB)
    assert dist.remotecall_fetch(kept_sum, cluster[1], "from-peer") == float(np.arange(MB).sum())
    dist.remotecall_fetch(drop, cluster[1], "from-peer")


def test_threshold(cluster: list[int]) -> None:
    below = np.ones(_shm.THRESHOLD - 1, dtype=np.uint8)
    at = np.ones(_shm.THRESHOLD, dtype=np.uint8)
    assert dist.remotecall_fetch(describe, cluster[0], below) == (True, below.size)
    assert dist.remotecall_fetch(describe, cluster[0], at) == (False, at.size)


def test_futures_and_remote_channels(cluster: list[int]) -> None:
    a = big(7)
    future = dist.remotecall(doubled, cluster[0], a)
    assert np.array_equal(future.fetch(), a * 2)
    channel = dist.RemoteChannel(cluster[1])
    channel.put(a)
    assert np.array_equal(channel.take(), a)


def test_large_bytes_and_bytearray(cluster: list[int]) -> None:
    data = os.urandom(3 * MB)
    assert dist.remotecall_fetch(identity, cluster[0], data) == data
    array = bytearray(data)
    back = dist.remotecall_fetch(identity, cluster[0], [array])
    assert back == [array]
    assert type(back[0]) is bytearray


# -- what was sent does not change ------------------------------------------------------------


def test_mutation_after_remotecall_does_not_reach_the_worker(cluster: list[int]) -> None:
    a = big(3)
    expected = float(a.sum())
    future = dist.remotecall(sum_later, cluster[0], a, 0.3)
    a[:] = 0
    assert future.fetch() == expected


def test_kept_and_echoed_arrays_survive_later_sends(cluster: list[int]) -> None:
    a = big(4)
    dist.remotecall_fetch(keep, cluster[0], "kept", a)
    back = dist.remotecall_fetch(identity, cluster[0], a)
    copy = back.copy()
    a[:] = -1
    # Later sends of the same size may reuse segments: not those still in use.
    for seed in range(5):
        sent = big(10 + seed)
        assert dist.remotecall_fetch(describe, cluster[0], sent) == (False, float(sent.sum()))
        sent = big(20 + seed)
        assert np.array_equal(dist.remotecall_fetch(identity, cluster[0], sent), sent)
    assert np.array_equal(back, copy)
    assert dist.remotecall_fetch(kept_sum, cluster[0], "kept") == float(copy.sum())
    dist.remotecall_fetch(drop, cluster[0], "kept")


def test_no_fd_is_left_after_use(cluster: list[int]) -> None:
    before = settle()
    for seed in range(3):
        dist.remotecall_fetch(identity, cluster[0], big(seed))
    assert eventually(lambda: settle() <= before)


# -- processes that die -------------------------------------------------------------------------


def test_receiver_killed_while_it_holds_buffers(workers2: list[int]) -> None:
    victim = workers2[0]
    dist.remotecall_fetch(describe, victim, big())  # the probe, and a first segment
    before = settle()
    futures = [dist.remotecall(sum_later, victim, big(seed), 30) for seed in range(3)]
    assert eventually(lambda: holds_for(victim) == 3)
    os.kill(ospid_of(victim), signal.SIGKILL)
    for future in futures:
        with pytest.raises(dist.ProcessExitedException):
            future.fetch()
    assert eventually(lambda: victim not in dist.workers())
    assert holds_for(victim) == 0
    assert settle() <= before


def test_sender_killed_after_sending(workers2: list[int]) -> None:
    sender, receiver = workers2
    dist.remotecall_fetch(make_and_send, sender, receiver, MB)
    os.kill(ospid_of(sender), signal.SIGKILL)
    assert eventually(lambda: sender not in dist.workers())
    expected = float(np.arange(MB).sum())
    assert dist.remotecall_fetch(kept_sum, receiver, "from-peer") == expected
    assert dist.remotecall_fetch(describe, receiver, big()) == (False, float(big().sum()))
    # Once the array is dropped, nothing of the dead sender stays mapped on the receiver.
    dist.remotecall_fetch(drop, receiver, "from-peer")
    assert eventually(lambda: dist.remotecall_fetch(mapped_segments, receiver) == 0)


# -- falling back to TCP --------------------------------------------------------------------------


def test_a_worker_with_shared_memory_off_gets_everything_over_tcp() -> None:
    (pid,) = dist.addprocs(1, env={"PYDISTRIBUTED_SHM": "0"})
    try:
        a = big(5)
        assert dist.remotecall_fetch(describe, pid, a) == (True, float(a.sum()))
        back = dist.remotecall_fetch(identity, pid, a)
        assert np.array_equal(back, a)
        assert back.flags.writeable
        assert _shm._receivers[pid] is False
    finally:
        dist.rmprocs(pid, waitfor=20)


def test_a_peer_of_another_machine_is_refused(cluster: list[int]) -> None:
    fd = os.memfd_create("pydistributed", os.MFD_CLOEXEC)
    try:
        os.write(fd, b"0123456789abcdef")
        args = (1, os.getpid(), "another-machine", fd, b"0123456789abcdef")
        assert dist.remotecall_fetch(_shm._answer_probe, cluster[0], *args) is False
        args = (1, os.getpid(), _shm.MACHINE, fd, b"wrong token.....")
        assert dist.remotecall_fetch(_shm._answer_probe, cluster[0], *args) is False
    finally:
        os.close(fd)


def test_references_from_a_peer_that_did_not_agree_are_refused() -> None:
    refused = _shm._resolve(10**6, [Reference.make(3, 1, 0, MB)])
    with pytest.raises(dist.ProtocolError, match="without agreeing"):
        list(refused)


# -- forged descriptors -------------------------------------------------------------------------


def _forged_fds() -> Iterator[tuple[str, int, int, str]]:
    with open(__file__, "rb") as f:
        yield "a file", f.fileno(), 0, "not a pydistributed shared-memory segment"
    yield "a closed fd", 10**6, 0, "cannot open"
    fd = os.memfd_create("pydistributed", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, 4 * MB)
    yield "an unsealed memfd", fd, 0, "not sealed"
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    yield "a range outside the segment", fd, 3 * MB, "outside segment"
    os.close(fd)


def test_forged_descriptors_are_refused(cluster: list[int], monkeypatch: Any) -> None:
    pid = cluster[0]
    a = big(6)
    assert dist.remotecall_fetch(describe, pid, a) == (False, float(a.sum()))  # agreed
    for what, fd, offset, message in _forged_fds():

        def forge(dest: int, buffers: list[memoryview], fd: int = fd, offset: int = offset) -> Any:
            return [Reference.make(fd, 10**9, offset, b.nbytes) for b in buffers]

        monkeypatch.setattr(_serialize, "share", forge)
        with pytest.raises(dist.RemoteException, match=message):
            dist.remotecall_fetch(describe, pid, a)
        monkeypatch.setattr(_serialize, "share", _shm.share)
        assert dist.remotecall_fetch(describe, pid, a) == (False, float(a.sum())), what


def test_many_threads_share_the_pool(cluster: list[int]) -> None:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for j in range(3):
                a = big(100 * i + j, MB + 8 * i)
                back = dist.remotecall_fetch(identity, cluster[i % 2], a)
                assert np.array_equal(back, a)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert PGRP.myid == 1
