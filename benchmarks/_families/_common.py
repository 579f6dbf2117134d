"""Helpers shared by the family modules."""

from __future__ import annotations

from typing import Any

from benchmarks._config import Config
from benchmarks._peers import PEERS
from benchmarks._plan import Request, Results
from benchmarks._table import Cell

# Every peer, in table order (the floor first).
ALL_PEERS = [
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


def label(peer: str) -> str:
    return PEERS[peer].label


def cells(value: dict[str, Any] | str, fields: list[str]) -> list[Cell]:
    """The requested fields of a measurement, or its error in the first cell."""
    if isinstance(value, str):
        return [value] + [None] * (len(fields) - 1)
    return [value.get(f) for f in fields]


def how_notes(results: Results, peers: list[str], n: int, key: str) -> list[str]:
    """``label: call measured`` for each peer that reported one."""
    notes = []
    for peer in peers:
        value = results.get(peer, n, key)
        if isinstance(value, dict) and value.get("how"):
            notes.append(f"{label(peer)}: {value['how']}")
    return notes


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def skipped(cfg: Config, peer: str, n: int) -> bool:
    """Under --quick, slow-starting peers are measured with the main worker count only."""
    return cfg.quick and PEERS[peer].heavy and n != cfg.workers


def field(results: Results, req: Request, name: str) -> Cell:
    """One field of a request's result, or the error text that took its place."""
    value = results.get(req.peer, req.n, req.key)
    return value.get(name) if isinstance(value, dict) else value
