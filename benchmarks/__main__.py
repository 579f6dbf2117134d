"""``python -m benchmarks``: measure pydistributed and its peers, print and save the tables."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from benchmarks._config import Config
from benchmarks._families import FAMILIES
from benchmarks._isolate import ROOT, run_session
from benchmarks._peers import PEERS
from benchmarks._plan import Request, Results, SessionResult, group
from benchmarks._report import machine_info, render_terminal, write
from benchmarks._summary import checks


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run (small counts)")
    parser.add_argument(
        "--only",
        metavar="FAMILY[,FAMILY]",
        help=f"families to run, among: {', '.join(FAMILIES)}",
    )
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="workers (default 2)")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results",
        metavar="DIR",
        help="output directory (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    if args.only:
        args.families = [f.strip() for f in args.only.split(",") if f.strip()]
        unknown = [f for f in args.families if f not in FAMILIES]
        if unknown:
            parser.error(f"unknown family {', '.join(unknown)}; choose among {', '.join(FAMILIES)}")
    else:
        args.families = list(FAMILIES)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def measure(cfg: Config, requests: list[Request], log_dir: Path) -> Results:
    results = Results()
    sessions = group(requests, list(PEERS))
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    for i, (peer, n, reqs) in enumerate(sessions, 1):
        info = PEERS[peer]
        prefix = f"[{i}/{len(sessions)}] {info.label} n={n}"
        missing = info.missing()
        if missing:
            print(f"{prefix}: not installed ({missing})", file=sys.stderr, flush=True)
            results.add(SessionResult(peer, n, status="not installed"))
            continue
        print(f"{prefix}: {', '.join(r.key for r in reqs)} ...", file=sys.stderr, flush=True)
        result = run_session(
            peer,
            n,
            reqs,
            op_timeout=cfg.op_timeout,
            lifecycle_timeout=cfg.lifecycle_timeout,
            rep_budget=cfg.rep_budget,
            timeout=cfg.session_timeout,
            log=log_dir / f"{peer}-n{n}.log",
        )
        errors = [k for k, v in result.values.items() if isinstance(v, str)]
        extra = f", errors in {', '.join(errors)}" if errors else ""
        extra += f", killed {result.leftovers} leftover processes" if result.leftovers else ""
        print(f"{prefix}: done in {result.wall_s:.1f} s{extra}", file=sys.stderr, flush=True)
        results.add(result)
    return results


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into SystemExit so that the running session is cleaned up in its finally.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)
    cfg = Config.make(quick=args.quick, workers=args.workers)
    families = [FAMILIES[f] for f in args.families]
    t0 = time.monotonic()
    machine = machine_info()
    out_dir: Path = args.out.resolve()
    requests = [r for fam in families for r in fam.requests(cfg)]
    results = measure(cfg, requests, out_dir / "logs")
    tables = [t for fam in families for t in fam.tables(cfg, results)]
    summary = checks(cfg, results)
    duration = time.monotonic() - t0
    print()
    print(render_terminal(machine, tables, summary))
    sessions = [s.as_dict() for s in results.sessions.values()]
    config = {**cfg.as_dict(), "families": args.families}
    md, js = write(out_dir, machine, config, tables, summary, sessions, duration)
    print(f"\nWrote {md} and {js} ({duration:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
