"""Command line: ``python -m pydistributed --worker``, ``python -m pydistributed -p N script``."""

from __future__ import annotations

import argparse
import runpy
import sys

__all__ = ("main",)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pydistributed``."""
    parser = argparse.ArgumentParser(prog="python -m pydistributed")
    parser.add_argument("--worker", action="store_true", help="run as a worker process")
    parser.add_argument("--cookie", help="cluster cookie (default: first line of stdin)")
    parser.add_argument("--bind-to", default="0.0.0.0", help="address[:port] a worker listens on")
    parser.add_argument("-p", "--procs", type=int, default=0, help="local workers to add")
    parser.add_argument("--machine-file", help="file of SSH machine specs, one per line")
    parser.add_argument("script", nargs="?", help="script to run on the master")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the script")
    options = parser.parse_args(argv)
    if options.worker:
        from ._worker import start_worker

        start_worker(sys.stdout, options.cookie, bind_to=options.bind_to)
        return 0
    import pydistributed as dist

    if options.procs:
        dist.addprocs(options.procs)
    if options.machine_file:
        with open(options.machine_file) as f:
            machines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        dist.addprocs(machines)
    try:
        if options.script:
            sys.argv = [options.script, *options.args]
            runpy.run_path(options.script, run_name="__main__")
    finally:
        if dist.nprocs() > 1:
            dist.rmprocs(dist.workers(), waitfor=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
