"""A one-shot slot one thread fills and another waits on."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ("Waiter",)


class Waiter:
    """Filled once with a value or an exception; ``wait`` blocks until then.

    Cheaper than ``threading.Event``: most replies are read by the thread that waits for
    them, so the lock is made only by a thread that has to block.
    """

    __slots__ = ("_lock", "done", "error", "value")

    def __init__(self) -> None:
        self._lock: threading.Lock | None = None
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def set(self, value: Any) -> None:
        """Fill the slot with a value (the first fill wins)."""
        if not self.done:
            self.value = value
            self.done = True
            # ``done`` is set before the lock is looked at, and a waiter publishes its lock
            # before it looks at ``done``: one of the two always sees the other.
            if self._lock is not None:
                self._release()

    def fail(self, error: BaseException) -> None:
        """Fill the slot with an exception (the first fill wins)."""
        if not self.done:
            self.error = error
            self.done = True
            if self._lock is not None:
                self._release()

    def _release(self) -> None:
        try:
            self._lock.release()  # type: ignore[union-attr]
        except RuntimeError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Block until filled or ``timeout`` seconds passed; return whether it was filled."""
        if self.done:
            return True
        lock = self._lock
        if lock is None:
            lock = threading.Lock()
            lock.acquire()
            self._lock = lock
            if self.done:
                return True
        if lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            lock.release()
        return self.done

    def result(self) -> Any:
        """The value, raising the stored exception instead if there is one."""
        if self.error is not None:
            raise self.error
        return self.value
