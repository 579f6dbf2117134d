"""Interrupting calls, and blocking waits that an interrupt can cut short.

CPython runs signal handlers only in the main thread, and remote calls run in other threads.
:func:`interrupt_calls` therefore interrupts each thread running a call in one of two ways:

- a thread blocked in a wait of the library (:func:`blocking_wait`, or a reply wait marked
  with :class:`library_wait`) is flagged and woken, and raises ``KeyboardInterrupt`` itself
  at a point where the library's state is consistent (:func:`check`);
- a thread running user code gets ``KeyboardInterrupt`` raised asynchronously
  (``PyThreadState_SetAsyncExc``) at its next bytecode.

Workers replace ``time.sleep`` by :func:`sleep`, built on :func:`blocking_wait`.

What remains out of reach: a call blocked inside C code that does not return to Python (a
socket ``recv`` of the user's own, a long NumPy operation, the user's own ``threading.Event``
``wait()``, ``Lock.acquire()`` or ``queue.Queue.get()`` without a timeout, a lock from another
library) sees the interrupt only once that C call returns.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = (
    "blocking_wait",
    "call_interruptibly",
    "calls_running",
    "check",
    "interrupt_calls",
    "library_wait",
    "pending",
    "sleep",
    "wake_thread",
)

get_ident = threading.get_ident
_waiting_on: dict[int, threading.Condition] = {}
# Threads running a remote call right now (ident -> nesting depth).
_running: dict[int, int] = {}
#: The same, read-only for other modules: ``ident in calls_running`` is the cheapest test.
calls_running: Mapping[int, int] = _running
# Threads inside a wait of the library (ident -> nesting depth), and those told to stop.
_in_wait: dict[int, int] = {}
_pending: set[int] = set()


def _nothing() -> None:
    pass


# Set by the engine: lets a thread running calls in place of the reader hand that role over.
before_block: Callable[[], None] = _nothing


def pending() -> set[int]:
    """Threads whose call was interrupted while they waited (they have not raised yet)."""
    return _pending


def check() -> None:
    """Raise ``KeyboardInterrupt`` if this thread's call was interrupted while it waited."""
    if _pending:
        ident = threading.get_ident()
        if ident in _pending:
            _pending.discard(ident)
            raise KeyboardInterrupt


class library_wait:
    """Marks a stretch where the library waits: an interrupt flags the thread rather than
    raising inside library code; the code calls :func:`check` where it is safe."""

    __slots__ = ("ident",)

    def __enter__(self) -> None:
        self.ident = threading.get_ident()
        _in_wait[self.ident] = _in_wait.get(self.ident, 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        depth = _in_wait.pop(self.ident, 1) - 1
        if depth > 0:
            _in_wait[self.ident] = depth


def blocking_wait(cond: threading.Condition, timeout: float | None = None) -> bool:
    """``cond.wait(timeout)`` (the caller holds ``cond``) that :func:`wake_thread` can wake.

    Raises ``KeyboardInterrupt`` if the current call is interrupted meanwhile.
    """
    before_block()
    ident = threading.get_ident()
    _waiting_on[ident] = cond
    with library_wait():
        try:
            check()
            woken = cond.wait(timeout)
            check()
            return woken
        finally:
            _waiting_on.pop(ident, None)


def wake_thread(ident: int) -> None:
    """Wake thread ``ident`` if it is inside :func:`blocking_wait`."""
    cond = _waiting_on.get(ident)
    if cond is not None:
        with cond:
            cond.notify_all()


def call_interruptibly(function: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Return ``function(*args, **kwargs)``, marking the thread as running a remote call
    meanwhile (an interrupt may hit it)."""
    ident = get_ident()
    depth = _running.get(ident, 0)
    _running[ident] = depth + 1
    try:
        return function(*args, **kwargs)
    finally:
        if depth:
            _running[ident] = depth
        else:
            del _running[ident]
            if _pending:
                _pending.discard(ident)


def interrupt_calls() -> int:
    """Raise ``KeyboardInterrupt`` in every other thread running a call; return how many."""
    hit = 0
    me = threading.get_ident()
    for ident in list(_running):
        if ident == me:
            continue
        if _in_wait.get(ident):
            _pending.add(ident)
            wake_thread(ident)
            hit += 1
        elif ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
        ):
            hit += 1
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
