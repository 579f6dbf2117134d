"""Interruptible blocking waits.

CPython runs signal handlers only in the main thread, and remote calls run in other threads.
``interrupt()`` therefore raises ``KeyboardInterrupt`` asynchronously in the thread running a
call (``PyThreadState_SetAsyncExc``), which takes effect at the thread's next bytecode. A thread
blocked on a condition variable runs no bytecode, so every blocking wait of the library goes
through :func:`blocking_wait`, which records the condition so the interrupter can wake it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ("blocking_wait", "wake_thread")

_waiting_on: dict[int, threading.Condition] = {}


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
