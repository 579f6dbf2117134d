"""SSHManager: workers started over SSH on other hosts (Julia's ``SSHManager``).

Each worker is one ssh session running ``exename exeflags -m pydistributed --worker
--bind-to ADDR`` on its host. The cookie goes down the session's stdin (never argv) and stdin
stays open, so the worker exits when the session ends; the worker's stdout (ssh's stderr
merged in) is the config's ``io``, where the master reads its address line and then its
output. With ``tunnel=True`` the master reaches the worker through an ``ssh -L`` forward;
workers always reach each other directly. With ``multiplex=True`` the sessions to one host
share one connection (an ssh ControlMaster that outlives its last session by a few seconds).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import LaunchError
from ._base import ClusterManager, ManageOp, WorkerConfig, read_worker_address, worker_timeout
from ._local import _reap, worker_command
from ._sshspec import Machine, parse_machine, remote_command

__all__ = ("SSHManager",)

# Seconds an idle multiplexing master outlives its last session: long enough to carry the
# sessions of one addprocs, short enough that nothing lingers after the workers are gone.
_CONTROL_PERSIST = 2
_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class _Settings:
    """The SSH-related keywords of one ``addprocs``, checked."""

    ssh: str
    sshflags: list[str]
    tunnel: bool
    multiplex: bool
    max_parallel: int
    shell: str
    exename: str
    exeflags: list[str]
    dir: str | None
    env: dict[str, str]
    cookie: str
    enable_threaded_blas: bool

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> _Settings:
        flags = params.get("sshflags") or ()
        sshflags = [flags] if isinstance(flags, str) else [str(f) for f in flags]
        exeflags = params.get("exeflags") or ()
        max_parallel = params.get("max_parallel", 10)
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int):
            raise TypeError("max_parallel must be an int")
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        env = {str(k): str(v) for k, v in dict(params.get("env") or {}).items()}
        # As Julia passes JULIA_WORKER_TIMEOUT: the worker waits as long as the master does.
        if "PYDISTRIBUTED_WORKER_TIMEOUT" in os.environ:
            env.setdefault(
                "PYDISTRIBUTED_WORKER_TIMEOUT", os.environ["PYDISTRIBUTED_WORKER_TIMEOUT"]
            )
        if not params.get("enable_threaded_blas"):
            for name in _BLAS_THREADS:
                env.setdefault(name, "1")
        settings = cls(
            ssh=str(params.get("ssh") or "ssh"),
            sshflags=sshflags,
            tunnel=bool(params.get("tunnel")),
            multiplex=bool(params.get("multiplex")),
            max_parallel=max_parallel,
            shell=str(params.get("shell", "posix")),
            exename=str(params.get("exename") or "python3"),
            exeflags=[exeflags] if isinstance(exeflags, str) else [str(f) for f in exeflags],
            dir=params.get("dir") or None,
            env=env,
            cookie=str(params.get("cookie", "")),
            enable_threaded_blas=bool(params.get("enable_threaded_blas")),
        )
        remote_command(settings.shell, [], settings.dir, settings.env)  # checks shell, env
        return settings

    def flags_for(self, machine: Machine) -> list[str]:
        """ssh options for ``machine``: the user's, its port, multiplexing."""
        flags = list(self.sshflags)
        if machine.port is not None:
            flags += ["-p", str(machine.port)]
        if self.multiplex:
            flags += [
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={_control_dir()}/%C",
                "-o",
                f"ControlPersist={_CONTROL_PERSIST}",
            ]
        return flags

    def command(self, machine: Machine, argv: Sequence[str]) -> list[str]:
        """The full ssh command line running ``argv`` on ``machine``."""
        remote = remote_command(self.shell, argv, self.dir, self.env)
        return [
            self.ssh,
            "-T",  # no pseudo-terminal: the worker's stdio are the session's pipes
            "-a",
            "-x",
            "-o",
            "ClearAllForwardings=yes",
            *self.flags_for(machine),
            machine.destination,
            remote,
        ]


def _control_dir() -> str:
    """A private directory for ControlMaster sockets (``%C`` names are per host)."""
    path = os.path.join(tempfile.gettempdir(), f"pydistributed-ssh-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise LaunchError(f"{path} must be a directory private to this user")
    return path


@dataclass
class _Session:
    """One worker's ssh session: what SSHManager keeps in ``WorkerConfig.userdata``."""

    machine: Machine
    settings: _Settings
    gate: threading.BoundedSemaphore  # held from the start until ``started``
    started: threading.Event = field(default_factory=threading.Event)
    connected: bool = False  # the master got the worker's address and dials it
    ended: bool = False  # the ssh process exited
    forward: list[str] = field(default_factory=list)  # ssh -O cancel arguments (multiplex)
    tunnel: subprocess.Popen[bytes] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark_started(self, connected: bool) -> None:
        """The session is no longer starting: the master read the worker's address
        (``connected``), or the session ended first. Lets the next session start."""
        with self.lock:
            if self.started.is_set():
                return
            self.connected = connected
            self.started.set()
        self.gate.release()


class SSHManager(ClusterManager):
    """Starts workers over SSH (``addprocs(machines)`` builds one).

    Args:
        machines: entries ``"[user@]host[:port] [bind_addr[:port]]"`` or ``(spec, count)``
            with ``count`` an int or ``"auto"`` (as many workers as the host has cores).
            The same spec given twice adds up its counts.

    Raises:
        ValueError: a malformed spec or count.
    """

    __module__ = "pydistributed"

    def __init__(self, machines: Iterable[str | tuple[str, int | str]]) -> None:
        counts: dict[str, int | str] = {}
        for entry in machines:
            spec, count = entry if isinstance(entry, tuple) else (entry, 1)
            parse_machine(spec)
            if count == "auto":
                counts[spec] = "auto"
            elif isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                previous = counts.get(spec, 0)
                counts[spec] = previous + count if isinstance(previous, int) else count
            else:
                raise ValueError(f"worker count of {spec!r} must be an int >= 0 or 'auto'")
        self.machines = counts

    def __repr__(self) -> str:
        return f"SSHManager(machines={self.machines!r})"

    @staticmethod
    def default_params() -> dict[str, Any]:
        """The keywords ``addprocs(machines)`` adds to :func:`default_addprocs_params`."""
        return {
            "tunnel": False,
            "multiplex": False,
            "ssh": "ssh",
            "sshflags": (),
            "max_parallel": 10,
            "shell": "posix",
            "exename": "python3",
        }

    @staticmethod
    def check_params(params: dict[str, Any]) -> None:
        """Raise ``ValueError``/``TypeError`` for keywords this manager cannot use."""
        _Settings.from_params(params)

    # -- launching ----------------------------------------------------------------------------

    def launch(
        self,
        params: dict[str, Any],
        launched: list[WorkerConfig],
        launch_ntfy: threading.Condition,
    ) -> None:
        """Start the ssh sessions: hosts in parallel; on each host the first worker alone,
        then (if it came up) the others in parallel; at most ``max_parallel`` sessions
        starting at once (a session is starting until the master has read its worker's
        address, or it ended).

        Each config's ``io`` is the session's stdout (ssh's stderr merged): the master reads
        the worker's address there, within ``PYDISTRIBUTED_WORKER_TIMEOUT``, and reports
        what a failed session printed. Raises :class:`LaunchError` when a host's cores could
        not be counted or its first worker failed (its other workers are then not started);
        the sessions that were started are all in ``launched`` by then.
        """
        settings = _Settings.from_params(params)
        gate = threading.BoundedSemaphore(settings.max_parallel)
        errors: list[str] = []

        def start(machine: Machine) -> _Session:
            config = self._start_session(machine, settings, gate)
            with launch_ntfy:
                launched.append(config)
                launch_ntfy.notify_all()
            session: _Session = config.userdata
            return session

        guard = threading.Lock()
        openers: dict[tuple[str, int | None], threading.Lock] = {}
        opened: set[tuple[str, int | None]] = set()

        def on_machine(spec: str, count: int | str) -> None:
            machine = parse_machine(spec)
            key = (machine.destination, machine.port)
            with guard:
                opener = openers.setdefault(key, threading.Lock())
            try:
                # The first ssh to a host runs alone (several specs may name one host): with
                # multiplexing it becomes that host's master, which the others then use.
                with opener:
                    if count == "auto":
                        n = self._count_cores(machine, settings, gate)
                        opened.add(key)
                    else:
                        n = int(count)
                    if key not in opened and n > 0:
                        first = start(machine)
                        first.started.wait()
                        if not first.connected:
                            raise LaunchError(f"first worker failed; {n - 1} more not started")
                        opened.add(key)
                        n -= 1
                _in_threads([lambda: start(machine)] * n, errors, spec)
            except Exception as exc:
                errors.append(f"{spec}: {exc}")

        tasks = [lambda s=s, c=c: on_machine(s, c) for s, c in self.machines.items()]
        _in_threads(tasks, errors, "launch")
        if errors:
            raise LaunchError("\n".join(errors))

    def _start_session(
        self, machine: Machine, settings: _Settings, gate: threading.BoundedSemaphore
    ) -> WorkerConfig:
        argv = worker_command(settings.exename, settings.exeflags, machine.bind_to)
        command = settings.command(machine, argv)
        gate.acquire()
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            gate.release()
            raise
        session = _Session(machine, settings, gate)
        threading.Thread(target=_watch_session, args=(process, session), daemon=True).start()
        assert process.stdin is not None
        try:
            # The cookie goes through stdin, never argv; stdin stays open so that the worker
            # exits when the session (or this process) goes away.
            process.stdin.write(settings.cookie.encode() + b"\n")
            process.stdin.flush()
        except OSError:
            pass  # ssh already exited: what it printed says why
        return WorkerConfig(
            io=process.stdout,
            host=machine.host,
            process=process,
            exename=settings.exename,
            exeflags=tuple(settings.exeflags),
            userdata=session,
            tunnel=settings.tunnel,
            multiplex=settings.multiplex,
            bind_addr=_dial_address(machine),
            sshflags=tuple(settings.flags_for(machine)),
            max_parallel=settings.max_parallel,
            environ=dict(settings.env),
            enable_threaded_blas=settings.enable_threaded_blas,
        )

    def _count_cores(
        self, machine: Machine, settings: _Settings, gate: threading.BoundedSemaphore
    ) -> int:
        argv = [settings.exename, "-c", "import os; print(os.cpu_count() or 1)"]
        command = settings.command(machine, argv)
        with gate:
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    timeout=worker_timeout(),
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired as exc:
                raise LaunchError(
                    f"counting the cores of {machine.destination} timed out; ssh printed:\n"
                    + (exc.output or b"").decode(errors="replace")
                ) from None
        output = result.stdout.decode(errors="replace")
        lines = output.split()
        if result.returncode != 0 or not lines or not lines[-1].isdigit():
            raise LaunchError(
                f"could not count the cores of {machine.destination}; ssh printed:\n{output}"
            )
        return int(lines[-1])

    # -- connecting ---------------------------------------------------------------------------

    def connect(self, pid: int, config: WorkerConfig) -> tuple[Any, Any]:
        """Dial the worker: directly, or with ``tunnel`` through an ``ssh -L`` forward from
        a local port to the worker's address as seen from its host (``config.forward``)."""
        if config.port is None:
            read_worker_address(config)
        session = config.userdata
        if not isinstance(session, _Session):
            return super().connect(pid, config)
        session.mark_started(connected=True)
        if not config.tunnel or config.port is None:
            return super().connect(pid, config)
        # The worker's bind address, as seen from its own host. The tunnel is closed when
        # the session ends (_watch_session) or the worker is deregistered.
        target = session.machine.bind_addr or "127.0.0.1"
        sock = _open_tunnel(session, target, config.port, config)
        return sock, sock

    # -- life cycle ---------------------------------------------------------------------------

    def manage(self, pid: int, config: WorkerConfig, op: ManageOp) -> None:
        """On ``"deregister"`` reap the ssh session and close its tunnel. (``interrupt()``
        reaches the worker over its cluster connection, so ``"interrupt"`` needs nothing.)"""
        if op != "deregister":
            return
        process: subprocess.Popen[bytes] | None = config.process
        if process is not None:
            _reap(process)
        if isinstance(config.userdata, _Session):
            _close_tunnel(config.userdata)

    def kill(self, pid: int, config: WorkerConfig) -> None:
        """Ask the worker to exit; end its ssh session if still there after 5 s."""
        super().kill(pid, config)
        process: subprocess.Popen[bytes] | None = config.process
        if process is not None:
            threading.Thread(target=_reap, args=(process, 5.0), daemon=True).start()


def _dial_address(machine: Machine) -> str | None:
    """Where the master and the other workers reach the worker: its bind address, else the
    host ssh reached (the worker listens on every interface there) when it resolves here,
    else (None) the address the worker prints."""
    if machine.bind_addr:
        return machine.bind_addr
    try:
        socket.getaddrinfo(machine.host, None)
    except OSError:
        return None
    return machine.host


def _in_threads(tasks: list[Any], errors: list[str], what: str) -> None:
    def run(task: Any) -> None:
        try:
            task()
        except Exception as exc:
            errors.append(f"{what}: {exc}")

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _open_tunnel(session: _Session, target: str, port: int, config: WorkerConfig) -> socket.socket:
    """Forward a free local port to ``target:port`` on the worker's host (Julia's
    ``ssh_tunnel``) and return a socket connected through it. A port taken between choosing
    it and ssh binding it makes ssh fail (``ExitOnForwardFailure``): try another."""
    settings, machine = session.settings, session.machine
    flags = settings.flags_for(machine)
    deadline = time.monotonic() + worker_timeout()
    output = ""
    for _ in range(5):
        local = _free_port()
        spec = f"127.0.0.1:{local}:{target}:{port}"
        config.forward = f"{local}:{target}:{port}"
        if settings.multiplex:
            # Ask the host's ControlMaster for the forward; it is set up when ssh returns.
            args = [*flags, "-L", spec, machine.destination]
            try:
                result = subprocess.run(
                    [settings.ssh, "-O", "forward", *args],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
            except subprocess.TimeoutExpired:
                break
            output = (result.stdout + result.stderr).decode(errors="replace")
            if result.returncode != 0:
                continue
            try:
                sock = socket.create_connection(("127.0.0.1", local), timeout=30)
            except OSError as exc:
                _cancel_forward(settings.ssh, args)
                raise LaunchError(f"ssh tunnel to {machine.destination} failed: {exc}") from exc
            _keep(session, sock, forward=args)
            return sock
        # The remote command ends at EOF of the tunnel's stdin, held by this process: the
        # tunnel cannot outlive the master.
        tunnel = subprocess.Popen(
            [
                settings.ssh,
                "-T",
                "-a",
                "-x",
                "-o",
                "ExitOnForwardFailure=yes",
                *flags,
                "-L",
                spec,
                machine.destination,
                "cat >/dev/null",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while tunnel.poll() is None and time.monotonic() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", local), timeout=30)
            except ConnectionRefusedError:
                time.sleep(0.02)
                continue
            except OSError as exc:
                _stop_tunnel(tunnel)
                if tunnel.stdout is not None:
                    tunnel.stdout.close()
                raise LaunchError(f"ssh tunnel to {machine.destination} failed: {exc}") from exc
            _keep(session, sock, tunnel=tunnel)
            return sock
        _stop_tunnel(tunnel)
        assert tunnel.stdout is not None
        output = tunnel.stdout.read().decode(errors="replace")
        tunnel.stdout.close()
        if time.monotonic() >= deadline:
            break
    raise LaunchError(f"could not open an ssh tunnel to {machine.destination}: {output}")


def _stop_tunnel(tunnel: subprocess.Popen[bytes]) -> None:
    _reap(tunnel, grace=0)


def _close_tunnel(session: _Session) -> None:
    with session.lock:
        tunnel, session.tunnel = session.tunnel, None
        args, session.forward = session.forward, []
    if tunnel is not None:
        _stop_tunnel(tunnel)
        if tunnel.stdout is not None:
            tunnel.stdout.close()
    if args:
        _cancel_forward(session.settings.ssh, args)


def _cancel_forward(ssh: str, args: list[str]) -> None:
    try:
        subprocess.run(
            [ssh, "-O", "cancel", *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        pass


def _watch_session(process: subprocess.Popen[bytes], session: _Session) -> None:
    """Wait for the session's end: it is no longer starting, and its tunnel goes."""
    process.wait()
    session.mark_started(connected=False)
    with session.lock:
        session.ended = True
    _close_tunnel(session)


def _keep(session: _Session, sock: socket.socket, tunnel: Any = None, forward: Any = None) -> None:
    """Record the tunnel of a session, unless the session ended meanwhile."""
    with session.lock:
        session.tunnel = tunnel
        session.forward = forward or []
        ended = session.ended
    if ended:
        sock.close()
        _close_tunnel(session)
        raise LaunchError(f"ssh session to {session.machine.destination} ended")
