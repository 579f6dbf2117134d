"""Worker pools: Julia's ``workerpool.jl``.

A pool hands out the ids of free workers (``take``) and gets them back (``put``). Remote calls
accept a pool instead of an id: they take a worker, use it and give it back when the call is
done, so a pool never runs more than one call of its own at a time on a worker.

The state of a pool (its members and its free workers) lives on the process that made it,
its *owner*, in the reference table, and is counted like a Future: a :class:`WorkerPool` sent
to another process arrives as a reference to the owner's state, and every operation on it
there runs on the owner (``call_on_owner``); the owner drops the state once no process holds
a reference.

A worker that dies or is removed leaves every pool of every process (``PGRP.on_leave``), and
``take`` re-checks each worker it is about to hand out, so a pool never hands out a worker
that is gone. Workers join the default pool when they join the cluster (``PGRP.on_join``).
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from ._cluster import PGRP, WorkerState
from ._exceptions import DistributedError, RemoteException
from ._future import Future
from ._interrupt import blocking_wait
from ._refs import RRID, TABLE, count_receiver, next_rrid, release_claims
from ._remotecall import (
    _pool_dispatch,
    call_on_owner,
    remote_do,
    remotecall,
    remotecall_fetch,
    remotecall_wait,
)

__all__ = (
    "AbstractWorkerPool",
    "CachingPool",
    "WorkerPool",
    "default_worker_pool",
    "remote",
)

_LIVE = (WorkerState.CREATED, WorkerState.CONNECTED)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is this process or a peer that is neither gone nor being removed."""
    if pid == PGRP.myid:
        return True
    worker = PGRP.workers.get(pid)
    return worker is not None and worker.state in _LIVE


class AbstractWorkerPool:
    """Base class of worker pools (Julia's ``AbstractWorkerPool``).

    A subclass implements ``push``, ``put``, ``take``, ``wait``, ``__len__``, ``isready`` and
    ``workers``; remote calls on the pool then take a worker, run the call there and give it
    back (``put``) once the call is done.
    """

    __module__ = "pydistributed"
    __slots__ = ()

    def push(self, pid: int) -> AbstractWorkerPool:
        """Add worker ``pid`` to the pool, free; return the pool."""
        raise NotImplementedError

    def put(self, pid: int) -> None:
        """Give worker ``pid`` back to the pool (ignored if it is no longer a member)."""
        raise NotImplementedError

    def take(self) -> int:
        """Take a free worker out of the pool, blocking until one is free."""
        raise NotImplementedError

    def wait(self) -> None:
        """Block until a worker is free."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def isready(self) -> bool:
        """Whether ``take`` would return without blocking."""
        raise NotImplementedError

    def workers(self) -> set[int]:
        """The ids of the pool's workers, busy or free."""
        raise NotImplementedError

    def _call(self, kind: str, f: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Run one remote call of ``kind`` on a worker taken from the pool."""
        pid = self.take()
        return _call_on(self, pid, kind, f, args, kwargs)


def _call_on(
    pool: AbstractWorkerPool, pid: int, kind: str, f: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    """Make the call on ``pid`` (taken from ``pool``) and give ``pid`` back when it is done."""
    if kind == "remotecall":
        try:
            future = remotecall(f, pid, *args, **kwargs)
        except BaseException:
            pool.put(pid)
            raise
        PGRP.engine.submit(partial(_give_back_when_done, pool, pid, future))
        return future
    try:
        if kind == "remotecall_fetch":
            return remotecall_fetch(f, pid, *args, **kwargs)
        if kind == "remotecall_wait":
            return remotecall_wait(f, pid, *args, **kwargs)
        return remote_do(f, pid, *args, **kwargs)
    finally:
        pool.put(pid)


def _give_back_when_done(pool: AbstractWorkerPool, pid: int, future: Future) -> None:
    try:
        future.wait()
    except BaseException:
        pass
    finally:
        try:
            pool.put(pid)
        except DistributedError:
            pass


# -- the owner-side state -------------------------------------------------------------------

_STATES: weakref.WeakSet[_PoolState] = weakref.WeakSet()


class _PoolState:
    """Members and free workers of one pool, on its owner."""

    __slots__ = ("__weakref__", "_cond", "_free", "_idle", "default", "members")

    def __init__(self, default: bool = False) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.members: set[int] = set()
        self._free: deque[int] = deque()
        self._idle: set[int] = set()
        self.default = default
        _STATES.add(self)

    def push(self, pid: int) -> None:
        with self._cond:
            if pid not in self.members:
                self.members.add(pid)
                self._free.append(pid)
                self._idle.add(pid)
                self._cond.notify()

    def put(self, pid: int) -> None:
        with self._cond:
            if pid in self.members and pid not in self._idle:
                self._free.append(pid)
                self._idle.add(pid)
                self._cond.notify()

    def take(self) -> int:
        with self._cond:
            while True:
                if not self.members:
                    if self.default:
                        return 1  # with no workers, the master does the work
                    raise DistributedError("no active worker available in pool")
                if self._free:
                    pid = self._free.popleft()
                    self._idle.discard(pid)
                    if _alive(pid):
                        return pid
                    self.members.discard(pid)
                    continue
                blocking_wait(self._cond)

    def wait(self) -> None:
        with self._cond:
            while not self._free and not (self.default and not self.members):
                blocking_wait(self._cond)

    def length(self) -> int:
        return len(self.members)

    def isready(self) -> bool:
        return bool(self._free) or (self.default and not self.members)

    def workers(self) -> set[int]:
        if self.default and not self.members:
            return {1}
        return set(self.members)

    def remove(self, pid: int) -> None:
        with self._cond:
            if pid in self.members:
                self.members.discard(pid)
                if pid in self._idle:
                    self._idle.discard(pid)
                    self._free.remove(pid)
                # Takers waiting for a worker may now have to give up (pool empty).
                self._cond.notify_all()


def _leave_every_pool(pid: int) -> None:
    for state in list(_STATES):
        state.remove(pid)


PGRP.on_leave.append(_leave_every_pool)


def _state_of(rrid: RRID) -> _PoolState:
    if rrid == _DEFAULT_RRID and PGRP.myid == 1:
        _default_state()
    value = TABLE.get(rrid)
    store = None if value is None else value.store
    if not isinstance(store, _PoolState):
        raise DistributedError(f"worker pool {tuple(rrid)} does not exist on process {PGRP.myid}")
    return store


def _on_owner(rrid: RRID, op: str, args: tuple[Any, ...]) -> Any:
    """Run on a pool's owner: operation ``op`` of its state."""
    return getattr(_state_of(rrid), op)(*args)


# -- WorkerPool -------------------------------------------------------------------------------


class WorkerPool(AbstractWorkerPool):
    """A pool of worker ids (Julia's ``WorkerPool``).

    Args:
        pids: the workers, all free at first.

    Workers that die or are removed leave the pool. Sent to another process, the pool
    arrives as a reference to this one: ``take``, ``put``, ``len`` and the rest run here.
    """

    __module__ = "pydistributed"
    __slots__ = ("__weakref__", "_claims", "_state", "owner", "rrid")

    def __init__(self, pids: Iterable[int] = ()) -> None:
        state = _PoolState()
        rrid = next_rrid(PGRP.myid)
        TABLE.lookup(rrid, lambda: state)
        self._setup(PGRP.myid, rrid, state, 1)
        for pid in pids:
            state.push(int(pid))

    def _setup(self, owner: int, rrid: RRID, state: _PoolState | None, claims: int) -> None:
        self.owner = owner
        self.rrid = rrid
        self._state = state
        self._claims = claims

    @classmethod
    def _make(cls, owner: int, rrid: RRID, claims: int) -> WorkerPool:
        pool = cls.__new__(cls)
        state = _state_of(rrid) if owner == PGRP.myid else None
        pool._setup(owner, rrid, state, claims)
        return pool

    def __repr__(self) -> str:
        where = "" if self._state is not None else f", owner={self.owner}"
        try:
            members = sorted(self.workers())
        except Exception:
            members = []
        return f"{type(self).__name__}({members}{where})"

    def _remote(self, op: str, *args: Any) -> Any:
        return call_on_owner(_on_owner, self.owner, self.rrid, op, args)

    def push(self, pid: int) -> WorkerPool:
        """Add worker ``pid`` to the pool, free (a member already is left as it is)."""
        state = self._state
        if state is not None:
            state.push(int(pid))
        else:
            self._remote("push", int(pid))
        return self

    def put(self, pid: int) -> None:
        """Give worker ``pid`` back (ignored unless it is a busy member)."""
        state = self._state
        if state is not None:
            state.put(pid)
        else:
            self._remote("put", pid)

    def take(self) -> int:
        """Take a free, live worker out of the pool, blocking until there is one.

        The default pool gives 1 (the master) when it has no workers; any other pool
        without members raises :class:`DistributedError`.
        """
        state = self._state
        if state is not None:
            return state.take()
        return int(self._remote("take"))

    def wait(self) -> None:
        """Block until a worker is free."""
        state = self._state
        if state is not None:
            state.wait()
        else:
            self._remote("wait")

    def __len__(self) -> int:
        state = self._state
        return state.length() if state is not None else int(self._remote("length"))

    def isready(self) -> bool:
        """Whether a worker is free (``take`` would not block)."""
        state = self._state
        return state.isready() if state is not None else bool(self._remote("isready"))

    def workers(self) -> set[int]:
        """The pool's workers, busy or free (``{1}`` for the default pool when empty)."""
        state = self._state
        return state.workers() if state is not None else set(self._remote("workers"))

    # -- reference counting, as for Futures ------------------------------------------------

    def __del__(self) -> None:
        release_claims(self.owner, self.rrid, self._claims)

    def __reduce__(self) -> tuple[Any, ...]:
        counted = count_receiver(self.owner, self.rrid)
        return _rebuild_pool, (self.owner, self.rrid.whence, self.rrid.id, counted)


def _rebuild_pool(owner: int, whence: int, id: int, counted: bool) -> WorkerPool:
    """Unpickle a :class:`WorkerPool` reference."""
    return WorkerPool._make(owner, RRID(whence, id), 1 if counted else 0)


_rebuild_pool.__module__ = "pydistributed._workerpool"

# -- the default pool ----------------------------------------------------------------------

_DEFAULT_RRID = RRID(1, 0)
_default_lock = threading.Lock()
_default: WorkerPool | None = None


def _default_state() -> _PoolState:
    global _default
    with _default_lock:
        if _default is None:
            state = _PoolState(default=True)
            TABLE.lookup(_DEFAULT_RRID, lambda: state)
            pool = WorkerPool.__new__(WorkerPool)
            pool._setup(1, _DEFAULT_RRID, state, 1)
            for pid in list(PGRP.workers):
                if pid != 1 and _alive(pid):
                    state.push(pid)
            _default = pool
        assert _default._state is not None
        return _default._state


def _join_default(pid: int) -> None:
    if _default is not None and _default._state is not None:
        _default._state.push(pid)


PGRP.on_join.append(_join_default)


def default_worker_pool() -> WorkerPool:
    """The pool of every worker (Julia's ``default_worker_pool``).

    Workers join it when they join the cluster and leave it when they die or are removed;
    with no workers, ``take`` gives the master (1). It lives on the master: on a worker this
    returns a reference to it.
    """
    global _default
    if PGRP.myid == 1:
        _default_state()
    elif _default is None:
        _default = WorkerPool._make(1, _DEFAULT_RRID, 0)
    assert _default is not None
    return _default


# -- CachingPool ---------------------------------------------------------------------------

_keys = itertools.count(1)
# On each worker: the functions a CachingPool sent there, by key.
_FN_CACHE: dict[tuple[int, int], Callable[..., Any]] = {}


class _Cached:
    """One function a CachingPool sent: its key and where it is cached."""

    __slots__ = ("f", "key", "pids", "sending")

    def __init__(self, f: Callable[..., Any]) -> None:
        self.f = f
        self.key = (PGRP.myid, next(_keys))
        self.pids: set[int] = set()
        self.sending: dict[int, threading.Lock] = {}


class CachingPool(WorkerPool):
    """A :class:`WorkerPool` that sends each function once per worker (Julia's ``CachingPool``).

    The first call of a function on a worker stores it there; later calls send only its key.
    A closure therefore keeps its state between calls on each worker, until :meth:`clear`
    (or until the pool is garbage collected). Like Julia's, a CachingPool cannot be sent to
    another process.
    """

    __module__ = "pydistributed"
    __slots__ = ("_cache", "_cache_lock", "_finalizer")

    def __init__(self, pids: Iterable[int] = ()) -> None:
        super().__init__(pids)
        self._cache: dict[int, _Cached] = {}
        self._cache_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _drop_later, self._cache)
        self._finalizer.atexit = False  # at exit the workers go anyway

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a CachingPool cannot be sent to another process")

    def clear(self) -> CachingPool:
        """Drop the cached functions on every worker; return the pool."""
        with self._cache_lock:
            entries = list(self._cache.values())
            self._cache.clear()
        _drop_now(entries)
        return self

    def _entry(self, f: Callable[..., Any]) -> _Cached:
        entry = self._cache.get(id(f))
        if entry is not None and entry.f is f:
            return entry
        with self._cache_lock:
            entry = self._cache.get(id(f))
            if entry is None or entry.f is not f:
                entry = self._cache[id(f)] = _Cached(f)
            return entry

    def _store_on(self, pid: int, entry: _Cached) -> None:
        """Send ``entry``'s function to worker ``pid`` (once, whatever the threads)."""
        with self._cache_lock:
            lock = entry.sending.setdefault(pid, threading.Lock())
        with lock:
            if pid not in entry.pids:
                remotecall_fetch(_store, pid, entry.key, entry.f)
                entry.pids.add(pid)

    def _call(self, kind: str, f: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        pid = self.take()
        if pid == PGRP.myid:
            return _call_on(self, pid, kind, f, args, kwargs)
        try:
            entry = self._entry(f)
            if pid not in entry.pids:
                if kind == "remotecall_fetch" or kind == "remotecall_wait":
                    # The function goes with the call. No other call of this pool reaches
                    # ``pid`` before this one is done, so it finds the function stored.
                    entry.pids.add(pid)
                    return _call_on(self, pid, kind, _store_and_exec, (entry.key, f, *args), kwargs)
                self._store_on(pid, entry)
        except BaseException:
            self.put(pid)
            raise
        try:
            return _call_on(self, pid, kind, _exec_from_cache, (entry.key, *args), kwargs)
        except RemoteException as exc:
            if not isinstance(exc.exception, _NotCached):
                raise
        # The function is not there (its first call failed to unpickle it): send it again.
        entry.pids.discard(pid)
        return self._call(kind, f, args, kwargs)


class _NotCached(DistributedError):
    """A CachingPool's call reached a worker that does not have its function."""


def _store(key: tuple[int, int], f: Callable[..., Any]) -> None:
    _FN_CACHE.setdefault(key, f)


def _store_and_exec(
    key: tuple[int, int], f: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    return _FN_CACHE.setdefault(key, f)(*args, **kwargs)


def _exec_from_cache(key: tuple[int, int], /, *args: Any, **kwargs: Any) -> Any:
    f = _FN_CACHE.get(key)
    if f is None:
        raise _NotCached(f"function {key} is not cached on process {PGRP.myid}")
    return f(*args, **kwargs)


def _forget(keys: list[tuple[int, int]]) -> None:
    for key in keys:
        _FN_CACHE.pop(key, None)


def _drop_now(entries: Iterable[_Cached]) -> None:
    by_pid: dict[int, list[tuple[int, int]]] = {}
    for entry in entries:
        for pid in entry.pids:
            by_pid.setdefault(pid, []).append(entry.key)
    for pid, keys in by_pid.items():
        try:
            remote_do(_forget, pid, keys)
        except (DistributedError, ValueError):
            pass


def _drop_later(cache: dict[int, _Cached]) -> None:
    # Runs when the pool is garbage collected, possibly inside another thread's lock: the
    # messages are sent from an engine thread instead.
    entries = list(cache.values())
    if entries and not sys.is_finalizing():
        try:
            PGRP.engine.submit(partial(_drop_now, entries))
        except Exception:
            pass


# -- remote calls on pools -----------------------------------------------------------------


def _pool_of(pool: Any) -> AbstractWorkerPool:
    if not isinstance(pool, AbstractWorkerPool):
        raise TypeError(f"expected a process id (int) or a worker pool, got {type(pool).__name__}")
    return pool


def _dispatcher(kind: str) -> Callable[..., Any]:
    def dispatch(f: Callable[..., Any], pool: Any, /, *args: Any, **kwargs: Any) -> Any:
        return _pool_of(pool)._call(kind, f, args, kwargs)

    dispatch.__name__ = f"{kind}_on_pool"
    return dispatch


for _kind in ("remotecall", "remotecall_fetch", "remotecall_wait", "remote_do"):
    _pool_dispatch[_kind] = _dispatcher(_kind)


class _Remote:
    """What :func:`remote` returns."""

    __slots__ = ("f", "pool")

    def __init__(self, f: Callable[..., Any], pool: AbstractWorkerPool | None) -> None:
        self.f = f
        self.pool = pool

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pool = self.pool if self.pool is not None else default_worker_pool()
        return pool._call("remotecall_fetch", self.f, args, kwargs)

    def __repr__(self) -> str:
        return f"remote({self.f!r}, {self.pool!r})"


def remote(f: Callable[..., Any], /, pool: AbstractWorkerPool | None = None) -> Callable[..., Any]:
    """A function that runs ``f`` on a free worker of ``pool`` (default: the default pool).

    ``remote(f, pool)(*args, **kwargs)`` is ``remotecall_fetch(f, pool, *args, **kwargs)``.
    """
    return _Remote(f, pool)
