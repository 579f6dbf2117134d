"""The examples run as written, as their own programs, and leave no process behind."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "PYDISTRIBUTED_EXAMPLE_TEST"


def marked_processes(token: str) -> list[int]:
    """Live processes whose environment carries ``MARKER=token`` (workers inherit it)."""
    needle = f"{MARKER}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def run_example(name: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    token = secrets.token_hex(8)
    env = {**os.environ, MARKER: token}
    try:
        return subprocess.run(
            [sys.executable, str(ROOT / "examples" / name)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        deadline = time.monotonic() + 10
        while (left := marked_processes(token)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"{name} left processes running: {left}"


def test_jobs_results() -> None:
    done = run_example("jobs_results.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    pattern = re.compile(r"(\d+) finished in (\d+\.\d\d) seconds on worker (\d+)")
    matches = [pattern.fullmatch(line) for line in lines[:-1]]
    assert all(matches), done.stdout
    jobs = [int(m[1]) for m in matches if m]
    times = [float(m[2]) for m in matches if m]
    where = {int(m[3]) for m in matches if m}
    assert sorted(jobs) == list(range(1, 13))
    assert all(0 <= t <= 1 for t in times)
    assert where <= {2, 3, 4, 5}
    assert len(where) >= 2  # the jobs were shared out
    assert re.fullmatch(r"elapsed: \d+\.\d\d seconds", lines[-1])
