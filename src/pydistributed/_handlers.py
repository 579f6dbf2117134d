"""What a process does with each message it receives (Julia's ``process_messages.jl``).

Replies are delivered on the spot by the thread that read them. Calls run as engine tasks:
unpickling the call, running it, and sending or storing its result all happen there, so a
large argument or a slow function never holds up reading.
"""

from __future__ import annotations

import logging
import sys
import traceback
from functools import partial
from typing import Any

from ._cluster import PGRP
from ._exceptions import ProcessExitedException
from ._failure import Failure, capture
from ._interrupt import call_interruptibly
from ._refs import RRID, TABLE, RemoteValue
from ._serialize import dumps, loads, raw_loads
from ._transport import Connection
from .protocol import Frame, Kind

__all__ = ("handle_frame", "report_remote_do_error", "run_call", "send_result")

log = logging.getLogger("pydistributed")

# Module constants: looking a member up on its enum class costs ~0.15 µs each time.
_CALL, _CALL_FETCH, _CALL_WAIT, _REMOTE_DO, _RESULT = (
    Kind.CALL,
    Kind.CALL_FETCH,
    Kind.CALL_WAIT,
    Kind.REMOTE_DO,
    Kind.RESULT,
)
_CALLS = frozenset({_CALL, _CALL_FETCH, _CALL_WAIT, _REMOTE_DO})
_NO_REF = (0, 0)
OK = "ok"
# Results of remotecall at most this large (pickled) are pushed to the caller unasked.
PUSH_LIMIT = 1 << 16
# Payload of the RESULT that answers a CALL whose result was not pushed.
NOT_PUSHED = b""


def handle_frame(conn: Connection, frame: Frame) -> None:
    """Dispatch one received frame (runs in the reading thread; never blocks)."""
    kind = frame.kind
    if kind is _RESULT:
        waiter = conn.pending.pop(frame.response, None)
        if waiter is None:
            _receive_push(conn, frame)
            return
        try:
            value = raw_loads(frame.payload, buffers=frame.buffers)
        except Exception as exc:
            waiter.fail(capture(exc, PGRP.myid).exception())
            return
        if type(value) is Failure:
            waiter.fail(value.exception())
        else:
            waiter.set(value)
    elif kind in _CALLS:
        entry = None
        if kind is _CALL or kind is _CALL_WAIT:
            # Made before the call runs, so a release that overtakes the call finds it.
            entry = TABLE.lookup(RRID(*frame.response))
        PGRP.engine.submit(partial(run_call, conn, frame, entry))
    else:
        log.warning("pydistributed: unexpected %s message from %s", kind.name, conn.peer)


def _receive_push(conn: Connection, frame: Frame) -> None:
    future = conn.awaiting.pop(frame.response, None)
    if future is not None and frame.payload != NOT_PUSHED:
        future._keep(loads(frame.payload, frame.buffers))


def _push(conn: Connection, response: tuple[int, int], value: Any) -> None:
    """Send a small result of a ``remotecall`` to the caller before it asks for it (or
    tell it that the result stays here, so it stops expecting one)."""
    try:
        payload, buffers = dumps(value, conn.peer, by_reference=False)
    except Exception:
        payload, buffers = NOT_PUSHED, []
    if len(payload) > PUSH_LIMIT or buffers:
        payload, buffers = NOT_PUSHED, []
    _send_payload(conn, payload, response)


def send_result(conn: Connection, response: tuple[int, int], value: Any) -> None:
    """Send ``value`` (or a :class:`Failure`) as the reply to ``response``."""
    try:
        payload, buffers = dumps(value, conn.peer)
    except Exception as exc:
        payload, buffers = dumps(capture(exc, PGRP.myid), conn.peer)
    # Replies wait in the outbox while more calls are queued here, to leave in one write;
    # the reply to the last queued call goes out at once.
    engine = PGRP.engine
    try:
        if conn.send(_RESULT, payload, response, _NO_REF, buffers, defer=engine.busy()):
            engine.mark_dirty(conn)
    except ProcessExitedException:
        pass


def _send_payload(conn: Connection, payload: bytes, response: tuple[int, int]) -> None:
    """Send an already pickled result (no out-of-band buffers) as the reply to ``response``."""
    engine = PGRP.engine
    try:
        if conn.send(_RESULT, payload, response, _NO_REF, (), defer=engine.busy()):
            engine.mark_dirty(conn)
    except ProcessExitedException:
        pass


def run_call(conn: Connection, frame: Frame, entry: RemoteValue | None) -> None:
    """Run a received call and deliver its result as its kind says."""
    kind = frame.kind
    failed = False
    try:
        function, args, kwargs = raw_loads(frame.payload, buffers=frame.buffers)
        frame.payload = b""
        value = call_interruptibly(function, args, kwargs)
    except BaseException as exc:
        failed = True
        if kind is _REMOTE_DO:
            report_remote_do_error(exc)
            return
        value = capture(exc, PGRP.myid)
    if kind is _CALL_FETCH:
        send_result(conn, frame.response, value)
    elif kind is _CALL or kind is _CALL_WAIT:
        assert entry is not None
        entry.store.put(value)
        if kind is _CALL:
            _push(conn, frame.response, value)
        else:
            send_result(conn, frame.notify, value if failed else OK)


def report_remote_do_error(exc: BaseException) -> None:
    """Print the error of a ``remote_do`` call on this process's stderr."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    print(f"Error in remote_do on process {PGRP.myid}:\n{text}", file=sys.stderr, flush=True)
