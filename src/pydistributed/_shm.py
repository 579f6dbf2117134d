"""Shared memory for large out-of-band buffers between processes of one machine.

A buffer of at least :data:`THRESHOLD` bytes going to a process of this machine is copied
into a shared-memory segment of the sender (an anonymous ``memfd``, taken from a small pool of
pre-faulted ones) and the frame carries a descriptor in its place
(:class:`~.protocol.Reference`). The receiver opens the segment through
``/proc/<sender>/fd/<fd>``, maps it private (copy-on-write), and gives pickle a view of the
mapping (a ``PickleBuffer``, one per message): the NumPy array it rebuilds is that memory,
writable, nothing copied on this side until the receiver writes to a page, which then
becomes its own (the sender and other receivers never see it). When the last object using
that view goes away, the receiver tells the sender (a batched ``REMOTE_DO`` of
:func:`_released`), which may then reuse the segment. The receiver keeps the mapping a while,
so that the segment's next use finds its pages mapped already; a private mapping serves one
view at a time, and the pages a previous view wrote are dropped before it serves the next.

A buffer that already lies in such a mapping (an array received from another process, or one
echoed back to its sender) goes by reference without a copy if this process wrote none of
its pages (:mod:`._pages` asks the kernel); otherwise it is copied like any other. Segments
are never written while anyone maps them, so what a receiver can see of them is immutable.

Lifetime: a segment lives while some process holds an fd or a mapping of it; an anonymous
memfd has no name, so a killed process frees what only it held. A sender drops its holds
for a peer when the peer leaves (``PGRP.on_leave``).

Safety: a sender uses shared memory with a peer only once the peer proved, once, that it
is on this machine (same boot, pid and mount namespaces, uid) and can open the sender's
segments (:func:`_answer_probe`); otherwise buffers go over TCP. A receiver maps only
descriptors of a peer that passed the probe, that name a sealed pydistributed memfd
(``F_SEAL_SHRINK``: it cannot shrink under a mapping), with the range inside it; it refuses
anything else with :class:`ProtocolError` for that message only.

Switches (environment, read at import): ``PYDISTRIBUTED_SHM=0`` turns it off in a process
(that process neither sends nor accepts buffers by reference), ``PYDISTRIBUTED_SHM_THRESHOLD``
(bytes, default 1 MiB), ``PYDISTRIBUTED_SHM_POOL`` (bytes of free segments kept for reuse,
default 256 MiB; the same bound for peers' segments kept mapped; both are closed after 10 s
unused), ``PYDISTRIBUTED_SHM_READONLY=1`` (arrays received through shared memory are
read-only views of the shared segment: no copy-on-write, and no page check when passing
them on).
"""

from __future__ import annotations

import ctypes
import fcntl
import hmac
import itertools
import logging
import mmap
import os
import pickle
import queue
import secrets
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from . import _pages, _serialize, _transport
from ._cluster import PGRP
from ._exceptions import DistributedError, ProtocolError
from ._samehost import namespaces
from ._transport import Connection
from .protocol import Reference

__all__ = ("POOL_BYTES", "READONLY", "THRESHOLD", "enabled", "resolver", "share", "trim")

log = logging.getLogger("pydistributed")


def _flag(name: str, default: str) -> str:
    return os.environ.get(name, default).strip().lower()


THRESHOLD = int(_flag("PYDISTRIBUTED_SHM_THRESHOLD", str(1 << 20)))
POOL_BYTES = int(_flag("PYDISTRIBUTED_SHM_POOL", str(256 << 20)))
READONLY = _flag("PYDISTRIBUTED_SHM_READONLY", "0") in ("1", "true", "yes", "on")
_NAME = "pydistributed"
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
_GRAIN = 1 << 20  # segment sizes are rounded up to this
_IDLE = 10.0  # seconds a free segment is kept
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


# What two processes must share to exchange memfds: boot, pid and mount namespaces, user.
_spaces = namespaces("pid", "mnt")
MACHINE = f"{_spaces}-{os.getuid()}" if _spaces else ""
enabled = (
    _flag("PYDISTRIBUTED_SHM", "1") not in ("0", "false", "no", "off")
    and bool(MACHINE)
    and hasattr(os, "memfd_create")
)


# -- the address of a buffer ------------------------------------------------------------------


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = (ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int)
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = (ctypes.POINTER(_PyBuffer),)
_release_buffer.restype = None


def _address(obj: Any) -> int:
    """Start address of a contiguous buffer (read-only ones too, unlike ctypes' from_buffer)."""
    view = _PyBuffer()
    _get_buffer(obj, ctypes.byref(view), 0)
    try:
        return int(view.buf or 0)
    finally:
        _release_buffer(ctypes.byref(view))


# -- segments -----------------------------------------------------------------------------


class _Segment:
    """A shared-memory segment of this process, mapped here read-write (for copying in).

    ``users`` counts the peers' holds (sends not yet released) and the views of it handed out
    here (it came back); the segment is rewritten only when it is back at zero.
    """

    __slots__ = ("address", "fd", "freed", "key", "map", "size", "users")

    def __init__(self, size: int) -> None:
        fd = os.memfd_create(_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            self.map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE)
        except BaseException:
            os.close(fd)
            raise
        st = os.fstat(fd)
        self.fd, self.size, self.key = fd, size, (st.st_dev, st.st_ino)
        self.address = _address(self.map)
        self.users = 0
        self.freed = 0.0

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:  # cannot happen: views are of other mappings (_Mapping)
            pass
        os.close(self.fd)


class _Mapping:
    """A mapping here of a segment received by reference (a peer's, or one of ours come back),
    and the fd this process keeps of it (to pass it on by reference).

    ``private`` (copy-on-write; the default): what this process writes to it stays here.
    Otherwise (``READONLY``, or when the kernel refuses a private mapping, which is charged as
    committed memory) it is a read-only shared mapping. ``live`` counts the views of it
    handed out and not yet gone: a private mapping serves one view at a time (two would see
    each other's writes), a read-only one any number.
    """

    __slots__ = ("address", "fd", "key", "live", "map", "private", "size", "used")

    def __init__(self, fd: int, size: int, key: tuple[int, int, int]) -> None:
        self.private = not READONLY
        if self.private:
            try:
                prot = mmap.PROT_READ | mmap.PROT_WRITE
                self.map = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=prot)
            except OSError as exc:  # e.g. ENOMEM under vm.overcommit_memory=2
                log.debug("pydistributed: read-only shared memory (no private mapping: %s)", exc)
                self.private = False
        if not self.private:
            self.map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        self.fd, self.size, self.key = fd, size, key
        self.address = _address(self.map)
        self.live = 1
        self.used = 0.0

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:  # cannot happen once ``live`` is 0; if it did, it goes with them
            pass
        os.close(self.fd)


class _Handout:
    """What this process knows of a buffer it was given by reference (the memoryview behind
    the ``PickleBuffer`` pickle got): the mapping it lies in, and the segment of this process
    it keeps in use (one of ours, come back), if any."""

    __slots__ = ("mapping", "ref", "segment")

    def __init__(
        self, ref: weakref.ref[memoryview], mapping: _Mapping, segment: _Segment | None
    ) -> None:
        self.ref, self.mapping, self.segment = ref, mapping, segment


_lock = threading.Lock()
_serials = itertools.count(1)
_own: dict[tuple[int, int], _Segment] = {}  # every segment of this process, by inode
_free: list[_Segment] = []
# (peer, dev, inode) -> mappings here of that segment (received from that peer).
_cache: dict[tuple[int, int, int], list[_Mapping]] = {}
_handouts: dict[int, _Handout] = {}  # id() of a view given to pickle -> what it is
# (peer, serial) -> what that send keeps in use: our segment, or a buffer we were given.
_holds: dict[tuple[int, int], _Segment | memoryview] = {}
# Finalizers run anywhere (in any thread, inside any lock): they only queue. Bookkeeping
# events are applied by whoever takes _lock next; notices are sent by the notice thread.
_events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
_notices: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
_receivers: dict[int, bool] = {}  # peer -> whether it takes our buffers by reference
_senders: dict[int, int] = {}  # peer -> its OS pid, once it proved it shares our memory
_notifier: threading.Thread | None = None
# Buffers sent on: "passed" by reference as received, "copied" (written here) into a segment.
_counts = {"passed": 0, "copied": 0}


def _drain() -> None:
    """Apply the queued bookkeeping events (the caller holds ``_lock``)."""
    while True:
        try:
            key, handout = _events.get_nowait()
        except queue.Empty:
            return
        if _handouts.get(key) is handout:
            del _handouts[key]
        handout.mapping.live -= 1
        handout.mapping.used = time.monotonic()
        if handout.segment is not None:
            _unuse(handout.segment)


def _unuse(segment: _Segment) -> None:
    segment.users -= 1
    if segment.users:
        return
    if segment.size + sum(s.size for s in _free) > POOL_BYTES:
        _forget(segment)
    else:
        segment.freed = time.monotonic()
        _free.append(segment)


def _forget(segment: _Segment) -> None:
    del _own[segment.key]
    segment.close()


def _release_hold(peer: int, serial: int) -> None:
    held = _holds.pop((peer, serial), None)
    if type(held) is _Segment:
        _unuse(held)


def _take_free(size: int) -> _Segment | None:
    """A free segment of at least ``size`` bytes (and not much more), marked used; or None
    (the caller holds _lock)."""
    best = None
    for segment in _free:
        if size <= segment.size <= 2 * size + _GRAIN and (best is None or segment.size < best.size):
            best = segment
    if best is not None:
        _free.remove(best)
        best.users = 1
    return best


def _new_segment(size: int) -> _Segment:
    """A new segment (made without the lock: faulting its pages in takes a while), used."""
    segment = _Segment(-(-size // _GRAIN) * _GRAIN)
    segment.users = 1
    with _lock:
        _own[segment.key] = segment
    return segment


def _evict(idle: float, peer: int = 0) -> None:
    """Unmap peers' segments no view uses (of ``peer`` only, if given) that were unused
    for ``idle`` seconds, or beyond the size bound (holds _lock)."""
    now = time.monotonic()
    mappings = [m for same in _cache.values() for m in same]
    total = sum(m.size for m in mappings)
    for mapping in sorted((m for m in mappings if not m.live), key=lambda m: m.used):
        if (not peer or mapping.key[0] == peer) and (
            now - mapping.used >= idle or total > POOL_BYTES
        ):
            total -= mapping.size
            same = _cache[mapping.key]
            same.remove(mapping)
            if not same:
                del _cache[mapping.key]
            mapping.close()


def trim(idle: float = _IDLE) -> None:
    """Close free segments and unmap peers' segments unused for ``idle`` seconds (0: all)."""
    with _lock:
        _drain()
        now = time.monotonic()
        for segment in [s for s in _free if now - s.freed >= idle]:
            _free.remove(segment)
            _forget(segment)
        _evict(idle)


# -- sending --------------------------------------------------------------------------------


def _holder(view: memoryview) -> _Handout | None:
    """What we know of the buffer ``view`` lies in, if we were given it by reference.

    Found through the chain of objects the buffer comes from (``.obj`` of a memoryview,
    ``.base`` of a NumPy array) down to the view we gave pickle, which is thus known to be
    alive.
    """
    obj: Any = view.obj
    for _ in range(16):
        if obj is None:
            return None
        handout = _handouts.get(id(obj))
        if handout is not None and handout.ref() is obj:
            return handout
        obj = obj.obj if type(obj) is memoryview else getattr(obj, "base", None)
    return None


def _by_reference(dest: int, view: memoryview) -> Reference:
    serial = next(_serials)
    with _lock:
        _drain()
        handout = _holder(view)
        given = None if handout is None else handout.ref()
    if handout is not None and given is not None:
        address = _address(view)
        # Unless this process wrote to it (its private copies of pages are not in the
        # segment), passed on as it is: holding what we were given keeps it unchanged.
        if not handout.mapping.private or not _pages.written(address, view.nbytes):
            with _lock:
                _holds[dest, serial] = given
                _counts["passed"] += 1
            offset = address - handout.mapping.address
            return Reference.make(handout.mapping.fd, serial, offset, view.nbytes)
        with _lock:
            _counts["copied"] += 1
    del given
    with _lock:
        segment = _take_free(view.nbytes)
    if segment is None:
        segment = _new_segment(view.nbytes)
    try:
        # memmove (ctypes) lets other threads run while it copies.
        ctypes.memmove(segment.address, _address(view), view.nbytes)
    except BaseException:
        with _lock:
            _unuse(segment)
        raise
    with _lock:
        _holds[dest, serial] = segment
    return Reference.make(segment.fd, serial, 0, view.nbytes)


def share(dest: int, buffers: list[memoryview]) -> Sequence[memoryview | Reference]:
    """The hook of :func:`._serialize.dumps`: large buffers for ``dest`` by reference."""
    if not enabled or all(b.nbytes < THRESHOLD for b in buffers) or not _takes(dest):
        return buffers
    out: list[memoryview | Reference] = []
    try:
        for view in buffers:
            out.append(view if view.nbytes < THRESHOLD else _by_reference(dest, view))
    except OSError as exc:  # out of memory or fds: this message goes over the socket
        log.debug("pydistributed: no shared memory for process %s: %s", dest, exc)
        for item in out:
            if type(item) is Reference:
                with _lock:
                    _release_hold(dest, item.fields()[1])
        return buffers
    if dest in PGRP.exited:  # it left while we copied: on_leave may have run already
        _peer_left(dest)
    return out


def _takes(dest: int) -> bool:
    """Whether ``dest`` takes buffers by reference from us (asking it the first time)."""
    known = _receivers.get(dest)
    if known is not None:
        return known
    from ._remotecall import remotecall_fetch

    token = secrets.token_bytes(16)
    fd = os.memfd_create(_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.write(fd, token)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        answer = remotecall_fetch(_answer_probe, dest, PGRP.myid, os.getpid(), MACHINE, fd, token)
    except DistributedError as exc:
        log.debug("pydistributed: shared-memory probe of process %s failed: %s", dest, exc)
        answer = False
    finally:
        os.close(fd)
    _receivers[dest] = answer is True
    if answer is True and _notifier is None:
        _start()  # also trims the pool when idle
    return answer is True


def _answer_probe(sender: int, ospid: int, machine: str, fd: int, token: bytes) -> bool:
    """Run on a peer: whether it shares this machine and can open ``sender``'s segments."""
    if not enabled or machine != MACHINE or sender == PGRP.myid:
        return False
    try:
        probe = os.open(f"/proc/{ospid}/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not hmac.compare_digest(os.pread(probe, len(token) + 1, 0), token):
            return False
    finally:
        os.close(probe)
    _senders[sender] = ospid
    return True


def _released(peer: int, serials: list[int]) -> None:
    """Run on a sender (``REMOTE_DO``): ``peer`` no longer needs these sends."""
    with _lock:
        _drain()
        for serial in serials:
            _release_hold(peer, serial)


def _peer_left(pid: int) -> None:
    _receivers.pop(pid, None)
    _senders.pop(pid, None)
    with _lock:
        _drain()
        for peer, serial in [k for k in _holds if k[0] == pid]:
            _release_hold(peer, serial)
        _evict(0, pid)


# -- receiving ------------------------------------------------------------------------------


class _Refused(Sequence[Any]):
    """The buffers of a message whose references were refused: unpickling it raises."""

    def __init__(self, error: ProtocolError, size: int) -> None:
        self.error, self.size = error, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: Any) -> Any:
        raise self.error

    def __iter__(self) -> Any:
        raise self.error


def resolver(conn: Connection) -> Callable[[list[Any]], Sequence[Any]]:
    """The hook of :class:`._transport.Connection`: maps what ``conn``'s peer sent by reference."""

    link = weakref.ref(conn)  # the connection holds this function: no cycle through it

    def resolve(buffers: list[Any]) -> Sequence[Any]:
        conn = link()
        return _resolve(0 if conn is None else conn.peer, buffers)

    return resolve


def _resolve(peer: int, buffers: list[Any]) -> Sequence[Any]:
    if _notifier is None:
        _start()
    out = list(buffers)
    pending = [i for i, b in enumerate(buffers) if type(b) is Reference]
    try:
        ospid = _senders.get(peer) if enabled else None
        if ospid is None:
            raise ProtocolError(
                f"process {peer} sent a buffer by reference without agreeing on shared memory"
            )
        while pending:
            out[pending[0]] = _map(peer, ospid, buffers[pending[0]])
            pending.pop(0)
    except ProtocolError as exc:
        if peer:
            for i in pending:
                _notice(peer, buffers[i].fields()[1])
        return _Refused(exc, len(buffers))
    return out


def _map(peer: int, ospid: int, ref: Reference) -> pickle.PickleBuffer:
    """A view of what ``ref`` describes (writable and private, or read-only: see
    :class:`_Mapping`); raise :class:`ProtocolError` if bad."""
    fd_number, serial, offset, length = ref.fields()
    where = f"fd {fd_number} of process {peer}"
    try:
        fd = os.open(f"/proc/{ospid}/fd/{fd_number}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ProtocolError(f"cannot open shared-memory buffer {where}: {exc.strerror}") from None
    try:
        size, inode = _check(fd, where, offset, length)
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise ProtocolError(f"cannot map shared-memory buffer {where}: {exc}") from None
        raise
    key = (peer, *inode)
    with _lock:
        _drain()
        segment = _own.get(inode)  # one of ours, come back
        if segment is not None:
            segment.users += 1
        mapping = next((m for m in _cache.get(key, ()) if not (m.private and m.live)), None)
        if mapping is not None:
            mapping.live += 1
    try:
        if mapping is None:
            try:
                mapping = _Mapping(fd, size, key)
            except BaseException:
                os.close(fd)
                raise
            with _lock:
                _evict(_IDLE)
                _cache.setdefault(key, []).append(mapping)
        else:
            os.close(fd)
            if mapping.private:  # drop what a previous view wrote there
                _pages.discard(mapping.map, mapping.address, offset, length)
    except BaseException as exc:
        with _lock:
            if segment is not None:
                _unuse(segment)
            if mapping is not None:
                mapping.live -= 1
        if isinstance(exc, OSError):
            raise ProtocolError(f"cannot map shared-memory buffer {where}: {exc}") from None
        raise
    if segment is not None:
        # One of our own segments, come back: the sender's hold ends now, ours begins.
        _notice(peer, serial)
    view = memoryview(mapping.map)[offset : offset + length]
    if not mapping.private:
        view = view.toreadonly()
    handout = _Handout(weakref.ref(view), mapping, segment)
    with _lock:
        _handouts[id(view)] = handout
    weakref.finalize(view, _given_back, id(view), handout, peer, serial)
    # Given to pickle wrapped: NumPy then keeps ``view`` itself for as long as the array (or
    # any view of it) lives. Given a memoryview, it would keep only the mapping behind it.
    return pickle.PickleBuffer(view)


def _check(fd: int, where: str, offset: int, length: int) -> tuple[int, tuple[int, int]]:
    """Size and inode of the segment open as ``fd``, if ``offset``/``length`` may be mapped."""
    if not os.readlink(f"/proc/self/fd/{fd}").startswith(f"/memfd:{_NAME} "):
        raise ProtocolError(f"{where} is not a pydistributed shared-memory segment")
    if not fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK:
        raise ProtocolError(f"shared-memory segment {where} is not sealed")
    st = os.fstat(fd)
    if length == 0 or offset + length > st.st_size:
        raise ProtocolError(f"{length} bytes at {offset} are outside segment {where}")
    return st.st_size, (st.st_dev, st.st_ino)


def _given_back(key: int, handout: _Handout, peer: int, serial: int) -> None:
    # A finalizer: no locks.
    _events.put((key, handout))
    if handout.segment is None:
        _notice(peer, serial)


def _notice(peer: int, serial: int) -> None:
    """Queue the release of ``serial`` for ``peer`` (safe in a finalizer)."""
    _notices.put((peer, serial))


def _notify_forever() -> None:
    from ._remotecall import remote_do

    while True:
        try:
            first = _notices.get(timeout=_IDLE)
        except queue.Empty:
            trim()
            continue
        batches: defaultdict[int, list[int]] = defaultdict(list)
        item: tuple[int, int] | None = first
        while item is not None:
            batches[item[0]].append(item[1])
            try:
                item = _notices.get_nowait()
            except queue.Empty:
                item = None
        for peer, serials in batches.items():
            try:
                remote_do(_released, peer, PGRP.myid, serials)
            except (DistributedError, ValueError):
                pass  # it is gone: so are its holds
            except Exception:
                log.exception("pydistributed: failed to release shared memory of %s", peer)


def _start() -> None:
    global _notifier
    with _lock:
        if _notifier is not None:
            return
        _notifier = threading.Thread(target=_notify_forever, name="pydistributed-shm", daemon=True)
        _notifier.start()


def install() -> None:
    """Hook shared memory into the serializer and the transport (once, at import)."""
    if _serialize.share is None:
        _serialize.share = share
        _transport.resolver = resolver
        PGRP.on_leave.append(_peer_left)


install()
