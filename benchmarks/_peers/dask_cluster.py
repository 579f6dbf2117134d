"""Dask distributed: ``LocalCluster(processes=True, threads_per_worker=1)`` and a ``Client``."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dask.distributed import Client, LocalCluster

from benchmarks._tasks import identity

HOW = {
    "roundtrip": "client.submit(func, x, pure=False).result()",
    "throughput": "client.submit(func, x, pure=False) for all, then client.gather",
    "map": "client.gather(client.map(func, items, pure=False))",
    "bandwidth": "client.submit(func, array, pure=False).result()",
}


@dataclass
class Handle:
    cluster: Any
    client: Any


def start(n: int) -> Handle:
    # A 100 MB argument makes Dask warn about a large graph; that path is what we measure.
    warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        return Handle(cluster, Client(cluster))
    except BaseException:
        cluster.close()
        raise


def ready(h: Handle, n: int) -> None:
    h.client.wait_for_workers(n)
    addresses = list(h.client.scheduler_info(n_workers=-1)["workers"])
    futures = [h.client.submit(identity, 1, workers=[a], pure=False) for a in addresses]
    h.client.gather(futures)


def caller(h: Handle, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    client = h.client

    def call(x: Any) -> Any:
        return client.submit(func, x, pure=False).result()

    return call


def submit_all(h: Handle, func: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    futures = [h.client.submit(func, a, pure=False) for a in args]
    return list(h.client.gather(futures))


def map(h: Handle, func: Callable[[Any], Any], items: list[Any], variant: str) -> list[Any]:
    return list(h.client.gather(h.client.map(func, items, pure=False)))


def stop(h: Handle) -> None:
    try:
        h.client.close()
    finally:
        h.cluster.close()
