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


def requests(cfg: Config) -> list[Request]:
    return [request(cfg, p, cfg.workers) for p in PEERS]


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
    return [table]
