"""Tests of the local, thread-safe Channel (Julia's ``Base.Channel``), with real threads."""

from __future__ import annotations

import ctypes
import math
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pydistributed import _interrupt
from pydistributed._channel import Channel
from pydistributed._exceptions import ChannelClosed

# How long a thread that should be blocked is given to (wrongly) finish, and how long one that
# should finish is given to do it.
BLOCKED = 0.15
PROMPT = 5.0


class Runner:
    """Runs ``f()`` in a daemon thread and keeps its result or exception."""

    def __init__(self, f: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._f = f
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._f()
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()

    def finish(self, timeout: float = PROMPT) -> Any:
        """Wait for ``f`` to return and give its result (re-raising its exception)."""
        assert self.done.wait(timeout), "thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result

    def assert_blocked(self, delay: float = BLOCKED) -> None:
        assert not self.done.wait(delay), f"expected to block, got {self.result!r}/{self.error!r}"


def wait_until(pred: Callable[[], bool], timeout: float = PROMPT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.002)


def wait_blocked(r: Runner) -> None:
    """Wait until ``r``'s thread sleeps inside ``blocking_wait``."""
    wait_until(lambda: r.thread.ident in _interrupt._waiting_on)


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "expected"), [(0, 0), (3, 3), (2.0, 2), (math.inf, math.inf)])
def test_sizes(size: float, expected: float) -> None:
    c = Channel(size)
    assert c.size == expected
    assert c.isopen()
    assert not c.isready()


def test_default_is_unbuffered() -> None:
    assert Channel().size == 0


@pytest.mark.parametrize("size", [-1, 1.5, -math.inf, math.nan])
def test_bad_sizes(size: float) -> None:
    with pytest.raises(ValueError):
        Channel(size)


def test_size_must_be_a_number() -> None:
    with pytest.raises(TypeError):
        Channel("3")  # type: ignore[arg-type]


def test_public_module() -> None:
    assert Channel.__module__ == "pydistributed"


# -- buffered ------------------------------------------------------------------------------------


def test_buffered_fifo() -> None:
    c = Channel(5)
    for i in range(5):
        assert c.put(i) == i
    assert c.n_avail() == 5
    assert [c.take() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert not c.isready()


def test_put_returns_its_value() -> None:
    c = Channel(1)
    v = object()
    assert c.put(v) is v


def test_buffered_put_blocks_when_full() -> None:
    c = Channel(2)
    c.put("a")
    c.put("b")
    r = Runner(lambda: c.put("c"))
    r.assert_blocked()
    assert c.take() == "a"
    assert r.finish() == "c"
    assert [c.take(), c.take()] == ["b", "c"]


def test_take_blocks_until_put() -> None:
    c = Channel(1)
    r = Runner(c.take)
    r.assert_blocked()
    c.put(42)
    assert r.finish() == 42
    assert not c.isready()


def test_unbounded_never_blocks() -> None:
    c = Channel(math.inf)
    for i in range(10_000):
        c.put(i, timeout=0)
    assert c.n_avail() == 10_000
    assert list(map(lambda _: c.take(), range(10_000))) == list(range(10_000))


def test_fetch_peeks_buffered() -> None:
    c = Channel(3)
    c.put("x")
    c.put("y")
    assert c.fetch() == "x"
    assert c.fetch() == "x"
    assert c.n_avail() == 2
    assert c.take() == "x"
    assert c.fetch() == "y"


def test_fetch_blocks_until_put() -> None:
    c = Channel(2)
    r = Runner(c.fetch)
    r.assert_blocked()
    c.put(7)
    assert r.finish() == 7
    assert c.take() == 7  # fetch left it there


def test_isready_and_wait() -> None:
    c = Channel(1)
    assert not c.isready()
    r = Runner(c.wait)
    r.assert_blocked()
    c.put(1)
    assert r.finish() is None
    assert c.isready()
    c.wait()  # returns at once when ready
    assert c.take() == 1
    assert not c.isready()


def test_many_fetchers_and_waiters_all_wake() -> None:
    c = Channel(1)
    fetchers = [Runner(c.fetch) for _ in range(4)]
    waiters = [Runner(c.wait) for _ in range(4)]
    for r in fetchers + waiters:
        wait_blocked(r)
    c.put("v")
    assert [r.finish() for r in fetchers] == ["v"] * 4
    assert [r.finish() for r in waiters] == [None] * 4
    assert c.take() == "v"


# -- unbuffered (rendezvous) ---------------------------------------------------------------------


def test_unbuffered_put_blocks_until_take() -> None:
    c = Channel(0)
    r = Runner(lambda: c.put("hello"))
    r.assert_blocked()
    assert c.isready()
    assert c.n_avail() == 1
    assert c.take() == "hello"
    assert r.finish() == "hello"
    assert not c.isready()


def test_unbuffered_take_blocks_until_put() -> None:
    c = Channel(0)
    r = Runner(c.take)
    r.assert_blocked()
    assert not c.isready()
    assert c.put("v", timeout=PROMPT) == "v"
    assert r.finish() == "v"


def test_unbuffered_fetch_peeks_waiting_putter() -> None:
    c = Channel(0)
    f = Runner(c.fetch)
    f.assert_blocked()
    p = Runner(lambda: c.put("p"))
    assert f.finish() == "p"
    p.assert_blocked()  # fetch does not complete the put
    assert c.fetch() == "p"
    assert c.take() == "p"
    assert p.finish() == "p"


def test_unbuffered_putters_are_served_in_order() -> None:
    c = Channel(0)
    putters = []
    for i in range(5):
        putters.append(Runner(lambda i=i: c.put(i)))  # type: ignore[misc]
        wait_until(lambda i=i: c.n_avail() == i + 1)  # type: ignore[misc]
    assert c.fetch() == 0
    assert [c.take() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert [p.finish() for p in putters] == [0, 1, 2, 3, 4]


def test_unbuffered_several_takers_and_putters() -> None:
    c = Channel(0)
    takers = [Runner(c.take) for _ in range(6)]
    for t in takers:
        wait_blocked(t)
    putters = [Runner(lambda i=i: c.put(i)) for i in range(6)]  # type: ignore[misc]
    assert sorted(p.finish() for p in putters) == list(range(6))
    assert sorted(t.finish() for t in takers) == list(range(6))
    assert not c.isready()


def test_unbuffered_wait_sees_waiting_putter() -> None:
    c = Channel(0)
    w = Runner(c.wait)
    w.assert_blocked()
    p = Runner(lambda: c.put(1))
    assert w.finish() is None
    p.assert_blocked()
    assert c.take() == 1
    p.finish()


# -- timeouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, math.inf])
@pytest.mark.parametrize("op", ["take", "fetch", "wait"])
def test_timeout_on_empty(size: float, op: str) -> None:
    c = Channel(size)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        getattr(c, op)(timeout=0.1)
    elapsed = time.monotonic() - t0
    assert 0.09 <= elapsed < 2.0


@pytest.mark.parametrize("op", ["take", "fetch", "wait"])
def test_zero_timeout_does_not_block(op: str) -> None:
    c = Channel(1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        getattr(c, op)(timeout=0)
    assert time.monotonic() - t0 < 0.05
    c.put(5)
    getattr(c, op)(timeout=0)


def test_put_timeout_when_full() -> None:
    c = Channel(1)
    c.put(1)
    with pytest.raises(TimeoutError):
        c.put(2, timeout=0.1)
    assert c.n_avail() == 1
    assert c.take() == 1
    assert not c.isready()


def test_unbuffered_put_timeout_withdraws_value() -> None:
    c = Channel(0)
    with pytest.raises(TimeoutError):
        c.put("lost", timeout=0.1)
    assert not c.isready()
    with pytest.raises(TimeoutError):
        c.take(timeout=0.05)


def test_timeout_returns_value_that_arrives_in_time() -> None:
    c = Channel(1)
    r = Runner(lambda: c.take(timeout=PROMPT))
    wait_blocked(r)
    c.put("in time")
    assert r.finish() == "in time"


def test_huge_timeout_is_accepted() -> None:
    c = Channel(1)
    r = Runner(lambda: c.take(timeout=1e12))
    wait_blocked(r)
    c.put(1)
    assert r.finish() == 1


# -- close ---------------------------------------------------------------------------------------


def test_close_state() -> None:
    c = Channel(1)
    assert c.isopen()
    c.close()
    assert not c.isopen()
    c.close()  # idempotent
    assert not c.isopen()


@pytest.mark.parametrize("size", [0, 1, math.inf])
def test_put_on_closed_raises(size: float) -> None:
    c = Channel(size)
    c.close()
    with pytest.raises(ChannelClosed):
        c.put(1)
    assert not c.isready()


@pytest.mark.parametrize("size", [0, 1, math.inf])
@pytest.mark.parametrize("op", ["take", "fetch", "wait"])
def test_ops_on_closed_empty_raise(size: float, op: str) -> None:
    c = Channel(size)
    c.close()
    with pytest.raises(ChannelClosed):
        getattr(c, op)()
    with pytest.raises(ChannelClosed):
        getattr(c, op)(timeout=10)


def test_take_after_close_drains_then_raises() -> None:
    c = Channel(3)
    c.put(1)
    c.put(2)
    c.close()
    assert c.isready()
    assert c.fetch() == 1
    c.wait()
    assert c.take() == 1
    assert c.take() == 2
    with pytest.raises(ChannelClosed):
        c.take()


@pytest.mark.parametrize("size", [0, 1, math.inf])
@pytest.mark.parametrize("op", ["take", "fetch", "wait"])
def test_close_wakes_blocked_readers(size: float, op: str) -> None:
    c = Channel(size)
    runners = [Runner(getattr(c, op)) for _ in range(3)]
    for r in runners:
        wait_blocked(r)
    t0 = time.monotonic()
    c.close()
    for r in runners:
        with pytest.raises(ChannelClosed):
            r.finish()
    assert time.monotonic() - t0 < 1.0


def test_close_wakes_blocked_buffered_putter() -> None:
    c = Channel(1)
    c.put("kept")
    r = Runner(lambda: c.put("refused"))
    wait_blocked(r)
    c.close()
    with pytest.raises(ChannelClosed):
        r.finish()
    assert c.take() == "kept"
    with pytest.raises(ChannelClosed):
        c.take()


def test_close_wakes_blocked_unbuffered_putters_without_delivering() -> None:
    c = Channel(0)
    runners = [Runner(lambda i=i: c.put(i)) for i in range(3)]  # type: ignore[misc]
    wait_until(lambda: c.n_avail() == 3)
    for r in runners:
        wait_blocked(r)
    c.close()
    # Withdrawn by close() itself, before the putters even run again.
    assert not c.isready()
    with pytest.raises(ChannelClosed):
        c.take(timeout=0)
    for r in runners:
        with pytest.raises(ChannelClosed):
            r.finish()
    assert not c.isready()
    with pytest.raises(ChannelClosed):
        c.take()


# -- iteration -----------------------------------------------------------------------------------


def test_iteration_ends_after_close_and_drain() -> None:
    c = Channel(10)
    for i in range(4):
        c.put(i)
    c.close()
    assert list(c) == [0, 1, 2, 3]
    assert list(c) == []


def test_iteration_blocks_until_close() -> None:
    c = Channel(0)
    r = Runner(lambda: list(c))
    for i in range(3):
        c.put(i)
    r.assert_blocked()
    c.close()
    assert r.finish() == [0, 1, 2]


# -- many threads --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4, math.inf])
def test_many_producers_and_consumers(size: float) -> None:
    c = Channel(size)
    n_producers, n_consumers, per_producer = 4, 4, 300

    def produce(p: int) -> None:
        for i in range(per_producer):
            c.put((p, i))

    producers = [Runner(lambda p=p: produce(p)) for p in range(n_producers)]  # type: ignore[misc]
    consumers = [Runner(lambda: list(c)) for _ in range(n_consumers)]
    for r in producers:
        r.finish(30)
    c.close()
    received = [r.finish(30) for r in consumers]
    everything = sorted(item for got in received for item in got)
    assert everything == sorted((p, i) for p in range(n_producers) for i in range(per_producer))
    # FIFO: each consumer sees each producer's items in the order they were put.
    for got in received:
        for p in range(n_producers):
            mine = [i for q, i in got if q == p]
            assert mine == sorted(mine)


# -- interrupts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "setup", "op"),
    [
        (1, None, "take"),
        (1, None, "fetch"),
        (1, None, "wait"),
        (1, "full", "put"),
        (0, None, "take"),
        (0, None, "put"),
    ],
)
def test_every_wait_is_interruptible(size: float, setup: str | None, op: str) -> None:
    c = Channel(size)
    if setup == "full":
        c.put("first")
    call = (lambda: c.put("second")) if op == "put" else getattr(c, op)
    r = Runner(call)
    wait_blocked(r)
    # A spurious wake-up alone changes nothing.
    _interrupt.wake_thread(r.thread.ident)  # type: ignore[arg-type]
    r.assert_blocked(0.05)
    wait_blocked(r)
    # An asynchronous KeyboardInterrupt plus a wake-up ends the call.
    assert r.thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(r.thread.ident), ctypes.py_object(KeyboardInterrupt)
    )
    _interrupt.wake_thread(r.thread.ident)
    with pytest.raises(KeyboardInterrupt):
        r.finish()
    # The channel still works, and an interrupted put delivered nothing.
    if setup == "full":
        assert c.take() == "first"
    assert not c.isready()
    r2 = Runner(c.take)
    c.put("after", timeout=PROMPT)
    assert r2.finish() == "after"


def test_interrupted_taker_passes_on_its_wakeup() -> None:
    c = Channel(1)
    a = Runner(c.take)
    wait_blocked(a)
    b = Runner(c.take)
    wait_blocked(b)
    assert a.thread.ident is not None
    # An exception is pending in a, and nothing wakes it but the put: a (the first waiter)
    # gets the put's one notification, raises, and must hand the notification on to b.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(a.thread.ident), ctypes.py_object(KeyboardInterrupt)
    )
    c.put("item")
    with pytest.raises(KeyboardInterrupt):
        a.finish()
    assert b.finish() == "item"


# -- pickling ------------------------------------------------------------------------------------


def test_pickle_copies_buffered_items_and_state() -> None:
    c = Channel(3)
    c.put("a")
    c.put(["b"])
    copy = pickle.loads(pickle.dumps(c))
    assert isinstance(copy, Channel)
    assert copy.size == 3
    assert copy.isopen()
    assert copy.take() == "a"
    assert copy.take() == ["b"]
    # The original is untouched, and the copy is independent.
    assert c.n_avail() == 2
    copy.put("only in copy")
    assert c.take() == "a"
    assert c.take() == ["b"]
    assert not c.isready()


def test_pickled_copy_has_working_locks() -> None:
    copy = pickle.loads(pickle.dumps(Channel(1)))
    r = Runner(copy.take)
    r.assert_blocked()
    copy.put(3)
    assert r.finish() == 3
    p = Runner(lambda: [copy.put(i) for i in range(3)])
    assert [copy.take() for _ in range(3)] == [0, 1, 2]
    p.finish()


def test_pickle_closed_channel() -> None:
    c = Channel(math.inf)
    for i in range(3):
        c.put(i)
    c.close()
    copy = pickle.loads(pickle.dumps(c))
    assert copy.size == math.inf
    assert not copy.isopen()
    assert list(copy) == [0, 1, 2]
    with pytest.raises(ChannelClosed):
        copy.put(9)
    assert c.n_avail() == 3


def test_pickle_unbuffered_leaves_waiting_putters_behind() -> None:
    c = Channel(0)
    p = Runner(lambda: c.put("waiting"))
    wait_until(c.isready)
    copy = pickle.loads(pickle.dumps(c))
    assert copy.size == 0
    assert not copy.isready()
    assert c.take() == "waiting"
    p.finish()


def test_cloudpickle_round_trip() -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    c = Channel(2)
    c.put({"k": 1})
    copy = cloudpickle.loads(cloudpickle.dumps(c))
    assert type(copy) is Channel
    assert copy.take() == {"k": 1}
    assert c.take() == {"k": 1}


def test_repr() -> None:
    c = Channel(2)
    c.put(1)
    assert repr(c) == "Channel(size=2) [open, 1 available]"
    c.close()
    assert "closed" in repr(c)
