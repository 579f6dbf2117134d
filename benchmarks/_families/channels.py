"""7. Channels: put+take through a RemoteChannel, and a producer -> consumer stream."""

from __future__ import annotations

from benchmarks._config import Config
from benchmarks._families._common import cells, how_notes, label, ratio
from benchmarks._plan import Request, Results
from benchmarks._table import Column, Table

NAME = "channels"
PEERS = ["pydistributed", "mp_queue"]


def size(cfg: Config) -> int:
    """Workers of the session: a stream between two workers needs at least two."""
    return max(cfg.workers, 2)


def rt_request(cfg: Config, peer: str) -> Request:
    params = (("calls", cfg.ch_rt_calls), ("warmup", cfg.ch_rt_warmup))
    return Request(peer, size(cfg), "channel_rt", params)


def stream_request(cfg: Config, peer: str) -> Request:
    params = (("items", cfg.ch_stream_items), ("reps", cfg.ch_stream_reps))
    return Request(peer, size(cfg), "channel_stream", params)


def requests(cfg: Config) -> list[Request]:
    return [r for p in PEERS for r in (rt_request(cfg, p), stream_request(cfg, p))]


def tables(cfg: Config, results: Results) -> list[Table]:
    n = size(cfg)
    rt_key = rt_request(cfg, "").key
    queue_rt = results.number("mp_queue", n, rt_key, "median_us")
    rt = Table(
        NAME + "-rt",
        "7a. put + take round trip through a channel in another process, sequential",
        [
            Column("peer"),
            Column("calls", "{:d}"),
            Column("median µs", "{:.1f}"),
            Column("p99 µs", "{:.1f}"),
            Column("x Queue", "{:.2f}"),
        ],
    )
    for peer in PEERS:
        value = results.get(peer, n, rt_key)
        median = results.number(peer, n, rt_key, "median_us")
        rt.rows.append(
            [label(peer), *cells(value, ["calls", "median_us", "p99_us"]), ratio(median, queue_rt)]
        )
    rt.notes = [f"after {cfg.ch_rt_warmup} warm-up calls; x Queue = median / Queue median"]
    rt.notes += how_notes(results, PEERS, n, rt_key)

    stream_key = stream_request(cfg, "").key
    queue_rate = results.number("mp_queue", n, stream_key, "per_s")
    stream = Table(
        NAME + "-stream",
        f"7b. Stream of {cfg.ch_stream_items:,} small items, producer -> consumer process",
        [
            Column("peer"),
            Column("items", "{:d}"),
            Column("seconds", "{:.3f}"),
            Column("items/s", "{:,.0f}"),
            Column("% Queue", "{:.0%}"),
        ],
    )
    for peer in PEERS:
        value = results.get(peer, n, stream_key)
        rate = results.number(peer, n, stream_key, "per_s")
        stream.rows.append(
            [label(peer), *cells(value, ["items", "seconds", "per_s"]), ratio(rate, queue_rate)]
        )
    stream.notes = [
        f"median of {cfg.ch_stream_reps} runs after a warm-up; items are the ints 0..N-1",
        "pydistributed: between two workers, started by the master; Queue: between two child "
        "processes started before the clock (timed from a go signal)",
    ]
    stream.notes += how_notes(results, PEERS, n, stream_key)
    return [rt, stream]
