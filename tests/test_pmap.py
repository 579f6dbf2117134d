"""pmap (Julia's pmap.jl and the pmap blocks of test/distributed_exec.jl)."""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pydistributed as dist
from support import ospid_of

# -- functions the workers import by reference --------------------------------------------------


def double_and_where(x: int) -> tuple[int, int]:
    return x * 2, dist.myid()


def fails_on_even_workers(x: int) -> tuple[int, int]:
    if dist.myid() % 2 == 0:
        raise RuntimeError("notfoobar")
    return x * 2, dist.myid()


def fails_on_even_elements(x: int) -> tuple[int, int]:
    if x % 2 == 0:
        raise RuntimeError("foobar")
    return x * 2, dist.myid()


def true_on_foobar(e: Exception) -> bool:
    if str(e) == "foobar":
        return True
    raise e


def retry_on_foobar(state: Any, e: BaseException) -> tuple[Any, bool]:
    return state, str(e).endswith("foobar")


_failed_once: set[int] = set()


def fails_first_time_here(x: int) -> int:
    """Raises on the first call in each process, then returns ``x``."""
    me = dist.myid()
    if me not in _failed_once:
        _failed_once.add(me)
        raise ValueError(f"first call on {me}")
    return x


def slow_square(x: int) -> int:
    time.sleep(0.02)
    return x * x


def whoami(_: Any) -> int:
    return dist.myid()


@pytest.fixture(scope="module")
def cluster4() -> Iterator[list[int]]:
    """Four workers (two with even ids, two with odd) for the tests that kill none."""
    pids = dist.addprocs(4)
    yield pids
    dist.rmprocs(pids, waitfor=20)


# -- Julia's keyword matrix ----------------------------------------------------------------------

_DEFAULT: Any = object()
_MATRIX = list(
    itertools.product(
        [_DEFAULT, False],  # distributed
        [_DEFAULT, 2],  # batch_size
        [_DEFAULT, true_on_foobar],  # on_error
        [_DEFAULT, [0.001] * 1000],  # retry_delays
        [_DEFAULT, retry_on_foobar],  # retry_check
    )
)


def _label(combo: tuple[Any, ...]) -> str:
    names = ("distributed", "batch_size", "on_error", "retry_delays", "retry_check")
    return ",".join(n for n, v in zip(names, combo, strict=True) if v is not _DEFAULT) or "none"


@pytest.mark.parametrize("combo", _MATRIX, ids=[_label(c) for c in _MATRIX])
def test_keyword_combinations(cluster4: list[int], combo: tuple[Any, ...]) -> None:
    names = ("distributed", "batch_size", "on_error", "retry_delays", "retry_check")
    kwargs = {n: v for n, v in zip(names, combo, strict=True) if v is not _DEFAULT}
    data = range(1, 101)
    testw = [1] if kwargs.get("distributed") is False else dist.workers()
    if "retry_delays" in kwargs:
        results = dist.pmap(fails_on_even_workers, data, **kwargs)
        assert [r[0] for r in results] == list(range(2, 201, 2))
        pids = {r[1] for r in results}
        for p in testw:
            if p % 2:
                assert p in pids
            else:
                assert p not in pids
    elif "on_error" not in kwargs:
        results = dist.pmap(double_and_where, data, **kwargs)
        assert [r[0] for r in results] == list(range(2, 201, 2))
        assert {r[1] for r in results} == set(testw)
    else:
        results = dist.pmap(fails_on_even_elements, data, **kwargs)
        for x, r in zip(data, results, strict=True):
            if x % 2 == 0:
                assert r is True
            else:
                assert r[0] == x * 2
                assert r[1] in testw


# -- generic map behaviour --------------------------------------------------------------------


def test_like_map(cluster4: list[int]) -> None:
    assert dist.pmap(str.upper, "Hello World!") == list(map(str.upper, "Hello World!"))
    assert dist.pmap(abs, []) == []
    assert dist.pmap(lambda a, b: a + b, [1, 2, 3], [10, 20]) == [11, 22]
    assert dist.pmap(pow, range(5), itertools.repeat(2)) == [0, 1, 4, 9, 16]
    assert dist.pmap(lambda x: x, (x for x in range(100))) == list(range(100))
    assert dist.pmap(lambda x: x, {3: "a", 1: "b"}) == [3, 1]
    with pytest.raises(TypeError):
        dist.pmap(abs)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100, 1000, "auto"])
def test_batch_sizes_keep_order(cluster4: list[int], batch_size: int | str) -> None:
    assert dist.pmap(lambda x: -x, range(250), batch_size=batch_size) == [-x for x in range(250)]


def test_bad_batch_size(cluster4: list[int]) -> None:
    for bad in (0, -1, 1.5, "big", True):
        with pytest.raises(ValueError, match="batch_size"):
            dist.pmap(abs, [1], batch_size=bad)  # type: ignore[arg-type]


def test_first_error_is_raised(cluster4: list[int]) -> None:
    # Julia: "Simple test for pmap throws error".
    with pytest.raises(dist.RemoteException) as info:
        dist.pmap(lambda x: 1 // 0 if x == 50 else x, range(100))
    assert isinstance(info.value.exception, ZeroDivisionError)
    assert info.value.pid in cluster4
    with pytest.raises(dist.RemoteException) as info:
        dist.pmap(lambda x: 1 // 0 if x == 50 else x, range(100), batch_size=10)
    assert isinstance(info.value.exception, ZeroDivisionError)


def test_first_error_stops_the_map(cluster4: list[int]) -> None:
    def f(x: int) -> int:
        if x == 0:
            raise KeyError("stop")
        time.sleep(0.05)
        return x

    started = time.monotonic()
    with pytest.raises(dist.RemoteException):
        dist.pmap(f, range(400))
    assert time.monotonic() - started < 3  # 400 * 0.05 / 4 = 5 s if it went on


def test_on_error_runs_on_the_worker_with_the_original_exception(cluster4: list[int]) -> None:
    def handler(exc: Exception) -> tuple[str, str, int]:
        return type(exc).__name__, str(exc), dist.myid()

    for batch_size in (1, 4):
        results = dist.pmap(
            lambda x: int(x), ["1", "x", "3"], on_error=handler, batch_size=batch_size
        )
        assert results[0] == 1
        assert results[2] == 3
        name, message, pid = results[1]
        assert name == "ValueError"
        assert "'x'" in message
        assert pid in cluster4


def test_on_error_that_raises_fails_the_map(cluster4: list[int]) -> None:
    def handler(exc: Exception) -> Any:
        raise LookupError("handled badly") from exc

    for batch_size in (1, 4):
        with pytest.raises(dist.RemoteException) as info:
            dist.pmap(lambda x: 1 // x, [1, 0, 2], on_error=handler, batch_size=batch_size)
        assert isinstance(info.value.exception, LookupError)


# -- pools ---------------------------------------------------------------------------------------


def test_every_worker_is_used(cluster4: list[int]) -> None:
    dist.pmap(whoami, range(dist.nworkers()))  # priming run
    assert len(set(dist.pmap(whoami, range(100)))) == dist.nworkers()
    other = cluster4[0]
    assert len(set(dist.remotecall_fetch(lambda: dist.pmap(whoami, range(100)), other))) == 4
    wp = dist.WorkerPool(dist.workers())
    assert len(set(dist.pmap(whoami, range(100), pool=wp))) == 4
    assert (
        len(set(dist.remotecall_fetch(lambda p: dist.pmap(whoami, range(100), pool=p), other, wp)))
        == 4
    )


def test_pool_subset(cluster4: list[int]) -> None:
    two = cluster4[:2]
    used = dist.pmap(
        lambda x: (time.sleep(0.05), dist.myid())[1], range(10), pool=dist.WorkerPool(two)
    )
    assert sorted(set(used)) == sorted(two)
    assert sorted(
        set(dist.pmap(whoami, range(100), pool=dist.WorkerPool(cluster4[1:3])))
    ) == sorted(cluster4[1:3])


def test_pool_of_this_process_runs_locally(cluster4: list[int]) -> None:
    # Julia: pmap over WorkerPool([myid()]) falls back to local tasks.
    me = threading.get_ident()
    pool = dist.WorkerPool([dist.myid()])
    objects = [object() for _ in range(5)]
    results = dist.pmap(lambda o: (o, threading.get_ident() != me), objects, pool=pool)
    assert [r[0] for r in results] == objects  # not copied: no pickling


def test_distributed_false_runs_on_local_threads(cluster4: list[int]) -> None:
    barrier = threading.Barrier(4, timeout=10)

    def f(x: int) -> tuple[int, int]:
        barrier.wait()  # four threads at once, or this times out
        return x, dist.myid()

    assert dist.pmap(f, range(8), distributed=False) == [(x, 1) for x in range(8)]


def test_distributed_false_raises_the_original_exception(cluster4: list[int]) -> None:
    with pytest.raises(ZeroDivisionError):
        dist.pmap(lambda x: 1 // x, [1, 0], distributed=False)


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 5, "auto"])
def test_retry_when_failing_first_time_on_each_worker(
    cluster4: list[int], batch_size: int | str
) -> None:
    dist.everywhere("import test_pmap; test_pmap._failed_once.clear()", procs=cluster4)
    results = dist.pmap(
        fails_first_time_here,
        range(60),
        retry_delays=dist.ExponentialBackOff(n=4),  # a failure on each of the 4 workers at most
        batch_size=batch_size,
    )
    assert results == list(range(60))
    assert all(
        dist.remotecall_fetch(lambda: dist.myid() in __import__("test_pmap")._failed_once, p)
        for p in cluster4
    )


def test_without_retries_the_first_failure_is_raised(cluster4: list[int]) -> None:
    dist.everywhere("import test_pmap; test_pmap._failed_once.clear()", procs=cluster4)
    with pytest.raises(dist.RemoteException) as info:
        dist.pmap(fails_first_time_here, range(20))
    assert isinstance(info.value.exception, ValueError)


def test_retry_check_sees_the_original_exception(cluster4: list[int]) -> None:
    seen: list[BaseException] = []
    lock = threading.Lock()

    def check(state: Any, exc: BaseException) -> tuple[Any, bool]:
        with lock:
            seen.append(exc)
        return state, isinstance(exc, ValueError)

    dist.everywhere("import test_pmap; test_pmap._failed_once.clear()", procs=cluster4)
    assert dist.pmap(
        fails_first_time_here, range(20), retry_delays=[0.0] * 4, retry_check=check
    ) == list(range(20))
    assert seen
    assert all(type(e) is ValueError for e in seen)
    assert threading.get_ident() != 0  # retry_check ran here, in this process

    # A check that says no gives up on the element: its failure is raised.
    dist.everywhere("import test_pmap; test_pmap._failed_once.clear()", procs=cluster4)
    with pytest.raises(dist.RemoteException):
        dist.pmap(
            fails_first_time_here,
            range(20),
            retry_delays=[0.0] * 3,
            retry_check=lambda s, e: (s, False),
        )


def test_retry_delays_run_out(cluster4: list[int]) -> None:
    calls = dist.RemoteChannel(lambda: dist.Channel(100))

    def always_fails(x: int) -> int:
        calls.put(x)
        raise OSError("no")

    started = time.monotonic()
    with pytest.raises(dist.RemoteException) as info:
        dist.pmap(always_fails, [7], retry_delays=[0.05, 0.1])
    assert isinstance(info.value.exception, OSError)
    assert time.monotonic() - started >= 0.15
    assert [calls.take() for _ in range(3)] == [7, 7, 7]  # first try, then two retries
    assert not calls.isready()


def test_retry_check_state_is_the_delays_left(cluster4: list[int]) -> None:
    states: list[list[float]] = []

    def check(state: Iterator[float], exc: BaseException) -> tuple[Iterator[float], bool]:
        left = list(state)
        states.append(left)
        return iter(left), True

    with pytest.raises(dist.RemoteException):
        dist.pmap(lambda x: 1 // 0, [1], retry_delays=[0.0, 0.01, 0.02], retry_check=check)
    assert states == [[0.01, 0.02], [0.02], []]


def killed_during(pid: int, delay: float, run: Callable[[], Any]) -> Any:
    """``run()``, with worker ``pid`` SIGKILLed ``delay`` seconds after it started."""
    ospid = ospid_of(pid)
    killer = threading.Timer(delay, os.kill, (ospid, signal.SIGKILL))
    killer.start()
    try:
        return run()
    finally:
        killer.join()


def test_retries_after_a_worker_is_killed(workers4: list[int]) -> None:
    victim = workers4[1]
    results = killed_during(
        victim,
        0.4,
        lambda: dist.pmap(slow_square, range(200), retry_delays=dist.ExponentialBackOff(n=3)),
    )
    assert results == [x * x for x in range(200)]
    assert victim not in dist.workers()


def test_batches_are_retried_after_a_worker_is_killed(workers4: list[int]) -> None:
    results = killed_during(
        workers4[2],
        0.3,
        lambda: dist.pmap(slow_square, range(200), batch_size=5, retry_delays=[0.01] * 3),
    )
    assert results == [x * x for x in range(200)]


def test_a_killed_worker_without_retries_fails_the_map(workers2: list[int]) -> None:
    ospid = ospid_of(workers2[0])
    threading.Timer(0.3, os.kill, (ospid, signal.SIGKILL)).start()
    with pytest.raises(dist.ProcessExitedException):
        dist.pmap(slow_square, range(200), pool=dist.WorkerPool(workers2))


# -- progress ---------------------------------------------------------------------------------


def test_progress(cluster4: list[int]) -> None:
    if importlib.util.find_spec("tqdm") is None:
        with pytest.warns(UserWarning, match="tqdm"):
            assert dist.pmap(abs, [-1, -2], progress=True) == [1, 2]
    else:
        assert dist.pmap(abs, [-1, -2], progress=True) == [1, 2]


def test_cachingpool_reused_across_pmaps(cluster4: list[int]) -> None:
    pool = dist.CachingPool(cluster4)

    def f(x: int) -> int:
        return x + 1

    assert dist.pmap(f, range(20), pool=pool) == list(range(1, 21))
    assert len(pool._cache) == 1
    assert dist.pmap(f, range(20), pool=pool, batch_size=3) == list(range(1, 21))
    assert dist.pmap(f, range(20), pool=pool) == list(range(1, 21))
    assert len(pool._cache) == 2  # one runner per batch mode, each sent once per worker
    pool.clear()
    assert dist.pmap(f, range(20), pool=pool) == list(range(1, 21))
