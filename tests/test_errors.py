"""Remote exceptions, and workers that die while callers wait on them."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import pydistributed as dist
from support import eventually, identity, os_pid_alive, ospid_of


class NeedsTwoArguments(Exception):
    """Pickles fine, but unpickling calls ``__init__`` with one argument and fails."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} and {b}")


class Unpicklable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def raise_needs_two() -> None:
    raise NeedsTwoArguments("left", "right")


def raise_unpicklable() -> None:
    raise Unpicklable("holds a lock")


def worker_only_failure() -> Callable[[], None]:
    """A by-value function raising an exception class that exists only where it runs."""

    class OnlyOnTheWorker(Exception):
        pass

    def fail() -> None:
        raise OnlyOnTheWorker("made on the worker")

    return fail


def raise_from_remote(pid: int) -> None:
    dist.remotecall_fetch(raise_value_error, pid, "deep")


# -- RemoteException ---------------------------------------------------------------------------


CALLS: dict[str, Callable[[int], Any]] = {
    "remotecall_fetch": lambda pid: dist.remotecall_fetch(raise_value_error, pid, "broken"),
    "remotecall": lambda pid: dist.remotecall(raise_value_error, pid, "broken").fetch(),
    "remotecall_wait": lambda pid: dist.remotecall_wait(raise_value_error, pid, "broken"),
}


@pytest.mark.parametrize("how", sorted(CALLS))
def test_remote_exception(cluster: list[int], how: str) -> None:
    pid = cluster[0]
    with pytest.raises(dist.RemoteException) as info:
        CALLS[how](pid)
    exc = info.value
    assert exc.pid == pid
    assert type(exc.exception) is ValueError
    assert str(exc.exception) == "broken"
    assert exc.__cause__ is exc.exception
    assert "raise_value_error" in exc.traceback
    assert str(exc).startswith(f"On worker {pid}:")
    assert "ValueError" in str(exc)
    assert "broken" in str(exc)
    assert isinstance(exc, dist.DistributedError)


def test_remote_exception_on_the_master_itself() -> None:
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(raise_value_error, dist.myid(), "local")
    assert info.value.pid == 1
    assert type(info.value.exception) is ValueError
    assert str(info.value).startswith("On worker 1:")
    with pytest.raises(dist.RemoteException, match="local"):
        dist.remotecall(raise_value_error, 1, "local").fetch()


def test_exception_that_fails_to_unpickle(cluster: list[int]) -> None:
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(raise_needs_two, cluster[0])
    stand_in = info.value.exception
    assert not isinstance(stand_in, NeedsTwoArguments)
    assert "NeedsTwoArguments" in str(stand_in)
    assert "left and right" in str(stand_in)
    assert "NeedsTwoArguments" in str(info.value)
    assert "RemoteExceptionStandIn" not in str(info.value)
    assert str(info.value).splitlines()[1] == str(stand_in)
    assert info.value.__cause__ is stand_in


def test_exception_that_fails_to_pickle(cluster: list[int]) -> None:
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(raise_unpicklable, cluster[0])
    assert "Unpicklable" in str(info.value.exception)
    assert "holds a lock" in str(info.value.exception)
    assert "raise_unpicklable" in info.value.traceback


def test_exception_class_defined_only_on_the_worker(cluster: list[int]) -> None:
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(worker_only_failure(), cluster[1])
    exc = info.value
    assert exc.pid == cluster[1]
    # The class travels back by value: the caller gets a real instance of it.
    assert type(exc.exception).__name__ == "OnlyOnTheWorker"
    assert "OnlyOnTheWorker" in str(exc)
    assert "made on the worker" in str(exc.exception)
    assert exc.__cause__ is exc.exception
    assert str(exc).startswith(f"On worker {cluster[1]}:")


def test_exception_class_shipped_by_value_comes_back_as_itself(cluster: list[int]) -> None:
    # A class the worker cannot import by name (like one defined in __main__) travels with
    # the function by value; the exception raised with it arrives as an instance of it.
    class Shipped(Exception):
        pass

    def fail() -> None:
        raise Shipped("by value")

    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(fail, cluster[0])
    assert type(info.value.exception) is Shipped
    assert str(info.value.exception) == "by value"
    # And from a worker's call back to this process, where the class was made.
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(dist.remotecall_fetch, cluster[0], fail, 1)
    assert info.value.pid == 1
    assert type(info.value.exception) is Shipped


def test_remote_exception_pickles() -> None:
    exc = dist.RemoteException(3, ValueError("x"), "Traceback...")
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.pid, str(copy.exception), copy.traceback) == (3, "x", "Traceback...")
    assert type(copy.exception) is ValueError


def test_nested_remote_exception_keeps_the_origin(cluster: list[int]) -> None:
    a, b = cluster
    with pytest.raises(dist.RemoteException) as info:
        dist.remotecall_fetch(raise_from_remote, a, b)
    # The error happened on b; a passes it on as it is.
    assert info.value.pid == b
    assert type(info.value.exception) is ValueError
    assert str(info.value.exception) == "deep"


def test_unpicklable_argument_and_result(cluster: list[int]) -> None:
    with pytest.raises(Exception, match=r"pickle|lock"):
        dist.remotecall_fetch(identity, cluster[0], threading.Lock())
    with pytest.raises(dist.RemoteException, match=r"pickle|lock"):
        dist.remotecall_fetch(threading.Lock, cluster[0])
    # The connection is still usable afterwards.
    assert dist.remotecall_fetch(identity, cluster[0], 5) == 5


def test_errors_leave_the_worker_serving(cluster: list[int]) -> None:
    for _ in range(3):
        with pytest.raises(dist.RemoteException):
            dist.remotecall_fetch(raise_value_error, cluster[0], "again")
    assert dist.remotecall_fetch(dist.myid, cluster[0]) == cluster[0]


# -- dying workers ---------------------------------------------------------------------------------


def test_killing_a_busy_worker_fails_every_waiting_caller(workers2: list[int]) -> None:
    victim, survivor = workers2
    ospid = ospid_of(victim)
    outcomes: list[BaseException | Any] = []
    lock = threading.Lock()

    def record(call: Callable[[], Any]) -> None:
        try:
            value = call()
        except BaseException as exc:
            value = exc
        with lock:
            outcomes.append((time.monotonic(), value))

    calls: list[Callable[[], Any]] = [
        lambda: dist.remotecall_fetch(time.sleep, victim, 30),
        lambda: dist.remotecall_fetch(time.sleep, victim, 30),
        lambda: dist.remotecall(time.sleep, victim, 30).fetch(),
        lambda: dist.remotecall(time.sleep, victim, 30).wait(),
        lambda: dist.remotecall_wait(time.sleep, victim, 30),
    ]
    threads = [threading.Thread(target=record, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    assert not outcomes
    nprocs = dist.nprocs()
    killed = time.monotonic()
    os.kill(ospid, signal.SIGKILL)
    for thread in threads:
        thread.join(5)
    assert len(outcomes) == len(calls)
    for when, value in outcomes:
        assert isinstance(value, dist.ProcessExitedException), value
        assert value.worker_id == victim
        assert when - killed < 1.0
    assert eventually(lambda: victim not in dist.workers(), timeout=1)
    assert survivor in dist.workers()
    assert dist.nprocs() == nprocs - 1
    # Later calls fail the same way.
    with pytest.raises(dist.ProcessExitedException) as info:
        dist.remotecall_fetch(dist.myid, victim)
    assert info.value.worker_id == victim
    with pytest.raises(dist.ProcessExitedException):
        dist.remotecall(dist.myid, victim)
    with pytest.raises(dist.ProcessExitedException):
        dist.remote_do(dist.myid, victim)
    # The rest of the cluster works, survivor included, and knows the victim is gone.
    assert dist.remotecall_fetch(dist.myid, survivor) == survivor
    assert eventually(lambda: victim not in dist.remotecall_fetch(dist.workers, survivor))
    with pytest.raises(dist.RemoteException) as info2:
        dist.remotecall_fetch(dist.remotecall_fetch, survivor, dist.myid, victim)
    assert isinstance(info2.value.exception, dist.ProcessExitedException)
    [extra] = dist.addprocs(1)
    assert dist.remotecall_fetch(dist.remotecall_fetch, extra, dist.myid, survivor) == survivor
    dist.rmprocs(extra, waitfor=20)
    assert not os_pid_alive(ospid)


def test_killing_an_idle_worker(workers2: list[int]) -> None:
    victim, survivor = workers2
    future = dist.remotecall(identity, victim, 1)
    assert future.fetch() == 1
    os.kill(ospid_of(victim), signal.SIGKILL)
    assert eventually(lambda: victim not in dist.workers(), timeout=1)
    assert survivor in dist.workers()
    # A value fetched before is still there.
    assert future.fetch() == 1
    unfetched = dist.Future(survivor)
    unfetched.put("ok")
    assert unfetched.fetch() == "ok"


def test_worker_exiting_during_a_call(workers2: list[int]) -> None:
    victim, survivor = workers2
    with pytest.raises(dist.ProcessExitedException):
        dist.remotecall_fetch(os._exit, victim, 1)
    assert victim not in dist.workers()
    assert survivor in dist.workers()
    assert dist.remotecall_fetch(dist.myid, survivor) == survivor


def test_future_of_a_dead_owner(workers2: list[int]) -> None:
    victim, _survivor = workers2
    future = dist.Future(victim)
    os.kill(ospid_of(victim), signal.SIGKILL)
    assert eventually(lambda: victim not in dist.workers(), timeout=1)
    with pytest.raises(dist.ProcessExitedException):
        future.fetch()
    with pytest.raises(dist.ProcessExitedException):
        future.put(1)
    with pytest.raises(dist.ProcessExitedException):
        future.isready()
