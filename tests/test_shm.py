"""Large buffers through shared memory between processes of this machine (``_shm.py``)."""

from __future__ import annotations

import fcntl
import mmap
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pydistributed as dist
from pydistributed import _pages, _serialize, _shm
from pydistributed._cluster import PGRP
from pydistributed.protocol import Reference
from support import eventually, identity, ospid_of

np = pytest.importorskip("numpy")

MB = 1 << 20
KEPT: dict[str, Any] = {}


# -- functions run on the workers -----------------------------------------------------------


def through_shm(x: Any) -> bool:
    """Whether ``x`` (received here) lies in shared memory it was given by reference."""
    return _shm._holder(memoryview(x)) is not None


def describe(x: Any) -> tuple[bool, float]:
    """Whether the array arrived through shared memory, and its sum."""
    return through_shm(x), float(x.sum())


def change_in_place(x: Any) -> float:
    """Change the argument in place, as Julia code may; return its sum then."""
    assert x.flags.writeable
    x += 1
    x.sort()
    x[0] = 5
    return float(x.sum())


def check_then_scribble(x: Any) -> float:
    """The sum of ``x`` as it arrived; then write over part of it (some pages, not all)."""
    total = float(x.sum())
    x[: x.size // 3] = -7
    return total


def changed(x: Any) -> Any:
    """``x`` (received here) with its first element changed in place, sent back."""
    x[0] = 42
    return x


def counts() -> dict[str, int]:
    return dict(_shm._counts)


def pass_kept(dest: int, key: str, as_key: str) -> None:
    """Send the array kept here under ``key`` to worker ``dest``, to keep as ``as_key``."""
    dist.remotecall_fetch(keep, dest, as_key, KEPT[key])


def scribble_kept(key: str) -> None:
    KEPT[key][:] = -1


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


def mappings() -> int:
    """Mappings of segments received by reference this process keeps."""
    return sum(len(same) for same in _shm._cache.values())


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
    assert dist.remotecall_fetch(describe, cluster[0], a) == (True, float(a.sum()))
    back = dist.remotecall_fetch(doubled, cluster[0], a)
    assert np.array_equal(back, a * 2)
    assert back.flags.writeable
    assert through_shm(back)


def test_echo_returns_an_equal_writable_array(cluster: list[int]) -> None:
    a = big(1)
    for _ in range(3):
        back = dist.remotecall_fetch(identity, cluster[0], a)
        assert np.array_equal(back, a)
        assert back.flags.writeable
        assert through_shm(back)  # a view of the shared segment, no copy


def test_fortran_order_and_slices(cluster: list[int]) -> None:
    a = np.asfortranarray(big(8).reshape(512, 512))
    back = dist.remotecall_fetch(identity, cluster[0], a)
    assert np.array_equal(back, a)
    assert back.flags.f_contiguous
    part = back[:, 100:400]  # a view into the segment, sent on without a copy
    assert np.array_equal(dist.remotecall_fetch(identity, cluster[0], part), part)


def test_received_arrays_are_writable_on_the_worker(cluster: list[int]) -> None:
    assert dist.remotecall_fetch(try_to_write, cluster[0], big()) == "written"


def test_a_change_in_place_stays_on_the_receiver(cluster: list[int]) -> None:
    a = big(30)
    original = a.copy()
    expected = change_in_place(a.copy())
    assert dist.remotecall_fetch(change_in_place, cluster[0], a) == expected
    assert np.array_equal(a, original)
    # Both workers change the same array; neither sees the other's change.
    futures = [dist.remotecall(change_in_place, pid, a) for pid in cluster]
    assert [f.fetch() for f in futures] == [expected, expected]
    assert np.array_equal(a, original)


def test_a_reused_mapping_does_not_show_earlier_changes(cluster: list[int]) -> None:
    pid = cluster[0]
    before = dist.remotecall_fetch(mappings, pid)
    for seed in range(8):
        # With at most one send held, the next one reuses a segment, and the worker the
        # mapping it has of it, which the previous message changed.
        assert eventually(lambda: holds_for(pid) <= 1)
        sent = big(40 + seed)
        assert dist.remotecall_fetch(check_then_scribble, pid, sent) == float(sent.sum())
    assert dist.remotecall_fetch(mappings, pid) - before <= 2
    # The same on this side: a segment of ours comes back, is changed here, comes back again.
    before = mappings()
    for seed in range(8):
        assert eventually(lambda: holds_for(pid) <= 1)
        sent = big(50 + seed)
        back = dist.remotecall_fetch(identity, pid, sent)
        assert np.array_equal(back, sent)
        back[: back.size // 2] = -3
        del back
    assert mappings() - before <= 2


def test_echo_of_an_unchanged_array_goes_by_reference(cluster: list[int]) -> None:
    pid = cluster[0]
    before = dist.remotecall_fetch(counts, pid)
    a = big(31)
    for _ in range(3):
        assert np.array_equal(dist.remotecall_fetch(identity, pid, a), a)
    after = dist.remotecall_fetch(counts, pid)
    assert after["passed"] - before["passed"] == 3
    assert after["copied"] == before["copied"]


def test_echo_of_a_changed_array_carries_the_change(cluster: list[int]) -> None:
    pid = cluster[0]
    a = big(32)
    original = a.copy()
    before = dist.remotecall_fetch(counts, pid)
    back = dist.remotecall_fetch(changed, pid, a)
    assert back[0] == 42
    assert np.array_equal(back[1:], original[1:])
    assert np.array_equal(a, original)
    assert dist.remotecall_fetch(counts, pid)["copied"] == before["copied"] + 1
    # Changed here, then sent again: the worker gets this process's version.
    back[1] = 43
    mine = _shm._counts["copied"]
    assert dist.remotecall_fetch(describe, pid, back) == (True, float(back.sum()))
    assert _shm._counts["copied"] == mine + 1
    # Unchanged here, sent again: by reference.
    again = dist.remotecall_fetch(identity, pid, a)
    passed = _shm._counts["passed"]
    assert dist.remotecall_fetch(describe, pid, again) == (True, float(a.sum()))
    assert _shm._counts["passed"] == passed + 1


def test_a_refused_private_mapping_falls_back_to_read_only(monkeypatch: Any) -> None:
    real = mmap.mmap

    def no_private(fd: int, size: int, flags: int = mmap.MAP_SHARED, **kw: Any) -> mmap.mmap:
        if flags & mmap.MAP_PRIVATE:
            raise OSError(12, "Cannot allocate memory")
        return real(fd, size, flags=flags, **kw)

    fd = os.memfd_create("pydistributed-test", os.MFD_CLOEXEC)
    os.ftruncate(fd, MB)
    monkeypatch.setattr(mmap, "mmap", no_private)
    mapping = _shm._Mapping(fd, MB, (0, 0, 0))
    monkeypatch.undo()
    try:
        assert not mapping.private
        assert memoryview(mapping.map).readonly
    finally:
        mapping.close()


@pytest.mark.parametrize("scan", [True, False], ids=["PAGEMAP_SCAN", "pagemap"])
def test_pages_written_privately_are_found_and_dropped(scan: bool, monkeypatch: Any) -> None:
    """What this kernel does with a private mapping of a memfd (``_pages``), asked either way."""
    monkeypatch.setattr(_pages, "_scan", scan and _pages._scan)
    fd = os.memfd_create("pydistributed-test", os.MFD_CLOEXEC)
    size = 64 * _pages.PAGE
    shared = private = None
    try:
        os.ftruncate(fd, size)
        shared = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        shared[:] = b"a" * size
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        private = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=prot)
        view = np.frombuffer(private, dtype=np.uint8)
        address = view.ctypes.data
        assert not _pages.written(address, size)  # untouched
        assert view[::100].sum() == ord("a") * view[::100].size  # read
        assert not _pages.written(address, size)
        view[10 * _pages.PAGE + 5] = ord("b")
        assert _pages.written(address, size)
        assert _pages.written(address + 10 * _pages.PAGE, 1)
        assert not _pages.written(address, 10 * _pages.PAGE)
        assert not _pages.written(address + 11 * _pages.PAGE, 53 * _pages.PAGE)
        assert shared[10 * _pages.PAGE + 5] == ord("a")  # the segment did not change
        shared[10 * _pages.PAGE + 6 : 10 * _pages.PAGE + 7] = b"c"  # ours hides the file's
        assert view[10 * _pages.PAGE + 6] == ord("a")
        _pages.discard(private, address, 0, size)
        assert not _pages.written(address, size)
        assert view[10 * _pages.PAGE + 5] == ord("a")  # the file's page again
        assert view[10 * _pages.PAGE + 6] == ord("c")
        del view
    finally:
        for m in (private, shared):
            if m is not None:
                m.close()
        os.close(fd)


def test_worker_to_worker(cluster: list[int]) -> None:
    a = big(2)
    # Worker 1 passes on the mapping it received, by reference.
    assert dist.remotecall_fetch(relay, cluster[0], cluster[1], a) == (True, float(a.sum()))
    # Worker 1 sends an array of its own.
    dist.remotecall_fetch(make_and_send, cluster[0], cluster[1], MB)
    assert dist.remotecall_fetch(kept_sum, cluster[1], "from-peer") == float(np.arange(MB).sum())
    dist.remotecall_fetch(drop, cluster[1], "from-peer")


def test_worker_to_worker_changes_stay_private(cluster: list[int]) -> None:
    first, second = cluster
    a = big(33)
    total = float(a.sum())
    dist.remotecall_fetch(keep, first, "w2w", a)
    # The first worker passes its array on twice: the second gets two arrays, not one.
    dist.remotecall_fetch(pass_kept, first, second, "w2w", "one")
    dist.remotecall_fetch(pass_kept, first, second, "w2w", "two")
    dist.remotecall_fetch(scribble_kept, second, "one")
    assert dist.remotecall_fetch(kept_sum, second, "one") == -a.size
    assert dist.remotecall_fetch(kept_sum, second, "two") == total
    assert dist.remotecall_fetch(kept_sum, first, "w2w") == total
    # A change by the first worker after passing it on does not reach the second.
    dist.remotecall_fetch(scribble_kept, first, "w2w")
    assert dist.remotecall_fetch(kept_sum, second, "two") == total
    # Changed, it is copied when passed on.
    dist.remotecall_fetch(pass_kept, first, second, "w2w", "three")
    assert dist.remotecall_fetch(kept_sum, second, "three") == -a.size
    for pid, key in ((first, "w2w"), (second, "one"), (second, "two"), (second, "three")):
        dist.remotecall_fetch(drop, pid, key)


def test_threshold(cluster: list[int]) -> None:
    below = np.ones(_shm.THRESHOLD - 1, dtype=np.uint8)
    at = np.ones(_shm.THRESHOLD, dtype=np.uint8)
    assert dist.remotecall_fetch(describe, cluster[0], below) == (False, below.size)
    assert dist.remotecall_fetch(describe, cluster[0], at) == (True, at.size)


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
        assert dist.remotecall_fetch(describe, cluster[0], sent) == (True, float(sent.sum()))
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
    assert dist.remotecall_fetch(describe, receiver, big()) == (True, float(big().sum()))
    # Once the array is dropped, nothing of the dead sender stays mapped on the receiver.
    dist.remotecall_fetch(drop, receiver, "from-peer")
    assert eventually(lambda: dist.remotecall_fetch(mapped_segments, receiver) == 0)


# -- falling back to TCP --------------------------------------------------------------------------


def test_a_worker_with_shared_memory_off_gets_everything_over_tcp() -> None:
    (pid,) = dist.addprocs(1, env={"PYDISTRIBUTED_SHM": "0"})
    try:
        a = big(5)
        assert dist.remotecall_fetch(describe, pid, a) == (False, float(a.sum()))
        back = dist.remotecall_fetch(identity, pid, a)
        assert np.array_equal(back, a)
        assert back.flags.writeable
        assert _shm._receivers[pid] is False
    finally:
        dist.rmprocs(pid, waitfor=20)


def test_read_only_switch() -> None:
    (pid,) = dist.addprocs(1, env={"PYDISTRIBUTED_SHM_READONLY": "1"})
    try:
        a = big(34)
        assert dist.remotecall_fetch(describe, pid, a) == (True, float(a.sum()))
        assert "read-only" in dist.remotecall_fetch(try_to_write, pid, a)
        assert np.array_equal(dist.remotecall_fetch(identity, pid, a), a)
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
    assert dist.remotecall_fetch(describe, pid, a) == (True, float(a.sum()))  # agreed
    for what, fd, offset, message in _forged_fds():

        def forge(dest: int, buffers: list[memoryview], fd: int = fd, offset: int = offset) -> Any:
            return [Reference.make(fd, 10**9, offset, b.nbytes) for b in buffers]

        monkeypatch.setattr(_serialize, "share", forge)
        with pytest.raises(dist.RemoteException, match=message):
            dist.remotecall_fetch(describe, pid, a)
        monkeypatch.setattr(_serialize, "share", _shm.share)
        assert dist.remotecall_fetch(describe, pid, a) == (True, float(a.sum())), what


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
