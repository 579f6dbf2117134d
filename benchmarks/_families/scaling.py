"""5. Scaling with the number of workers: pydistributed, and Pool for reference."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families import roundtrip, throughput
from benchmarks._families._common import field
from benchmarks._plan import Request, Results
from benchmarks._table import Column, Table

NAME = "scaling"


def everywhere_request(n: int) -> Request:
    return Request("pydistributed", n, "everywhere")


def requests(cfg: Config) -> list[Request]:
    out = []
    for n in cfg.scaling_sizes:
        out += [
            roundtrip.request(cfg, "pydistributed", n),
            throughput.calls_request(cfg, "pydistributed", n),
            throughput.calls_request(cfg, "mp_pool", n),
        ]
    return [*out, *(everywhere_request(n) for n in cfg.everywhere_sizes)]


def tables(cfg: Config, results: Results) -> list[Table]:
    table = Table(
        NAME,
        f"5a. Scaling: {cfg.tp_calls:,} calls submitted then collected, and round trip",
        [
            Column("workers", "{:d}"),
            Column("pydistributed RT median µs", "{:.1f}"),
            Column("pydistributed calls/s", "{:,.0f}"),
            Column("Pool.apply_async calls/s", "{:,.0f}"),
        ],
    )
    for n in cfg.scaling_sizes:
        table.rows.append(
            [
                n,
                field(results, roundtrip.request(cfg, "pydistributed", n), "median_us"),
                field(results, throughput.calls_request(cfg, "pydistributed", n), "per_s"),
                field(results, throughput.calls_request(cfg, "mp_pool", n), "per_s"),
            ]
        )
    table.notes = ["round trip: remotecall_fetch(identity, first worker, 1)"]
    sizes = " and ".join(str(n) for n in cfg.everywhere_sizes)
    every = Table(
        NAME + "-everywhere",
        f'5b. everywhere("import numpy") on {sizes} workers',
        [Column("peer"), Column("workers", "{:d}"), Column("seconds", "{:.3f}")],
        [
            ["pydistributed", n, field(results, everywhere_request(n), "seconds")]
            for n in cfg.everywhere_sizes
        ],
    )
    return [table, every]
