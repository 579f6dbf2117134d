"""Interrupting calls, and blocking waits that an interrupt can cut short.

CPython runs signal handlers only in the main thread, and remote calls run in other threads.
:func:`interrupt_calls` therefore raises ``KeyboardInterrupt`` asynchronously in each thread
running a call (``PyThreadState_SetAsyncExc``), which takes effect at the thread's next
bytecode. A thread blocked on a condition variable runs no bytecode, so every blocking wait of
the library goes through :func:`blocking_wait`, which records the condition so the
interrupter can wake it; workers replace ``time.sleep`` by :func:`sleep`, built on it.

What remains out of reach: a call blocked inside C code that does not return to Python (a
socket ``recv`` of the user's own, a long NumPy operation, a lock from another library) sees
the interrupt only once that C call returns.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable

__all__ = ("blocking_wait", "interrupt_calls", "running_call", "sleep", "wake_thread")

_waiting_on: dict[int, threading.Condition] = {}
# Threads running a remote call right now (ident -> nesting depth).
_running: dict[int, int] = {}


def _nothing() -> None:
    pass


# Set by the engine: lets a thread running calls in place of the reader hand that role over.
before_block: Callable[[], None] = _nothing


def blocking_wait(cond: threading.Condition, timeout: float | None = None) -> bool:
    """``cond.wait(timeout)`` (the caller holds ``cond``) that :func:`wake_thread` can wake."""
    before_block()
    ident = threading.get_ident()
    _waiting_on[ident] = cond
    try:
        return cond.wait(timeout)
    finally:
        _waiting_on.pop(ident, None)


def wake_thread(ident: int) -> None:
    """Wake thread ``ident`` if it is inside :func:`blocking_wait`."""
    cond = _waiting_on.get(ident)
    if cond is not None:
        with cond:
            cond.notify_all()


class running_call:
    """Marks the current thread as running a remote call (an interrupt may hit it)."""

    __slots__ = ("ident",)

    def __enter__(self) -> None:
        self.ident = threading.get_ident()
        _running[self.ident] = _running.get(self.ident, 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        depth = _running.pop(self.ident, 1) - 1
        if depth > 0:
            _running[self.ident] = depth


def interrupt_calls() -> int:
    """Raise ``KeyboardInterrupt`` in every other thread running a call; return how many."""
    hit = 0
    me = threading.get_ident()
    for ident in list(_running):
        if ident != me and ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
        ):
            hit += 1
            wake_thread(ident)
    return hit


def sleep(seconds: float) -> None:
    """``time.sleep`` that :func:`interrupt_calls` can cut short."""
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    cond = threading.Condition(threading.Lock())
    with cond:
        while (left := deadline - time.monotonic()) > 0:
            blocking_wait(cond, left)
