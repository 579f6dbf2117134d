"""Out-of-band buffers sent by reference: the descriptor that travels in their place.

Between two processes of one machine, a large buffer can stay in a shared-memory segment of
the sender; the frame then carries, in the buffer's place, a 32-byte descriptor and marks its
entry in the length table with :data:`BY_REFERENCE`::

    descriptor (32 bytes, little-endian)
        fd      u64   the sender's file descriptor of the segment (a memfd)
        serial  u64   the sender's number for this send, named in the release notice
        offset  u64   where the buffer starts in the segment
        length  u64   the buffer's length

What the receiver does with it (open ``/proc/<sender>/fd/<fd>``, map it, release it) is not the
protocol's business: :class:`~._frames.FrameDecoder` hands descriptors to its owner's
``resolve`` callable. See ``docs/protocol.md``.
"""

from __future__ import annotations

import struct

__all__ = ("BY_REFERENCE", "Reference")

#: Set in a buffer's entry of the length table when the buffer is sent by reference.
BY_REFERENCE = 1 << 63

_DESCRIPTOR = struct.Struct("<QQQQ")


class Reference(bytes):
    """The descriptor of a buffer sent by reference (its bytes are what goes on the wire)."""

    __slots__ = ()

    SIZE = _DESCRIPTOR.size

    @classmethod
    def make(cls, fd: int, serial: int, offset: int, length: int) -> Reference:
        """The descriptor of ``length`` bytes at ``offset`` of the sender's segment ``fd``."""
        return cls(_DESCRIPTOR.pack(fd, serial, offset, length))

    def fields(self) -> tuple[int, int, int, int]:
        """``(fd, serial, offset, length)``."""
        fd, serial, offset, length = _DESCRIPTOR.unpack(self)
        return fd, serial, offset, length

    @property
    def length(self) -> int:
        """Length of the buffer it stands for."""
        length: int = _DESCRIPTOR.unpack(self)[3]
        return length

    def __repr__(self) -> str:
        fd, serial, offset, length = self.fields()
        return f"Reference(fd={fd}, serial={serial}, offset={offset}, length={length})"
