"""The cluster-manager interface: how workers are started, connected and stopped.

A manager's :meth:`ClusterManager.launch` starts worker processes and describes each in a
:class:`WorkerConfig`; the master then connects to each (:meth:`ClusterManager.connect`,
by default over TCP to the address the worker printed), and tells the manager about the
worker's life through :meth:`ClusterManager.manage`.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Literal

from .._exceptions import LaunchError

__all__ = (
    "ClusterManager",
    "WorkerConfig",
    "connect",
    "kill",
    "launch",
    "manage",
    "read_worker_address",
)

ManageOp = Literal["register", "deregister", "interrupt", "finalize"]
ADDRESS_PREFIX = b"pydistributed_worker:"


@dataclass
class WorkerConfig:
    """What a manager knows about one worker (Julia's ``WorkerConfig``).

    ``io`` is the binary stream the worker's output is read from; ``host``/``port`` its
    address when known without reading ``io``; ``process`` the local handle (e.g. a ``Popen``)
    of the launching process; ``userdata`` is the manager's own.
    """

    io: IO[bytes] | None = None
    host: str | None = None
    port: int | None = None
    count: int | str | None = None
    exename: str | None = None
    exeflags: tuple[str, ...] | list[str] | None = None
    userdata: Any = None
    tunnel: bool | None = None
    multiplex: bool | None = None
    forward: str | None = None
    bind_addr: str | None = None
    sshflags: tuple[str, ...] | list[str] | None = None
    max_parallel: int | None = None
    connect_at: Any = None
    process: Any = None
    ospid: int | None = None
    environ: dict[str, Any] | None = None
    ident: Any = None
    connect_idents: list[Any] | None = None
    enable_threaded_blas: bool | None = None


# Set after the dataclass is made: it resolves the field annotations in __module__.
WorkerConfig.__module__ = "pydistributed"


class ClusterManager:
    """Base class of cluster managers.

    Subclasses implement :meth:`launch` and :meth:`manage`, and may override :meth:`kill` and
    :meth:`connect` (to provide another transport).
    """

    __module__ = "pydistributed"

    def launch(
        self,
        params: dict[str, Any],
        launched: list[WorkerConfig],
        launch_ntfy: threading.Condition,
    ) -> None:
        """Start workers; append a :class:`WorkerConfig` per worker to ``launched`` and
        ``notify_all()`` ``launch_ntfy`` (holding it) after each append. Runs in its own
        thread; returning ends the launch."""
        raise NotImplementedError

    def manage(self, pid: int, config: WorkerConfig, op: ManageOp) -> None:
        """Called by the master on worker ``pid``'s ``"register"``, ``"deregister"``,
        ``"interrupt"`` and ``"finalize"`` events."""
        raise NotImplementedError

    def kill(self, pid: int, config: WorkerConfig) -> None:
        """Stop worker ``pid``. The default asks it to exit over the cluster connection."""
        from .._cluster import PGRP

        PGRP.ask_to_exit(pid)

    def connect(self, pid: int, config: WorkerConfig) -> tuple[Any, Any]:
        """Return ``(reader, writer)`` connected to worker ``pid``; the default dials the
        address the worker printed on ``config.io`` (or ``config.host``/``config.port``) and
        returns the socket twice."""
        if config.port is None:
            read_worker_address(config)
        if config.host is None or config.port is None:
            raise LaunchError(f"no address known for worker {pid}")
        sock = socket.create_connection((config.host, config.port), timeout=30)
        sock.settimeout(None)
        return sock, sock


def read_worker_address(config: WorkerConfig, timeout: float | None = None) -> bytes:
    """Read ``config.io`` until the worker's ``pydistributed_worker:PORT#HOST`` line.

    Sets ``config.host`` and ``config.port`` (``config.bind_addr`` wins over the printed host
    when set) and returns the bytes read after that line, which belong to the worker's
    output. Raises :class:`LaunchError`, with what the worker printed, if the line does not
    come within ``timeout`` seconds (default ``PYDISTRIBUTED_WORKER_TIMEOUT``) or the stream
    ends first.
    """
    if config.io is None:
        raise LaunchError("worker config has neither io nor host/port")
    if timeout is None:
        timeout = worker_timeout()
    fd = config.io.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        start = data.find(ADDRESS_PREFIX)
        if start >= 0 and b"\n" in data[start:]:
            end = data.index(b"\n", start)
            line = data[start + len(ADDRESS_PREFIX) : end].strip().decode()
            port, _, host = line.partition("#")
            config.port = int(port)
            config.host = config.bind_addr or host or "127.0.0.1"
            return data[:start] + data[end + 1 :]
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise LaunchError(
                f"worker did not report its address within {timeout:g} s; it printed:\n"
                + data.decode(errors="replace")
            )
        chunk = os.read(fd, 65536)
        if not chunk:
            raise LaunchError(
                "worker exited before reporting its address; it printed:\n"
                + data.decode(errors="replace")
            )
        data += chunk


def worker_timeout() -> float:
    """``PYDISTRIBUTED_WORKER_TIMEOUT`` in seconds (default 60), read at each call."""
    try:
        return float(os.environ.get("PYDISTRIBUTED_WORKER_TIMEOUT", "60"))
    except ValueError:
        return 60.0


def launch(
    manager: ClusterManager,
    params: dict[str, Any],
    launched: list[WorkerConfig],
    launch_ntfy: threading.Condition,
) -> None:
    """``manager.launch(params, launched, launch_ntfy)``."""
    manager.launch(params, launched, launch_ntfy)


def manage(manager: ClusterManager, pid: int, config: WorkerConfig, op: ManageOp) -> None:
    """``manager.manage(pid, config, op)``."""
    manager.manage(pid, config, op)


def kill(manager: ClusterManager, pid: int, config: WorkerConfig) -> None:
    """``manager.kill(pid, config)``."""
    manager.kill(pid, config)


def connect(manager: ClusterManager, pid: int, config: WorkerConfig) -> tuple[Any, Any]:
    """``manager.connect(pid, config)``."""
    return manager.connect(pid, config)
