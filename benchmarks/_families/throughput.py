"""2. Throughput: many trivial calls submitted then collected, and parallel map."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families._common import cells, how_notes, label
from benchmarks._plan import Request, Results
from benchmarks._table import Column, Table

NAME = "throughput"
PEERS = ["pydistributed", "mp_pool", "cf_executor", "loky", "dask", "ray", "ipyparallel"]
# Rows of the map table per peer; the executor also maps one item per task, like pmap's
# batch_size=1, Dask's map and Ray's tasks.
MAP_VARIANTS = {
    "pydistributed": ["batch_size=1", 'batch_size="auto"'],
    "cf_executor": ["chunksize=len/(4*workers)", "chunksize=1"],
}


def calls_request(cfg: Config, peer: str, n: int) -> Request:
    return Request(peer, n, "throughput", (("calls", cfg.tp_calls), ("reps", cfg.tp_reps)))


def map_request(cfg: Config, peer: str, n: int, variant: str = "") -> Request:
    params = (("items", cfg.map_items), ("reps", cfg.map_reps), ("variant", variant))
    return Request(peer, n, "map", params)


def map_requests(cfg: Config) -> list[tuple[str, Request]]:
    """(row label, request) for every map row."""
    out = []
    for peer in PEERS:
        for variant in MAP_VARIANTS.get(peer, [""]):
            prefix = f"{label(peer)} pmap" if peer == "pydistributed" else label(peer)
            name = f"{prefix} {variant}" if variant else prefix
            out.append((name, map_request(cfg, peer, cfg.workers, variant)))
    return out


def requests(cfg: Config) -> list[Request]:
    return [calls_request(cfg, p, cfg.workers) for p in PEERS] + [r for _, r in map_requests(cfg)]


def tables(cfg: Config, results: Results) -> list[Table]:
    w = cfg.workers
    calls = Table(
        NAME + "-calls",
        f"2a. {cfg.tp_calls:,} trivial calls submitted, then all collected, {w} workers",
        [
            Column("peer"),
            Column("calls", "{:d}"),
            Column("runs", "{:d}"),
            Column("seconds", "{:.3f}"),
            Column("calls/s", "{:,.0f}"),
        ],
    )
    key = calls_request(cfg, "", w).key
    for peer in PEERS:
        calls.rows.append(
            [label(peer), *cells(results.get(peer, w, key), ["calls", "runs", "seconds", "per_s"])]
        )
    calls.notes = [
        f"seconds: median of up to {cfg.tp_reps} runs (fewer past {cfg.rep_budget:g} s)",
        *how_notes(results, PEERS, w, key),
    ]

    pmap = Table(
        NAME + "-map",
        f"2b. Parallel map of {cfg.map_items:,} trivial items, {w} workers",
        [
            Column("peer"),
            Column("items", "{:d}"),
            Column("runs", "{:d}"),
            Column("seconds", "{:.3f}"),
            Column("items/s", "{:,.0f}"),
        ],
    )
    for name, req in map_requests(cfg):
        value = results.get(req.peer, req.n, req.key)
        pmap.rows.append([name, *cells(value, ["items", "runs", "seconds", "per_s"])])
    pmap.notes = [f"seconds: median of up to {cfg.map_reps} runs (fewer past {cfg.rep_budget:g} s)"]
    for name, req in map_requests(cfg):
        value = results.get(req.peer, req.n, req.key)
        if isinstance(value, dict) and value.get("how"):
            pmap.notes.append(f"{name}: {value['how']}")
    return [calls, pmap]
