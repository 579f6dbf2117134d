"""LocalManager: workers as child processes on this host."""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any

from .. import _samehost
from ._base import ClusterManager, ManageOp, WorkerConfig

__all__ = ("LocalManager", "worker_command")


def worker_command(exename: str, exeflags: Any, bind_to: str) -> list[str]:
    """The command line that starts a worker."""
    flags = [exeflags] if isinstance(exeflags, str) else list(exeflags or ())
    return [exename, *flags, "-m", "pydistributed", "--worker", "--bind-to", bind_to]


class LocalManager(ClusterManager):
    """Starts ``np`` workers on this host, each reading the cookie from its stdin.

    Args:
        np: number of workers.
        restrict: bind the workers to 127.0.0.1 (default) rather than every interface.
    """

    __module__ = "pydistributed"

    def __init__(self, np: int, restrict: bool = True) -> None:
        if np < 0:
            raise ValueError("number of workers must be >= 0")
        self.np = np
        self.restrict = restrict

    def __repr__(self) -> str:
        return f"LocalManager(np={self.np}, restrict={self.restrict})"

    def launch(
        self,
        params: dict[str, Any],
        launched: list[WorkerConfig],
        launch_ntfy: threading.Condition,
    ) -> None:
        """Start the processes; each config's ``io`` is the worker's stdout (stderr merged)."""
        env = dict(os.environ)
        env.update(params.get("env") or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        # The worker must import this very package, wherever the master found it.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        if not params.get("enable_threaded_blas"):
            for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env.setdefault(name, "1")
        bind_to = "127.0.0.1" if self.restrict else "0.0.0.0"
        command = worker_command(params["exename"], params["exeflags"], bind_to)
        cookie = params["cookie"]
        for _ in range(self.np):
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=params["dir"],
                env=env,
                start_new_session=True,
            )
            assert process.stdin is not None
            # The cookie goes through stdin, never argv (other users can read argv).
            # stdin stays open: the worker exits when it reaches EOF (the master is gone).
            process.stdin.write(cookie.encode() + b"\n")
            process.stdin.flush()
            config = WorkerConfig(
                io=process.stdout,
                process=process,
                ospid=process.pid,
                exename=params["exename"],
                exeflags=tuple(params["exeflags"] or ()),
                bind_addr="127.0.0.1" if self.restrict else None,
                enable_threaded_blas=params.get("enable_threaded_blas"),
            )
            with launch_ntfy:
                launched.append(config)
                launch_ntfy.notify_all()

    def connect(self, pid: int, config: WorkerConfig) -> tuple[Any, Any]:
        """Connect over the worker's Unix socket (see ``_samehost``), else over TCP."""
        sock = _samehost.connect(_samehost.address(config.ospid)) if config.ospid else None
        if sock is None:
            return super().connect(pid, config)
        return sock, sock

    def manage(self, pid: int, config: WorkerConfig, op: ManageOp) -> None:
        """On ``"deregister"`` reap the process. (``interrupt()`` reaches local workers over
        their cluster connection, so ``"interrupt"`` needs nothing more here.)"""
        process: subprocess.Popen[bytes] | None = config.process
        if process is not None and op == "deregister":
            _reap(process)

    def kill(self, pid: int, config: WorkerConfig) -> None:
        """Ask the worker to exit; kill the process if it is still there after 5 s."""
        super().kill(pid, config)
        process: subprocess.Popen[bytes] | None = config.process
        if process is not None:
            threading.Thread(target=_reap, args=(process, 5.0), daemon=True).start()


def _reap(process: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdin is not None:
        try:
            process.stdin.close()
        except OSError:
            pass
