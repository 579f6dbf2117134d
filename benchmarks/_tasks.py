"""Functions run on workers.

They live in an importable module so that every peer ships them by reference: workers started
with the master's ``sys.path`` and working directory (or with ``PYTHONPATH`` set to the repository
root, which the runner does for every peer) import ``benchmarks._tasks`` themselves.
"""

from __future__ import annotations

import os
import time
from typing import Any


def identity(x: Any) -> Any:
    """Return ``x`` unchanged (the trivial call)."""
    return x


def array_sum(a: Any) -> float:
    """Return the sum of a NumPy array as a Python float (8 bytes back)."""
    return float(a.sum())


def pid_after(delay: float) -> int:
    """Sleep ``delay`` seconds, then return this process's id (used to reach every worker)."""
    time.sleep(delay)
    return os.getpid()


def import_numpy() -> None:
    """Import NumPy in this process."""
    import numpy  # noqa: F401


def produce(put: Any, n: int) -> None:
    """Call ``put(i)`` for ``i`` in ``range(n)`` (the producer of a channel stream)."""
    for i in range(n):
        put(i)


def consume(take: Any, n: int) -> int:
    """Call ``take()`` ``n`` times and return the sum of the items (the consumer)."""
    total = 0
    for _ in range(n):
        total += take()
    return total
