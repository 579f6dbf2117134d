"""The project's performance targets, checked against a run's results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from benchmarks._config import Config
from benchmarks._families import bandwidth, channels, roundtrip, throughput
from benchmarks._plan import Request, Results


@dataclass(frozen=True)
class Check:
    target: str
    status: str  # PASS, MISS or N/A
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.target}: {self.detail}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Figure:
    """A named number of the run, or why it is missing."""

    name: str
    value: float | None
    reason: str = ""


def _figure(results: Results, name: str, req: Request, field: str) -> Figure:
    value = results.number(req.peer, req.n, req.key, field)
    found = results.get(req.peer, req.n, req.key)
    return Figure(name, value, "" if value is not None else str(found))


def _check(
    target: str, figures: list[Figure], test: Callable[..., bool], detail: Callable[..., str]
) -> Check:
    missing = [f for f in figures if f.value is None]
    if missing:
        why = "; ".join(f"{f.name}: {f.reason}" for f in missing)
        return Check(target, "N/A", f"not measured ({why})")
    values = [f.value for f in figures]
    return Check(target, "PASS" if test(*values) else "MISS", detail(*values))


def _at_least(a: float, b: float) -> bool:
    return a >= b


def _rates(a: float, b: float) -> str:
    return f"{a:,.0f}/s vs {b:,.0f}/s"


def checks(cfg: Config, results: Results) -> list[Check]:
    w = cfg.workers
    out = []

    def pinned(peer: str, where: str, field: str = "median_us") -> Figure:
        req = roundtrip.pinned_request(cfg, peer, where)
        return _figure(results, f"{peer} {where} CPU", req, field)

    out.append(
        _check(
            "remotecall_fetch round trip <= 1.5 x raw TCP floor (pinned: same CPU, other CPU)",
            [
                pinned("pydistributed", where, field)
                for where in roundtrip.PLACEMENTS
                for field in ("median_us", "x_floor")
            ],
            lambda _a, ax, _b, bx: ax <= 1.5 and bx <= 1.5,
            lambda a, ax, b, bx: (
                f"same CPU {a:.1f} µs = {ax:.2f}x floor; other CPU {b:.1f} µs = {bx:.2f}x floor"
            ),
        )
    )
    out.append(
        _check(
            "remotecall_fetch >= 1.5x faster than ProcessPoolExecutor (pinned: both cases)",
            [
                pinned(peer, where)
                for where in roundtrip.PLACEMENTS
                for peer in ("pydistributed", "cf_executor")
            ],
            lambda a, ae, b, be: ae >= 1.5 * a and be >= 1.5 * b,
            lambda a, ae, b, be: (
                f"same CPU {a:.1f} µs vs {ae:.1f} µs = {ae / a:.2f}x faster; "
                f"other CPU {b:.1f} µs vs {be:.1f} µs = {be / b:.2f}x faster"
            ),
        )
    )

    def tp(peer: str, name: str) -> Figure:
        return _figure(results, name, throughput.calls_request(cfg, peer, w), "per_s")

    out.append(
        _check(
            f"{cfg.tp_calls:,} remotecalls then fetch >= Pool.apply_async",
            [tp("pydistributed", "pydistributed"), tp("mp_pool", "Pool")],
            _at_least,
            _rates,
        )
    )

    def mp(peer: str, name: str, variant: str = "") -> Figure:
        return _figure(results, name, throughput.map_request(cfg, peer, w, variant), "per_s")

    out.append(
        _check(
            'pmap batch_size="auto" >= Pool.map',
            [mp("pydistributed", "pmap", 'batch_size="auto"'), mp("mp_pool", "Pool.map")],
            _at_least,
            _rates,
        )
    )
    one = mp("pydistributed", "pmap", "batch_size=1")
    rivals = [
        mp("dask", "Dask"),
        mp("ray", "Ray"),
        mp("cf_executor", "Executor.map(chunksize=1)", "chunksize=1"),
    ]
    present = [r for r in rivals if r.value is not None]
    absent = ", ".join(f"{r.name} {r.reason}" for r in rivals if r.value is None)
    out.append(
        _check(
            "pmap batch_size=1 ahead of Dask, Ray and ProcessPoolExecutor",
            [one, *present] if present else [one, *rivals],
            lambda a, *others: all(a > o for o in others),
            lambda a, *others: (
                f"{a:,.0f}/s vs "
                + ", ".join(f"{r.name} {v:,.0f}/s" for r, v in zip(present, others, strict=True))
                + (f" ({absent})" if absent else "")
            ),
        )
    )

    def bw(peer: str, name: str) -> Figure:
        return _figure(results, name, bandwidth.request(cfg, peer, w), "echo_MBps")

    out.append(
        _check(
            f"{cfg.bw_mb} MB round trip >= 60 % of raw socket",
            [bw("pydistributed", "pydistributed"), bw("raw_tcp", "raw")],
            lambda a, b: a >= 0.6 * b,
            lambda a, b: f"{a:,.0f} MB/s vs {b:,.0f} MB/s = {a / b:.0%}",
        )
    )

    def ch(req: Request, name: str, field: str) -> Figure:
        return _figure(results, name, req, field)

    out.append(
        _check(
            f"RemoteChannel stream of {cfg.ch_stream_items:,} items within 2x of "
            "multiprocessing.Queue",
            [
                ch(channels.stream_request(cfg, "pydistributed"), "RemoteChannel", "per_s"),
                ch(channels.stream_request(cfg, "mp_queue"), "Queue", "per_s"),
            ],
            lambda a, b: a >= 0.5 * b,
            lambda a, b: f"{a:,.0f} items/s vs {b:,.0f} items/s = {a / b:.0%} of the Queue's rate",
        )
    )
    out.append(
        _check(
            "RemoteChannel put+take round trip within 2x of multiprocessing.Queue",
            [
                ch(channels.rt_request(cfg, "pydistributed"), "RemoteChannel", "median_us"),
                ch(channels.rt_request(cfg, "mp_queue"), "Queue", "median_us"),
            ],
            lambda a, b: a <= 2 * b,
            lambda a, b: f"{a:.1f} µs vs {b:.1f} µs = {a / b:.2f}x",
        )
    )

    for n, limit in ((2, 0.2), (16, 2.0)):
        fig = _figure(results, "addprocs", Request("pydistributed", n, "startup"), "seconds")
        out.append(
            _check(
                f"addprocs({n}) ready <= {limit} s",
                [fig],
                lambda a, limit=limit: a <= limit,
                lambda a: f"{a:.3f} s",
            )
        )
    return out
