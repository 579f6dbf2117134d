"""1. Round trip of a trivial call ``identity(1)``: sequential calls, median and p99."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families._common import cells, how_notes, label, ratio
from benchmarks._plan import Request, Results
from benchmarks._table import Column, Table

NAME = "roundtrip"
PEERS = [
    "raw_tcp",
    "mp_pipe",
    "pydistributed",
    "mp_pool",
    "cf_executor",
    "loky",
    "dask",
    "ray",
    "ipyparallel",
]


def request(cfg: Config, peer: str, n: int) -> Request:
    return Request(peer, n, "roundtrip", (("calls", cfg.rt_calls), ("warmup", cfg.rt_warmup)))


def requests(cfg: Config) -> list[Request]:
    return [request(cfg, p, cfg.workers) for p in PEERS]


def tables(cfg: Config, results: Results) -> list[Table]:
    key = request(cfg, "", 0).key
    floor = results.number("raw_tcp", cfg.workers, key, "median_us")
    table = Table(
        NAME,
        f"1. Round trip of identity(1), {cfg.workers} workers, sequential calls",
        [
            Column("peer"),
            Column("calls", "{:d}"),
            Column("median µs", "{:.1f}"),
            Column("p99 µs", "{:.1f}"),
            Column("x floor", "{:.2f}"),
        ],
    )
    for peer in PEERS:
        value = results.get(peer, cfg.workers, key)
        median = results.number(peer, cfg.workers, key, "median_us")
        row = [label(peer), *cells(value, ["calls", "median_us", "p99_us"]), ratio(median, floor)]
        table.rows.append(row)
    table.notes = [f"after {cfg.rt_warmup} warm-up calls; x floor = median / raw TCP median"]
    table.notes += how_notes(results, PEERS, cfg.workers, key)
    return [table]
