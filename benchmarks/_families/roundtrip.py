"""1. Round trip of a trivial call ``identity(1)``: sequential calls, median and p99."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families._common import ALL_PEERS, cells, how_notes, label
from benchmarks._plan import Request, Results
from benchmarks._table import Column, Table

NAME = "roundtrip"
PEERS = ALL_PEERS


def request(cfg: Config, peer: str, n: int) -> Request:
    return Request(peer, n, "roundtrip", (("calls", cfg.rt_calls), ("warmup", cfg.rt_warmup)))


# The peer measured with both ends pinned, and where its callee runs.
PINNED_PEER = "pydistributed"
PLACEMENTS = ("same", "cross")


def pinned_request(cfg: Config, placement: str) -> Request:
    params = (("calls", cfg.rt_calls), ("warmup", cfg.rt_warmup), ("placement", placement))
    return Request(PINNED_PEER, cfg.workers, "roundtrip_pinned", params)


def requests(cfg: Config) -> list[Request]:
    return [request(cfg, p, cfg.workers) for p in PEERS] + [
        pinned_request(cfg, where) for where in PLACEMENTS
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
        f"1b. Round trip of identity(1), caller and callee pinned to CPUs, "
        f"{label(PINNED_PEER)} next to the raw TCP floor",
        [
            Column("callee runs on"),
            Column("calls", "{:d}"),
            Column("median µs", "{:.1f}"),
            Column("p99 µs", "{:.1f}"),
            Column("floor µs", "{:.1f}"),
            Column("x floor", "{:.2f}"),
        ],
    )
    names = {"same": "the caller's CPU", "cross": "another CPU"}
    for where in PLACEMENTS:
        value = results.get(PINNED_PEER, cfg.workers, pinned_request(cfg, where).key)
        fields = ["calls", "median_us", "p99_us", "floor_median_us", "x_floor"]
        table.rows.append([names[where], *cells(value, fields)])
    table.notes = [
        "every thread of the caller on one CPU; every thread of the callee (a worker) and of "
        "the floor's echo process on the same CPU, or on another; floor and calls interleaved "
        "in 10 blocks as in table 1",
        "unpinned, the scheduler picks either case, and the two cost very different amounts "
        "(waking another CPU is the larger part of a loopback round trip)",
    ]
    return table
