"""A one-shot slot one thread fills and another waits on."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ("Waiter",)

_EMPTY = object()


class Waiter:
    """Filled once with a value or an exception; ``wait`` blocks until then.

    Cheaper than ``threading.Event``: one lock, held while empty.
    """

    __slots__ = ("_lock", "error", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Any = _EMPTY
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether the slot was filled."""
        return self.value is not _EMPTY or self.error is not None

    def set(self, value: Any) -> None:
        """Fill the slot with a value (the first fill wins)."""
        if not self.done:
            self.value = value
            self._release()

    def fail(self, error: BaseException) -> None:
        """Fill the slot with an exception (the first fill wins)."""
        if not self.done:
            self.error = error
            self._release()

    def _release(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Block until filled or ``timeout`` seconds passed; return whether it was filled."""
        if self.done:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            self._lock.release()
        return self.done

    def result(self) -> Any:
        """The value, raising the stored exception instead if there is one."""
        if self.error is not None:
            raise self.error
        return self.value
