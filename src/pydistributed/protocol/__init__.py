"""The wire protocol, with no I/O: framing, message kinds and the handshake.

This package imports no ``socket``, ``threading`` or ``subprocess``; ``docs/protocol.md``
describes the format.
"""

from __future__ import annotations

from ._frames import DEFAULT_MAX_FRAME, HEADER, MAX_BUFFERS, Frame, FrameDecoder, Kind, encode_frame
from ._handshake import HELLO_SIZE, MAGIC, PEER_BYTES, PROOF_SIZE, Handshake
from ._reference import BY_REFERENCE, Reference

__all__ = (
    "BY_REFERENCE",
    "DEFAULT_MAX_FRAME",
    "HEADER",
    "HELLO_SIZE",
    "MAGIC",
    "MAX_BUFFERS",
    "PEER_BYTES",
    "PROOF_SIZE",
    "Frame",
    "FrameDecoder",
    "Handshake",
    "Kind",
    "Reference",
    "encode_frame",
)
