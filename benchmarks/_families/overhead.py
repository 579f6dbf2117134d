"""6. Per-item overhead of the parallel for-reduce, against a sequential loop on the master."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families._common import field, ratio
from benchmarks._plan import Request, Results
from benchmarks._table import Column, Table

NAME = "overhead"


def request(cfg: Config, peer: str, n_items: int) -> Request:
    workers = cfg.workers if peer == "pydistributed" else 0
    return Request(peer, workers, "reduce", (("n", n_items), ("reps", cfg.overhead_reps)))


def requests(cfg: Config) -> list[Request]:
    return [request(cfg, p, n) for n in cfg.overhead_ns for p in ("pydistributed", "sequential")]


def tables(cfg: Config, results: Results) -> list[Table]:
    table = Table(
        NAME,
        f"6. distributed(operator.add, range(N))(identity), {cfg.workers} workers, vs sequential",
        [
            Column("N", "{:,d}"),
            Column("distributed s", "{:.4f}"),
            Column("distributed ns/item", "{:,.1f}"),
            Column("sequential ns/item", "{:,.1f}"),
            Column("speed-up", "{:.2f}"),
        ],
    )
    for n in cfg.overhead_ns:
        dist_req, seq_req = request(cfg, "pydistributed", n), request(cfg, "sequential", n)
        dist_ns = results.number("pydistributed", dist_req.n, dist_req.key, "ns_per_item")
        seq_ns = results.number("sequential", seq_req.n, seq_req.key, "ns_per_item")
        table.rows.append(
            [
                n,
                field(results, dist_req, "seconds"),
                field(results, dist_req, "ns_per_item"),
                field(results, seq_req, "ns_per_item"),
                ratio(seq_ns, dist_ns),
            ]
        )
    table.notes = [
        f"median of up to {cfg.overhead_reps} runs",
        "sequential = sum(identity(i) for i in range(N)) on the master",
        "speed-up = sequential ns/item / distributed ns/item",
    ]
    return [table]
