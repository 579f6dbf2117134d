"""The measurements themselves, run inside a session subprocess against one peer module.

Each function takes the peer module, its handle and the request's parameters, checks that the
peer returned the right values, and returns a dict of numbers (plus ``how``: the call measured).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

from benchmarks._harness import latencies, median, percentile, timed
from benchmarks._tasks import array_sum, identity

Op = Callable[..., dict[str, Any]]
MB = 1_000_000


class NotSupported(Exception):
    """The peer has no way to do this operation."""


def _need(peer: ModuleType, name: str) -> Any:
    fn = getattr(peer, name, None)
    if fn is None:
        raise NotSupported(name)
    return fn


def _how(peer: ModuleType, op: str) -> str:
    return str(getattr(peer, "HOW", {}).get(op, ""))


def roundtrip(peer: ModuleType, handle: Any, *, calls: int, warmup: int) -> dict[str, Any]:
    """Sequential calls, interleaved in blocks with calls to a raw TCP floor in this session.

    The machine's load changes between sessions; the in-session floor gives each peer a ratio
    measured under the same conditions (``x_floor``). The raw TCP peer is not paired.
    """
    call = _need(peer, "caller")(handle, identity)
    if peer.__name__ == "benchmarks._peers.raw_tcp":
        lat = latencies(call, 1, calls, warmup)
        return _latency_figures(peer, lat, lat, calls)
    from benchmarks._peers import raw_tcp

    floor = raw_tcp.start(1)
    try:
        lat, floor_lat = _interleaved(call, raw_tcp.caller(floor, identity), calls, warmup)
    finally:
        raw_tcp.stop(floor)
    return _latency_figures(peer, lat, floor_lat, calls)


def roundtrip_pinned(
    peer: ModuleType, handle: Any, *, calls: int, warmup: int, placement: str
) -> dict[str, Any]:
    """:func:`roundtrip` with the caller on one CPU and the callees (and the floor's) on the
    same CPU (``placement="same"``) or on another (``"cross"``).

    Unpinned, the scheduler decides, and a loopback round trip costs about three times more
    when the two ends run on different CPUs (one wakes the other): pinning measures each case.
    """
    from benchmarks._peers import raw_tcp

    cpus = sorted(os.sched_getaffinity(0))
    if placement == "cross" and len(cpus) < 2:
        raise NotSupported("a single CPU")
    here = {cpus[0]}
    there = here if placement == "same" else {cpus[1]}
    call = _need(peer, "caller")(handle, identity)
    servers = _need(peer, "server_pids")(handle)
    floor = raw_tcp.start(1)
    pinned: list[tuple[int, set[int]]] = []
    try:
        pinned += _pin(os.getpid(), here)
        for pid in [*servers, *raw_tcp.server_pids(floor)]:
            pinned += _pin(pid, there)
        lat, floor_lat = _interleaved(call, raw_tcp.caller(floor, identity), calls, warmup)
    finally:
        for tid, cpuset in pinned:
            try:
                os.sched_setaffinity(tid, cpuset)
            except OSError:
                pass  # that thread is gone
        raw_tcp.stop(floor)
    figures = _latency_figures(peer, lat, floor_lat, calls)
    figures["how"] = f"{figures['how']}; pinned: {placement} CPU"
    return figures


def _pin(pid: int, cpus: set[int]) -> list[tuple[int, set[int]]]:
    """Pin every thread of process ``pid`` to ``cpus``; return what to restore."""
    saved = []
    for tid in [int(t) for t in os.listdir(f"/proc/{pid}/task")]:
        try:
            saved.append((tid, os.sched_getaffinity(tid)))
            os.sched_setaffinity(tid, cpus)
        except OSError as exc:
            if tid == pid:
                raise NotSupported(f"cannot pin process {pid}: {exc}") from exc
            # another thread that ended meanwhile
    return saved


def _interleaved(
    call: Callable[[Any], Any], floor_call: Callable[[Any], Any], calls: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Latencies of ``calls`` calls to each, alternating in 10 blocks after a warm-up."""
    latencies(floor_call, 1, 0, warmup)
    latencies(call, 1, 0, warmup)
    lat: list[float] = []
    floor_lat: list[float] = []
    blocks = 10
    for b in range(blocks):
        size = calls // blocks + (1 if b < calls % blocks else 0)
        lat += latencies(call, 1, size, 0)
        floor_lat += latencies(floor_call, 1, size, 0)
    return lat, floor_lat


def _latency_figures(
    peer: ModuleType, lat: list[float], floor_lat: list[float], calls: int
) -> dict[str, Any]:
    return {
        "calls": calls,
        "median_us": median(lat) * 1e6,
        "p99_us": percentile(lat, 99) * 1e6,
        "mean_us": sum(lat) / len(lat) * 1e6,
        "floor_median_us": median(floor_lat) * 1e6,
        "x_floor": median(lat) / median(floor_lat),
        "how": _how(peer, "roundtrip"),
    }


def _repeat(fn: Callable[[], Any], expected: Any, reps: int, budget: float) -> list[float]:
    """Seconds of up to ``reps`` runs of ``fn``; fewer once ``budget`` seconds are spent."""
    times: list[float] = []
    while len(times) < reps and (not times or sum(times) < budget):
        seconds, result = timed(fn)
        if result != expected:
            raise AssertionError("results differ from the inputs")
        times.append(seconds)
    return times


def throughput(
    peer: ModuleType, handle: Any, *, calls: int, reps: int, budget: float
) -> dict[str, Any]:
    submit_all = _need(peer, "submit_all")
    args = list(range(calls))
    submit_all(handle, identity, args[: min(calls // 10, 200)])  # warm-up
    times = _repeat(lambda: submit_all(handle, identity, args), args, reps, budget)
    seconds = median(times)
    return {
        "calls": calls,
        "runs": len(times),
        "seconds": seconds,
        "per_s": calls / seconds,
        "how": _how(peer, "throughput"),
    }


def map(
    peer: ModuleType, handle: Any, *, items: int, reps: int, variant: str, budget: float
) -> dict[str, Any]:
    pmap = _need(peer, "map")
    data = list(range(items))
    pmap(handle, identity, data[: min(items // 10, 200)], variant)  # warm-up
    times = _repeat(lambda: pmap(handle, identity, data, variant), data, reps, budget)
    seconds = median(times)
    how = _how(peer, "map") + (f" [{variant}]" if variant else "")
    return {
        "items": items,
        "runs": len(times),
        "seconds": seconds,
        "per_s": items / seconds,
        "how": how,
    }


def bandwidth(
    peer: ModuleType, handle: Any, *, mb: int, reps: int, budget: float
) -> dict[str, Any]:
    import numpy

    array = numpy.random.default_rng(0).random(mb * MB // 8)
    expected = float(array.sum())
    if hasattr(peer, "bandwidth_sum"):
        send_sum, send_echo = peer.bandwidth_sum, peer.bandwidth_echo

        def do_sum() -> Any:
            return send_sum(handle, array)

        def do_echo() -> Any:
            return send_echo(handle, array)
    else:
        call_sum = _need(peer, "caller")(handle, array_sum)
        call_echo = peer.caller(handle, identity)

        def do_sum() -> Any:
            return call_sum(array)

        def do_echo() -> Any:
            return call_echo(array)

    sums: list[float] = []
    echoes: list[float] = []
    for rep in range(reps + 1):  # the first of each is a warm-up
        if sums and sum(sums) + sum(echoes) > budget:
            break
        seconds, total = timed(do_sum)
        if abs(total - expected) > 1e-6 * abs(expected):
            raise AssertionError(f"wrong sum {total} != {expected}")
        sums.append(seconds)
        seconds, back = timed(do_echo)
        if not numpy.array_equal(back, array):
            raise AssertionError("echoed array differs")
        del back
        echoes.append(seconds)
        if rep == 0:
            sums.clear()
            echoes.clear()
    return {
        "mb": mb,
        "runs": len(sums),
        "sum_MBps": mb / median(sums),
        "echo_MBps": mb / median(echoes),
        "how": _how(peer, "bandwidth"),
    }


def reduce(peer: ModuleType, handle: Any, *, n: int, reps: int, budget: float) -> dict[str, Any]:
    fn = _need(peer, "reduce")
    times = _repeat(lambda: fn(handle, n), n * (n - 1) // 2, reps, budget)
    seconds = median(times)
    return {
        "n": n,
        "runs": len(times),
        "seconds": seconds,
        "ns_per_item": seconds / n * 1e9,
        "how": _how(peer, "reduce"),
    }


def everywhere(peer: ModuleType, handle: Any) -> dict[str, Any]:
    fn = _need(peer, "everywhere_import")
    seconds, _ = timed(lambda: fn(handle))
    return {"seconds": seconds, "how": _how(peer, "everywhere")}


def channel_rt(peer: ModuleType, handle: Any, *, calls: int, warmup: int) -> dict[str, Any]:
    lat = latencies(_need(peer, "channel_caller")(handle), 1, calls, warmup)
    return {
        "calls": calls,
        "median_us": median(lat) * 1e6,
        "p99_us": percentile(lat, 99) * 1e6,
        "how": _how(peer, "channel_rt"),
    }


def channel_stream(peer: ModuleType, handle: Any, *, items: int, reps: int) -> dict[str, Any]:
    stream = _need(peer, "channel_stream")
    stream(handle, min(items, 1000))  # warm-up (connections, imports)
    times = []
    for _ in range(reps):
        seconds, total = stream(handle, items)
        if total != items * (items - 1) // 2:
            raise AssertionError(f"consumer got a wrong sum {total}")
        times.append(seconds)
    seconds = median(times)
    return {
        "items": items,
        "seconds": seconds,
        "per_s": items / seconds,
        "how": _how(peer, "channel_stream"),
    }


OPS: dict[str, Op] = {
    "roundtrip": roundtrip,
    "roundtrip_pinned": roundtrip_pinned,
    "throughput": throughput,
    "map": map,
    "bandwidth": bandwidth,
    "reduce": reduce,
    "everywhere": everywhere,
    "channel_rt": channel_rt,
    "channel_stream": channel_stream,
}
