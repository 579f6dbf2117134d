"""Adding, listing and removing the processes of the cluster."""

from __future__ import annotations

import math
import os
import socket
import sys
from collections.abc import Iterable
from typing import Any, overload

from ._cluster import PGRP
from ._exceptions import ProcessExitedException
from ._streams import streams_of
from .managers._base import ClusterManager
from .managers._local import LocalManager
from .managers._ssh import SSHManager

__all__ = (
    "addprocs",
    "cluster_cookie",
    "default_addprocs_params",
    "interrupt",
    "myid",
    "nprocs",
    "nworkers",
    "procs",
    "rmprocs",
    "worker_id_from_socket",
    "workers",
)

_TOPOLOGIES = ("all_to_all", "master_worker", "custom")


def default_addprocs_params(manager: ClusterManager | None = None) -> dict[str, Any]:
    """The default keywords of :func:`addprocs` (for ``manager`` when given)."""
    return {
        "restrict": True,
        "exename": sys.executable,
        "exeflags": (),
        "dir": os.getcwd(),
        "env": None,
        "topology": "all_to_all",
        "lazy": True,
        "enable_threaded_blas": False,
        **(SSHManager.default_params() if isinstance(manager, SSHManager) else {}),
    }


def addprocs(target: int | list[Any] | ClusterManager | None = None, /, **kwargs: Any) -> list[int]:
    """Add workers and return their ids, in launch order.

    ``addprocs(n)`` starts ``n`` workers on this host (:class:`LocalManager`), and
    ``addprocs()`` one per CPU core, as in Julia;
    ``addprocs(machines)`` starts workers over SSH (:class:`SSHManager`, which adds the
    keywords ``tunnel``, ``multiplex``, ``ssh``, ``sshflags``, ``max_parallel``, ``shell``);
    ``addprocs(manager)`` uses any :class:`ClusterManager`. Keywords: ``restrict``,
    ``exename``, ``exeflags``, ``dir``, ``env``, ``topology``, ``lazy``,
    ``enable_threaded_blas`` (see :func:`default_addprocs_params`), and any the manager
    reads. Returns when every new worker joined; raises :class:`LaunchError` (with what a
    failing worker printed) otherwise.
    """
    if isinstance(target, bool):
        raise TypeError("addprocs expects a count, a list of machines or a ClusterManager")
    manager: ClusterManager
    if target is None:
        target = os.cpu_count() or 1
    if isinstance(target, int):
        manager = LocalManager(target, restrict=kwargs.get("restrict", True))
    elif isinstance(target, ClusterManager):
        manager = target
    elif isinstance(target, list | tuple):
        manager = SSHManager(target)
    else:
        raise TypeError("addprocs expects a count, a list of machines or a ClusterManager")
    params = default_addprocs_params(manager)
    params.update(kwargs)
    if isinstance(manager, SSHManager):
        manager.check_params(params)
    if params["topology"] not in _TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(_TOPOLOGIES)}")
    params["share_sys_path"] = isinstance(manager, LocalManager)
    if isinstance(manager, LocalManager) and manager.np == 0:
        return []
    return PGRP.addprocs(manager, params)


def myid() -> int:
    """This process's id (1 on the master)."""
    return PGRP.myid


def procs(pid: int | None = None) -> list[int]:
    """Ids of every process, the master included; with ``pid``, those on ``pid``'s host."""
    everyone = PGRP.procs()
    if pid is None:
        return everyone
    host = _address(PGRP.host_of(pid))
    return [p for p in everyone if _address(_host(p)) == host]


def _host(pid: int) -> str:
    return PGRP.host_of(pid) if pid != 1 or PGRP.myid == 1 else ""


def _address(host: str) -> str:
    try:
        return socket.gethostbyname(host) if host else "127.0.0.1"
    except OSError:
        return host


def workers() -> list[int]:
    """Ids of the workers (``[1]`` when there are none)."""
    ids = [p for p in PGRP.procs() if p != 1]
    return ids or [1]


def nprocs() -> int:
    """Number of processes, the master included."""
    return len(PGRP.procs())


def nworkers() -> int:
    """Number of workers: ``nprocs() - 1``, or 1 when only the master exists."""
    n = nprocs()
    return n - 1 if n > 1 else 1


def rmprocs(*pids: int | Iterable[int], waitfor: float = math.inf) -> None:
    """Remove workers (ids, or one list of ids); the master cannot be removed.

    Returns once they are gone, or raises ``TimeoutError`` naming those still alive after
    ``waitfor`` seconds; ``waitfor=0`` returns at once. Unknown ids are ignored.
    """
    PGRP.rmprocs(_flatten("rmprocs", pids), waitfor)


def _flatten(name: str, pids: tuple[int | Iterable[int], ...]) -> list[int]:
    """Process ids given one by one or as one list; raise ``TypeError`` for anything else."""
    flat: list[int] = []
    for item in pids:
        items = [item] if isinstance(item, int | str | bytes) else item
        for pid in items:
            if isinstance(pid, bool) or not isinstance(pid, int):
                raise TypeError(f"{name}: process ids must be ints, not {pid!r}")
            flat.append(pid)
    return flat


@overload
def cluster_cookie() -> str: ...
@overload
def cluster_cookie(cookie: str) -> str: ...
def cluster_cookie(cookie: str | None = None) -> str:
    """Return the cluster's shared secret; with an argument, set it and return it."""
    if cookie is not None:
        if (
            not isinstance(cookie, str)
            or not cookie
            or not cookie.isascii()
            or any(c in cookie for c in "\r\n\0")
        ):
            # Workers read it as one line of their stdin.
            raise ValueError("the cluster cookie must be a non-empty ASCII string of one line")
        PGRP.cookie = cookie
    return PGRP.cookie


def worker_id_from_socket(sock: Any) -> int:
    """Id of the process at the other end of cluster connection ``sock``; -1 if unknown.

    ``sock`` may also be the reader or writer of a custom transport's connection.
    """
    try:
        fileno = sock.fileno()
    except (AttributeError, OSError, ValueError):
        fileno = None
    for pid, worker in list(PGRP.workers.items()):
        conn = worker.conn
        if conn is None or conn.closed:
            continue
        if conn.sock is sock or conn.fileno == fileno:
            return pid
        if any(stream is sock for stream in streams_of(conn.sock)):
            return pid
    return -1


def interrupt(*pids: int | Iterable[int]) -> None:
    """Interrupt the calls running on those workers (default: every worker).

    Each interrupted call raises ``KeyboardInterrupt`` there, so its caller gets a
    :class:`RemoteException` wrapping it; the worker keeps serving, and a worker running no
    call is left as it was.
    """
    from ._remotecall import remote_do

    flat = _flatten("interrupt", pids)
    for pid in flat or [p for p in PGRP.procs() if p != PGRP.myid and p != 1]:
        worker = PGRP.workers.get(pid)
        if worker is None:
            continue
        try:
            remote_do(_interrupt_calls, pid)
            PGRP.engine.flush()
        except ProcessExitedException:
            continue
        if worker.manager is not None and worker.config is not None:
            worker.manager.manage(pid, worker.config, "interrupt")


def _interrupt_calls() -> None:
    from ._interrupt import interrupt_calls

    interrupt_calls()
