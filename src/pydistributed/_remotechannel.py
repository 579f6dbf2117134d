"""RemoteChannel: a reference to a channel that lives on one process of the cluster.

The channel (the *store*) is made on its owner when the reference is made, and stays there;
every operation runs on the owner, as a call from the process that holds the reference. A
reference pickled into a call to another process still designates the same store; the owner
drops the store once no process holds a reference, with the distributed reference counting of
:class:`~pydistributed.Future` (see :mod:`pydistributed._refs`).

A blocking operation (``take`` on an empty channel, ``put`` on a full one) blocks the calling
thread, and on the owner one call-running thread, never the owner's other calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from . import _credits
from ._channel import Channel, take_until_closed
from ._cluster import PGRP
from ._references import channel_from_id
from ._refs import RRID, TABLE, count_receiver, next_rrid, release_claims
from ._remotecall import call_on_owner

__all__ = ("RemoteChannel", "rebuild_remotechannel")


def _default_store() -> Channel:
    return Channel(1)


class RemoteChannel:
    """A reference to a channel living on process ``pid`` (default: this one).

    ``RemoteChannel(pid=None)`` backs it with ``Channel(1)``; ``RemoteChannel(factory,
    pid=None)`` with ``factory()``, called on ``pid``, which may return any object with the
    methods of :class:`~pydistributed.Channel` (``put``, ``take``, ``fetch``, ``isready``,
    ``wait``, ``close``). ``RemoteChannel(3)`` is ``RemoteChannel(pid=3)``.

    The store is made before the constructor returns. References compare equal when they
    designate the same store.

    Raises:
        TypeError: ``factory`` is not callable or ``pid`` not an int.
        ProcessExitedException: process ``pid`` is gone.
        RemoteException: ``factory()`` failed on ``pid``.
    """

    __module__ = "pydistributed"
    __slots__ = ("__weakref__", "_claims", "_sender", "id", "whence", "where")

    def __init__(
        self, factory: Callable[[], Any] | int | None = None, pid: int | None = None
    ) -> None:
        if isinstance(factory, int) and not isinstance(factory, bool):
            if pid is not None:
                raise TypeError("RemoteChannel takes a factory and a pid, or one pid")
            factory, pid = None, factory
        if factory is None:
            factory = _default_store
        elif not callable(factory):
            raise TypeError(f"factory must be callable, not {type(factory).__name__}")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
            raise TypeError(f"pid must be a process id (int), not {type(pid).__name__}")
        me = PGRP.myid
        where = me if pid is None else pid
        rrid = next_rrid(me)
        call_on_owner(_create, where, rrid, factory)
        # The owner counted this process (the creator) as a holder: one claim here.
        self._setup(where, rrid, 1)

    def _setup(self, where: int, rrid: RRID, claims: int) -> None:
        self.where = where
        self.whence, self.id = rrid
        self._claims = claims
        self._sender: _credits.Sender | None = None

    @property
    def rrid(self) -> RRID:
        """The reference's id."""
        return RRID(self.whence, self.id)

    def __repr__(self) -> str:
        return f"RemoteChannel(where={self.where}, whence={self.whence}, id={self.id})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteChannel):
            return NotImplemented
        return (self.where, self.whence, self.id) == (other.where, other.whence, other.id)

    def __hash__(self) -> int:
        return hash((RemoteChannel, self.whence, self.id))

    # -- channel operations, run on the owner --------------------------------------------

    def put(self, v: Any, *, timeout: float | None = None) -> RemoteChannel:
        """Put ``v`` into the channel, blocking while it is full (until a ``take`` received
        it, for an unbuffered channel). Returns this reference.

        Into a buffered :class:`~pydistributed.Channel` (``size > 1``) on another process,
        a put may return before ``v`` arrived there: the owner reserved room for it (the
        answer to an earlier put carries such *credits*). It is accepted all the same: it
        arrives, in order with this process's other puts, even if the channel is closed
        meanwhile, and this process's later operations on the channel see it.

        Raises:
            ChannelClosed: the channel is closed, or was closed while this call waited.
            TimeoutError: ``timeout`` seconds passed first (``v`` was not put).
            ProcessExitedException: the owner is gone.
        """
        where = self.where
        if where == PGRP.myid:
            _put(self.rrid, v, timeout)
            return self
        sender = self._sender
        if sender is None:
            sender = self._sender = _credits.sender_for(where, self.rrid)
        _credits.put(sender, v, timeout)
        return self

    def take(self, *, timeout: float | None = None) -> Any:
        """Remove and return the first item, blocking until there is one.

        Raises:
            ChannelClosed: the channel is closed and drained, or was closed while this call
                waited.
            TimeoutError: ``timeout`` seconds passed first.
            ProcessExitedException: the owner is gone.
        """
        where = self.where
        if where != PGRP.myid:
            sender = self._sender or _credits.existing_sender(where, self.rrid)
            if sender is not None:
                return _credits.take(sender, timeout)
        return call_on_owner(
            _take, where, self.rrid, timeout, _credits.fence(where), timeout=timeout
        )

    def fetch(self, *, timeout: float | None = None) -> Any:
        """Return the first item without removing it, blocking until there is one.

        Raises as :meth:`take` does.
        """
        return call_on_owner(
            _fetch, self.where, self.rrid, timeout, _credits.fence(self.where), timeout=timeout
        )

    def wait(self, timeout: float | None = None) -> RemoteChannel:
        """Block until an item is available; return this reference.

        Raises as :meth:`take` does.
        """
        call_on_owner(
            _wait, self.where, self.rrid, timeout, _credits.fence(self.where), timeout=timeout
        )
        return self

    def isready(self) -> bool:
        """Whether an item is available now."""
        return bool(call_on_owner(_isready, self.where, self.rrid, _credits.fence(self.where)))

    def close(self) -> None:
        """Close the channel: blocked and later ``put``\\ s raise ``ChannelClosed``, and so
        do ``take``, ``fetch`` and ``wait`` once the items left are taken."""
        call_on_owner(_close, self.where, self.rrid, _credits.fence(self.where))

    def __iter__(self) -> Iterator[Any]:
        """Yield taken items until the channel is closed and drained."""
        return take_until_closed(self.take)

    # -- reference counting ---------------------------------------------------------------

    def __del__(self) -> None:
        try:
            where = self.where
        except AttributeError:  # the constructor raised before the reference existed
            return
        release_claims(where, self.rrid, self._claims)

    def __reduce__(self) -> tuple[Any, ...]:
        counted = count_receiver(self.where, self.rrid)
        return rebuild_remotechannel, (self.where, self.whence, self.id, counted)


def rebuild_remotechannel(where: int, whence: int, id: int, counted: bool) -> RemoteChannel:
    """Unpickle a RemoteChannel (see ``RemoteChannel.__reduce__``)."""
    channel = RemoteChannel.__new__(RemoteChannel)
    channel._setup(where, RRID(whence, id), 1 if counted else 0)
    return channel


rebuild_remotechannel.__module__ = "pydistributed._remotechannel"

# -- run on the owner ----------------------------------------------------------------------


def _create(rrid: RRID, factory: Callable[[], Any]) -> None:
    # The factory runs outside the table's lock: it may be slow, or make calls itself.
    store = factory()
    TABLE.lookup(rrid, lambda: store)


def _put(rrid: RRID, v: Any, timeout: float | None) -> None:
    store = channel_from_id(rrid)
    if timeout is None:
        store.put(v)
    else:
        store.put(v, timeout=timeout)


def _take(rrid: RRID, timeout: float | None, fence: _credits.Fence = None) -> Any:
    _credits.settle(fence)
    store = channel_from_id(rrid)
    return store.take() if timeout is None else store.take(timeout=timeout)


def _fetch(rrid: RRID, timeout: float | None, fence: _credits.Fence = None) -> Any:
    _credits.settle(fence)
    store = channel_from_id(rrid)
    return store.fetch() if timeout is None else store.fetch(timeout=timeout)


def _wait(rrid: RRID, timeout: float | None, fence: _credits.Fence = None) -> None:
    _credits.settle(fence)
    store = channel_from_id(rrid)
    if timeout is None:
        store.wait()
    else:
        store.wait(timeout)


def _isready(rrid: RRID, fence: _credits.Fence = None) -> bool:
    _credits.settle(fence)
    return bool(channel_from_id(rrid).isready())


def _close(rrid: RRID, fence: _credits.Fence = None) -> None:
    _credits.settle(fence)
    channel_from_id(rrid).close()
