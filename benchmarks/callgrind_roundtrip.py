"""Instructions per ``remotecall_fetch(identity, w, 1)`` round trip, caller and worker apart.

Both processes run under ``valgrind --tool=callgrind`` with collection off; it is switched on
for ``N`` calls after a warm-up, so the counts are of the round trips alone (user space only:
the kernel's share is not in them). Unlike a timing, the count is the same from run to run,
which makes it the measure for changes of a few percent on a noisy machine. The worker's
watchdog and reader hand-over are slowed down for the run (valgrind makes everything ~50x
slower, which would otherwise hand the reading role around on every call).

Usage: ``python benchmarks/callgrind_roundtrip.py [N]`` (default 1000; needs valgrind).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_WORKER_SETUP = "import pydistributed._engine as e; e.STALE = 1.0; e._TICK = 0.5"


def _measure(n: int) -> None:
    import pydistributed as dist
    from benchmarks._tasks import identity

    [w] = dist.addprocs(1, exename=os.environ["CALLGRIND_PYTHON"])
    try:
        wpid = dist.remotecall_fetch(os.getpid, w)
        dist.remotecall_fetch(exec, w, _WORKER_SETUP)
        for _ in range(300):
            dist.remotecall_fetch(identity, w, 1)
        for pid in (os.getpid(), wpid):
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True)
        for _ in range(n):
            dist.remotecall_fetch(identity, w, 1)
        for pid in (os.getpid(), wpid):
            subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True)
        print(f"PIDS {os.getpid()} {wpid}", flush=True)
    finally:
        dist.rmprocs([w])


def _total(path: Path) -> int:
    out = subprocess.run(["callgrind_annotate", str(path)], capture_output=True, text=True)
    match = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", out.stdout)
    return int(match.group(1).replace(",", "")) if match else 0


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "python"
        wrapper.write_text(
            "#!/bin/sh\nexec valgrind -q --tool=callgrind --instr-atstart=no "
            f"--separate-threads=yes --callgrind-out-file={tmp}/cg.%p.out "
            f'{sys.executable} "$@"\n'
        )
        wrapper.chmod(0o755)
        env = {
            **os.environ,
            "CALLGRIND_PYTHON": str(wrapper),
            "PYDISTRIBUTED_WORKER_TIMEOUT": "300",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), *sys.path]),
        }
        code = f"from benchmarks.callgrind_roundtrip import _measure; _measure({n})"
        run = subprocess.run(
            [str(wrapper), "-c", code],
            env=env,
            capture_output=True,
            text=True,
        )
        found = re.search(r"PIDS (\d+) (\d+)", run.stdout)
        if not found:
            print(run.stdout + run.stderr, file=sys.stderr)
            return 1
        for name, pid in zip(("caller", "worker"), found.groups(), strict=True):
            total = sum(_total(p) for p in Path(tmp).glob(f"cg.{pid}.out*"))
            print(f"{name}: {total / n:,.0f} instructions per round trip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
