"""The families of measurements.

Each family module has ``NAME``, ``requests(cfg) -> list[Request]`` (what to measure) and
``tables(cfg, results) -> list[Table]`` (how to show it).
"""

from __future__ import annotations

from types import ModuleType

from benchmarks._families import (
    bandwidth,
    channels,
    overhead,
    roundtrip,
    scaling,
    startup,
    throughput,
)

FAMILIES: dict[str, ModuleType] = {
    m.NAME: m for m in (roundtrip, throughput, bandwidth, startup, scaling, overhead, channels)
}
