"""interrupt(): running calls get KeyboardInterrupt, idle workers are left alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import pydistributed as dist


@pytest.fixture(scope="module")
def pair() -> Iterator[list[int]]:
    pids = dist.addprocs(2)
    yield pids
    dist.rmprocs(pids, waitfor=20)


def _calls_running() -> int:
    from pydistributed import _interrupt

    return len(_interrupt._running) - 1  # not counting this call


def _wait_until_running(pid: int, n: int = 1) -> None:
    deadline = time.monotonic() + 5
    while dist.remotecall_fetch(_calls_running, pid) < n:
        assert time.monotonic() < deadline, "the call did not start"
        time.sleep(0.02)


def _blocked_take() -> object:
    return dist.Channel(1).take()


def _nested_sleep() -> object:
    return dist.remotecall_fetch(time.sleep, 1, 30)


def _busy_loop() -> int:
    n = 0
    while True:
        n += 1


@pytest.mark.parametrize(
    ("function", "args"),
    [(time.sleep, (30,)), (_blocked_take, ()), (_nested_sleep, ()), (_busy_loop, ())],
    ids=["sleep", "channel-take", "nested-remotecall", "busy-loop"],
)
def test_interrupt_reaches_a_running_call_within_a_second(
    pair: list[int], function: object, args: tuple[object, ...]
) -> None:
    future = dist.remotecall(function, pair[0], *args)  # type: ignore[arg-type]
    _wait_until_running(pair[0])
    time.sleep(0.2)
    assert not future.isready()
    started = time.monotonic()
    dist.interrupt(pair[0])
    with pytest.raises(dist.RemoteException) as info:
        future.fetch(timeout=5)
    assert time.monotonic() - started < 1.0
    assert isinstance(info.value.exception, KeyboardInterrupt)
    assert info.value.pid == pair[0]
    assert dist.remotecall_fetch(sum, pair[0], [1, 2, 3]) == 6


def test_interrupt_without_pids_hits_every_worker(pair: list[int]) -> None:
    futures = [dist.remotecall(time.sleep, pid, 30) for pid in pair]
    for pid in pair:
        _wait_until_running(pid)
    dist.interrupt()
    for future in futures:
        with pytest.raises(dist.RemoteException) as info:
            future.fetch(timeout=5)
        assert isinstance(info.value.exception, KeyboardInterrupt)


def test_interrupting_an_idle_worker_changes_nothing(pair: list[int]) -> None:
    dist.remotecall_fetch(exec, pair[1], "import builtins; builtins.marker = 41")
    dist.interrupt(pair[1])
    time.sleep(0.2)
    assert dist.remotecall_fetch(eval, pair[1], "__import__('builtins').marker + 1") == 42
    # A call started after the interrupt runs to completion.
    assert dist.remotecall(time.sleep, pair[1], 0.2).fetch(timeout=5) is None


def test_only_the_interrupted_worker_is_hit(pair: list[int]) -> None:
    spared = dist.remotecall(time.sleep, pair[1], 0.8)
    hit = dist.remotecall(time.sleep, pair[0], 30)
    _wait_until_running(pair[0])
    dist.interrupt([pair[0]])
    with pytest.raises(dist.RemoteException):
        hit.fetch(timeout=5)
    assert spared.fetch(timeout=5) is None
