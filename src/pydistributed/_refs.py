"""Remote references: ids, the owner-side table, and distributed reference counting.

Every reference (Future, RemoteChannel) has an :class:`RRID` ``(whence, id)`` made by the
process that created it, and an owner that keeps the backing store. The owner counts, per
process, how many copies of the reference that process received and has not released; the
store is dropped once every count is back to zero.

Counting notices travel in batches. When a process pickles a reference for another process
it queues an *add* for the receiver; when a process drops (or fetched) its copy it queues a
*delete*. A batch carries its adds before its deletes, and an owner keeps counts that go below
zero, so a delete that overtakes its add (they may travel on different connections) still
balances out.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, NamedTuple

from ._exceptions import DistributedError, FutureAlreadySet
from ._interrupt import blocking_wait
from ._serialize import destination

__all__ = (
    "RRID",
    "TABLE",
    "FutureStore",
    "RefTable",
    "RemoteValue",
    "count_receiver",
    "next_id",
    "next_rrid",
    "release_claims",
)

log = logging.getLogger("pydistributed")


# How long reference-count notices gather before they are sent, in seconds.
BATCH_DELAY = 0.005


class RRID(NamedTuple):
    """Id of a remote reference: the process that made it and a number unique there."""

    whence: int
    id: int


# Outside the class body: there, NamedTuple (and mypy) would take it for a field.
RRID.__module__ = "pydistributed"


_counter = itertools.count(1)
#: A fresh number, unique in this process (the ``id`` part of an :class:`RRID`).
next_id = _counter.__next__


def next_rrid(whence: int) -> RRID:
    """A fresh id for a reference made by process ``whence``."""
    return RRID(whence, next(_counter))


class FutureStore:
    """Owner-side store of a Future: a write-once slot.

    Most values are stored and fetched without anybody waiting, so the condition variable is
    made only by the first thread that has to wait.
    """

    __slots__ = ("_cond", "_set", "_value")

    def __init__(self) -> None:
        self._cond: threading.Condition | None = None
        self._set = False
        self._value: Any = None

    def put(self, value: Any) -> None:
        """Store the value; raise :class:`FutureAlreadySet` the second time."""
        with _STORE_LOCK:
            if self._set:
                raise FutureAlreadySet("a Future can be set only once")
            self._value = value
            # Set the flag before looking for a condition: a waiter makes its condition
            # before it checks the flag, so one of the two always sees the other.
            self._set = True
        cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def isready(self) -> bool:
        """Whether the value is there."""
        return self._set

    def wait(self, timeout: float | None = None) -> None:
        """Block until the value is there; ``TimeoutError`` when ``timeout`` runs out."""
        if self._set:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with _STORE_LOCK:
            if self._cond is None:
                self._cond = threading.Condition(threading.Lock())
            cond = self._cond
        with cond:
            while not self._set:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("timed out waiting for the Future")
                blocking_wait(cond, left)

    def fetch(self, timeout: float | None = None) -> Any:
        """The value, once there."""
        self.wait(timeout)
        return self._value


_STORE_LOCK = threading.Lock()


class RemoteValue:
    """Owner-side record of one reference: its store and the counts of its holders."""

    __slots__ = ("clients", "store")

    def __init__(self, store: Any, creator: int) -> None:
        self.store = store
        self.clients: dict[int, int] = {creator: 1}


class RefTable:
    """The references this process owns, and the counting notices it owes other owners."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[RRID, RemoteValue] = {}
        self._adds: deque[tuple[int, RRID, int]] = deque()
        self._dels: deque[tuple[int, RRID, int, int]] = deque()
        self._wake_r = self._wake_w = -1
        self._flusher: threading.Thread | None = None
        self._poked = False
        self.send_changes: Callable[[int, list[tuple[RRID, int, int]]], None] | None = None
        self.myid: Callable[[], int] = lambda: 1

    # -- owner side -----------------------------------------------------------------------

    def lookup(self, rrid: RRID, factory: Callable[[], Any] = FutureStore) -> RemoteValue:
        """The record of ``rrid``, made with ``factory()`` as store on first use."""
        with self._lock:
            value = self.values.get(rrid)
            if value is None:
                value = self.values[rrid] = RemoteValue(factory(), rrid.whence)
            return value

    def get(self, rrid: RRID) -> RemoteValue | None:
        """The record of ``rrid`` if this process has it."""
        return self.values.get(rrid)

    def apply(self, changes: list[tuple[RRID, int, int]]) -> None:
        """Apply ``(rrid, pid, delta)`` count changes in order; drop stores nobody holds."""
        with self._lock:
            for rrid, pid, delta in changes:
                value = self.values.get(rrid)
                if value is None:
                    # Not used here yet: it is held by its creator only, until now.
                    value = self.values[rrid] = RemoteValue(FutureStore(), rrid.whence)
                count = value.clients.get(pid, 0) + delta
                if count:
                    value.clients[pid] = count
                else:
                    value.clients.pop(pid, None)
                    if not value.clients:
                        del self.values[rrid]

    def forget_process(self, pid: int) -> None:
        """A process is gone: it holds nothing any more."""
        with self._lock:
            for rrid, value in list(self.values.items()):
                if value.clients.pop(pid, None) is not None and not value.clients:
                    del self.values[rrid]

    # -- holder side ------------------------------------------------------------------------

    def add_holder(self, owner: int, rrid: RRID, pid: int) -> None:
        """Queue: process ``pid`` received a copy of ``rrid``, owned by ``owner``."""
        self._adds.append((owner, rrid, pid))
        self._poke()

    def release(self, owner: int, rrid: RRID, pid: int, count: int) -> None:
        """Queue: process ``pid`` dropped ``count`` copies. Safe to call from ``__del__``."""
        self._dels.append((owner, rrid, pid, count))
        self._poke()

    def _poke(self) -> None:
        # Runs inside __del__, at any point of any thread: no locks, no threads started.
        # One wake-up per batch: the flusher clears the flag before it drains the queues.
        if self._poked or self._flusher is None:
            return
        self._poked = True
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def start(self) -> None:
        """Start the thread that sends queued notices (idempotent; never from ``__del__``)."""
        if self._flusher is None:
            self._start_flusher()
            self._poke()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_w, False)
            self._flusher = threading.Thread(
                target=self._flush_forever, name="pydistributed-refs", daemon=True
            )
            self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            try:
                os.read(self._wake_r, 65536)
                time.sleep(BATCH_DELAY)
                self._poked = False
                self.flush()
            except Exception:
                log.exception("pydistributed: failed to send reference counts")

    def flush(self) -> None:
        """Send (or apply, for references owned here) every queued notice, adds first."""
        batches: defaultdict[int, list[tuple[RRID, int, int]]] = defaultdict(list)
        # Only the deletes queued before the adds are drained: an add queued while this runs
        # (a copy pickled for another process) must not reach the owner after the delete of
        # the copy it was made from, or the owner may drop a store that is still held.
        n_dels = len(self._dels)
        while self._adds:
            owner, rrid, pid = self._adds.popleft()
            batches[owner].append((rrid, pid, 1))
        for _ in range(n_dels):
            owner, rrid, pid, count = self._dels.popleft()
            batches[owner].append((rrid, pid, -count))
        me = self.myid()
        for owner, changes in batches.items():
            if owner == me:
                self.apply(changes)
            elif self.send_changes is not None:
                # An owner that is gone (or never was) loses its notices, no other owner's.
                try:
                    self.send_changes(owner, changes)
                except (DistributedError, ValueError):
                    pass


TABLE = RefTable()


def release_claims(owner: int, rrid: RRID, claims: int) -> None:
    """Give back ``claims`` copies of ``rrid`` held here. Safe in ``__del__``."""
    if claims:
        try:
            TABLE.release(owner, rrid, TABLE.myid(), claims)
        except Exception:
            pass


def count_receiver(owner: int, rrid: RRID) -> bool:
    """While pickling a reference, count the process it is going to as a holder.

    Returns False when the destination is unknown (pickled outside a cluster message).
    """
    dest = destination()
    if dest:
        TABLE.add_holder(owner, rrid, dest)
    return bool(dest)
