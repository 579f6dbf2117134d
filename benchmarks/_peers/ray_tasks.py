"""Ray tasks on a local instance: ``ray.init(num_cpus=n, include_dashboard=False)``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ray

from benchmarks._harness import reach_every_worker
from benchmarks._tasks import pid_after

HOW = {
    "roundtrip": "ray.get(f.remote(x))",
    "throughput": "f.remote(x) for all, then ray.get(refs)",
    "map": "ray.get([f.remote(x) for x in items])",
    "bandwidth": "ray.get(f.remote(array)) (arrays go through the shared-memory object store)",
}

_remote: dict[Any, Any] = {}


def _as_remote(func: Callable[[Any], Any]) -> Any:
    if func not in _remote:
        _remote[func] = ray.remote(func)
    return _remote[func]


def start(n: int) -> None:
    ray.init(num_cpus=n, include_dashboard=False, logging_level=logging.ERROR)


def ready(handle: None, n: int) -> None:
    remote = _as_remote(pid_after)
    reach_every_worker(lambda delays: ray.get([remote.remote(d) for d in delays]), n)


def caller(handle: None, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    remote = _as_remote(func)

    def call(x: Any) -> Any:
        return ray.get(remote.remote(x))

    return call


def submit_all(handle: None, func: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    remote = _as_remote(func)
    return list(ray.get([remote.remote(a) for a in args]))


def map(handle: None, func: Callable[[Any], Any], items: list[Any], variant: str) -> list[Any]:
    return submit_all(handle, func, items)


def stop(handle: None) -> None:
    ray.shutdown()
