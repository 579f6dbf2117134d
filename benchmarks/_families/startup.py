"""4. Startup and teardown: seconds until every worker has run a call, and to shut down."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families._common import label, skipped
from benchmarks._plan import Request, Results
from benchmarks._table import Cell, Column, Table

NAME = "startup"
PEERS = ["pydistributed", "mp_pool", "cf_executor", "loky", "dask", "ray", "ipyparallel"]
HOW = {
    "pydistributed": "addprocs(n); remotecall_fetch(identity, p, 1) per worker; rmprocs(workers())",
    "mp_pool": "Pool(n); rounds of map(pid_after) until n pids answered; close+join",
    "cf_executor": "ProcessPoolExecutor(n); rounds of map(pid_after) until n pids; shutdown()",
    "loky": "get_reusable_executor(n); rounds of map(pid_after) until n pids; shutdown()",
    "dask": "LocalCluster+Client; submit(identity, workers=[a]) per worker; close both",
    "ray": "ray.init(num_cpus=n); rounds of pid_after tasks until n pids; ray.shutdown()",
    "ipyparallel": "Cluster(n).start_and_connect_sync(); rc[:].apply_sync(identity); stop",
}


def requests(cfg: Config) -> list[Request]:
    return [
        Request(p, n, "startup") for n in cfg.startup_sizes for p in PEERS if not skipped(cfg, p, n)
    ]


def _seconds(results: Results, peer: str, n: int, key: str) -> Cell:
    value = results.get(peer, n, key)
    return value["seconds"] if isinstance(value, dict) else value


def tables(cfg: Config, results: Results) -> list[Table]:
    columns = [Column("peer")]
    for n in cfg.startup_sizes:
        columns += [Column(f"ready {n} (s)", "{:.3f}"), Column(f"teardown {n} (s)", "{:.3f}")]
    table = Table(NAME, "4. Startup and teardown", columns)
    for peer in PEERS:
        row: list[Cell] = [label(peer)]
        for n in cfg.startup_sizes:
            if skipped(cfg, peer, n):
                row += ["skipped (--quick)", None]
            else:
                row += [
                    _seconds(results, peer, n, "startup"),
                    _seconds(results, peer, n, "teardown"),
                ]
        table.rows.append(row)
    table.notes = [
        "ready = from the start call until a call has run on every worker (import excluded)",
        "teardown is measured at the end of the session, after the other measurements ran",
    ]
    table.notes += [f"{label(p)}: {HOW[p]}" for p in PEERS]
    return [table]
