"""Write-behind puts into a remote buffered channel: reserved room, sent without waiting.

A ``put`` into a :class:`~pydistributed.RemoteChannel` is a call to the owner, one round
trip each. When the store is a buffered :class:`~pydistributed.Channel` (``size > 1``), the
owner answers a put with *credits*: room it reserved in the channel for the putting process.
While a process holds credits, its puts are one-way messages: each spends a credit and
returns at once, and the value lands in its reserved room. A put that returned was accepted:
its room was held for it, so it is in the channel even if the channel is closed meanwhile.

- Each process numbers its one-way puts to each owner in one sequence; the owner applies
  them in that order, whatever order its engine's threads run them in.
- The process's other operations on the channel (``take``, ``isready``, ``close``, a put that
  waits) carry a *fence*, the number of its last one-way put to that owner: the owner first
  waits for the puts up to it, so a process always sees its own puts.
- Credits are taken back (*revoked*) when a putter would wait while room is reserved, and
  before the channel closes: the owner asks each holder for the number of its last one-way
  put, waits for those puts, and frees the room never used. Each revocation has an epoch, so
  that a grant that crossed a revocation on the wire is not used.
- Credits live in a :class:`Sender`, kept by the process's references to the channel: when
  the last goes, its credits go unused until the owner reclaims them.
- The room of a process that dies is freed; what arrived from it is kept.
"""

from __future__ import annotations

import logging
import math
import pickle
import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import _transport
from ._channel import Channel
from ._cluster import PGRP
from ._exceptions import DistributedError, ProcessExitedException
from ._interrupt import blocking_wait
from ._references import channel_from_id
from ._refs import RRID, TABLE
from ._remotecall import call_on_owner, remote_do, remotecall_fetch
from ._serialize import dumps, loads

log = logging.getLogger("pydistributed")

__all__ = (
    "Fence",
    "Sender",
    "Window",
    "existing_sender",
    "fence",
    "flush",
    "put",
    "settle",
    "take",
    "window_for",
)

# A grant is at most this many credits, and at most a quarter of the channel's size, so that
# several producers share the room.
MAX_GRANT = 1024

# (pid, number of the last one-way put from pid to the owner), or None: nothing to wait for.
Fence = tuple[int, int] | None

# -- the putting process --------------------------------------------------------------------


class Sender:
    """This process's credits for one remote channel: ``key`` (its id) on ``owner``."""

    __slots__ = (
        "__weakref__",
        "credits",
        "key",
        "low",
        "owner",
        "revoked",
        "syncs",
        "topping_up",
    )

    def __init__(self, owner: int, key: tuple[int, int]) -> None:
        self.owner = owner
        self.key = key
        self.credits = 0
        self.revoked = 0  # epoch of the last revocation: older grants are void
        self.syncs = 0  # puts waiting for the owner's answer (which may bring credits)
        self.low = 0  # ask for more credits when down to this many
        self.topping_up = False  # asked, not answered yet

    def add(self, credits: int, epoch: int) -> None:
        """Credits granted by the owner (with ``_lock`` held), unless revoked since."""
        if credits and epoch >= self.revoked:
            self.credits += credits
            self.low = max(self.low, self.credits // 2)


_lock = threading.Lock()
_next_seq: dict[int, int] = {}  # owner -> number of this process's next one-way put to it
_senders: weakref.WeakValueDictionary[tuple[int, tuple[int, int]], Sender] = (
    weakref.WeakValueDictionary()
)


def sender_for(owner: int, rrid: RRID) -> Sender:
    """This process's :class:`Sender` for channel ``rrid`` (kept alive by its holder)."""
    key = (rrid[0], rrid[1])
    with _lock:
        sender = _senders.get((owner, key))
        if sender is None:
            sender = _senders[(owner, key)] = Sender(owner, key)
        return sender


# Values sent as they are: immutable, and pickled with nothing to count or ship by value.
_PLAIN = frozenset({int, float, complex, str, bool, type(None)})

# A one-way put: (number, channel id, value, None) for a plain value, else (number,
# channel id, pickle, out-of-band buffers), pickled at the put (a later change to the value
# is not sent); a None pickle stands for a put that failed.
_Item = tuple[int, tuple[int, int], Any, list[pickle.PickleBuffer] | None]
_outbox: dict[int, list[_Item]] = {}  # owner -> one-way puts not sent yet
BATCH = 64


def put(sender: Sender, value: Any, timeout: float | None) -> None:
    """Put ``value`` into the channel of ``sender``: one-way with a credit, else a call."""
    owner = sender.owner
    plain = type(value) in _PLAIN
    with _lock:
        if not sender.credits:
            sender.syncs += 1
            seq = -1
        else:
            sender.credits -= 1
            seq = _next_seq.get(owner, 0)
            _next_seq[owner] = seq + 1
            top_up = sender.credits < sender.low and not sender.topping_up
            if top_up:
                sender.topping_up = True
            if plain:
                box = _outbox.get(owner)
                if box is None:
                    box = _outbox[owner] = []
                    _transport.before_send = _send_everything
                box.append((seq, sender.key, value, None))
                queued = len(box)
    if seq < 0:
        _put_and_wait(sender, value, timeout)
        return
    if plain:
        _sent(owner, queued, False)
    else:
        _pickle_and_send(owner, seq, sender.key, value)
    if top_up:
        # Ask for more room before this runs out, so that puts go on without waiting.
        remote_do(_top_up, owner, sender.key, PGRP.myid)


def _put_and_wait(sender: Sender, value: Any, timeout: float | None) -> None:
    _ask_owner(sender, _put_and_grant, value, timeout)


def _ask_owner(sender: Sender, f: Callable[..., tuple[Any, int, int]], *args: Any) -> Any:
    """Run ``f(key, *args, pid, fence)`` on the owner, which answers ``(value, credits,
    epoch)``; keep the credits, return the value. The caller counted this in ``syncs``."""
    owner = sender.owner
    timeout = args[-1]
    try:
        value, credits, epoch = call_on_owner(
            f, owner, sender.key, *args, PGRP.myid, fence(owner), timeout=timeout
        )
    finally:
        with _lock:
            sender.syncs -= 1
    if credits:
        with _lock:
            sender.add(credits, epoch)
    return value


def _top_up(key: tuple[int, int], pid: int) -> None:
    """Run on the owner: grant ``pid`` more credits, if there is room, and tell it."""
    window = _window_of(key)
    credits, epoch = (0, 0) if window is None else window.grant(pid, MAX_GRANT)
    remote_do(_topped_up, pid, PGRP.myid, key, credits, epoch)


def _topped_up(owner: int, key: tuple[int, int], credits: int, epoch: int) -> None:
    with _lock:
        sender = _senders.get((owner, key))
        if sender is not None:
            sender.topping_up = False
            sender.add(credits, epoch)


def _pickle_and_send(owner: int, seq: int, key: tuple[int, int], value: Any) -> None:
    try:
        payload, buffers = dumps(value, owner, by_reference=False)
    except BaseException:
        # The owner applies the numbers in order: fill this one, or it waits for ever.
        _enqueue(owner, (seq, key, None, []))
        raise
    _enqueue(owner, (seq, key, payload, [pickle.PickleBuffer(b) for b in buffers]))


def _enqueue(owner: int, item: _Item) -> None:
    with _lock:
        box = _outbox.get(owner)
        if box is None:
            box = _outbox[owner] = []
            _transport.before_send = _send_everything
        box.append(item)
        queued = len(box)
    _sent(owner, queued, bool(item[3]))


def _sent(owner: int, queued: int, large: bool) -> None:
    """A put is in the outbox of ``owner``, with ``queued`` in all: see that it goes."""
    if large or queued >= BATCH:
        # Large buffers are not copied: they must be sent before the put returns.
        flush(owner)
    elif queued == 1:
        PGRP.engine.mark_dirty(_Pending(owner))


def flush(owner: int) -> None:
    """Send this process's one-way puts to ``owner`` that wait in the outbox."""
    if owner in _outbox:
        with _lock:
            box = _outbox.pop(owner, None)
        if box:
            remote_do(deliver, owner, PGRP.myid, box)


def _send_everything() -> None:
    """Write every one-way put still waiting, now (before another message leaves)."""
    with _lock:
        boxes = list(_outbox.items())
        _outbox.clear()
        _transport.before_send = None
    for owner, box in boxes:
        try:
            remote_do(deliver, owner, PGRP.myid, box)
            PGRP.connection(owner).flush()
        except (DistributedError, ValueError):
            pass  # the owner is gone, and its channels with it


class _Pending:
    """The one-way puts to one owner, as the engine's batching of deferred frames sees them
    (an ``Outbox``): it calls :meth:`flush` a moment after the first (see
    ``Engine.mark_dirty``)."""

    __slots__ = ("owner",)

    def __init__(self, owner: int) -> None:
        self.owner = owner

    def __hash__(self) -> int:
        return hash((_Pending, self.owner))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Pending) and other.owner == self.owner

    def flush(self) -> None:
        try:
            flush(self.owner)
        except (DistributedError, ValueError):
            pass  # the owner is gone, and its channels with it

    def try_flush(self) -> bool:
        """:meth:`flush` unless the owner's connection has a sender at work (the watchdog,
        which calls this, must not wait behind it: it leaves the flush to a pool thread)."""
        worker = PGRP.workers.get(self.owner)
        conn = worker.conn if worker is not None else None
        if conn is not None and conn.send_lock.locked():
            return False
        self.flush()
        return True


def fence(owner: int) -> Fence:
    """Send the one-way puts to ``owner`` still here; return the fence for an operation of
    this process on a channel owned by ``owner``."""
    if owner in _outbox:
        flush(owner)
    seq = _next_seq.get(owner)
    return None if seq is None else (PGRP.myid, seq - 1)


def revoke(owner: int, key: tuple[int, int], epoch: int) -> int:
    """Run on a holder for the owner: drop the credits; return the number of the last
    one-way put to the owner (-1 if none)."""
    with _lock:
        sender = _senders.get((owner, key))
        if sender is not None:
            sender.credits = 0
            sender.revoked = max(sender.revoked, epoch)
        last = _next_seq.get(owner, 0) - 1
    flush(owner)
    return last


_SKIP = object()  # stands for a one-way put whose value could not be pickled or unpickled


# -- the owner ------------------------------------------------------------------------------


class _Stream:
    """The owner's record of one process's one-way puts."""

    __slots__ = ("early", "gone", "next_seq")

    def __init__(self) -> None:
        self.next_seq = 0  # number of the next one-way put to apply
        self.early: dict[
            int, tuple[tuple[int, int], Any]
        ] = {}  # puts that arrived before their turn
        self.gone = False


class _Holder:
    """The owner's record of one process's credits for one channel."""

    __slots__ = ("epoch", "granted", "revoking")

    def __init__(self) -> None:
        self.granted = 0  # reserved room not filled yet
        self.epoch = 0
        self.revoking = False


# One lock for the owner's side: streams, holders, and the channels' reservations under it.
_owner_lock = threading.Lock()
_applied = threading.Condition(_owner_lock)
_streams: dict[int, _Stream] = {}
# Every window, to tell them of processes that leave; a window lives as long as its channel.
_windows: weakref.WeakSet[Window] = weakref.WeakSet()


def _stream(pid: int) -> _Stream:
    stream = _streams.get(pid)
    if stream is None:
        stream = _streams[pid] = _Stream()
    return stream


def settle(fence: Fence) -> None:
    """On the owner: wait until the one-way puts up to ``fence`` were applied (or their
    sender died)."""
    if fence is None:
        return
    pid, last = fence
    with _owner_lock:
        stream = _stream(pid)
        while stream.next_seq <= last and not stream.gone:
            blocking_wait(_applied, 0.1)


class Window:
    """The owner's side of one channel: who holds credits for it."""

    def __init__(self, channel: Channel, rrid: RRID) -> None:
        self.channel = channel
        self.rrid = rrid
        self.holders: dict[int, _Holder] = {}
        self.closing = False
        self._revoking = threading.Lock()
        self._reclaim_queued = False

    def grant(self, pid: int, want: int) -> tuple[int, int]:
        """Reserve room for ``pid``'s next one-way puts: ``(credits, epoch)``."""
        size = self.channel.size
        cap = MAX_GRANT if size == math.inf else math.ceil(size / 4)
        with _owner_lock:
            holder = self.holders.get(pid)
            if holder is None:
                holder = self.holders[pid] = _Holder()
            if self.closing or holder.revoking or _stream(pid).gone:
                return 0, holder.epoch
            credits = self.channel._reserve(min(want, cap))
            holder.granted += credits
            return credits, holder.epoch

    def _apply(self, pid: int, value: Any) -> None:
        # With _owner_lock held.
        holder = self.holders.get(pid)
        counted = holder is not None and holder.granted > 0
        if counted:
            assert holder is not None
            holder.granted -= 1
        if value is _SKIP:
            if counted:
                self.channel._unreserve(1)
        else:
            self.channel._put_reserved(value, counted)

    def _forget(self, pid: int) -> None:
        # With _owner_lock held.
        holder = self.holders.pop(pid, None)
        if holder is not None:
            self.channel._unreserve(holder.granted)

    # -- taking credits back -------------------------------------------------------------

    def squeeze(self) -> None:
        """A putter waits while room is reserved: revoke credits soon.

        Called by the channel with its lock held, so it only schedules the work.
        """
        if not self._reclaim_queued:
            self._reclaim_queued = True
            PGRP.engine.submit(self.reclaim)

    def withdraw(self) -> None:
        """The channel is closing: revoke every credit, and grant none from now on, so that
        no put is accepted after the close."""
        with _owner_lock:
            self.closing = True
        self.reclaim()

    def reclaim(self) -> None:
        """Revoke every holder's credits and free the room they did not use."""
        self._reclaim_queued = False
        with self._revoking:
            with _owner_lock:
                targets = [(pid, h) for pid, h in self.holders.items() if h.granted > 0]
                for _, holder in targets:
                    holder.revoking = True
                    holder.epoch += 1
            me = PGRP.myid
            for pid, holder in targets:
                try:
                    last = remotecall_fetch(revoke, pid, me, tuple(self.rrid), holder.epoch)
                except ProcessExitedException:
                    last = -1
                settle((pid, last))
                with _owner_lock:
                    self.channel._unreserve(holder.granted)
                    holder.granted = 0
                    holder.revoking = False


_windows_lock = threading.Lock()


def window_for(rrid: RRID, store: Any) -> Window | None:
    """The owner's :class:`Window` of channel ``store``, or None if ``store`` does not take
    write-behind puts (it is not a buffered :class:`Channel`).

    A ``Channel(1)`` is full after a put: its credits come with a ``take`` by a process that
    also puts (room for the next put of a process that alternates the two).
    """
    if type(store) is not Channel or not store.size:
        return None
    window: Window | None = store._window
    if window is None:
        with _windows_lock:
            window = store._window
            if window is None:
                window = store._window = Window(store, rrid)
                _windows.add(window)
    return window


def _apply_one(key: tuple[int, int], value: Any, pid: int) -> None:
    window = _window_of(key)
    if window is not None:  # else the channel was freed meanwhile: nobody can take it
        window._apply(pid, value)


def _window_of(key: tuple[int, int]) -> Window | None:
    record = TABLE.get(key)  # type: ignore[arg-type]  # an RRID is a tuple
    return None if record is None else window_for(RRID(*key), record.store)


def deliver(pid: int, items: list[_Item]) -> None:
    """Run on the owner: apply one-way puts of ``pid``, each in its turn."""
    values: list[tuple[int, tuple[int, int], Any]] = []
    for seq, key, payload, buffers in items:
        value = payload
        if buffers is not None:
            value = _SKIP
            if payload is not None:
                try:
                    value = loads(payload, buffers)
                except Exception:
                    log.exception("pydistributed: dropped a value put by process %s", pid)
        values.append((seq, key, value))
    with _owner_lock:
        stream = _stream(pid)
        for seq, key, value in values:
            if stream.gone:
                _apply_one(key, value, pid)
            elif seq != stream.next_seq:
                stream.early[seq] = (key, value)
            else:
                _apply_one(key, value, pid)
                stream.next_seq += 1
                while stream.next_seq in stream.early:
                    _apply_one(*stream.early.pop(stream.next_seq), pid)
                    stream.next_seq += 1
        _applied.notify_all()


def _put_and_grant(
    key: tuple[int, int], value: Any, timeout: float | None, pid: int, fence: Fence
) -> tuple[None, int, int]:
    """Run on the owner: after ``pid``'s one-way puts up to ``fence``, put ``value``; then
    grant ``pid`` credits if the channel takes write-behind puts."""
    rrid = RRID(*key)
    store = channel_from_id(rrid)
    settle(fence)
    if timeout is None:
        store.put(value)
    else:
        store.put(value, timeout=timeout)
    window = window_for(rrid, store)
    return (None, 0, 0) if window is None else (None, *window.grant(pid, MAX_GRANT))


def take(sender: Sender, timeout: float | None) -> Any:
    """Take from the channel of ``sender`` (a process that put into it): the answer may
    bring credits for the room the take made."""
    with _lock:
        sender.syncs += 1
    return _ask_owner(sender, _take_and_grant, timeout)


def _take_and_grant(
    key: tuple[int, int], timeout: float | None, pid: int, fence: Fence
) -> tuple[Any, int, int]:
    """Run on the owner: after ``pid``'s one-way puts up to ``fence``, take a value; grant
    ``pid`` credits if it holds credits for this channel before."""
    rrid = RRID(*key)
    store = channel_from_id(rrid)
    settle(fence)
    value = store.take() if timeout is None else store.take(timeout=timeout)
    window = window_for(rrid, store)
    if window is None or pid not in window.holders:
        return value, 0, 0
    return (value, *window.grant(pid, MAX_GRANT))


def existing_sender(owner: int, rrid: RRID) -> Sender | None:
    """This process's :class:`Sender` for channel ``rrid`` if it has one."""
    return _senders.get((owner, (rrid[0], rrid[1])))


def _process_left(pid: int) -> None:
    with _lock:
        _next_seq.pop(pid, None)
        for (owner, _), sender in list(_senders.items()):
            if owner == pid:
                sender.credits = 0
                sender.topping_up = False
    with _owner_lock:
        stream = _streams.get(pid)
        if stream is not None:
            stream.gone = True
            for seq in sorted(stream.early):
                _apply_one(*stream.early.pop(seq), pid)
        for window in list(_windows):
            window._forget(pid)
        _applied.notify_all()


PGRP.on_leave.append(_process_left)
