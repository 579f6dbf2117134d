"""Future: a write-once reference to a value kept by its owner process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

from ._cluster import PGRP
from ._exceptions import FutureAlreadySet, RemoteException
from ._failure import Failure
from ._refs import RRID, TABLE, count_receiver, next_rrid, release_claims

# Set by ``_sync`` while a ``sync()`` block is open in any thread: called with every Future
# made in this process (unpickled copies excepted). None otherwise, so the check is all the
# hot path pays.
_track: Callable[[Future], None] | None = None

__all__ = ("Future", "rebuild_future")


class Future:
    """A write-once remote reference, owned by process ``pid`` (default: this one).

    ``remotecall`` returns one owned by the worker that runs the call. ``fetch`` caches the
    value here and releases this process's claim, so the owner drops the value once no
    process holds the reference. A small result of ``remotecall`` (up to 64 KiB pickled) is
    sent to the caller as soon as it is ready, as if fetched then: the owner may have
    dropped it before the caller asks. Pickled into a call to another process, a Future
    still resolves from its owner there (or carries its value, once cached).
    """

    __module__ = "pydistributed"
    __slots__ = (
        "__weakref__",
        "_asking",
        "_claims",
        "_has",
        "_lock",
        "_value",
        "id",
        "whence",
        "where",
    )

    def __init__(self, pid: int | None = None) -> None:
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
            raise TypeError(f"pid must be a process id (int), not {type(pid).__name__}")
        TABLE.start()
        me = PGRP.myid
        self._setup(me if pid is None else pid, next_rrid(me), 1)

    def _setup(self, where: int, rrid: RRID, claims: int) -> None:
        self.where = where
        self.whence, self.id = rrid
        self._lock = threading.Lock()
        self._has = False
        self._value: Any = None
        self._claims = claims
        self._asking = 0

    @classmethod
    def _make(cls, where: int, rrid: RRID, claims: int = 1) -> Future:
        """A Future of a call started here (``remotecall``, ``spawnat``, ...): an open
        :func:`~pydistributed.sync` block waits for it."""
        future = cls.__new__(cls)
        future._setup(where, rrid, claims)
        if _track is not None:
            _track(future)
        return future

    @property
    def rrid(self) -> RRID:
        """The reference's id."""
        return RRID(self.whence, self.id)

    def __repr__(self) -> str:
        return f"Future(where={self.where}, whence={self.whence}, id={self.id})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Future):
            return NotImplemented
        return (self.where, self.whence, self.id) == (other.where, other.whence, other.id)

    def __hash__(self) -> int:
        return hash((Future, self.whence, self.id))

    # -- the value ---------------------------------------------------------------------------

    def _keep(self, value: Any) -> None:
        with self._lock:
            if not self._has:
                self._value, self._has = value, True
            if self._asking:
                return  # the last thread asking the owner releases the claims
            claims, self._claims = self._claims, 0
        if claims:
            TABLE.release(self.where, self.rrid, PGRP.myid, claims)

    def _ask_owner(
        self, f: Callable[..., Any], *args: Any, timeout: float | None = None
    ) -> tuple[bool, Any]:
        """Run ``f(rrid, *args)`` on the owner; ``(False, None)`` if the value is here.

        This process's claims are kept while the owner is asked: released meanwhile (by a
        value pushed to another thread), the owner could drop the store, and the question
        would reach a new, empty one and wait forever.
        """
        with self._lock:
            if self._has:
                return False, None
            self._asking += 1
        try:
            if self.where == PGRP.myid:
                return True, f(self.rrid, *args)
            from ._remotecall import call_on_owner

            return True, call_on_owner(f, self.where, self.rrid, *args, timeout=timeout)
        finally:
            with self._lock:
                self._asking -= 1
                claims = self._claims if self._has and not self._asking else 0
                self._claims -= claims
            if claims:
                TABLE.release(self.where, self.rrid, PGRP.myid, claims)

    def _result(self) -> Any:
        value = self._value
        if type(value) is Failure:
            raise value.exception()
        if type(value) is _Raised:
            raise value.error
        return value

    def fetch(self, timeout: float | None = None) -> Any:
        """Wait for the value and return it (raising :class:`RemoteException` if the call
        that produces it failed); ``TimeoutError`` after ``timeout`` seconds."""
        if not self._has:
            try:
                asked, answer = self._ask_owner(_fetch_ref, timeout, timeout=timeout)
            except RemoteException as exc:
                asked, answer = True, (_Raised(exc),)
            if asked:
                self._keep(answer[0])
        return self._result()

    def wait(self, timeout: float | None = None) -> Future:
        """Block until the value is there (``TimeoutError`` after ``timeout``); return self."""
        self._ask_owner(_wait_ref, timeout, timeout=timeout)
        return self

    def isready(self) -> bool:
        """Whether the value is there (asks the owner unless it is cached here)."""
        asked, ready = self._ask_owner(_isready_ref)
        return bool(ready) if asked else True

    def put(self, value: Any) -> Future:
        """Set the value; raises :class:`FutureAlreadySet` if it was set before."""
        asked, _ = self._ask_owner(_put_ref, value)
        if not asked:
            raise FutureAlreadySet("a Future can be set only once")
        self._keep(value)
        return self

    def take(self) -> Any:
        """Futures are values, not queues: always raises ``TypeError``."""
        raise TypeError("take is not defined for a Future (use fetch)")

    def __await__(self) -> Generator[Any, None, Any]:
        if not self._has:
            import asyncio

            yield from asyncio.get_running_loop().run_in_executor(None, self.fetch).__await__()
        return self._result()

    # -- reference counting -------------------------------------------------------------------

    def __del__(self) -> None:
        try:
            where, claims = self.where, self._claims
        except AttributeError:
            return  # __init__ failed
        release_claims(where, self.rrid, claims)

    def __reduce__(self) -> tuple[Any, ...]:
        with self._lock:
            if self._has:
                return rebuild_future, (self.where, self.whence, self.id, False, True, self._value)
            # Counted under the lock: queued before any release of this copy's claims, so it
            # reaches the owner first.
            counted = count_receiver(self.where, self.rrid)
        return rebuild_future, (self.where, self.whence, self.id, counted, False, None)


class _Raised:
    """A cached failure of a Future whose producing call raised."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def rebuild_future(
    where: int, whence: int, id: int, counted: bool, has_value: bool, value: Any
) -> Future:
    """Unpickle a Future (see ``Future.__reduce__``)."""
    future = Future.__new__(Future)  # not _make: a copy received is not a Future made here
    future._setup(where, RRID(whence, id), 1 if counted else 0)
    if has_value:
        future._keep(value)
    return future


rebuild_future.__module__ = "pydistributed._future"

# -- run on the owner ----------------------------------------------------------------------


def _fetch_ref(rrid: RRID, timeout: float | None) -> tuple[Any]:
    # A 1-tuple, so a stored Failure travels as a value, not as this call's own failure.
    return (TABLE.lookup(rrid).store.fetch(timeout),)


def _wait_ref(rrid: RRID, timeout: float | None) -> None:
    TABLE.lookup(rrid).store.wait(timeout)


def _isready_ref(rrid: RRID) -> bool:
    return bool(TABLE.lookup(rrid).store.isready())


def _put_ref(rrid: RRID, value: Any) -> None:
    TABLE.lookup(rrid).store.put(value)
