"""Where a process reads its connections and runs the calls it receives.

One thread at a time is the *leader*: it waits in ``epoll`` for any connection to become
readable, reads it and dispatches the frames. Replies go to their waiters on the spot; calls
become *tasks*. A leader with tasks to run gives up the role without waking anybody and runs
them itself, then takes the role back: a quick call costs no thread hand-off at all, which on
a virtual machine (where waking another CPU is the dearest thing a round trip does) is most of
the latency.

A task that blocks must not stop the others. Every blocking wait of the library calls
:meth:`Engine.about_to_block`, which hands the role to another thread at once; for anything
else (``time.sleep``, a long computation) a watchdog, which ticks only while calls are
running, hands the role over once it has been vacant for :data:`STALE` seconds, and the new
leader runs queued tasks that made no progress meanwhile.

A thread outside the pool waiting for a reply may read the connection itself
(:meth:`Engine.read_for`): it takes the connection's ``read_lock`` and disarms it in the epoll
set, so exactly one thread reads each connection at any time.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from . import _interrupt
from ._exceptions import ProcessExitedException, ProtocolError
from ._transport import Connection
from ._waiter import Waiter
from .protocol import Frame, Kind

__all__ = ("FLUSH_DELAY", "STALE", "Engine", "Outbox")

log = logging.getLogger("pydistributed")

STALE = 0.002
FLUSH_DELAY = 0.0003
_TICK = 0.002
_WATCH_IDLE = 0.5
# While threads outside the engine defer frames (within the last _FAST_IDLE seconds), the
# watchdog ticks every FLUSH_DELAY, or up to _SLOW_FLUSH when those threads flush their
# frames themselves (they send or block next) - fewer wake-ups to compete for the GIL.
_FAST_IDLE = 0.05
_SLOW_FLUSH = 0.0012
_IDLE_EXIT = 30.0
_SLICE = 0.1
_KEEP_THREADS = 2
# Level-triggered: only the leader waits in epoll; a thread that reads a connection itself
# takes it out of the set meanwhile (see read_for).
_ARMED = select.EPOLLIN
# The real sleep: workers replace time.sleep by an interruptible one for the calls they run.
_sleep = time.sleep
get_ident = threading.get_ident
_VACANT = 0
_COMING = -1
_RESULT = Kind.RESULT


class Outbox(Protocol):
    """Frames waiting to be sent: a :class:`Connection`, or anything that batches like one."""

    def flush(self) -> None:
        """Send them now."""

    def try_flush(self) -> bool:
        """Send what can go without waiting; return whether nothing is left."""


class Engine:
    """The reading and call-running threads of one process.

    Args:
        handle_frame: called for every frame received, by whichever thread read it; it must
            not block, and returns a task (a zero-argument callable) to run on a pool thread,
            or ``None``.
        on_lost: called once for a connection that reached EOF or sent garbage.
    """

    def __init__(
        self,
        handle_frame: Callable[[Connection, Frame], Callable[[], object] | None],
        on_lost: Callable[[Connection], None],
    ) -> None:
        self._handle_frame = handle_frame
        self._on_lost = on_lost
        self._epoll = select.epoll()
        self._conns: dict[int, Connection] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._woken = False
        self._tasks: deque[Callable[[], object]] = deque()
        #: How many calls are queued, waiting to run (a bound C method: it is on hot paths).
        self.busy: Callable[[], int] = self._tasks.__len__
        self._state = threading.Lock()
        self._follow = threading.Condition(self._state)
        self._watch = threading.Condition(self._state)
        # The leading thread's ident, _VACANT, or _COMING (a follower was told to take it).
        self._leader = _VACANT
        self._vacant_since = 0.0
        self._last_vacate = 0.0
        self._watching = False
        self._inline: set[int] = set()
        # Runners blocked inside a task: not counted in _runners until that task returns,
        # since they will not pop the next task soon.
        self._stuck: set[int] = set()
        self._threads = 0
        self._idle = 0
        self._runners = 0
        self._last_pop = 0.0
        self._started = False
        self._dirty: set[Outbox] = set()
        self._dirty_since = 0.0
        # A thread outside the engine deferred a frame since the watchdog last looked.
        self._outside = False
        self._outside_seen = 0.0

    # -- connections ------------------------------------------------------------------------

    def add(self, conn: Connection) -> None:
        """Start reading ``conn``."""
        self._conns[conn.fileno] = conn
        self._epoll.register(conn.fileno, _ARMED)
        self.start()

    def _lost(self, conn: Connection) -> None:
        if self._conns.get(conn.fileno) is conn:
            del self._conns[conn.fileno]
            try:
                self._epoll.unregister(conn.fileno)
            except (OSError, ValueError):
                pass
        conn.close()
        with conn.send_lock:
            conn.release_socket()
        self._on_lost(conn)

    # -- threads and tasks ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the first thread and the watchdog (idempotent)."""
        with self._state:
            if self._started:
                return
            self._started = True
            self._promote_locked()
        threading.Thread(target=self._watchdog, name="pydistributed-watchdog", daemon=True).start()
        _interrupt.before_block = self.about_to_block

    def submit(self, task: Callable[[], object]) -> None:
        """Run ``task`` on a pool thread, soon, concurrently with other tasks."""
        self._tasks.append(task)
        if self._leader != get_ident():
            self._kick()

    def mark_dirty(self, conn: Outbox) -> None:
        """``conn`` has deferred frames in its outbox: flush them soon.

        Engine threads flush when they run out of work. Any other thread flushes when it
        sends on the connection or blocks next; failing that, the watchdog, which ticks every
        :data:`FLUSH_DELAY` while such threads defer frames, flushes within about that time.
        So a burst of calls goes out in few writes, and a one-way message followed by a call
        leaves with the call, in one write, without waking a thread (which costs more than
        the rest of the message, on a virtual machine above all).
        """
        if not self._dirty:
            self._dirty_since = time.monotonic()
        self._dirty.add(conn)
        if not self._outside:
            me = get_ident()
            if me != self._leader and me not in self._inline:
                self._outside = True
                if not self._watching:
                    with self._state:
                        if not self._watching:
                            self._watching = True
                            self._watch.notify()

    def flush(self, sending: Connection | None = None) -> None:
        """Send every deferred frame now (but those of ``sending``: they go out with the
        frame the caller writes there next)."""
        while self._dirty:
            try:
                conn = self._dirty.pop()
            except KeyError:
                return
            if conn is sending:
                continue
            try:
                conn.flush()
            except ProcessExitedException:
                pass

    def _flush_without_blocking(self) -> None:
        """:meth:`flush` for the watchdog, which must never block (it promotes leaders): what
        a connection cannot take at once, or whose sender is busy, a pool thread sends."""
        while self._dirty:
            try:
                conn = self._dirty.pop()
            except KeyError:
                return
            try:
                if not conn.try_flush():
                    self.submit(conn.flush)
            except ProcessExitedException:
                pass

    def _flush_due(self) -> float:
        """Seconds until deferred frames must go out (<= 0: now)."""
        return self._dirty_since + FLUSH_DELAY - time.monotonic()

    def _kick(self) -> None:
        if not self._woken:
            self._woken = True
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass

    def about_to_block(self) -> None:
        """Called by a thread before it blocks: send deferred frames, and if it is running
        tasks in place of a leader, hand the role to another thread first (and stop counting
        it as a runner until its task returns)."""
        if self._dirty:
            self.flush()
        me = get_ident()
        if me in self._inline:
            self._hand_over(me)

    def _hand_over(self, me: int) -> None:
        if self._leader == _VACANT or me not in self._stuck:
            with self._state:
                if self._leader == _VACANT:
                    self._promote_locked()
                if me not in self._stuck:
                    self._stuck.add(me)
                    self._runners -= 1

    def _promote_locked(self) -> None:
        self._leader = _COMING
        if self._idle:
            self._follow.notify()
        else:
            self._threads += 1
            threading.Thread(target=self._main, name="pydistributed-engine", daemon=True).start()

    def _main(self) -> None:
        me = get_ident()
        while True:
            with self._state:
                self._idle += 1
                while self._leader != _COMING:
                    if (
                        not self._follow.wait(_IDLE_EXIT)
                        and self._leader != _COMING
                        and self._threads > _KEEP_THREADS
                    ):
                        self._idle -= 1
                        self._threads -= 1
                        return
                self._idle -= 1
                self._leader = me
            self._serve(me)

    def _serve(self, me: int) -> None:
        """Lead; run tasks in place when there are any; lead again unless replaced.

        One loop, the round trip's hot path on the callee: a call read here is run here.
        """
        tasks = self._tasks
        state = self._state
        inline = self._inline
        conns = self._conns
        poll = self._epoll.poll
        wake_r = self._wake_r
        monotonic = time.monotonic
        while True:
            try:
                # Lead until queued tasks need this thread: nobody else runs them, or those
                # who do have not taken one for STALE seconds.
                while not tasks or (self._runners and monotonic() - self._last_pop <= STALE):
                    timeout = STALE if tasks else -1.0
                    if self._dirty:
                        due = self._flush_due()
                        if due <= 0:
                            self.flush()
                            continue
                        timeout = due if timeout < 0 else min(due, timeout)
                    for fd, _mask in poll(timeout):
                        if fd == wake_r:
                            self._drain_kicks()
                            continue
                        conn = conns.get(fd)
                        # Not blocking: another thread may have read what woke us meanwhile.
                        if conn is not None and conn.read_lock.acquire(False):
                            try:
                                alive = self._read(conn, 0)
                            except TimeoutError:
                                alive = True
                            finally:
                                conn.read_lock.release()
                            if not alive:
                                self._lost(conn)
            except BaseException:
                log.exception("pydistributed engine leader failed")
            # Plain acquire/release (no raise in between): cheaper than ``with`` here.
            state.acquire()
            self._vacant_since = self._last_vacate = monotonic()
            self._leader = _VACANT
            self._runners += 1
            if not self._watching:
                self._watching = True
                self._watch.notify()
            state.release()
            inline.add(me)
            try:
                while tasks:
                    try:
                        task = tasks.popleft()
                    except IndexError:
                        break
                    self._last_pop = now = monotonic()
                    if self._dirty and now - self._dirty_since > FLUSH_DELAY:
                        self.flush()
                    try:
                        task()
                    except BaseException:
                        log.exception("pydistributed task failed")
                    finally:
                        if me in self._stuck:
                            with state:
                                self._stuck.discard(me)
                                self._runners += 1
                if self._dirty:
                    self.flush()
            finally:
                inline.discard(me)
                state.acquire()
                self._runners -= 1
                lead_again = self._leader == _VACANT
                if lead_again:
                    self._leader = me
                state.release()
            if not lead_again:
                return

    def _drain_kicks(self) -> None:
        # Drain before clearing the flag: a kick in between would leave the flag set and the
        # pipe empty, and every later kick would be lost. A kick skipped because the flag is
        # still set is seen by the leader's loop checks.
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        self._woken = False

    def _watchdog(self) -> None:
        tick = FLUSH_DELAY
        while True:
            with self._state:
                if not self._watching:
                    tick = FLUSH_DELAY
                    while not self._watching:
                        self._watch.wait()
                fast = self._outside or time.monotonic() - self._outside_seen < _FAST_IDLE
            if fast:
                _sleep(tick)
                # Half the delay is enough here: the next tick would be late.
                if self._dirty and time.monotonic() - self._dirty_since >= FLUSH_DELAY / 2:
                    self._flush_without_blocking()
                    tick = FLUSH_DELAY
                elif self._outside and not self._dirty and tick < _SLOW_FLUSH:
                    # Frames were deferred and their threads sent them: tick less often.
                    tick = min(tick * 2, _SLOW_FLUSH)
            else:
                tick = FLUSH_DELAY
                _sleep(_TICK)
                if self._dirty and self._flush_due() <= 0:
                    self._flush_without_blocking()
            with self._state:
                now = time.monotonic()
                if self._outside:
                    self._outside = False
                    self._outside_seen = now
                if self._leader == _VACANT and now - self._vacant_since >= STALE:
                    self._promote_locked()
                elif (
                    self._leader > 0
                    and now - self._last_vacate > _WATCH_IDLE
                    and now - self._outside_seen > _FAST_IDLE
                    and not self._dirty
                ):
                    self._watching = False
                    # A mark_dirty in between saw _watching still set.
                    if self._dirty or self._outside:
                        self._watching = True

    # -- reading ---------------------------------------------------------------------------

    def _read(self, conn: Connection, timeout: float | None) -> bool:
        """One receive on ``conn`` (read_lock held) and dispatch; False when it is lost.

        Raises ``TimeoutError`` when nothing came within ``timeout`` (0: at once).
        """
        try:
            if not conn.read_some(timeout):
                return False
        except ProtocolError as exc:
            log.warning("dropping connection to %s: %s", conn.peer, exc)
            return False
        self._dispatch(conn)
        return True

    def _dispatch(self, conn: Connection, key: tuple[int, int] | None = None) -> Frame | None:
        """Handle the frames decoded on ``conn`` and queue the tasks they make; with ``key``,
        the RESULT frame answering it is returned instead of handled."""
        frames = conn.decoder.frames
        handle = self._handle_frame
        tasks = self._tasks
        queued = False
        reply = None
        while frames:
            frame = frames.popleft()
            if key is not None and frame.kind is _RESULT and frame.response == key:
                reply, key = frame, None
                continue
            try:
                task = handle(conn, frame)
            except Exception:
                log.exception("failed to handle a %s message from %s", frame.kind.name, conn.peer)
                continue
            if task is not None:
                tasks.append(task)
                queued = True
        if queued and self._leader != get_ident():
            self._kick()
        return reply

    def exchange(
        self, conn: Connection, request: list[bytes | bytearray | memoryview], key: tuple[int, int]
    ) -> Frame | None:
        """Send ``request`` and read ``conn`` in this thread until the RESULT frame answering
        ``key`` comes; return that frame. The round trip's fast path: no waiter, no hand-off.

        Returns ``None``, having sent nothing, when this thread cannot read ``conn`` now
        (another thread reads it, or this thread runs a call that must stay interruptible):
        use :meth:`read_for` then. Raises :class:`ProcessExitedException` when the connection
        is lost.
        """
        me = get_ident()
        if me in self._inline or me in _interrupt.calls_running:
            return None
        read_lock = conn.read_lock
        if not read_lock.acquire(False):
            return None
        try:
            if self._dirty:
                self.flush(conn)
            try:
                self._epoll.modify(conn.fileno, 0)
            except (OSError, ValueError):
                pass
            conn.write_frame(request)
            frames = conn.decoder.frames
            while True:
                try:
                    alive = conn.read_some()
                except ProtocolError as exc:
                    log.warning("dropping connection to %s: %s", conn.peer, exc)
                    alive = False
                if not alive:
                    conn.close()
                    raise ProcessExitedException(conn.peer)
                if len(frames) == 1:  # most often: just the reply
                    frame = frames[0]
                    if frame.kind is _RESULT and frame.response == key:
                        frames.clear()
                        return frame
                reply = self._dispatch(conn, key)
                if reply is not None:
                    return reply
        finally:
            read_lock.release()
            if conn.closed:
                self._lost(conn)
            else:
                try:
                    self._epoll.modify(conn.fileno, _ARMED)
                except (OSError, ValueError):
                    pass

    def read_for(
        self,
        conn: Connection,
        waiter: Waiter,
        timeout: float | None = None,
        request: list[bytes | bytearray | memoryview] | None = None,
    ) -> bool:
        """Wait until ``waiter`` is filled, reading ``conn`` in this thread when nobody else is.

        With ``request`` (a frame from ``encode_frame``), it is sent first: taking the
        connection's read lock before sending means the reply cannot be read by another
        thread first (which would cost a hand-off). Returns whether the waiter was filled
        (False: timed out). A call interrupted while it waits here raises
        ``KeyboardInterrupt`` once the connection is back in order.
        """
        me = get_ident()
        if me not in _interrupt.calls_running:
            return self._read_for(conn, waiter, timeout, request, me)
        with _interrupt.library_wait():
            return self._read_for(conn, waiter, timeout, request, me)

    def _read_for(
        self,
        conn: Connection,
        waiter: Waiter,
        timeout: float | None,
        request: list[bytes | bytearray | memoryview] | None,
        me: int,
    ) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        # about_to_block(), inlined: this is the round trip's hot path. Frames deferred on
        # ``conn`` itself go out with the request, in one write.
        if self._dirty:
            self.flush(conn if request is not None else None)
        # A call waiting here must stay interruptible: it waits in slices.
        in_call = me in self._inline
        if in_call:
            self._hand_over(me)
        while not waiter.done:
            if conn.closed or not conn.read_lock.acquire(blocking=False):
                if request is not None:
                    conn.write_frame(request)
                    request = None
                    continue
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                _interrupt.check()
                waiter.wait(_SLICE if remaining is None else min(remaining, _SLICE))
                continue
            lost = interrupted = False
            try:
                try:
                    self._epoll.modify(conn.fileno, 0)
                except (OSError, ValueError):
                    pass
                if request is not None:
                    conn.write_frame(request)
                    request = None
                while not waiter.done:
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                    if in_call:
                        remaining = _SLICE if remaining is None else min(remaining, _SLICE)
                    try:
                        if not self._read(conn, remaining):
                            lost = True
                            break
                    except TimeoutError:
                        if in_call and me in _interrupt.pending():
                            interrupted = True
                            break
                        if in_call and (deadline is None or time.monotonic() < deadline):
                            continue
                        return False
            finally:
                conn.read_lock.release()
                if lost:
                    self._lost(conn)
                elif not conn.closed:
                    try:
                        self._epoll.modify(conn.fileno, _ARMED)
                    except (OSError, ValueError):
                        pass
            if interrupted:
                _interrupt.check()
        return True
