"""3. Bandwidth: a float64 NumPy array sent to a worker that sums it, and echoed back."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families._common import ALL_PEERS, cells, how_notes, label, ratio
from benchmarks._plan import Request, Results
from benchmarks._table import Column, Table

NAME = "bandwidth"
# pydistributed twice: as it runs (shared memory between processes of one machine), and
# with shared memory turned off (TCP, as between machines).
PEERS = [*ALL_PEERS[:3], "pydistributed_tcp", *ALL_PEERS[3:]]


def request(cfg: Config, peer: str, n: int) -> Request:
    return Request(peer, n, "bandwidth", (("mb", cfg.bw_mb), ("reps", cfg.bw_reps)))


def requests(cfg: Config) -> list[Request]:
    return [request(cfg, p, cfg.workers) for p in PEERS]


def tables(cfg: Config, results: Results) -> list[Table]:
    w = cfg.workers
    key = request(cfg, "", w).key
    raw = results.number("raw_tcp", w, key, "echo_MBps")
    table = Table(
        NAME,
        f"3. Bandwidth: {cfg.bw_mb} MB float64 array, {w} workers",
        [
            Column("peer"),
            Column("MB", "{:d}"),
            Column("send+sum MB/s", "{:,.0f}"),
            Column("echo MB/s", "{:,.0f}"),
            Column("echo % raw", "{:.0%}"),
        ],
    )
    for peer in PEERS:
        value = results.get(peer, w, key)
        echo = results.number(peer, w, key, "echo_MBps")
        table.rows.append(
            [label(peer), *cells(value, ["mb", "sum_MBps", "echo_MBps"]), ratio(echo, raw)]
        )
    table.notes = [
        f"median of up to {cfg.bw_reps} runs after a warm-up; echo MB/s counts {cfg.bw_mb} MB",
        "raw TCP: sendall/recv_into of the array's bytes between two processes, buffers reused",
        "pydistributed: shared memory (same host); 'TCP only': PYDISTRIBUTED_SHM=0 and "
        "PYDISTRIBUTED_UNIX_SOCKETS=0 on the workers",
    ]
    table.notes += how_notes(results, PEERS[1:], w, key)
    return [table]
