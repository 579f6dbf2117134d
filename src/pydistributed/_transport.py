"""One authenticated cluster connection over a socket: the only code that touches sockets.

A :class:`Connection` owns a connected socket, a frame decoder and two locks: ``send_lock``
serializes writers (each frame goes out in one gather write), ``read_lock`` gives one thread at
a time the right to read. Which thread reads is decided elsewhere (:mod:`._engine`).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import _samehost
from ._exceptions import AuthenticationError, ProcessExitedException
from ._waiter import Waiter
from .protocol import (
    DEFAULT_MAX_FRAME,
    Frame,
    FrameDecoder,
    Handshake,
    Kind,
    Reference,
    encode_frame,
)

__all__ = ("HANDSHAKE_TIMEOUT", "Connection", "authenticate", "dial")

log = logging.getLogger("pydistributed")

HANDSHAKE_TIMEOUT = 10.0
_SCRATCH = 1 << 18
# Body parts at least this large are received straight into their final buffer.
_DIRECT = 1 << 16
_IOV_MAX = 512
# Chunks of at most this many bytes in all are joined and sent with one plain write.
_JOIN = 1 << 16
# Deferred frames are sent once this many wait in an outbox.
_BATCH_FRAMES = 128
_DONTWAIT = socket.MSG_DONTWAIT

# When set, called before any frame is sent: the write-behind puts still waiting in this
# process go first, so no message that shows a put returned arrives before the put
# (see _credits.py).
before_send: Callable[[], None] | None = None

# When set (by _shm.py), makes the function that maps the buffers a connection's peer sends
# by reference (see protocol/_reference.py).
resolver: Callable[[Connection], Callable[[list[Any]], Sequence[Any]]] | None = None


def _tune(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def authenticate(sock: socket.socket, cookie: str, *, initiator: bool) -> None:
    """Run the cookie handshake on a fresh socket; raise :class:`AuthenticationError`.

    Reads are capped at what the handshake still expects and the whole exchange has a
    deadline, so a silent or chatty peer cannot hold the caller.
    """
    handshake = Handshake(cookie, initiator=initiator)
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    try:
        sock.sendall(handshake.hello())
        while not handshake.complete:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AuthenticationError("handshake timed out")
            sock.settimeout(remaining)
            data = sock.recv(handshake.wanted())
            if not data:
                raise AuthenticationError("peer closed the connection during the handshake")
            reply = handshake.receive_data(data)
            if reply:
                sock.sendall(reply)
    except OSError as exc:
        raise AuthenticationError(f"handshake failed: {exc}") from exc
    finally:
        try:
            sock.settimeout(None)
        except OSError:
            pass


def dial(
    host: str, port: int, cookie: str, timeout: float = 30.0, *, unix: str | None = None
) -> socket.socket:
    """Connect to a cluster process and authenticate as the initiator: over the Unix socket
    ``unix`` when that process is on this machine (see ``_samehost``), else over TCP."""
    sock = _samehost.connect(unix, timeout)
    if sock is None:
        sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.settimeout(None)
        _tune(sock)
        authenticate(sock, cookie, initiator=True)
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    """An authenticated, framed link to one peer process.

    Attributes:
        peer: the peer's process id (0 until identified).
        pending: waiters for replies to requests sent on this connection, by response id.
    """

    def __init__(self, sock: socket.socket, peer: int = 0, *, max_frame: int = DEFAULT_MAX_FRAME):
        _tune(sock)
        self.sock = sock
        self.fileno = sock.fileno()
        self.peer = peer
        self.decoder = FrameDecoder(max_frame)
        if resolver is not None:
            self.decoder.resolve = resolver(self)
        self.send_lock = threading.Lock()
        self.read_lock = threading.Lock()
        self.pending: dict[tuple[int, int], Waiter] = {}
        # Futures of remotecalls sent here, until the peer pushes their result (or says it
        # keeps it); the Futures are held so the push always finds them.
        self.awaiting: dict[tuple[int, int], Any] = {}
        self.closed = False
        self._outbox: list[bytes | bytearray | memoryview] = []
        self._outbox_frames = 0
        self._scratch = bytearray(_SCRATCH)
        self._scratch_view = memoryview(self._scratch)

    def __repr__(self) -> str:
        return f"<Connection to {self.peer} fd={self.fileno}{' closed' if self.closed else ''}>"

    # -- writing ----------------------------------------------------------------------------

    def send(
        self,
        kind: Kind,
        payload: bytes | bytearray | memoryview,
        response: tuple[int, int] = (0, 0),
        notify: tuple[int, int] = (0, 0),
        buffers: Sequence[memoryview | Reference] = (),
        *,
        defer: bool = False,
    ) -> bool:
        """Send one frame; raise :class:`ProcessExitedException` if the link is gone.

        With ``defer`` a small frame may wait in the outbox (to go out with the next ones in
        one system call) until :meth:`flush`. Returns True when it did and the outbox was
        empty before: the caller must then see to it that the connection is flushed soon.
        """
        chunks = encode_frame(kind, payload, response, notify, buffers)
        if not defer or len(chunks) != 1:
            self.write_frame(chunks)
            return False
        if before_send is not None:
            before_send()
        with self.send_lock:
            if self.closed:
                raise ProcessExitedException(self.peer)
            self._outbox += chunks
            self._outbox_frames += 1
            if self._outbox_frames < _BATCH_FRAMES:
                return self._outbox_frames == 1
            self._flush_locked()
            return False

    def write_frame(self, chunks: list[bytes | bytearray | memoryview]) -> None:
        """Send a frame encoded with ``encode_frame`` now, after the frames in the outbox."""
        if before_send is not None:
            before_send()
        with self.send_lock:
            if self.closed:
                raise ProcessExitedException(self.peer)
            if self._outbox:
                self._outbox += chunks
                self._outbox_frames += 1
                self._flush_locked()
            elif len(chunks) == 1:
                try:
                    self.sock.sendall(chunks[0])
                except OSError as exc:
                    self._send_failed(exc)
            else:
                self._write(chunks)

    def flush(self) -> None:
        """Send the frames waiting in the outbox."""
        with self.send_lock:
            if self._outbox and not self.closed:
                self._flush_locked()

    def try_flush(self) -> bool:
        """Send what the outbox holds as far as the socket takes it now, without waiting for
        the socket or for another sender; return whether the outbox is empty."""
        if not self.send_lock.acquire(False):
            return False
        try:
            if not self._outbox or self.closed:
                return True
            data = b"".join(self._outbox)
            try:
                sent = self.sock.send(data, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._send_failed(exc)
            if sent == len(data):
                self._outbox, self._outbox_frames = [], 0
                return True
            # The rest of a frame may stay behind: it leaves first, with whatever follows.
            self._outbox = [memoryview(data)[sent:]]
            return False
        finally:
            self.send_lock.release()

    def _flush_locked(self) -> None:
        chunks, self._outbox, self._outbox_frames = self._outbox, [], 0
        self._write(chunks)

    def _write(self, chunks: Sequence[Any]) -> None:
        try:
            if len(chunks) == 1:
                self.sock.sendall(chunks[0])
            elif sum(map(len, chunks)) <= _JOIN:
                # Small frames (a batch from the outbox): one copy costs less than a view
                # of each for a gather write.
                self.sock.sendall(b"".join(chunks))
            else:
                self._send_chunks(chunks)
        except OSError as exc:
            self._send_failed(exc)

    def _send_failed(self, exc: OSError) -> NoReturn:
        log.debug("send to %s failed: %s", self.peer, exc)
        self.close()
        raise ProcessExitedException(self.peer) from exc

    def _send_chunks(self, chunks: Sequence[Any]) -> None:
        views = [memoryview(c).cast("B") for c in chunks]
        while views:
            sent = self.sock.sendmsg(views[:_IOV_MAX])
            while sent:
                if sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0

    # -- reading (the caller holds read_lock) -------------------------------------------

    def read_some(self, timeout: float | None = None) -> bool:
        """Receive what is available (blocking up to ``timeout``); return False on EOF.

        Decoded frames are left in the decoder (see :meth:`next_frame`). Raises
        :class:`ProtocolError` on a malformed stream and ``TimeoutError`` when nothing came
        (at once when ``timeout`` is 0).
        """
        flags = 0
        if timeout is not None:
            if timeout <= 0:
                flags = _DONTWAIT
            elif not select.select([self.sock], [], [], timeout)[0]:
                raise TimeoutError
        decoder = self.decoder
        try:
            if decoder.in_body:
                view = decoder.body_view()
                if view is not None and len(view) >= _DIRECT:
                    n = self.sock.recv_into(view, 0, flags)
                    if n:
                        decoder.advance(n)
                    return n > 0
            n = self.sock.recv_into(self._scratch, 0, flags)
        except BlockingIOError:
            raise TimeoutError from None
        except (ConnectionError, OSError) as exc:
            log.debug("receive from %s failed: %s", self.peer, exc)
            return False
        if n:
            decoder.receive_view(self._scratch_view[:n])
            return True
        return False

    def next_frame(self) -> Frame | None:
        """The next complete frame received, or ``None``."""
        return self.decoder.next_frame()

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Shut the socket down (waking any thread blocked on it) and fail pending waiters."""
        if self.closed:
            return
        self.closed = True
        self._outbox, self._outbox_frames = [], 0
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        error = ProcessExitedException(self.peer)
        for waiter in list(self.pending.values()):
            waiter.fail(error)
        self.pending.clear()
        self.awaiting.clear()

    def release_socket(self) -> None:
        """Close the file descriptor (after :meth:`close`, once no thread uses it)."""
        try:
            self.sock.close()
        except OSError:
            pass
