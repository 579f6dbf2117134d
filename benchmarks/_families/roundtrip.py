"""1. Round trip of a trivial call ``identity(1)``: sequential calls, median and p99."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families._common import ALL_PEERS, cells, how_notes, label
from benchmarks._plan import Request, Results
from benchmarks._table import Column, Table

NAME = "roundtrip"
# The raw Unix socket next to the TCP floor: local pydistributed workers use Unix sockets.
PEERS = [ALL_PEERS[0], "raw_unix", *ALL_PEERS[1:]]


def request(cfg: Config, peer: str, n: int) -> Request:
    return Request(peer, n, "roundtrip", (("calls", cfg.rt_calls), ("warmup", cfg.rt_warmup)))


# The peers also measured with both ends pinned, and where their callees run; pydistributed
# also over TCP only (local workers use Unix sockets by default, the floor uses TCP).
PINNED_PEERS = ("raw_unix", "pydistributed", "pydistributed_tcp", "cf_executor")
PLACEMENTS = ("same", "cross")


def pinned_request(cfg: Config, peer: str, placement: str) -> Request:
    params = (("calls", cfg.rt_calls), ("warmup", cfg.rt_warmup), ("placement", placement))
    return Request(peer, cfg.workers, "roundtrip_pinned", params)


def requests(cfg: Config) -> list[Request]:
    return [request(cfg, p, cfg.workers) for p in PEERS] + [
        pinned_request(cfg, p, where) for p in PINNED_PEERS for where in PLACEMENTS
    ]


def tables(cfg: Config, results: Results) -> list[Table]:
    key = request(cfg, "", 0).key
    table = Table(
        NAME,
        f"1. Round trip of identity(1), {cfg.workers} workers, sequential calls",
        [
            Column("peer"),
            Column("calls", "{:d}"),
            Column("median µs", "{:.1f}"),
            Column("p99 µs", "{:.1f}"),
            Column("floor µs", "{:.1f}"),
            Column("x floor", "{:.2f}"),
        ],
    )
    for peer in PEERS:
        value = results.get(peer, cfg.workers, key)
        fields = ["calls", "median_us", "p99_us", "floor_median_us", "x_floor"]
        table.rows.append([label(peer), *cells(value, fields)])
    table.notes = [
        f"after {cfg.rt_warmup} warm-up calls",
        "floor µs: median of a raw TCP ping-pong in the same session, interleaved with the "
        "peer's calls in 10 blocks; x floor = median / floor µs (same load, same time)",
    ]
    table.notes += how_notes(results, PEERS, cfg.workers, key)
    return [table, pinned_table(cfg, results)]


def pinned_table(cfg: Config, results: Results) -> Table:
    table = Table(
        NAME + "-pinned",
        f"1b. Round trip of identity(1), caller and callees pinned to CPUs, {cfg.workers} "
        "workers, next to the raw TCP floor pinned the same way",
        [
            Column("peer"),
            Column("callees run on"),
            Column("calls", "{:d}"),
            Column("median µs", "{:.1f}"),
            Column("p99 µs", "{:.1f}"),
            Column("floor µs", "{:.1f}"),
            Column("x floor", "{:.2f}"),
        ],
    )
    names = {"same": "the caller's CPU", "cross": "another CPU"}
    for peer in PINNED_PEERS:
        for where in PLACEMENTS:
            value = results.get(peer, cfg.workers, pinned_request(cfg, peer, where).key)
            fields = ["calls", "median_us", "p99_us", "floor_median_us", "x_floor"]
            table.rows.append([label(peer), names[where], *cells(value, fields)])
    table.notes = [
        "every thread of the caller on one CPU; every thread of the processes that run the "
        "calls (and of the floor's echo process) on the same CPU, or on another; floor and "
        "calls interleaved in 10 blocks as in table 1",
        "unpinned (table 1), the scheduler picks either case for each session, and the two "
        "cost very different amounts (waking another CPU is the larger part of a loopback "
        "round trip), so table 1's floors and ratios can compare different cases",
        "pydistributed reaches local workers over Unix sockets (the raw Unix socket row is "
        "the floor's protocol over one); 'TCP only' is pydistributed with "
        "PYDISTRIBUTED_UNIX_SOCKETS=0, over loopback TCP like the floor",
    ]
    return table
