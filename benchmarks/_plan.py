"""What to measure (requests grouped into sessions) and what was measured (results)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Order of operations inside one session: cheap and latency-sensitive first, memory-heavy last.
OP_ORDER = (
    "startup",
    "roundtrip",
    "roundtrip_pinned",
    "channel_rt",
    "throughput",
    "map",
    "channel_stream",
    "reduce",
    "everywhere",
    "bandwidth",
)


@dataclass(frozen=True)
class Request:
    """One measurement: ``op`` with ``params`` on a session of ``peer`` with ``n`` workers."""

    peer: str
    n: int
    op: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        return ":".join([self.op, *(f"{k}={v}" for k, v in self.params)])

    def spec(self) -> dict[str, Any]:
        return {"op": self.op, "key": self.key, "params": dict(self.params)}


@dataclass
class SessionResult:
    """Outcome of one session: a status, the startup/teardown figures and one value per key.

    Values are dicts of numbers, or strings (``"error: ..."``) when that measurement failed.
    """

    peer: str
    n: int
    status: str = "ok"
    values: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    leftovers: int = 0
    runs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "n": self.n,
            "status": self.status,
            "wall_s": round(self.wall_s, 3),
            "leftover_processes_killed": self.leftovers,
            "subprocesses": self.runs,
            "values": self.values,
        }


def group(requests: list[Request], peer_order: list[str]) -> list[tuple[str, int, list[Request]]]:
    """Sessions in peer order then size, each with its distinct requests in ``OP_ORDER``."""
    sessions: dict[tuple[str, int], dict[str, Request]] = {}
    for r in requests:
        sessions.setdefault((r.peer, r.n), {}).setdefault(r.key, r)
    out = []
    for (peer, n), reqs in sorted(
        sessions.items(), key=lambda s: (peer_order.index(s[0][0]), s[0][1])
    ):
        ordered = sorted(reqs.values(), key=lambda r: OP_ORDER.index(r.op))
        out.append((peer, n, ordered))
    return out


class Results:
    """All session results of a run, looked up by peer, size and key."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, int], SessionResult] = {}

    def add(self, result: SessionResult) -> None:
        self.sessions[(result.peer, result.n)] = result

    def get(self, peer: str, n: int, key: str) -> dict[str, Any] | str:
        """The value dict, or a string to show in its place."""
        session = self.sessions.get((peer, n))
        if session is None:
            return "not run"
        if session.status != "ok" and key not in session.values:
            return session.status
        value = session.values.get(key, "not measured")
        return value if isinstance(value, dict | str) else str(value)

    def number(self, peer: str, n: int, key: str, field_name: str) -> float | None:
        """One number of a measurement, or ``None`` when it failed or was not run."""
        value = self.get(peer, n, key)
        if isinstance(value, dict) and isinstance(value.get(field_name), int | float):
            return float(value[field_name])
        return None
