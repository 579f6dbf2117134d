"""``sync()``: wait for every Future started inside a block (Julia's ``@sync``).

Each thread keeps a stack of its open blocks. While any block is open in the process,
``_future._track`` is set, and every Future of a call started (by ``remotecall``,
``spawnat``, ...) is appended to the innermost block of the thread that made it; when no block
is open it is ``None``, and making a Future costs one global lookup more.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from . import _future
from ._failure import Failure
from ._future import Future
from ._refs import RRID, TABLE

__all__ = ("SyncBlock", "sync")

_local = threading.local()
_lock = threading.Lock()
_open_blocks = 0


def _track(future: Future) -> None:
    stack: list[SyncBlock] | None = getattr(_local, "stack", None)
    if stack:
        stack[-1].futures.append(future)


class SyncBlock:
    """An open ``sync()`` block: the Futures started in it, in order (see :func:`sync`)."""

    __slots__ = ("futures",)

    def __init__(self) -> None:
        self.futures: list[Future] = []

    def __enter__(self) -> SyncBlock:
        global _open_blocks
        stack = _local.__dict__.setdefault("stack", [])
        stack.append(self)
        with _lock:
            _open_blocks += 1
            _future._track = _track
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _open_blocks
        stack: list[SyncBlock] = _local.stack
        stack.remove(self)
        with _lock:
            _open_blocks -= 1
            if not _open_blocks:
                _future._track = None
        futures, self.futures = self.futures, []
        if exc_type is not None:
            # Left by an exception: like Julia, do not wait here, but an enclosing block
            # still waits for these.
            if stack:
                stack[-1].futures.extend(futures)
            return
        first: BaseException | None = None
        for future in futures:
            error = _outcome(future)
            if first is None:
                first = error
        if first is not None:
            raise first


def sync() -> SyncBlock:
    """A context manager that, on exit, waits for the Futures started inside it.

    Every Future of a call this thread starts inside the block -- by ``remotecall``,
    ``spawnat``, ``spawn``, or ``distributed`` without a reducer -- is waited for when the
    block ends (an empty ``Future()`` made there is not: nothing would ever set it, as in
    Julia's ``@sync``). Once all have finished, the first failure (in the order they were made) is
    raised as it is: the :class:`RemoteException` of a failed call, or
    :class:`ProcessExitedException` when the owner died. Futures made by other threads are
    not waited for.

    Nested blocks each wait for their own Futures when they end, before the enclosing block
    goes on, so the enclosing block ends after everything started inside it. A block left by
    an exception does not wait (the exception goes on), but hands its Futures to the
    enclosing block, if any, which waits for them.

    Example::

        with dist.sync():
            for p in dist.workers():
                dist.remotecall(work, p)
        # every call has finished here
    """
    return SyncBlock()


def _outcome(future: Future) -> BaseException | None:
    """Wait for ``future``; return its failure, or ``None`` if it has a value."""
    try:
        # The Future keeps its claims while the owner is asked, so the store cannot be freed
        # meanwhile by a value pushed here.
        asked, failed = future._ask_owner(_wait_failure)
    except Exception as exc:
        return exc
    if asked:
        return None if failed is None else failed[0].exception()
    try:
        future._result()
    except BaseException as exc:
        return exc
    return None


def _wait_failure(rrid: RRID) -> tuple[Failure] | None:
    """On the owner: wait for the value of ``rrid``; return (its Failure,) if it is one.

    The value itself stays on the owner: only whether it failed comes back.
    """
    value: Any = TABLE.lookup(rrid).store.fetch()
    return (value,) if type(value) is Failure else None
