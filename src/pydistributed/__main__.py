"""Command line: ``python -m pydistributed --worker``, ``python -m pydistributed -p N script``."""

from __future__ import annotations

import argparse
import runpy
import sys

__all__ = ("load_machine_file", "main")


def load_machine_file(path: str) -> list[str | tuple[str, int | str]]:
    """The machines of a ``--machine-file``, as Julia reads one.

    Each non-empty line is ``[count*][user@]host[:port] [bind_addr[:port]]``: with a count
    (an int, or ``auto`` for one worker per core) the entry is ``(spec, count)``, else the
    spec alone. Lines starting with ``#`` are skipped.
    """
    machines: list[str | tuple[str, int | str]] = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [part.strip() for part in line.split("*") if part.strip()]
            if len(parts) > 1:
                count = parts[0]
                machines.append((parts[1], int(count) if count.isdigit() else count))
            else:
                machines.append(parts[0])
    return machines


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pydistributed``."""
    parser = argparse.ArgumentParser(prog="python -m pydistributed")
    parser.add_argument("--worker", action="store_true", help="run as a worker process")
    parser.add_argument("--cookie", help="cluster cookie (default: first line of stdin)")
    parser.add_argument("--bind-to", default="0.0.0.0", help="address[:port] a worker listens on")
    parser.add_argument("-p", "--procs", type=int, default=0, help="local workers to add")
    parser.add_argument("--machine-file", help="file of SSH machine specs, one per line")
    parser.add_argument(
        "script",
        nargs="?",
        help="script to run on the master (default: the interactive console, or the "
        "program read from stdin when it is not a terminal; '-' reads stdin too)",
    )
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
        dist.addprocs(load_machine_file(options.machine_file))
    try:
        if options.script and options.script != "-":
            sys.argv = [options.script, *options.args]
            runpy.run_path(options.script, run_name="__main__")
        else:
            sys.argv = ["-", *options.args]
            _run_stdin()
    finally:
        if dist.nprocs() > 1:
            dist.rmprocs(dist.workers(), waitfor=10)
    return 0


def _run_stdin() -> None:
    """As ``julia -p N``: the interactive console on a terminal, else the program on stdin,
    in ``__main__`` (so what it defines ships to workers by value)."""
    namespace = sys.modules["__main__"].__dict__
    namespace.setdefault("dist", sys.modules["pydistributed"])
    if sys.stdin.isatty():
        import code

        code.interact(
            banner=f"pydistributed: {len(namespace['dist'].workers())} workers; "
            "the package is imported as dist",
            local=namespace,
            exitmsg="",
        )
    else:
        exec(compile(sys.stdin.read(), "<stdin>", "exec"), namespace)


if __name__ == "__main__":
    sys.exit(main())
