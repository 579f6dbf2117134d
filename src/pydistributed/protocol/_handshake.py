"""Mutual cookie authentication, the first bytes on every connection (sans-IO).

Both ends send ``MAGIC + nonce`` (8 + 32 bytes) at once. On receiving the peer's hello, each
end sends a proof ``HMAC-SHA256(cookie, role + peer_nonce + own_nonce)`` (32 bytes), where
``role`` is ``b"initiator"`` or ``b"acceptor"`` so a proof cannot be reflected back. Each end
checks the peer's proof with ``hmac.compare_digest``. The cookie never crosses the wire, and a
peer has to send exactly 72 bytes to get past this point.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from .._exceptions import AuthenticationError

__all__ = ("HELLO_SIZE", "MAGIC", "PEER_BYTES", "PROOF_SIZE", "Handshake")

MAGIC = b"PYDIST\x00\x01"
NONCE_SIZE = 32
HELLO_SIZE = len(MAGIC) + NONCE_SIZE
PROOF_SIZE = hashlib.sha256().digest_size
PEER_BYTES = HELLO_SIZE + PROOF_SIZE


class Handshake:
    """One end of the handshake.

    Send :meth:`hello` first; feed what the peer sends to :meth:`receive_data`, sending back
    whatever it returns. :attr:`complete` turns true once the peer proved it knows the cookie;
    any failure raises :class:`AuthenticationError`. :meth:`wanted` says how many more bytes
    the peer owes, so a reader never takes more than that.
    """

    def __init__(self, cookie: str | bytes, *, initiator: bool, nonce: bytes | None = None):
        self._key = cookie.encode() if isinstance(cookie, str) else cookie
        self._role = b"initiator" if initiator else b"acceptor"
        self._peer_role = b"acceptor" if initiator else b"initiator"
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
        self._peer_nonce = b""
        self._received = bytearray()
        self.complete = False

    def hello(self) -> bytes:
        """The first bytes to send."""
        return MAGIC + self._nonce

    def wanted(self) -> int:
        """How many bytes the peer still has to send."""
        return PEER_BYTES - len(self._received)

    def receive_data(self, data: bytes) -> bytes:
        """Take bytes from the peer; return bytes to send to it (possibly empty)."""
        if len(data) > self.wanted():
            raise AuthenticationError("peer sent more than the handshake allows")
        before = len(self._received)
        self._received += data
        if before < len(MAGIC) and not MAGIC.startswith(bytes(self._received[: len(MAGIC)])):
            # Refuse a stranger on its first bytes, rather than wait for a whole hello.
            raise AuthenticationError("peer does not speak the pydistributed protocol")
        out = b""
        if before < HELLO_SIZE <= len(self._received):
            hello = bytes(self._received[:HELLO_SIZE])
            if not hmac.compare_digest(hello[: len(MAGIC)], MAGIC):
                raise AuthenticationError("peer does not speak the pydistributed protocol")
            self._peer_nonce = hello[len(MAGIC) :]
            if hmac.compare_digest(self._peer_nonce, self._nonce):
                raise AuthenticationError("peer echoed our nonce")
            out = self._proof(self._role, self._peer_nonce, self._nonce)
        if len(self._received) == PEER_BYTES:
            expected = self._proof(self._peer_role, self._nonce, self._peer_nonce)
            if not hmac.compare_digest(bytes(self._received[HELLO_SIZE:]), expected):
                raise AuthenticationError("peer does not know the cluster cookie")
            self.complete = True
        return out

    def _proof(self, role: bytes, nonce_a: bytes, nonce_b: bytes) -> bytes:
        return hmac.new(self._key, role + nonce_a + nonce_b, hashlib.sha256).digest()
