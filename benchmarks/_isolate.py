"""Run one session in its own subprocess and leave no process behind.

Every process of a session inherits a random marker in its environment. After the session
subprocess exits (or is killed at its timeout), the processes that still carry the marker --
workers, schedulers or daemons a peer failed to stop -- are killed by pid and counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._plan import Request, SessionResult

MARKER = "PYDIST_BENCH_SESSION"
ROOT = Path(__file__).resolve().parent.parent


def marked_pids(token: str) -> list[int]:
    """Pids of live processes whose environment carries ``MARKER=token``."""
    needle = f"{MARKER}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def sweep(token: str, grace: float = 3.0) -> int:
    """Wait up to ``grace`` seconds for marked processes to exit, then kill them; return count."""
    end = time.monotonic() + grace
    while (pids := marked_pids(token)) and time.monotonic() < end:
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _env(token: str) -> dict[str, str]:
    env = dict(os.environ)
    env[MARKER] = token
    # Workers of every peer (Ray's, ipyparallel's engines...) must import benchmarks._tasks.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def _run_once(
    peer: str, n: int, ops: list[Request], timeouts: dict[str, float], timeout: float, log: Path
) -> tuple[dict[str, Any], int, str | None]:
    """One subprocess: returns (what it recorded, leftovers killed, why it ended badly)."""
    token = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="pydist-bench-") as tmp:
        spec_path, out_path = Path(tmp, "spec.json"), Path(tmp, "out.json")
        spec = {"peer": peer, "n": n, **timeouts, "ops": [r.spec() for r in ops]}
        spec_path.write_text(json.dumps(spec))
        problem = None
        with log.open("ab") as log_file:
            log_file.write(f"\n=== {peer} n={n} ops={[r.key for r in ops]}\n".encode())
            log_file.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks._child", str(spec_path), str(out_path)],
                cwd=ROOT,
                env=_env(token),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
                if code != 0:
                    problem = f"error: session process exited with code {code}"
            except subprocess.TimeoutExpired:
                problem = f"error: session timeout after {timeout:g} s"
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                t_exit = time.monotonic()
                leftovers = sweep(token)
                _kill_group(proc)
                log_file.write(
                    f"=== exit code {proc.returncode}, cleanup {time.monotonic() - t_exit:.2f} s, "
                    f"{leftovers} leftover processes killed\n".encode()
                )
        recorded: dict[str, Any] = {"current": None, "values": {}}
        with contextlib.suppress(OSError, ValueError):
            recorded = json.loads(out_path.read_text())
    return recorded, leftovers, problem


def run_session(
    peer: str,
    n: int,
    ops: list[Request],
    *,
    op_timeout: float,
    lifecycle_timeout: float,
    rep_budget: float,
    timeout: float,
    log: Path,
) -> SessionResult:
    """Measure ``ops`` on a session of ``peer`` with ``n`` workers, resuming after a failure.

    ``op_timeout`` bounds each measurement, ``lifecycle_timeout`` the start and the stop, and
    ``timeout`` the whole session; repeated runs of a measurement stop after ``rep_budget`` s.
    """
    timeouts = {
        "op_timeout": op_timeout,
        "lifecycle_timeout": lifecycle_timeout,
        "rep_budget": rep_budget,
    }
    result = SessionResult(peer, n)
    t0 = time.monotonic()
    todo = [r for r in ops if r.op != "startup"]
    while True:
        remaining = timeout - (time.monotonic() - t0)
        if remaining <= 0:
            for r in todo:
                result.values.setdefault(r.key, "error: session timeout")
            break
        recorded, leftovers, problem = _run_once(peer, n, todo, timeouts, remaining, log)
        result.runs += 1
        result.leftovers += leftovers
        before = len(result.values)
        for key, value in recorded.get("values", {}).items():
            result.values.setdefault(key, value)  # the first startup/teardown counts
        if problem and recorded.get("current"):
            result.values.setdefault(recorded["current"], problem)
        todo = [r for r in todo if r.key not in result.values]
        if not todo or not problem or len(result.values) == before:
            for r in todo:
                result.values.setdefault(r.key, problem or "error: not measured")
            break
    result.wall_s = time.monotonic() - t0
    return result
