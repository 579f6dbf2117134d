"""ipyparallel: ``ipp.Cluster(n=n)`` started programmatically (controller + engines)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipyparallel as ipp

from benchmarks._tasks import identity

HOW = {
    "roundtrip": "rc[0].apply_sync(func, x) (direct view of one engine)",
    "throughput": "load_balanced_view().apply_async(func, x) for all, then .get() each",
    "map": "rc[:].map_sync(func, items) (direct view: one chunk per engine)",
    "bandwidth": "rc[0].apply_sync(func, array)",
}


@dataclass
class Handle:
    cluster: Any
    client: Any = None


def start(n: int) -> Handle:
    cluster = ipp.Cluster(n=n, log_level=logging.ERROR)
    handle = Handle(cluster)
    try:
        handle.client = cluster.start_and_connect_sync()
    except BaseException:
        stop(handle)
        raise
    return handle


def ready(h: Handle, n: int) -> None:
    h.client.wait_for_engines(n, timeout=120)
    h.client[:].apply_sync(identity, 1)


def caller(h: Handle, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    view = h.client[h.client.ids[0]]

    def call(x: Any) -> Any:
        return view.apply_sync(func, x)

    return call


def submit_all(h: Handle, func: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    view = h.client.load_balanced_view()
    pending = [view.apply_async(func, a) for a in args]
    return [p.get() for p in pending]


def map(h: Handle, func: Callable[[Any], Any], items: list[Any], variant: str) -> list[Any]:
    return list(h.client[:].map_sync(func, items))


def stop(h: Handle) -> None:
    try:
        if h.client is not None:
            h.client.close()
    finally:
        h.cluster.stop_cluster_sync()
