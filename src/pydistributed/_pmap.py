"""Parallel map: Julia's ``pmap.jl``.

The elements (or batches of them) are handed out dynamically: there is one *feeder* thread
per worker of the pool, and each feeder, when its call is done, takes the next element and a
free worker and calls the worker. Results land in their slot of the output list, so the
order is kept whatever order the calls finish in.

Errors follow Julia. ``on_error`` runs on the worker, in place of the result of an element
whose function raised. An element that still fails (the function raised and there is no
``on_error``, or ``on_error`` raised, or its worker died) is retried while ``retry_delays``
has delays left and ``retry_check`` (run here) agrees, after the delay, on whatever worker is
free then; otherwise it stops the map and its error is raised. Retries go one element at a
time, except a batch lost as a whole (its worker died), which is retried as a batch.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import types
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from functools import partial
from typing import Any

from ._cluster import PGRP
from ._exceptions import DistributedError, ProcessExitedException, RemoteException
from ._failure import Failure, capture
from ._helpers import Group
from ._interrupt import blocking_wait
from ._processes import workers
from ._remotecall import remotecall_fetch
from ._serialize import _importable
from ._workerpool import AbstractWorkerPool, CachingPool, _alive

__all__ = ("pmap",)


def _auto_batch_size(n: int, nworkers: int) -> int:
    """``batch_size="auto"``: three batches per worker, the least Julia's ``batchsplit``
    makes. (Julia also caps a batch at 100 elements; here every batch costs a round trip,
    so fewer, larger batches are much faster, and three per worker still balance the
    load.)"""
    return max(1, -(-n // (3 * nworkers)))


class _Each:
    """``f`` applied to one element (with ``on_error`` in place of a failure)."""

    __slots__ = ("f", "on_error", "star")

    def __init__(self, f: Callable[..., Any], on_error: Callable[[Any], Any] | None, star: bool):
        self.f = f
        self.on_error = on_error
        self.star = star

    def __reduce__(self) -> tuple[Any, ...]:
        return _Each, (self.f, self.on_error, self.star)

    def __call__(self, x: Any) -> Any:
        try:
            return self.f(*x) if self.star else self.f(x)
        except Exception as exc:
            if self.on_error is None:
                raise
            return self.on_error(exc)


class _Partial:
    """A batch where some elements failed: every value (None where failed) and the failures."""

    __slots__ = ("failures", "values")

    def __init__(self, values: list[Any], failures: dict[int, Failure]) -> None:
        self.values = values
        self.failures = failures

    def __reduce__(self) -> tuple[Any, ...]:
        return _Partial, (self.values, self.failures)


class _Batch:
    """``f`` applied to a batch of elements on the worker.

    Without error handling the first failure fails the whole call; with it, each failure is
    kept apart (``_Partial``) so that the others' values still come back.
    """

    __slots__ = ("f", "keep_going", "on_error", "star")

    def __init__(
        self,
        f: Callable[..., Any],
        on_error: Callable[[Any], Any] | None,
        star: bool,
        keep_going: bool,
    ):
        self.f = f
        self.on_error = on_error
        self.star = star
        self.keep_going = keep_going

    def __reduce__(self) -> tuple[Any, ...]:
        return _Batch, (self.f, self.on_error, self.star, self.keep_going)

    def __call__(self, items: list[Any]) -> list[Any] | _Partial:
        f = self.f
        if not self.keep_going:
            return list(itertools.starmap(f, items) if self.star else map(f, items))
        on_error, star = self.on_error, self.star
        values: list[Any] = []
        failures: dict[int, Failure] = {}
        for i, x in enumerate(items):
            try:
                values.append(f(*x) if star else f(x))
            except Exception as exc:
                if on_error is not None:
                    try:
                        values.append(on_error(exc))
                        continue
                    except Exception as again:
                        exc = again
                values.append(None)
                failures[i] = capture(exc, PGRP.myid)
        return _Partial(values, failures) if failures else values


# A task is an element's index, or a batch's indices (a range, or a list for retries).
Task = int | range | list[int]


class _Map:
    """One run of pmap: the tasks, the results, and the threads that feed the workers."""

    def __init__(
        self,
        call: Callable[[Any], Any],
        items: list[Any],
        tasks: Iterator[Task],
        retry_delays: Iterable[float] | None,
        retry_check: Callable[[Any, BaseException], Any] | None,
        bar: Any,
    ) -> None:
        self.call = call
        self.items = items
        self.results: list[Any] = [None] * len(items)
        self.fresh = tasks
        self.retry_delays = retry_delays
        self.retry_check = retry_check
        self.bar = bar
        self.cond = threading.Condition(threading.Lock())
        # Retries waiting for their delay: (due time, sequence number, task, delays left).
        self.retries: list[tuple[float, int, Task, Iterator[float]]] = []
        self.seq = itertools.count()
        self.running = 0
        self.error: BaseException | None = None

    # -- hand-out -------------------------------------------------------------------------
    #
    # ``fresh`` is a C iterator (of a range or a list), so taking the next task needs no lock.
    # Only with retries is there more to it: a feeder that runs out of fresh tasks waits
    # while other tasks run (they may fail and come back) or retries wait for their delay.

    def next_task(self) -> tuple[Task, Iterator[float] | None] | None:
        if self.retry_delays is None:
            if self.error is not None:
                return None
            task = next(self.fresh, None)
            return None if task is None else (task, None)
        with self.cond:
            while True:
                if self.error is not None:
                    return None
                retries = self.retries
                if retries and retries[0][0] <= time.monotonic():
                    _, _, due, delays = heapq.heappop(retries)
                    self.running += 1
                    return due, delays
                fresh = next(self.fresh, None)
                if fresh is not None:
                    self.running += 1
                    return fresh, None
                if not retries and not self.running:
                    return None
                timeout = max(0.0, retries[0][0] - time.monotonic()) if retries else None
                blocking_wait(self.cond, timeout)

    def finished(self, retry: tuple[float, int, Task, Iterator[float]] | None = None) -> None:
        if self.retry_delays is None:
            return
        with self.cond:
            self.running -= 1
            if retry is not None:
                heapq.heappush(self.retries, retry)
            if retry is not None or not self.running:
                self.cond.notify_all()

    def stop(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()

    # -- one feeder ---------------------------------------------------------------------------

    def feed(self) -> None:
        items, call = self.items, self.call
        while (job := self.next_task()) is not None:
            task, delays = job
            retry = None
            try:
                if isinstance(task, int):
                    payload = items[task]
                elif isinstance(task, range):
                    payload = items[task.start : task.stop]
                else:
                    payload = [items[i] for i in task]
                value = call(payload)
            except Exception as exc:
                retry = self.failed(task, delays, exc)
            else:
                if type(value) is _Partial:
                    self.store_partial(task, value)
                else:
                    self.store(task, value)
            finally:
                self.finished(retry)

    def store(self, task: Task, value: Any) -> None:
        if isinstance(task, int):
            self.results[task] = value
            done = 1
        elif isinstance(task, range):
            self.results[task.start : task.stop] = value
            done = len(task)
        else:
            for i, v in zip(task, value, strict=True):
                self.results[i] = v
            done = len(task)
        if self.bar is not None:
            self.bar.update(done)

    def store_partial(self, task: Task, batch: _Partial) -> None:
        indices = [task] if isinstance(task, int) else list(task)
        done = 0
        for j, i in enumerate(indices):
            failure = batch.failures.get(j)
            if failure is None:
                self.results[i] = batch.values[j]
                done += 1
                continue
            retry = self.failed([i], None, failure.exception())
            if retry is not None:
                with self.cond:
                    heapq.heappush(self.retries, retry)
                    self.cond.notify_all()
        if self.bar is not None:
            self.bar.update(done)

    def failed(
        self, task: Task, delays: Iterator[float] | None, exc: BaseException
    ) -> tuple[float, int, Task, Iterator[float]] | None:
        """Decide on a failed task: a retry to schedule, or None (the map was stopped)."""
        if self.retry_delays is not None:
            if delays is None:
                delays = iter(self.retry_delays)
            delay = next(delays, None)
            if delay is not None:
                retry = True
                if self.retry_check is not None:
                    original = exc.exception if isinstance(exc, RemoteException) else exc
                    try:
                        answer = self.retry_check(delays, original)
                    except BaseException as error:
                        self.stop(error)
                        return None
                    if isinstance(answer, tuple) and len(answer) == 2:
                        state, retry = answer
                        if isinstance(state, Iterator):
                            delays = state
                    else:
                        retry = answer
                if retry:
                    return (time.monotonic() + delay, next(self.seq), task, delays)
        self.stop(exc)
        return None


def _by_reference(f: Any) -> bool:
    """Whether ``f`` is pickled as a reference (its name), not by value."""
    if type(f) is types.BuiltinFunctionType:
        return True
    return type(f) is types.FunctionType and _importable(f)


class _Direct:
    """pmap's own workers when ``f`` (and ``on_error``) travel as names, for a few bytes:
    each call carries its runner, so nothing is cached on the workers and no pool has to
    be made, counted and cleared for the map. Like a pool's, a worker runs one call of
    the map at a time; a worker that died is no longer handed out, and with none left a
    call raises :class:`DistributedError`, as an empty pool does.
    """

    def __init__(self, pids: Iterable[int], runner: Any) -> None:
        self.runner = runner
        self.cond = threading.Condition(threading.Lock())
        self.free = deque(sorted(pids))
        self.members = set(self.free)

    def take(self) -> int:
        with self.cond:
            while True:
                while self.free:
                    pid = self.free.popleft()
                    if _alive(pid):
                        return pid
                    self.members.discard(pid)
                if not self.members:
                    raise DistributedError("no active worker available in pool")
                blocking_wait(self.cond)

    def call(self, payload: Any) -> Any:
        pid = self.take()
        lost = False
        try:
            return remotecall_fetch(self.runner, pid, payload)
        except ProcessExitedException:
            lost = True
            raise
        finally:
            with self.cond:
                if lost:
                    self.members.discard(pid)
                else:
                    self.free.append(pid)
                self.cond.notify()


# The runners made for each CachingPool given to pmap, so that another pmap of the same
# function reuses the copy cached on the workers instead of caching one more.
_runners: weakref.WeakKeyDictionary[CachingPool, dict[tuple[Any, ...], _Each | _Batch]] = (
    weakref.WeakKeyDictionary()
)
_runners_lock = threading.Lock()


def _reuse(pool: CachingPool, runner: _Each | _Batch) -> _Each | _Batch:
    key = (
        type(runner),
        id(runner.f),
        id(runner.on_error),
        runner.star,
        getattr(runner, "keep_going", None),
    )
    with _runners_lock:
        memo = _runners.setdefault(pool, {})
        known = memo.get(key)
        if known is not None and known.f is runner.f and known.on_error is runner.on_error:
            return known
        memo[key] = runner
        return runner


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn(
            "pmap(progress=True) needs tqdm (pip install 'pydistributed[progress]'); "
            "no progress is shown",
            stacklevel=3,
        )
        return None
    return tqdm(total=total)


def _delays(retry_delays: Iterable[float]) -> Iterable[float] | None:
    """The delays as something that can be iterated once per failed task, or None if empty."""
    if isinstance(retry_delays, Iterator):
        retry_delays = list(retry_delays)
    if isinstance(retry_delays, Sized):
        return retry_delays if len(retry_delays) else None
    return retry_delays if next(iter(retry_delays), None) is not None else None


def pmap(
    f: Callable[..., Any],
    /,
    *iterables: Iterable[Any],
    pool: AbstractWorkerPool | None = None,
    distributed: bool = True,
    batch_size: int | str = 1,
    on_error: Callable[[Exception], Any] | None = None,
    retry_delays: Iterable[float] = (),
    retry_check: Callable[[Any, BaseException], Any] | None = None,
    progress: bool = False,
) -> list[Any]:
    """Apply ``f`` to every element of ``iterables`` in parallel; return the results in order.

    With several iterables, ``f`` gets one element of each (``zip``). Elements are handed
    out one (or one batch) at a time to whichever worker of ``pool`` is free.

    Args:
        f: the function; it is shipped to each worker once (a fresh :class:`CachingPool`
            over ``workers()`` is used when ``pool`` is not given).
        pool: the workers to use.
        distributed: False runs ``f`` on threads of this process instead (as many as the
            pool has workers); so does a pool with no worker but this process.
        batch_size: elements per call; ``"auto"`` makes three batches per worker.
        on_error: called on the worker with the exception of an element whose ``f`` raised;
            its return value takes the element's place. If it raises, the element failed.
        retry_delays: seconds to wait before each retry of a failed element (e.g.
            ``ExponentialBackOff(n=3)``); elements lost with a dead worker are retried too.
        retry_check: ``retry_check(state, exc) -> (state, retry)`` called here with the
            original exception before each retry; ``state`` is an iterator over the delays
            left (returning another iterator replaces them). Returning a false ``retry``
            gives up on the element.
        progress: show a progress bar (needs tqdm; without it a warning is issued).

    Returns:
        The list of results, in the order of the elements.

    Raises:
        RemoteException: the first failure of an element that is not handled (its original
            exception is ``.exception``); ``ProcessExitedException`` when it was lost with
            its worker. With ``distributed=False`` the original exception itself.
    """
    if not iterables:
        raise TypeError("pmap needs at least one iterable")
    if batch_size != "auto" and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f'batch_size must be a positive int or "auto", not {batch_size!r}')
    star = len(iterables) > 1
    items: list[Any] = list(zip(*iterables, strict=False)) if star else list(iterables[0])
    delays = _delays(retry_delays)
    own_pool = pool is None
    # Without a pool, f is cached on the workers by a CachingPool made for this map, unless
    # it goes by name anyway (see _Direct).
    direct = (
        own_pool
        and distributed
        and _by_reference(f)
        and (on_error is None or _by_reference(on_error))
    )
    the_pool: AbstractWorkerPool | None = None
    if not direct:
        the_pool = CachingPool(workers()) if pool is None else pool
    try:
        if not items:
            return []
        members = set(workers()) if the_pool is None else the_pool.workers()
        nworkers = max(1, len(members))
        if not members or members == {PGRP.myid}:
            distributed = False
        size = 1
        if distributed:
            size = _auto_batch_size(len(items), nworkers) if batch_size == "auto" else batch_size  # type: ignore[assignment]
        call: Callable[[Any], Any]
        tasks: Iterator[Task]
        if size == 1:
            runner: _Each | _Batch = _Each(f, on_error, star)
            tasks = iter(range(len(items)))
        else:
            keep_going = on_error is not None or delays is not None
            runner = _Batch(f, on_error, star, keep_going)
            tasks = iter([range(i, min(i + size, len(items))) for i in range(0, len(items), size)])
        if distributed and not own_pool and isinstance(the_pool, CachingPool):
            runner = _reuse(the_pool, runner)
        if distributed and the_pool is None:
            call = _Direct(members, runner).call
        elif distributed:
            assert the_pool is not None
            pool_call = the_pool._call
            no_kwargs: dict[str, Any] = {}

            def call(payload: Any) -> Any:
                return pool_call("remotecall_fetch", runner, (payload,), no_kwargs)
        else:
            call = runner
        bar = _progress_bar(len(items)) if progress else None
        run = _Map(call, items, tasks, delays, retry_check, bar)
        try:
            _run_feeders(run, min(nworkers, -(-len(items) // size)))
        finally:
            if bar is not None:
                bar.close()
        if run.error is not None:
            raise run.error
        return run.results
    finally:
        if own_pool and the_pool is not None:
            assert isinstance(the_pool, CachingPool)
            the_pool.clear()


def _feed_in_thread(run: _Map) -> None:
    try:
        run.feed()
    except BaseException as exc:
        run.stop(exc)


def _run_feeders(run: _Map, count: int) -> None:
    helpers = Group()
    for _ in range(count - 1):
        helpers.start(partial(_feed_in_thread, run))
    try:
        run.feed()
    except BaseException as exc:
        run.stop(exc)
        raise
    finally:
        helpers.join()
