"""Connections between processes of one machine over Unix sockets.

A loopback TCP round trip costs the kernel about twice what a Unix socket does, and on one
CPU that is most of a small call. So every worker also listens on an abstract Unix socket
(Linux; no file to clean up) whose name says which machine, which pid namespace and which
process it belongs to, and a process that connects to a worker of its own machine uses it.
The name can only be found on that machine (and in that network namespace), and the
connecting side checks that the process at the other end is the one it meant
(``SO_PEERCRED``): a worker of another machine with the same process id is never mistaken
for it. The cookie handshake then runs as on TCP. ``PYDISTRIBUTED_UNIX_SOCKETS=0`` turns it
off in a process (workers inherit it).
"""

from __future__ import annotations

import logging
import os
import socket
import struct

__all__ = ("address", "connect", "listen", "namespaces")

log = logging.getLogger("pydistributed")

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def namespaces(*kinds: str) -> str:
    """This boot of this machine and this process's namespaces of the given ``kinds``
    ("pid", "mnt", ...), as one name; "" when unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        spaces = [os.stat(f"/proc/self/ns/{kind}").st_ino for kind in kinds]
    except OSError:
        return ""
    return "-".join([boot, *map(str, spaces)])


_MACHINE = namespaces("pid")
enabled = (
    bool(_MACHINE)
    and hasattr(socket, "AF_UNIX")
    and hasattr(socket, "SO_PEERCRED")
    and os.environ.get("PYDISTRIBUTED_UNIX_SOCKETS", "1").lower() not in ("0", "false", "no", "off")
)


def address(ospid: int | None = None) -> str | None:
    """The abstract socket address of the worker with OS process id ``ospid`` on this machine
    (this process when ``None``); ``None`` where Unix sockets are not used."""
    if not enabled:
        return None
    return f"\0pydistributed-{_MACHINE}-{os.getpid() if ospid is None else ospid}"


def listen() -> socket.socket | None:
    """A listening socket at this process's :func:`address`, or ``None`` (not used here, or
    the address is taken)."""
    name = address()
    if name is None:
        return None
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(name)
        server.listen(128)
    except OSError as exc:
        log.debug("no Unix socket for this worker: %s", exc)
        server.close()
        return None
    return server


def connect(name: str | None, timeout: float = 30.0) -> socket.socket | None:
    """Connect to the worker whose :func:`address` is ``name``; ``None`` when it is not on
    this machine or is not the process the name says, so the caller dials TCP instead."""
    prefix = f"\0pydistributed-{_MACHINE}-"
    if not enabled or not name or not name.startswith(prefix):
        return None
    ospid = int(name[len(prefix) :])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(name)
        sock.settimeout(None)
        pid, _uid, _gid = _CREDENTIALS.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        )
    except (OSError, ValueError) as exc:
        log.debug("no Unix socket connection to %r: %s", name, exc)
        sock.close()
        return None
    if pid != ospid:
        log.warning("pydistributed: %r is process %d, not %d: using TCP", name, pid, ospid)
        sock.close()
        return None
    return sock
