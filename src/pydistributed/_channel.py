"""Local channels between threads: Julia's ``Base.Channel``.

A :class:`Channel` is a FIFO queue shared by threads. ``Channel(n)`` buffers up to ``n`` items,
``Channel(math.inf)`` any number, and ``Channel(0)`` none: there a ``put`` is a rendezvous that
returns only once a ``take`` has received its value.

All state sits behind one lock. Threads wait on conditions of that lock, each for one reason:

* ``_takers``: takers waiting for an item (woken one at a time, one per item);
* ``_peekers``: ``fetch``/``wait`` callers waiting for an item (all woken: none consumes it);
* ``_space``: putters of a buffered channel waiting for room (woken one at a time);
* one condition per waiting putter of an unbuffered channel, waiting for its own value to be
  taken.

Every wait goes through :func:`~pydistributed._interrupt.blocking_wait`, so that an interrupt
can wake the thread, and every wait sits in a loop that re-checks its predicate: a wake-up is
only a hint.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ._exceptions import ChannelClosed
from ._interrupt import blocking_wait

__all__ = ("Channel",)


class _PendingPut:
    """A value offered to an unbuffered channel by a putter that waits until it is taken."""

    __slots__ = ("taken", "value", "woken")

    def __init__(self, value: Any, woken: threading.Condition) -> None:
        self.value = value
        self.taken = False
        self.woken = woken


def _check_size(size: float) -> float:
    """Return ``size`` as an ``int`` or ``math.inf``; raise for anything else."""
    if isinstance(size, bool) or not isinstance(size, int | float):
        raise TypeError(f"channel size must be a number, not {type(size).__name__}")
    if size == math.inf:
        return math.inf
    if math.isnan(size) or size < 0 or size != int(size):
        raise ValueError(f"channel size must be a non-negative integer or math.inf, not {size!r}")
    return int(size)


def _deadline(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` at which ``timeout`` runs out, or ``None`` for no limit."""
    if timeout is None or timeout == math.inf:
        return None
    return time.monotonic() + max(timeout, 0.0)


def _wait(cond: threading.Condition, deadline: float | None, what: str) -> None:
    """Wait once on ``cond`` (held by the caller); raise ``TimeoutError`` past ``deadline``.

    The caller re-checks its predicate before each call, so a wake-up that races with the
    deadline is never lost: the predicate is seen true before the timeout is raised.
    """
    if deadline is None:
        blocking_wait(cond)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"timed out waiting to {what}")
    blocking_wait(cond, min(remaining, threading.TIMEOUT_MAX))


class Channel:
    """A thread-safe FIFO channel, like Julia's ``Base.Channel``.

    Args:
        size: how many items the channel buffers: ``0`` (the default) for an unbuffered,
            rendezvous channel, ``math.inf`` for an unbounded one, else a positive integer.

    Raises:
        ValueError: ``size`` is negative, NaN or a non-integer finite number.
        TypeError: ``size`` is not a number.

    A closed channel refuses new items, but the items it already buffers can still be taken;
    once they are gone, ``take``, ``fetch`` and ``wait`` raise
    :class:`~pydistributed.ChannelClosed`. Iterating over a channel takes items until it is
    closed and drained.

    A channel sent to another process (pickled) arrives as an independent copy holding the
    size, the open or closed state and the buffered items. Values offered by putters still
    waiting on an unbuffered channel are not part of the copy.
    """

    __module__ = "pydistributed"

    def __init__(self, size: float = 0) -> None:
        self._size = _check_size(size)
        self._init_state(open_=True, items=())

    def _init_state(self, *, open_: bool, items: tuple[Any, ...] | list[Any]) -> None:
        self._lock = threading.Lock()
        self._takers = threading.Condition(self._lock)
        self._peekers = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._open = open_
        self._buffer: deque[Any] = deque(items)
        self._pending: deque[_PendingPut] = deque()
        # Room promised to putters in other processes whose values are on their way, and
        # the record of those putters, asked for the room back when a putter here needs it
        # (a _credits.Window).
        self._reserved = 0
        self._window: Any = None

    # -- state, always read with the lock held --------------------------------------------------

    def _n_avail(self) -> int:
        return len(self._buffer) if self._size else len(self._pending)

    def _ready_or_raise(self) -> bool:
        """Whether an item is available; raise ``ChannelClosed`` if none ever will be."""
        if self._n_avail():
            return True
        if not self._open:
            raise ChannelClosed()
        return False

    # -- public API -------------------------------------------------------------------------------

    @property
    def size(self) -> float:
        """How many items the channel buffers: an ``int``, or ``math.inf``."""
        return self._size

    def put(self, v: Any, *, timeout: float | None = None) -> Any:
        """Append ``v`` to the channel, blocking while it is full.

        On an unbuffered channel, block until a :meth:`take` has received ``v``.

        Args:
            v: the value to send.
            timeout: seconds to wait at most; ``None`` waits for ever.

        Returns:
            ``v`` itself.

        Raises:
            ChannelClosed: the channel is closed, or was closed while this call waited (then
                ``v`` was not delivered).
            TimeoutError: ``timeout`` ran out first (then ``v`` was not delivered).
        """
        deadline = _deadline(timeout)
        with self._lock:
            if self._size:
                self._put_buffered(v, deadline)
            else:
                self._put_unbuffered(v, deadline)
        return v

    def _put_buffered(self, v: Any, deadline: float | None) -> None:
        try:
            while True:
                if not self._open:
                    raise ChannelClosed()
                if len(self._buffer) + self._reserved < self._size:
                    break
                if self._reserved and self._window is not None:
                    self._window.squeeze()
                _wait(self._space, deadline, "put")
        except BaseException:
            # This thread may have consumed the wake-up meant for another putter.
            if self._open and len(self._buffer) + self._reserved < self._size:
                self._space.notify()
            raise
        self._buffer.append(v)
        self._takers.notify()
        self._peekers.notify_all()

    def _put_unbuffered(self, v: Any, deadline: float | None) -> None:
        if not self._open:
            raise ChannelClosed()
        pending = _PendingPut(v, threading.Condition(self._lock))
        self._pending.append(pending)
        self._takers.notify()
        self._peekers.notify_all()
        try:
            while not pending.taken:
                if not self._open:
                    raise ChannelClosed()
                _wait(pending.woken, deadline, "put")
        except BaseException:
            # Withdraw the offer unless a taker got it already: a put that fails must not
            # deliver its value later. (close() has emptied the queue itself.)
            if not pending.taken:
                try:
                    self._pending.remove(pending)
                except ValueError:
                    pass
            raise

    def take(self, *, timeout: float | None = None) -> Any:
        """Remove and return the first item, blocking until there is one.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Returns:
            The oldest buffered item or, on an unbuffered channel, the value of the
            longest-waiting putter (whose ``put`` then returns).

        Raises:
            ChannelClosed: the channel is closed and empty, or was closed while this call
                waited.
            TimeoutError: ``timeout`` ran out first.
        """
        deadline = _deadline(timeout)
        with self._lock:
            try:
                while not self._ready_or_raise():
                    _wait(self._takers, deadline, "take")
            except BaseException:
                # This thread may have consumed the wake-up meant for another taker.
                if self._n_avail():
                    self._takers.notify()
                raise
            if self._size:
                v = self._buffer.popleft()
                self._space.notify()
                return v
            pending = self._pending.popleft()
            pending.taken = True
            pending.woken.notify()
            return pending.value

    def fetch(self, *, timeout: float | None = None) -> Any:
        """Return the first item without removing it, blocking until there is one.

        On an unbuffered channel this is the value of the longest-waiting putter, whose
        ``put`` keeps waiting for a :meth:`take`.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Returns:
            The item the next :meth:`take` would return, if no other thread takes first.

        Raises:
            ChannelClosed: the channel is closed and empty, or was closed while this call
                waited.
            TimeoutError: ``timeout`` ran out first.
        """
        with self._lock:
            self._wait_for_item(timeout, "fetch")
            return self._buffer[0] if self._size else self._pending[0].value

    def wait(self, timeout: float | None = None) -> None:
        """Block until an item is available (see :meth:`isready`).

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Raises:
            ChannelClosed: the channel is closed and empty, or was closed while this call
                waited.
            TimeoutError: ``timeout`` ran out first.
        """
        with self._lock:
            self._wait_for_item(timeout, "wait")

    def _wait_for_item(self, timeout: float | None, what: str) -> None:
        """With the lock held: wait until an item is available, without taking it."""
        deadline = _deadline(timeout)
        while not self._ready_or_raise():
            _wait(self._peekers, deadline, what)

    def isready(self) -> bool:
        """Whether a :meth:`take` would return at once: an item is buffered, or a putter waits."""
        with self._lock:
            return self._n_avail() > 0

    def n_avail(self) -> int:
        """How many items are available: buffered items, or waiting putters if unbuffered."""
        with self._lock:
            return self._n_avail()

    def isopen(self) -> bool:
        """Whether the channel is still open (``close`` has not been called)."""
        with self._lock:
            return self._open

    def close(self) -> None:
        """Close the channel; closing twice is harmless.

        Every thread blocked in this channel's ``put``, ``take``, ``fetch`` or ``wait`` wakes at
        once; blocked putters raise :class:`~pydistributed.ChannelClosed` without delivering
        their value, and so do the others unless buffered items remain.
        """
        if self._window is not None:
            self._window.withdraw()
        with self._lock:
            self._open = False
            for pending in self._pending:
                pending.woken.notify()
            self._pending.clear()
            self._takers.notify_all()
            self._peekers.notify_all()
            self._space.notify_all()

    def __iter__(self) -> Iterator[Any]:
        """Yield taken items until the channel is closed and drained."""
        return take_until_closed(self.take)

    # -- room reserved for values on their way (RemoteChannel's write-behind puts) ------------

    def _reserve(self, n: int) -> int:
        """Reserve room for up to ``n`` later :meth:`_put_reserved`; return how much."""
        with self._lock:
            if not self._open or not self._size:
                return 0
            room = self._size - len(self._buffer) - self._reserved
            granted = int(min(n, room)) if room > 0 else 0
            self._reserved += granted
            return granted

    def _put_reserved(self, v: Any, reserved: bool) -> None:
        """Append ``v`` into room reserved for it (``reserved``), or beyond the size if the
        reservation was taken back while ``v`` was on its way; even if closed since."""
        with self._lock:
            if reserved:
                self._reserved -= 1
            self._buffer.append(v)
            self._takers.notify()
            self._peekers.notify_all()

    def _unreserve(self, n: int) -> None:
        """Give back room reserved with :meth:`_reserve` that will not be used."""
        if n:
            with self._lock:
                self._reserved -= n
                self._space.notify(n)

    def __repr__(self) -> str:
        with self._lock:
            state = "open" if self._open else "closed"
            return f"Channel(size={self._size}) [{state}, {self._n_avail()} available]"

    # -- pickling: a copy of the size, state and buffered items, with fresh locks -------------

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"size": self._size, "open": self._open, "items": list(self._buffer)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._size = _check_size(state["size"])
        self._init_state(open_=bool(state["open"]), items=list(state["items"]))


def take_until_closed(take: Callable[[], Any]) -> Iterator[Any]:
    """Yield what ``take()`` returns until it raises :class:`ChannelClosed`."""
    while True:
        try:
            v = take()
        except ChannelClosed:
            return
        yield v
