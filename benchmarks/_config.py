"""Counts and sizes of a run: the full suite and the ``--quick`` smoke version."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Config:
    """Everything a family needs to know to plan and label its measurements."""

    quick: bool = False
    workers: int = 2
    rt_calls: int = 5000
    rt_warmup: int = 500
    tp_calls: int = 10_000
    tp_reps: int = 3
    map_items: int = 10_000
    map_reps: int = 3
    bw_mb: int = 100
    bw_reps: int = 5
    startup_sizes: tuple[int, ...] = (2, 16)
    scaling_sizes: tuple[int, ...] = (2, 4, 8, 16)
    everywhere_sizes: tuple[int, ...] = (8, 16)
    overhead_ns: tuple[int, ...] = (10**4, 10**5, 10**6, 10**7)
    overhead_reps: int = 3
    ch_rt_calls: int = 2000
    ch_rt_warmup: int = 200
    ch_stream_items: int = 100_000
    ch_stream_reps: int = 1
    op_timeout: float = 600.0
    lifecycle_timeout: float = 180.0  # for start+ready and for stop
    rep_budget: float = 20.0  # repeated measurements stop after this many seconds
    session_timeout: float = 2400.0

    @classmethod
    def make(cls, *, quick: bool, workers: int = 2) -> Config:
        """The full configuration, or the quick one; ``workers`` for families 1-3 and 6."""
        cfg = cls(workers=workers, startup_sizes=(workers, 16))
        if quick:
            cfg = replace(
                cfg,
                quick=True,
                rt_calls=100,
                rt_warmup=10,
                tp_calls=200,
                tp_reps=1,
                map_items=200,
                map_reps=1,
                bw_mb=10,
                bw_reps=1,
                startup_sizes=(workers, 4),
                scaling_sizes=(2, 4),
                everywhere_sizes=(4,),
                overhead_ns=(10**4, 10**5),
                overhead_reps=1,
                ch_rt_calls=100,
                ch_rt_warmup=10,
                ch_stream_items=2000,
                ch_stream_reps=1,
                op_timeout=30.0,
                lifecycle_timeout=30.0,
                rep_budget=5.0,
                session_timeout=90.0,
            )
        return cfg

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
