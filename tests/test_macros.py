"""spawnat, spawn, fetchfrom, everywhere, distributed and clear (Julia's macros.jl and the
matching blocks of test/distributed_exec.jl)."""

from __future__ import annotations

import operator
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import pydistributed as dist
from pydistributed._macros import _chunks, splitrange


def main_has(name: str) -> bool:
    return hasattr(sys.modules["__main__"], name)


def main_get(name: str) -> Any:
    return getattr(sys.modules["__main__"], name)


def main_del(*names: str) -> None:
    for name in names:
        if hasattr(sys.modules["__main__"], name):
            delattr(sys.modules["__main__"], name)


@pytest.fixture(scope="module")
def cluster3() -> Iterator[list[int]]:
    pids = dist.addprocs(3)
    yield pids
    dist.rmprocs(pids, waitfor=20)


@pytest.fixture
def clean_main(cluster3: list[int]) -> Iterator[list[str]]:
    """Names to remove from ``__main__`` everywhere after the test."""
    names: list[str] = []
    yield names
    for pid in dist.procs():
        dist.remotecall_fetch(main_del, pid, *names)


# -- spawnat, spawn, fetchfrom ----------------------------------------------------------------


def test_spawnat_call_form(cluster3: list[int]) -> None:
    future = dist.spawnat(cluster3[1], dist.myid)
    assert isinstance(future, dist.Future)
    assert future.fetch() == cluster3[1]
    assert dist.spawnat(cluster3[0], pow, 2, 10).fetch() == 1024
    assert dist.spawnat(cluster3[0], lambda *, k: k, k="kw").fetch() == "kw"


def test_spawnat_decorator_binds_the_future(cluster3: list[int]) -> None:
    @dist.spawnat(cluster3[2])
    def where() -> int:
        return dist.myid()

    assert isinstance(where, dist.Future)
    assert where.fetch() == cluster3[2]


def test_spawnat_myid_is_async_in_process(cluster3: list[int]) -> None:
    shared: list[int] = []
    started = threading.Event()

    def work() -> int:
        started.set()
        shared.append(threading.get_ident())
        return len(shared)

    future = dist.spawnat(dist.myid(), work)
    assert future.fetch() == 1
    assert shared
    assert shared[0] != threading.get_ident()


def test_any_is_round_robin(cluster3: list[int]) -> None:
    seen = [dist.spawnat("any", dist.myid).fetch() for _ in range(6)]
    assert sorted(seen) == sorted(cluster3 * 2)
    seen = [dist.spawn(dist.myid).fetch() for _ in range(3)]
    assert sorted(seen) == sorted(cluster3)
    seen = [dist.fetchfrom("any", dist.myid) for _ in range(3)]
    assert sorted(seen) == sorted(cluster3)


def test_spawn_bare_decorator(cluster3: list[int]) -> None:
    @dist.spawn
    def where() -> int:
        return dist.myid()

    assert where.fetch() in cluster3


def test_fetchfrom(cluster3: list[int]) -> None:
    assert dist.fetchfrom(cluster3[0], dist.myid) == cluster3[0]
    assert dist.fetchfrom(cluster3[1], operator.add, 2, 3) == 5

    @dist.fetchfrom(cluster3[2])
    def value() -> tuple[int, str]:
        return dist.myid(), "done"

    assert value == (cluster3[2], "done")
    with pytest.raises(dist.RemoteException):
        dist.fetchfrom(cluster3[0], int, "x")


def test_bad_target(cluster3: list[int]) -> None:
    with pytest.raises(TypeError):
        dist.spawnat("somewhere", dist.myid)
    with pytest.raises(TypeError):
        dist.fetchfrom(2.0, dist.myid)  # type: ignore[arg-type]


# -- everywhere --------------------------------------------------------------------------------


def test_everywhere_code_runs_on_every_process(cluster3: list[int], clean_main: list[str]) -> None:
    clean_main.append("ew_value")
    assert dist.everywhere("import os\new_value = (os.getpid(), 42)") is None
    values = [dist.remotecall_fetch(main_get, p, "ew_value") for p in dist.procs()]
    assert all(v[1] == 42 for v in values)
    assert len({v[0] for v in values}) == len(dist.procs())  # ran in each process
    assert main_get("ew_value")[1] == 42  # the master included


def test_everywhere_subsets_and_repeats(cluster3: list[int], clean_main: list[str]) -> None:
    # Julia: @everywhere (remotecall_eval) behaviours (#22589).
    clean_main.append("defined_on_p")
    p, p2 = cluster3[0], cluster3[1]
    assert dist.everywhere("__import__('pydistributed').myid() + 1", procs=dist.myid()) == 2
    assert dist.everywhere("__import__('pydistributed').myid() * 2", procs=p) == p * 2
    assert dist.everywhere("defined_on_p = 1", procs=p) is None
    assert not main_has("defined_on_p")
    assert dist.remotecall_fetch(main_has, p, "defined_on_p")
    assert not dist.remotecall_fetch(main_has, p2, "defined_on_p")
    assert dist.everywhere("defined_on_p += 1", procs=[p, p]) is None
    assert dist.everywhere("defined_on_p", procs=p) == 3
    clean_main.append("ew_count")
    sys.modules["__main__"].ew_count = 0  # type: ignore[attr-defined]
    me = dist.myid()
    dist.everywhere("ew_count = globals().get('ew_count', 0) + 1", procs=[me, p, me, me, p])
    assert main_get("ew_count") == 3
    assert dist.remotecall_fetch(main_get, p, "ew_count") == 2


@pytest.mark.parametrize("where", ["p", "myid", "p_and_myid", "p2_and_p"])
def test_everywhere_errors(cluster3: list[int], where: str) -> None:
    p, p2 = cluster3[0], cluster3[1]
    procs: Any = {"p": p, "myid": dist.myid(), "p_and_myid": [p, dist.myid()], "p2_and_p": [p2, p]}[
        where
    ]
    message = f"everywhere on {where}"
    with pytest.raises(ExceptionGroup) as info:
        dist.everywhere(f"raise ValueError({message!r})", procs=procs)
    listed = [procs] if isinstance(procs, int) else procs
    assert [e.pid for e in info.value.exceptions] == listed
    for e in info.value.exceptions:
        assert isinstance(e, dist.RemoteException)
        assert isinstance(e.exception, ValueError)
        assert str(e.exception) == message


def test_everywhere_syntax_error_is_raised_here(cluster3: list[int]) -> None:
    with pytest.raises(SyntaxError):
        dist.everywhere("def (")


def test_everywhere_runs_in_parallel(cluster3: list[int]) -> None:
    import time

    started = time.monotonic()
    dist.everywhere("import time; time.sleep(0.5)")
    assert time.monotonic() - started < 1.4  # four processes, 0.5 s each


def test_everywhere_defines_a_function(cluster3: list[int], clean_main: list[str]) -> None:
    clean_main.extend(["ew_square", "ew_data", "ew_total", "ew_result"])

    @dist.everywhere
    def ew_square(x: int) -> int:
        return x * x

    assert callable(ew_square)
    assert ew_square(3) == 9
    dist.everywhere("ew_result = ew_square(4)")
    assert all(dist.remotecall_fetch(main_get, p, "ew_result") == 16 for p in dist.procs())

    # Its globals are looked up in __main__ where it runs, as in Julia.
    dist.everywhere("ew_data = [myid] * 3".replace("myid", "__import__('pydistributed').myid()"))

    def ew_total() -> int:
        return sum(main_get("ew_data"))

    assert dist.everywhere(ew_total, procs=cluster3) is ew_total
    for p in cluster3:
        assert dist.everywhere("ew_total()", procs=p) == 3 * p


def test_everywhere_decorator_with_procs(cluster3: list[int], clean_main: list[str]) -> None:
    clean_main.append("EwPoint")
    subset = cluster3[:2]

    @dist.everywhere(procs=subset)
    class EwPoint:
        def __init__(self, x: int) -> None:
            self.x = x

    assert EwPoint(3).x == 3
    for p in subset:
        assert dist.everywhere("EwPoint(5).x", procs=p) == 5
    assert not dist.remotecall_fetch(main_has, cluster3[2], "EwPoint")
    assert not main_has("EwPoint")


def test_everywhere_function_sees_worker_globals(
    cluster3: list[int], clean_main: list[str]
) -> None:
    clean_main.extend(["ew_scale", "ew_scaled"])
    dist.everywhere("ew_scale = 10", procs=cluster3)

    def ew_scaled(x: int) -> int:
        return x * ew_scale  # type: ignore[name-defined]  # noqa: F821

    dist.everywhere(ew_scaled, procs=cluster3)
    assert dist.everywhere("ew_scaled(4)", procs=cluster3[0]) == 40


def test_everywhere_rejects_other_objects() -> None:
    with pytest.raises(TypeError):
        dist.everywhere(42)


# -- distributed -------------------------------------------------------------------------------


def test_distributed_load_balance(cluster3: list[int]) -> None:
    # Julia: every worker gets M or M+1 iterations.
    ids = dist.distributed(lambda a, b: [*a, *b], range(7))(lambda i: [dist.myid()])
    workloads = [ids.count(p) for p in cluster3]
    assert sum(workloads) == 7
    assert max(workloads) - min(workloads) <= 1
    assert ids == sorted(ids, key=cluster3.index)  # contiguous chunks, reduced in chunk order


def test_distributed_short_ranges(cluster3: list[int]) -> None:
    assert dist.distributed(operator.add, range(1, 3))(lambda i: i) == 3
    assert dist.distributed(operator.add, range(1))(lambda i: i + 5) == 5
    with pytest.raises((ValueError, TypeError)):
        dist.distributed(operator.add, range(0))(lambda i: i)


def test_distributed_reduction_results(cluster3: list[int]) -> None:
    assert dist.distributed(operator.add, range(1000))(lambda i: i * i) == sum(
        i * i for i in range(1000)
    )
    assert dist.distributed(operator.add, [1.5, 2.5, 3.0, 4.0])(float) == 11.0
    assert dist.distributed(operator.add, "abcdefg")(str.upper) == "ABCDEFG"
    assert dist.distributed(lambda a, b: a + b, (x for x in range(10)))(lambda i: [i]) == list(
        range(10)
    )
    a = 2
    assert dist.distributed(lambda x, y: [*x, *y], range(2))(lambda k: [a * 10]) == [20, 20]


def test_distributed_decorator_binds_the_result(cluster3: list[int]) -> None:
    @dist.distributed(operator.add, range(1, 101))
    def total(i: int) -> int:
        return i

    assert total == 5050


def test_distributed_evaluates_the_iterable_once(cluster3: list[int]) -> None:
    # Julia: issue #8207.
    calls: list[int] = []

    def make() -> range:
        calls.append(1)
        return range(1, 3)

    assert dist.distributed(operator.add, make())(lambda i: i) == 3
    assert len(calls) == 1


def test_distributed_ships_ranges_as_ranges() -> None:
    chunks = _chunks(range(10**12), 3)
    assert all(isinstance(c, range) for c in chunks)
    assert [len(c) for c in chunks] == [333333333334, 333333333333, 333333333333]
    assert _chunks([1, 2, 3, 4, 5], 2) == [[1, 2, 3], [4, 5]]
    assert _chunks((x for x in "abc"), 5) == [["a"], ["b"], ["c"]]
    assert splitrange(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert splitrange(2, 3) == [(0, 1), (1, 2)]
    assert splitrange(0, 3) == []


def test_distributed_without_reducer(cluster3: list[int]) -> None:
    channel = dist.RemoteChannel(lambda: dist.Channel(100))
    futures = dist.distributed(range(10))(lambda i: channel.put((i, dist.myid())))
    assert len(futures) == 3
    assert all(isinstance(f, dist.Future) for f in futures)
    assert [f.fetch() for f in futures] == [None, None, None]
    got = sorted(channel.take() for _ in range(10))
    assert [i for i, _ in got] == list(range(10))
    assert {p for _, p in got} == set(cluster3)
    assert len(dist.distributed(range(2))(lambda i: i)) == 2  # fewer chunks than workers


def test_distributed_without_reducer_in_sync(cluster3: list[int]) -> None:
    channel = dist.RemoteChannel(lambda: dist.Channel(100))
    with dist.sync():
        dist.distributed(range(6))(lambda i: channel.put(i))
    assert sorted(channel.take() for _ in range(6)) == list(range(6))


def test_distributed_errors(cluster3: list[int]) -> None:
    with pytest.raises(dist.RemoteException):
        dist.distributed(operator.add, range(10))(lambda i: 1 // (i - 5))
    with pytest.raises(TypeError):
        dist.distributed()
    with pytest.raises(TypeError):
        dist.distributed(1, 2, 3)


# -- clear ---------------------------------------------------------------------------------------


def test_clear_names(cluster3: list[int], clean_main: list[str]) -> None:
    clean_main.extend(["cl_a", "cl_b"])
    dist.everywhere("cl_a = 1; cl_b = 2")
    dist.clear(["cl_a", "cl_missing"])  # default: every worker; unknown names ignored
    for p in cluster3:
        assert dist.remotecall_fetch(main_get, p, "cl_a") is None
        assert dist.remotecall_fetch(main_get, p, "cl_b") == 2
        assert not dist.remotecall_fetch(main_has, p, "cl_missing")
    assert main_get("cl_a") == 1  # the master is not a worker
    dist.clear("cl_b", pids=[cluster3[0], dist.myid()])
    assert main_get("cl_b") is None
    assert dist.remotecall_fetch(main_get, cluster3[0], "cl_b") is None
    assert dist.remotecall_fetch(main_get, cluster3[1], "cl_b") == 2
    dist.clear("cl_b", pids=cluster3[1], mod="no_such_module")
    assert dist.remotecall_fetch(main_get, cluster3[1], "cl_b") == 2


def test_clear_pool(cluster3: list[int]) -> None:
    pool = dist.CachingPool(cluster3)
    dist.pmap(lambda x: x, range(10), pool=pool)
    assert pool._cache
    assert dist.clear(pool) is pool
    assert not pool._cache


def test_keyword_forms(cluster3: list[int], clean_main: list[str]) -> None:
    clean_main.append("kw_value")
    dist.everywhere(code="kw_value = 7", procs=cluster3[:1])
    assert dist.remotecall_fetch(main_get, cluster3[0], "kw_value") == 7
    dist.clear(names=["kw_value"], pids=cluster3[:1])
    assert dist.remotecall_fetch(main_get, cluster3[0], "kw_value") is None
