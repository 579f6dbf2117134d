"""Body of one measuring subprocess: start a peer, run the requested operations, stop it.

Usage (by the runner only): ``python -m benchmarks._child SPEC.json OUT.json``.

Every result is written to OUT.json as soon as it is known, so the runner keeps what was
measured even if this process hangs or dies. An operation (or the startup, or the teardown)
that runs past its timeout is recorded as an error and the process exits at once; the runner
then kills whatever it left behind and resumes with the remaining operations.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._ops import OPS, NotSupported
from benchmarks._peers import PEERS


def describe(exc: BaseException) -> str:
    """One-line ``error: Type: message`` for a table cell."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return "error: " + (text if len(text) <= 160 else text[:157] + "...")


class Recorder:
    """Results so far, rewritten atomically to ``path`` after each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"current": None, "values": {}}
        self.lock = threading.Lock()

    def begin(self, key: str) -> None:
        with self.lock:
            self.data["current"] = key
            self._flush()

    def set(self, key: str, value: Any) -> None:
        with self.lock:
            self.data["values"].setdefault(key, value)
            self.data["current"] = None
            self._flush()

    def _flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


@contextmanager
def deadline(rec: Recorder, key: str, seconds: float) -> Iterator[None]:
    """Record ``key`` as timed out and exit the process if the block runs past ``seconds``."""

    def expire() -> None:
        rec.set(key, f"error: timeout after {seconds:g} s")
        os._exit(3)

    rec.begin(key)
    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _params(op: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters, plus the repetition budget for operations that take one."""
    params = dict(op["params"])
    if "budget" in inspect.signature(OPS[op["op"]]).parameters:
        params["budget"] = float(spec.get("rep_budget", 20.0))
    return params


def run(spec: dict[str, Any], rec: Recorder) -> None:
    timeout = float(spec["op_timeout"])
    lifecycle = float(spec.get("lifecycle_timeout", timeout))
    n = int(spec["n"])
    ops: list[dict[str, Any]] = spec["ops"]
    try:
        peer = importlib.import_module(PEERS[spec["peer"]].module)
    except BaseException as exc:
        rec.set("startup", describe(exc))
        for op in ops:
            rec.set(op["key"], describe(exc))
        return

    handle: Any = None
    with deadline(rec, "startup", lifecycle):
        t0 = time.perf_counter()
        try:
            handle = peer.start(n)
        except Exception as exc:
            rec.set("startup", describe(exc))
            for op in ops:
                rec.set(op["key"], describe(exc))
            return
        try:
            peer.ready(handle, n)
            rec.set("startup", {"seconds": time.perf_counter() - t0, "n": n})
        except Exception as exc:
            rec.set("startup", describe(exc))
    try:
        for op in ops:
            with deadline(rec, op["key"], timeout):
                try:
                    value = OPS[op["op"]](peer, handle, **_params(op, spec))
                except NotSupported:
                    value = "n/a"
                except Exception as exc:
                    value = describe(exc)
                rec.set(op["key"], value)
    finally:
        with deadline(rec, "teardown", lifecycle):
            t0 = time.perf_counter()
            try:
                peer.stop(handle)
                rec.set("teardown", {"seconds": time.perf_counter() - t0, "n": n})
            except Exception as exc:
                rec.set("teardown", describe(exc))


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    rec = Recorder(Path(argv[1]))
    run(spec, rec)
    sys.stdout.flush()
    # If a peer's exit hooks hang, leave anyway: the runner kills what is left behind.
    exit_timer = threading.Timer(20.0, os._exit, (4,))
    exit_timer.daemon = True
    exit_timer.start()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
