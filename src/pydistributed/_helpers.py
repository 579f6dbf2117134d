"""Helper threads kept between uses (pmap's feeders).

Starting a thread makes the starting thread wait until the new one runs, which on a busy
machine costs more than a short ``pmap`` itself; an idle helper is woken instead, and the
thread that woke it goes on at once. Helpers are daemon threads and exit after
:data:`IDLE_EXIT` seconds without work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ("IDLE_EXIT", "Group")

log = logging.getLogger("pydistributed")

IDLE_EXIT = 30.0

_idle: list[_Helper] = []
_idle_lock = threading.Lock()


class _Helper:
    __slots__ = ("_go", "_job")

    def __init__(self) -> None:
        self._job: Callable[[], object] | None = None
        self._go = threading.Lock()
        self._go.acquire()
        threading.Thread(target=self._loop, name="pydistributed-helper", daemon=True).start()

    def give(self, job: Callable[[], object]) -> None:
        self._job = job
        self._go.release()

    def _loop(self) -> None:
        while True:
            if not self._go.acquire(timeout=IDLE_EXIT):
                with _idle_lock:
                    if self in _idle:
                        _idle.remove(self)
                        return
                self._go.acquire()  # taken off the idle list just now: a job is coming
            job, self._job = self._job, None
            try:
                if job is not None:
                    job()
            except BaseException:
                log.exception("pydistributed helper job failed")
            with _idle_lock:
                _idle.append(self)


class Group:
    """Jobs run on helper threads; :meth:`join` waits until all of them returned."""

    __slots__ = ("_cond", "_running")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._running = 0

    def start(self, job: Callable[[], object]) -> None:
        """Run ``job()`` on an idle helper (a new one if none is idle); exceptions are
        logged, so ``job`` should handle its own."""
        with self._cond:
            self._running += 1
        with _idle_lock:
            helper = _idle.pop() if _idle else None
        if helper is None:
            helper = _Helper()
        helper.give(lambda: self._run(job))

    def _run(self, job: Callable[[], object]) -> None:
        try:
            job()
        finally:
            with self._cond:
                self._running -= 1
                if not self._running:
                    self._cond.notify_all()

    def join(self) -> None:
        """Block until every job started in this group returned."""
        from ._interrupt import blocking_wait

        with self._cond:
            while self._running:
                blocking_wait(self._cond)
