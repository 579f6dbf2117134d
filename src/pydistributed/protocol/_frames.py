"""Framing: message kinds, the fixed binary header, and a sans-IO encoder/decoder.

A frame on the wire::

    header (36 bytes, little-endian)
        kind        u8     message kind (:class:`Kind`)
        flags       u8     reserved, 0
        nbuffers    u16    number of out-of-band buffers
        payload     u64    length of the pickled payload
        resp_whence u32    response reference: owner pid ...
        resp_id     u64    ... and number (0, 0 when unused)
        note_whence u32    notify reference: owner pid ...
        note_id     u64    ... and number
    buffer lengths (nbuffers x u64; the top bit set: sent by reference, see _reference.py)
    payload bytes
    buffer bytes, one after the other (a 32-byte descriptor for a buffer sent by reference)

Nothing here does I/O: the decoder takes bytes in and gives frames out, and can expose the
remaining part of a large body so the caller receives straight into its final buffer.
"""

from __future__ import annotations

import enum
import mmap
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._exceptions import ProtocolError
from ._reference import BY_REFERENCE, Reference

__all__ = (
    "DEFAULT_MAX_FRAME",
    "HEADER",
    "MAX_BUFFERS",
    "Frame",
    "FrameDecoder",
    "Kind",
    "encode_frame",
)

HEADER = struct.Struct("<BBHQIQIQ")
_LENGTH = struct.Struct("<Q")
DEFAULT_MAX_FRAME = 1 << 36
MAX_BUFFERS = 1 << 12
# Payloads at most this long are sent in the same buffer as their header.
_COALESCE = 1 << 16
_NO_REF = (0, 0)
_pack_header = HEADER.pack
# Body parts at least this large get their own anonymous mapping with transparent huge
# pages: a fresh 100 MB bytearray costs ~80 ms of page faults, such a mapping ~15 ms.
_MAPPED = 1 << 22


def allocate(size: int) -> bytearray | mmap.mmap:
    """A zeroed, writable buffer of ``size`` bytes for a body part."""
    if size < _MAPPED:
        return bytearray(size)
    try:
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError, AttributeError):
        return bytearray(size)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            buffer.madvise(advice)
        except OSError:
            pass
    return buffer


class Kind(enum.IntEnum):
    """Message kinds, after Julia's ``messages.jl``."""

    CALL = 1
    CALL_FETCH = 2
    CALL_WAIT = 3
    REMOTE_DO = 4
    RESULT = 5
    IDENTIFY_SOCKET = 6
    IDENTIFY_SOCKET_ACK = 7
    JOIN_PGRP = 8
    JOIN_COMPLETE = 9


_KINDS = {int(k): k for k in Kind}


@dataclass(slots=True)
class Frame:
    """One decoded (or to-be-encoded) message.

    ``response`` and ``notify`` are ``(whence, id)`` pairs naming references on the peers;
    ``buffers`` are the out-of-band buffers of the pickled payload.
    """

    kind: Kind
    payload: bytes | bytearray | memoryview | mmap.mmap
    response: tuple[int, int] = _NO_REF
    notify: tuple[int, int] = _NO_REF
    buffers: Sequence[Any] = ()


def _length(buffer: memoryview | Reference) -> int:
    return BY_REFERENCE | len(buffer) if isinstance(buffer, Reference) else buffer.nbytes


def encode_frame(
    kind: Kind,
    payload: bytes | bytearray | memoryview,
    response: tuple[int, int] = _NO_REF,
    notify: tuple[int, int] = _NO_REF,
    buffers: Sequence[memoryview | Reference] = (),
) -> list[bytes | bytearray | memoryview]:
    """Return the frame as a list of byte chunks, ready for a gather write (``sendmsg``).

    Large payloads and out-of-band buffers are passed through without a copy; a
    :class:`Reference` among ``buffers`` goes as its descriptor, marked in the length table.
    """
    if not buffers and len(payload) <= _COALESCE:
        return [_pack_header(kind, 0, 0, len(payload), *response, *notify) + payload]
    head = _pack_header(kind, 0, len(buffers), len(payload), *response, *notify)
    head += b"".join([_LENGTH.pack(_length(b)) for b in buffers])
    if len(payload) <= _COALESCE:
        return [head + payload, *buffers]
    return [head, payload, *buffers]


class _State(enum.Enum):
    HEADER = 0
    LENGTHS = 1
    BODY = 2


# Module constants: looking a member up on its enum class costs more than a small frame.
_IN_HEADER, _IN_BODY = _State.HEADER, _State.BODY
_HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from


class FrameDecoder:
    """Turns a byte stream into :class:`Frame` objects.

    Feed bytes with :meth:`receive_data`, collect frames with :meth:`next_frame`. While a
    large body part is pending, :meth:`body_view` returns the writable rest of its final
    buffer; fill it directly (``recv_into``) and report the count with :meth:`advance`.

    A header announcing more than ``max_frame`` bytes, more than ``MAX_BUFFERS`` buffers or an
    unknown kind raises :class:`ProtocolError` before anything is allocated for its body.

    Buffers sent by reference arrive as :class:`Reference` descriptors (each checked against
    ``max_frame``); a complete frame that has any is passed through :attr:`resolve`, which
    returns the buffers the frame is given. Without ``resolve`` such a frame is refused.
    """

    #: Turns a frame's buffers, descriptors included, into the buffers it is given.
    resolve: Callable[[list[Any]], Sequence[Any]] | None = None

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        #: Complete frames, oldest first (what :meth:`next_frame` pops).
        self.frames: deque[Frame] = deque()
        #: Whether a body part is being received (:meth:`body_view` is not None).
        self.in_body = False
        self._state = _State.HEADER
        self._scratch = bytearray()
        self._need = HEADER.size
        self._header: tuple[int, ...] = ()
        self._sizes: list[int] = []
        self._parts: list[bytearray | mmap.mmap] = []
        self._references: list[int] = []
        self._part: bytearray | mmap.mmap = bytearray()
        self._filled = 0

    def next_frame(self) -> Frame | None:
        """Pop the next complete frame, or ``None``."""
        return self.frames.popleft() if self.frames else None

    def body_view(self) -> memoryview | None:
        """The unfilled rest of the body part being received, or ``None`` outside a body."""
        if not self.in_body:
            return None
        return memoryview(self._part)[self._filled :]

    def advance(self, n: int) -> None:
        """Record that ``n`` bytes were written at the start of :meth:`body_view`."""
        self._filled += n
        if self._filled == len(self._part):
            self._finish_part()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Consume ``data``; complete frames become available from :meth:`next_frame`."""
        self.receive_view(memoryview(data).cast("B"))

    def receive_view(self, view: memoryview) -> None:
        """:meth:`receive_data` for a memoryview of unsigned bytes (format ``"B"``)."""
        pos, end = 0, len(view)
        while pos < end:
            if self._state is _IN_HEADER and not self._scratch and end - pos >= _HEADER_SIZE:
                # Fast path: a whole small frame without buffers sits in ``data``.
                header = _unpack_header(view, pos)
                size = header[3]
                start = pos + _HEADER_SIZE
                if header[2] == 0 and end - start >= size:
                    kind = _KINDS.get(header[0])
                    if kind is None or size > self.max_frame:
                        self._check_header(header)
                    pos = start + size
                    self.frames.append(
                        Frame(kind, bytes(view[start:pos]), header[4:6], header[6:8])  # type: ignore[arg-type]
                    )
                    continue
            if self._state is _IN_BODY:
                take = min(end - pos, len(self._part) - self._filled)
                self._part[self._filled : self._filled + take] = view[pos : pos + take]
                pos += take
                self.advance(take)
                continue
            take = min(end - pos, self._need - len(self._scratch))
            self._scratch += view[pos : pos + take]
            pos += take
            if len(self._scratch) == self._need:
                self._parse_fixed()

    def _parse_fixed(self) -> None:
        if self._state is _State.HEADER:
            header = HEADER.unpack(self._scratch)
            self._check_header(header)
            nbuffers, payload_len = header[2:4]
            self._header = header
            self._sizes = [payload_len]
            self._scratch = bytearray()
            if nbuffers:
                self._state, self._need = _State.LENGTHS, nbuffers * _LENGTH.size
                return
        else:
            self._sizes += [n for (n,) in _LENGTH.iter_unpack(self._scratch)]
            self._scratch = bytearray()
            if any(n & BY_REFERENCE for n in self._sizes):
                self._mark_references()
        if sum(self._sizes) > self.max_frame:
            raise ProtocolError(f"frame of {sum(self._sizes)} bytes is over the limit")
        self._parts = []
        self._start_part()

    def _mark_references(self) -> None:
        sizes = self._sizes
        self._references = [i for i in range(1, len(sizes)) if sizes[i] & BY_REFERENCE]
        for i in self._references:
            if sizes[i] != BY_REFERENCE | Reference.SIZE:
                raise ProtocolError(
                    f"a buffer by reference has a {sizes[i] & ~BY_REFERENCE}-byte descriptor"
                )
            sizes[i] = Reference.SIZE
        if sizes[0] & BY_REFERENCE:
            raise ProtocolError("a payload cannot be sent by reference")

    def _check_header(self, header: tuple[int, ...]) -> Kind:
        kind = _KINDS.get(header[0])
        if kind is None:
            raise ProtocolError(f"unknown message kind {header[0]}")
        if header[2] > MAX_BUFFERS:
            raise ProtocolError(f"frame announces {header[2]} buffers (limit {MAX_BUFFERS})")
        if header[3] > self.max_frame:
            raise ProtocolError(f"frame of {header[3]} bytes is over the limit")
        return kind

    def _start_part(self) -> None:
        size = self._sizes[len(self._parts)]
        self._state, self._part, self._filled = _State.BODY, allocate(size), 0
        self.in_body = True
        if size == 0:
            self._finish_part()

    def _finish_part(self) -> None:
        self._parts.append(self._part)
        if len(self._parts) < len(self._sizes):
            self._start_part()
            return
        header = self._header
        payload, *parts = self._parts
        response, notify = (header[4], header[5]), (header[6], header[7])
        buffers = self._resolve(parts) if self._references else parts
        self.frames.append(Frame(_KINDS[header[0]], payload, response, notify, buffers))
        self._state, self._need = _State.HEADER, HEADER.size
        self.in_body = False
        self._part, self._parts = bytearray(), []

    def _resolve(self, buffers: list[Any]) -> Sequence[Any]:
        indexes, self._references = self._references, []
        total = sum(len(b) for i, b in enumerate(buffers, 1) if i not in indexes)
        for i in indexes:
            buffers[i - 1] = reference = Reference(buffers[i - 1])
            total += reference.length
        if total > self.max_frame:
            raise ProtocolError(f"frame of {total} bytes (by reference) is over the limit")
        if self.resolve is None:
            raise ProtocolError("a buffer sent by reference on a connection that takes none")
        return self.resolve(buffers)
