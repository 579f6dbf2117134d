"""Polling for a condition with a time limit: Julia's ``timedwait``."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Literal

from ._interrupt import blocking_wait

__all__ = ("timedwait",)


def timedwait(
    testcb: Callable[[], object], timeout: float, pollint: float = 0.1
) -> Literal["ok", "timed_out"]:
    """Call ``testcb()`` until it returns a true value or ``timeout`` seconds have passed.

    ``testcb`` is called at once, then every ``pollint`` seconds (on a fixed schedule, so a
    slow ``testcb`` does not stretch the interval), and one last time when ``timeout`` runs
    out. The wait between calls can be woken by an interrupt.

    Args:
        testcb: the condition to poll; any truthy return value ends the wait.
        timeout: seconds to poll at most; zero or less calls ``testcb`` once.
        pollint: seconds between calls.

    Returns:
        ``"ok"`` when ``testcb()`` returned a true value, else ``"timed_out"``.

    Raises:
        ValueError: ``pollint`` is not a positive finite number, or ``timeout`` is NaN.
    """
    if math.isnan(timeout):
        raise ValueError("timeout must be a number of seconds, not NaN")
    if not (pollint > 0 and math.isfinite(pollint)):
        raise ValueError(f"pollint must be a positive number of seconds, not {pollint!r}")
    start = time.monotonic()
    deadline = start + max(timeout, 0.0)
    if testcb():
        return "ok"
    # A private condition: nothing notifies it but an interrupt (see _interrupt).
    sleeper = threading.Condition(threading.Lock())
    ticks = 1
    while True:
        now = time.monotonic()
        if now >= deadline:
            return "timed_out"
        wake_at = min(start + ticks * pollint, deadline)
        with sleeper:
            while (now := time.monotonic()) < wake_at:
                blocking_wait(sleeper, min(wake_at - now, threading.TIMEOUT_MAX))
        if testcb():
            return "ok"
        # Skip the ticks that a slow testcb() overran.
        ticks = max(ticks + 1, math.floor((time.monotonic() - start) / pollint) + 1)
