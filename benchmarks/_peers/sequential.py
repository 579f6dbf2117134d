"""The master alone: the sequential baseline of the for-reduce overhead family."""

from __future__ import annotations

from benchmarks._tasks import identity

HOW = {"reduce": "sum(identity(i) for i in range(N))"}


def start(n: int) -> None:
    return None


def ready(handle: None, n: int) -> None:
    return None


def reduce(handle: None, n: int) -> int:
    return sum(identity(i) for i in range(n))


def stop(handle: None) -> None:
    return None
