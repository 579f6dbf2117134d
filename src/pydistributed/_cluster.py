"""The process group: who is in the cluster, how its processes join, connect and leave.

The master (id 1) launches workers through a cluster manager, dials each one and sends it
``JOIN_PGRP`` (its id and the other workers' addresses); the worker answers ``JOIN_COMPLETE``.
Workers connect to each other on first use (``lazy=True``) or at join: the higher id dials the
lower, introducing itself with ``IDENTIFY_SOCKET``; a lower id that needs a higher one asks the
master to have it dial. A connection that breaks removes its peer from the cluster and fails
every caller waiting on it with :class:`ProcessExitedException`.

The topology, fixed by the first ``addprocs`` while workers exist, says which workers may
connect: ``all_to_all`` every pair, ``master_worker`` none (a worker only knows the master),
``custom`` the pairs where one worker's ``WorkerConfig.connect_idents`` lists the other's
``ident``. A worker knows only the peers it may connect to; a call to any other raises
:class:`DistributedError` naming both ids and the topology.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import secrets
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Literal

from ._engine import Engine
from ._exceptions import (
    AuthenticationError,
    DistributedError,
    LaunchError,
    ProcessExitedException,
    ProtocolError,
)
from ._output import forward_output
from ._refs import TABLE
from ._serialize import dumps, loads
from ._streams import as_socket
from ._transport import Connection, authenticate, dial
from .managers._base import ClusterManager, WorkerConfig, read_worker_address, worker_timeout
from .protocol import Frame, Kind

__all__ = ("PGRP", "ProcessGroup", "Worker", "WorkerState")

log = logging.getLogger("pydistributed")

_FIRST_FRAME_TIMEOUT = 30.0


class WorkerState(enum.Enum):
    """Life stages of a peer, as seen from this process."""

    CREATED = 0
    CONNECTED = 1
    TERMINATING = 2
    TERMINATED = 3


class Worker:
    """This process's view of one other process of the cluster."""

    def __init__(
        self,
        pid: int,
        host: str = "",
        port: int = 0,
        config: WorkerConfig | None = None,
        manager: ClusterManager | None = None,
        unix: str | None = None,
    ) -> None:
        self.pid = pid
        self.host = host
        self.port = port
        self.config = config
        self.manager = manager
        self.conn: Connection | None = None
        self.state = WorkerState.CREATED
        self.ospid = 0
        # Where to reach it over a Unix socket when on this machine (see _samehost.py).
        self.unix: str | None = unix
        self.connecting = threading.Lock()
        self.connected = threading.Event()
        self.gone = threading.Event()

    def __repr__(self) -> str:
        return f"<Worker {self.pid} {self.host}:{self.port} {self.state.name}>"

    def address(self) -> tuple[int, str, int, str | None]:
        """``(pid, host, port, unix)``: how other processes reach it (see :meth:`at`)."""
        return (self.pid, self.host, self.port, self.unix)

    @classmethod
    def at(cls, pid: int, host: str, port: int, unix: str | None) -> Worker:
        """The worker an :meth:`address` names."""
        return cls(pid, host, port, unix=unix)


def _read_first_frame(conn: Connection, timeout: float = _FIRST_FRAME_TIMEOUT) -> Frame:
    deadline = time.monotonic() + timeout
    while (frame := conn.next_frame()) is None:
        left = deadline - time.monotonic()
        try:
            if left <= 0 or not conn.read_some(left):
                raise ProtocolError("peer closed the connection before introducing itself")
        except TimeoutError:
            raise ProtocolError("peer did not introduce itself in time") from None
    return frame


class ProcessGroup:
    """The state of this process's membership in a cluster (one per process: :data:`PGRP`)."""

    def __init__(self) -> None:
        self.myid = 1
        self.is_worker = False
        self.cookie = secrets.token_hex(16)
        self.workers: dict[int, Worker] = {}
        self.exited: set[int] = set()
        self.lock = threading.RLock()
        self.next_pid = 2
        self.lazy = True
        self.topology = "all_to_all"
        self.host = "127.0.0.1"
        self.port = 0
        self.unix: str | None = None
        self.on_join: list[Callable[[int], None]] = []
        self.on_leave: list[Callable[[int], None]] = []
        self._engine: Engine | None = None
        self._addprocs_lock = threading.Lock()
        self._atexit = False
        TABLE.myid = lambda: self.myid

    # -- the engine -----------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """This process's engine, started on first use."""
        if self._engine is None:
            with self.lock:
                if self._engine is None:
                    from ._handlers import handle_frame

                    self._engine = Engine(handle_frame, self._lost)
                    self._engine.start()
                    TABLE.start()
        return self._engine

    def _register(self, worker: Worker, conn: Connection) -> None:
        conn.peer = worker.pid
        worker.conn = conn
        worker.state = WorkerState.CONNECTED
        with self.lock:
            self.workers[worker.pid] = worker
        self.engine.add(conn)
        worker.connected.set()

    # -- queries ---------------------------------------------------------------------------

    def procs(self) -> list[int]:
        """Ids of every process, this one and the master included."""
        with self.lock:
            ids = {1, self.myid, *self.workers}
        return sorted(ids)

    def host_of(self, pid: int) -> str:
        """Address of the host process ``pid`` runs on."""
        if pid == self.myid:
            return self.host
        worker = self.workers.get(pid)
        if worker is None:
            raise ValueError(f"no process with id {pid}")
        return worker.host

    def connection(self, pid: int) -> Connection:
        """The connection to process ``pid``, made now if this is the first use.

        Raises :class:`ProcessExitedException` for a process that is gone.
        """
        worker = self.workers.get(pid)
        if worker is not None:
            conn = worker.conn
            if conn is not None and not conn.closed:
                return conn
            if not self.is_worker:
                # The master dials nobody: a worker whose connection closed is gone, even
                # before its deregistration ran (dialing would recurse through _introduce).
                raise ProcessExitedException(pid)
        if worker is None or worker.state is WorkerState.TERMINATED:
            if pid in self.exited or (worker is None and 1 < pid < self.next_pid):
                raise ProcessExitedException(pid)
            if not self.is_worker or pid == self.myid:
                raise ValueError(f"no process with id {pid}")
            if self.topology == "master_worker":
                raise self._unreachable(pid)
            worker = self._learn_peer(pid)
        return self._connect_peer(worker)

    def _learn_peer(self, pid: int) -> Worker:
        from ._remotecall import remotecall_fetch

        address = remotecall_fetch(_peer_address, 1, pid, self.myid)
        if address is None:
            raise ProcessExitedException(pid)
        if address is False:
            raise self._unreachable(pid)
        with self.lock:
            return self.workers.setdefault(pid, Worker.at(*address))

    def _unreachable(self, pid: int) -> DistributedError:
        how = (
            "connects workers only to the master"
            if self.topology == "master_worker"
            else "does not link them (WorkerConfig.ident / connect_idents)"
        )
        return DistributedError(
            f"process {pid} is not connected to process {self.myid}: "
            f"topology {self.topology!r} {how}"
        )

    def _connect_peer(self, worker: Worker) -> Connection:
        with worker.connecting:
            if worker.conn is not None and not worker.conn.closed:
                return worker.conn
            if worker.state is WorkerState.TERMINATED:
                raise ProcessExitedException(worker.pid)
            if self.myid > worker.pid:
                self._dial_peer(worker)
            else:
                from ._remotecall import remotecall_fetch

                remotecall_fetch(_introduce, 1, worker.pid, self.myid)
                if not worker.connected.wait(_FIRST_FRAME_TIMEOUT):
                    raise ProcessExitedException(worker.pid)
        if worker.conn is None or worker.conn.closed:
            raise ProcessExitedException(worker.pid)
        return worker.conn

    def _dial_peer(self, worker: Worker) -> None:
        try:
            sock = dial(worker.host, worker.port, self.cookie, unix=worker.unix)
        except (OSError, AuthenticationError) as exc:
            raise ProcessExitedException(worker.pid) from exc
        conn = Connection(sock, worker.pid)
        try:
            me = (self.myid, self.host, self.port, self.unix)
            payload, _ = dumps({"address": me})
            conn.send(Kind.IDENTIFY_SOCKET, payload)
            frame = _read_first_frame(conn)
            if frame.kind is not Kind.IDENTIFY_SOCKET_ACK:
                raise ProtocolError(f"expected IDENTIFY_SOCKET_ACK, got {frame.kind.name}")
        except (DistributedError, OSError) as exc:
            conn.close()
            conn.release_socket()
            raise ProcessExitedException(worker.pid) from exc
        self._register(worker, conn)

    # -- incoming connections (workers) ---------------------------------------------------

    def serve_connection(self, sock: socket.socket) -> None:
        """Authenticate an accepted socket and admit it; drop it (logging why) on failure."""
        conn: Connection | None = None
        try:
            authenticate(sock, self.cookie, initiator=False)
            conn = Connection(sock)
            frame = _read_first_frame(conn)
            if frame.kind is Kind.JOIN_PGRP and not self.is_worker:
                self._join(conn, loads(frame.payload, frame.buffers))
            elif frame.kind is Kind.IDENTIFY_SOCKET and self.is_worker:
                address = loads(frame.payload, frame.buffers)["address"]
                with self.lock:
                    worker = self.workers.get(address[0])
                    if worker is None:
                        worker = self.workers[address[0]] = Worker.at(*address)
                conn.send(Kind.IDENTIFY_SOCKET_ACK, b"")
                self._register(worker, conn)
            else:
                raise ProtocolError(f"unexpected first message {frame.kind.name}")
        except Exception as exc:  # whatever the peer sent (a bad pickle included)
            peer = _peer_name(sock)
            log.warning("pydistributed: refused connection from %s: %s", peer, exc)
            if conn is not None:
                conn.close()
            try:
                sock.close()
            except OSError:
                pass

    def _join(self, conn: Connection, info: dict[str, Any]) -> None:
        self.myid = info["pid"]
        self.is_worker = True
        self.lazy = info["lazy"]
        self.topology = info["topology"]
        for entry in info.get("sys_path") or ():
            if entry not in sys.path:
                sys.path.append(entry)
        master = Worker(1, info["master_host"], 0)
        with self.lock:
            for address in info["others"]:
                self.workers.setdefault(address[0], Worker.at(*address))
        self._register(master, conn)
        if not self.lazy:
            self.connect_lower()
        payload, _ = dumps(
            {"ospid": os.getpid(), "cpu_threads": os.cpu_count() or 1, "unix": self.unix}
        )
        conn.send(Kind.JOIN_COMPLETE, payload)

    def connect_lower(self) -> None:
        """Dial every known worker with a lower id that is not connected yet."""
        with self.lock:
            lower = [w for pid, w in self.workers.items() if 1 < pid < self.myid]
        for worker in lower:
            self._connect_peer(worker)

    # -- joining workers (master) -----------------------------------------------------------

    def addprocs(self, manager: ClusterManager, params: dict[str, Any]) -> list[int]:
        """Launch workers with ``manager`` and wait until each joined; return their ids."""
        if self.is_worker:
            raise DistributedError("only the master (process 1) can add and remove workers")
        self._install_atexit()
        with self._addprocs_lock:
            with self.lock:
                if params["topology"] != self.topology and self.workers:
                    raise ValueError(
                        f"workers with topology {self.topology!r} already exist; "
                        f"topology {params['topology']!r} cannot be set"
                    )
                self.topology = params["topology"]
            self.lazy = params["lazy"]
            params = {**params, "cookie": self.cookie}
            created: dict[int, Worker] = {}
            errors: list[str] = []
            threads: list[threading.Thread] = []
            launched: list[WorkerConfig] = []
            ntfy = threading.Condition()
            done: list[BaseException | None] = []

            def run_launch() -> None:
                error: BaseException | None = None
                try:
                    manager.launch(params, launched, ntfy)
                except BaseException as exc:
                    error = exc
                with ntfy:
                    done.append(error)
                    ntfy.notify_all()

            def create(config: WorkerConfig, pid: int) -> None:
                try:
                    created[pid] = self._create_worker(manager, config, pid, params)
                except Exception as exc:
                    errors.append(f"worker {pid}: {exc}")

            threading.Thread(target=run_launch, name="pydistributed-launch", daemon=True).start()
            pids: list[int] = []
            seen = 0
            while True:
                with ntfy:
                    while seen == len(launched) and not done:
                        ntfy.wait()
                    fresh = launched[seen:]
                    seen = len(launched)
                    finished = bool(done)
                for config in fresh:
                    with self.lock:
                        pid = self.next_pid
                        self.next_pid += 1
                    pids.append(pid)
                    thread = threading.Thread(target=create, args=(config, pid), daemon=True)
                    thread.start()
                    threads.append(thread)
                if finished:
                    break
            for thread in threads:
                thread.join()
            if done[0] is not None:
                error = done[0]
                text = str(error) if isinstance(error, LaunchError) else repr(error)
                errors.insert(0, f"launch failed: {text}")
            if errors:
                self.rmprocs(list(created), waitfor=5.0, quiet=True)
                raise LaunchError("addprocs failed:\n" + "\n".join(errors))
            self._announce(pids)
            for pid in pids:
                for hook in self.on_join:
                    hook(pid)
            return pids

    def _create_worker(
        self, manager: ClusterManager, config: WorkerConfig, pid: int, params: dict[str, Any]
    ) -> Worker:
        try:
            head = b""
            if config.io is not None and config.port is None:
                head = read_worker_address(config)
            if config.io is not None:
                forward_output(pid, config.io, head)
            reader, writer = manager.connect(pid, config)
            sock = as_socket(reader, writer)
            authenticate(sock, self.cookie, initiator=True)
        except BaseException:
            _stop_process(config)
            raise
        conn = Connection(sock, pid)
        try:
            worker = Worker(pid, config.host or "", config.port or 0, config, manager)
            with self.lock:
                others = [
                    w.address()
                    for w in self.workers.values()
                    if w.state is WorkerState.CONNECTED and self.linked(worker, w)
                ]
            self.host = sock.getsockname()[0] if sock.family != socket.AF_UNIX else self.host
            info = {
                "pid": pid,
                "lazy": self.lazy,
                "topology": self.topology,
                "others": others,
                "master_host": self.host,
                "sys_path": list(sys.path) if params.get("share_sys_path") else None,
            }
            payload, _ = dumps(info)
            conn.send(Kind.JOIN_PGRP, payload)
            frame = _read_first_frame(conn, worker_timeout())
            if frame.kind is not Kind.JOIN_COMPLETE:
                raise ProtocolError(f"expected JOIN_COMPLETE, got {frame.kind.name}")
            reply = loads(frame.payload, frame.buffers)
            worker.ospid = reply["ospid"]
            worker.unix = reply.get("unix")
            config.ospid = config.ospid or worker.ospid
        except BaseException:
            conn.close()
            conn.release_socket()
            _stop_process(config)
            raise
        self._register(worker, conn)
        manager.manage(pid, config, "register")
        return worker

    def linked(self, a: Worker, b: Worker) -> bool:
        """Whether workers ``a`` and ``b`` may connect to each other (on the master).

        Under ``custom``, two workers are linked when either one's ``connect_idents`` lists
        the other's ``ident``, whichever of them joined first.
        """
        if self.topology == "all_to_all":
            return True
        if self.topology == "master_worker" or a.pid == b.pid:
            return False
        return _lists(a, b) or _lists(b, a)

    def _announce(self, new: list[int]) -> None:
        """Tell every worker the addresses of the workers that just joined."""
        from ._remotecall import remote_do, remotecall_fetch

        with self.lock:
            fresh = [w for p, w in self.workers.items() if p in new]
            everyone = list(self.workers.values())
        connect_now = not self.lazy
        for worker in everyone:
            pid = worker.pid
            peers = [w.address() for w in fresh if self.linked(worker, w)]
            if not peers:
                continue
            try:
                if connect_now:
                    remotecall_fetch(_add_peers, pid, peers, True)
                else:
                    remote_do(_add_peers, pid, peers, False)
            except ProcessExitedException:
                pass

    # -- leaving ----------------------------------------------------------------------------

    def _lost(self, conn: Connection) -> None:
        pid = conn.peer
        if self.is_worker and pid == 1:
            _exit_process()
        worker = self.workers.get(pid)
        if worker is not None and worker.conn is conn:
            self.deregister(pid)

    def deregister(self, pid: int) -> None:
        """Process ``pid`` is gone: forget it, fail its waiters, tell the manager and peers."""
        with self.lock:
            worker = self.workers.pop(pid, None)
            if worker is None:
                return
            self.exited.add(pid)
        worker.state = WorkerState.TERMINATED
        if worker.conn is not None:
            worker.conn.close()
        worker.gone.set()
        TABLE.forget_process(pid)
        for hook in self.on_leave:
            hook(pid)
        if not self.is_worker:
            if worker.manager is not None and worker.config is not None:
                threading.Thread(
                    target=_deregister_and_finalize,
                    args=(worker.manager, pid, worker.config),
                    daemon=True,
                ).start()
            from ._remotecall import remote_do

            for other in list(self.workers):
                try:
                    remote_do(_peer_gone, other, pid)
                except ProcessExitedException:
                    pass

    def ask_to_exit(self, pid: int) -> None:
        """Ask worker ``pid`` to exit (it does at once); ignore a worker already gone."""
        from ._remotecall import remote_do

        try:
            remote_do(_exit_process, pid)
        except (ProcessExitedException, ValueError):
            pass

    def rmprocs(self, pids: Iterable[int], waitfor: float, quiet: bool = False) -> None:
        """Remove workers; see :func:`pydistributed.rmprocs`."""
        if self.is_worker:
            raise DistributedError("only the master (process 1) can add and remove workers")
        targets: list[Worker] = []
        for pid in pids:
            if pid == 1:
                warnings.warn("rmprocs: process 1 not removed", stacklevel=3)
                continue
            worker = self.workers.get(pid)
            if worker is None or worker.state is WorkerState.TERMINATED:
                continue
            worker.state = WorkerState.TERMINATING
            targets.append(worker)
            if worker.manager is not None and worker.config is not None:
                worker.manager.kill(pid, worker.config)
            else:
                self.ask_to_exit(pid)
        if waitfor == 0 or not targets:
            return
        deadline = time.monotonic() + waitfor
        for worker in targets:
            worker.gone.wait(
                None if waitfor == float("inf") else max(0, deadline - time.monotonic())
            )
        alive = [w.pid for w in targets if not w.gone.is_set()]
        if alive and not quiet:
            raise TimeoutError(f"rmprocs: pids {alive} not terminated after {waitfor} seconds")

    def _install_atexit(self) -> None:
        if not self._atexit:
            self._atexit = True
            atexit.register(self.shutdown)

    def shutdown(self) -> None:
        """Remove every worker (at exit of the master)."""
        if self.is_worker:
            return
        with self.lock:
            pids = list(self.workers)
        try:
            self.rmprocs(pids, waitfor=5.0, quiet=True)
        except Exception:
            pass
        with self.lock:
            left = list(self.workers.values())
        for worker in left:
            if worker.config is not None:
                _stop_process(worker.config)


def _peer_name(sock: socket.socket) -> str:
    try:
        if sock.family == socket.AF_UNIX:
            return "a process of this machine (Unix socket)"
        return str(sock.getpeername())
    except OSError:
        return "an unknown peer"


def _stop_process(config: WorkerConfig) -> None:
    process = config.process
    if process is not None and hasattr(process, "kill"):
        try:
            process.kill()
            process.wait(5)
        except Exception:
            pass


def _manage_quietly(manager: ClusterManager, pid: int, config: WorkerConfig, op: Any) -> None:
    try:
        manager.manage(pid, config, op)
    except Exception:
        log.exception("pydistributed: manage(%s, %s) failed", pid, op)


def _deregister_and_finalize(manager: ClusterManager, pid: int, config: WorkerConfig) -> None:
    # Julia sends "finalize" when the master's Worker object is collected, after "deregister".
    _manage_quietly(manager, pid, config, "deregister")
    _manage_quietly(manager, pid, config, "finalize")


def _exit_process() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


# -- functions run remotely by the cluster machinery ---------------------------------------


def _lists(a: Worker, b: Worker) -> bool:
    """Whether worker ``a``'s config lists worker ``b``'s ident among its connect_idents."""
    if a.config is None or b.config is None or b.config.ident is None:
        return False
    return b.config.ident in (a.config.connect_idents or ())


def _peer_address(pid: int, asker: int) -> tuple[int, str, int, str | None] | Literal[False] | None:
    """On the master: the address of worker ``pid`` for worker ``asker``; ``None`` if it is
    gone, ``False`` if the topology does not let ``asker`` connect to it."""
    worker = PGRP.workers.get(pid)
    if worker is None:
        return None
    other = PGRP.workers.get(asker)
    if other is not None and not PGRP.linked(other, worker):
        return False
    return worker.address()


def _introduce(higher: int, lower: int) -> None:
    """On the master: have worker ``higher`` dial worker ``lower``."""
    from ._remotecall import remotecall_fetch

    remotecall_fetch(_dial_to, higher, lower)


def _dial_to(pid: int) -> None:
    PGRP.connection(pid)


def _add_peers(peers: list[tuple[int, str, int, str | None]], connect_now: bool) -> None:
    with PGRP.lock:
        for address in peers:
            pid = address[0]
            if pid != PGRP.myid and pid not in PGRP.exited:
                PGRP.workers.setdefault(pid, Worker.at(*address))
    if connect_now:
        PGRP.connect_lower()


def _peer_gone(pid: int) -> None:
    PGRP.deregister(pid)
    with PGRP.lock:
        # Also a peer this worker never knew (the topology kept them apart): calls to it
        # now fail as calls to a process that exited.
        PGRP.exited.add(pid)


PGRP = ProcessGroup()
