"""The body of a worker process: listen, print the address, serve until the master is gone."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import IO, Any

from . import _interrupt, _samehost
from ._cluster import PGRP, _exit_process
from ._streams import as_socket
from .managers._base import worker_timeout

__all__ = ("init_worker", "process_messages", "start_worker")

log = logging.getLogger("pydistributed")


def _watch_stdin() -> None:
    """Exit when stdin reaches EOF: the process that started us (and holds it) is gone."""
    try:
        while os.read(sys.stdin.fileno(), 4096):
            pass
    except OSError:
        pass
    _exit_process()


def _exit_unless_joined(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not PGRP.is_worker:
        if time.monotonic() > deadline:
            log.error("pydistributed: master did not connect within %g s; exiting", timeout)
            _exit_process()
        time.sleep(0.1)


def split_bind(bind_to: str) -> tuple[str, int]:
    """``"host"``, ``"host:port"``, ``"[v6]:port"`` or a bare IPv6 address -> (host, port)."""
    if bind_to.startswith("["):
        host, _, rest = bind_to[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 0
    if bind_to.count(":") == 1:
        host, _, port = bind_to.partition(":")
        return host, int(port)
    return bind_to, 0


def _listen(bind_to: str) -> socket.socket:
    host, port = split_bind(bind_to)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(128)
    return server


def _advertised_host(bind_to: str) -> str:
    if bind_to not in ("0.0.0.0", "::", ""):
        return bind_to
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def start_worker(
    out: IO[str] | None = None, cookie: str | None = None, *, bind_to: str = "0.0.0.0"
) -> None:
    """Run this process as a worker: never returns.

    Reads the cookie from the first line of stdin when not given, listens on a free port,
    prints ``pydistributed_worker:PORT#HOST`` on ``out`` (default ``sys.stdout``) and serves
    connections until the master's connection is lost. A master that does not connect within
    ``PYDISTRIBUTED_WORKER_TIMEOUT`` seconds makes the worker exit.
    """
    watch_stdin = cookie is None
    if cookie is None:
        cookie = sys.stdin.readline().rstrip("\r\n")  # a cookie may have spaces
    if not cookie:
        raise ValueError("no cluster cookie given")
    out = out if out is not None else sys.stdout
    init_worker(cookie)
    server = _listen(bind_to)
    PGRP.port = server.getsockname()[1]
    PGRP.host = _advertised_host(split_bind(bind_to)[0])
    local = _samehost.listen()
    if local is not None:
        PGRP.unix = _samehost.address()
    print(f"pydistributed_worker:{PGRP.port}#{PGRP.host}", file=out, flush=True)
    if watch_stdin:
        threading.Thread(target=_watch_stdin, name="pydistributed-stdin", daemon=True).start()
    threading.Thread(
        target=_exit_unless_joined, args=(worker_timeout(),), name="pydistributed-join", daemon=True
    ).start()
    if local is not None:
        threading.Thread(
            target=_accept_forever, args=(local,), name="pydistributed-unix", daemon=True
        ).start()
    _accept_forever(server)


def _accept_forever(server: socket.socket) -> None:
    while True:
        try:
            sock, _ = server.accept()
        except OSError as exc:
            log.error("pydistributed: accept failed: %s", exc)
            time.sleep(0.1)
            continue
        threading.Thread(
            target=PGRP.serve_connection, args=(sock,), name="pydistributed-accept", daemon=True
        ).start()


def _make_calls_interruptible() -> None:
    """Calls run in engine threads: let ``interrupt()`` and SIGINT reach them."""
    time.sleep = _interrupt.sleep  # type: ignore[assignment]
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda signum, frame: _interrupt.interrupt_calls())


def init_worker(cookie: str, manager: Any = None) -> None:
    """Make this process a worker of the cluster that uses ``cookie``.

    Connections then come through :meth:`ProcessGroup.serve_connection` (``start_worker``
    listens for them); ``manager`` is accepted for Julia's signature and not used by the
    built-in transport.
    """
    from ._processes import cluster_cookie

    cluster_cookie(cookie)
    _make_calls_interruptible()
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def process_messages(reader: Any, writer: Any, incoming: bool = True) -> None:
    """Serve one connection of a custom transport as a cluster connection.

    ``reader``/``writer`` are the transport's pair of byte streams: one connected socket
    given as both, or anything :func:`~pydistributed._streams.as_socket` bridges (binary
    file objects, pipes, file descriptors). With ``incoming`` (a connection this worker
    accepted), the peer is authenticated with the cookie and admitted like any accepted
    connection; this returns once it is being served (or was refused and closed). Outgoing
    connections are made by ``addprocs`` through ``ClusterManager.connect``.

    Raises:
        TypeError: ``reader`` cannot be read or ``writer`` cannot be written.
        ValueError: ``incoming`` is false.
    """
    if not incoming:
        raise ValueError("outgoing connections are made by addprocs (ClusterManager.connect)")
    PGRP.serve_connection(as_socket(reader, writer))
