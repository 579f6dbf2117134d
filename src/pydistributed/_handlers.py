"""What a process does with each message it receives (Julia's ``process_messages.jl``).

Replies are delivered on the spot by the thread that read them. Calls run as engine tasks:
unpickling the call, running it, and sending or storing its result all happen there, so a
large argument or a slow function never holds up reading.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ._cluster import PGRP
from ._exceptions import ProcessExitedException
from ._failure import Failure, capture
from ._funcref import resolve
from ._interrupt import call_interruptibly
from ._refs import RRID, TABLE, RemoteValue
from ._serialize import dumps, loads, raw_loads
from ._transport import Connection
from .protocol import Frame, Kind, Reference, encode_frame

__all__ = ("handle_frame", "reply_value", "report_remote_do_error", "run_call", "send_result")

log = logging.getLogger("pydistributed")

# Module constants: looking a member up on its enum class costs ~0.15 µs each time.
_CALL, _CALL_FETCH, _CALL_WAIT, _REMOTE_DO, _RESULT = (
    Kind.CALL,
    Kind.CALL_FETCH,
    Kind.CALL_WAIT,
    Kind.REMOTE_DO,
    Kind.RESULT,
)
_NO_REF = (0, 0)
OK = "ok"
# Results of remotecall at most this large (pickled) are pushed to the caller unasked.
PUSH_LIMIT = 1 << 16
# Payload of the RESULT that answers a CALL whose result was not pushed.
NOT_PUSHED = b""


def handle_frame(conn: Connection, frame: Frame) -> Callable[[], object] | None:
    """Dispatch one received frame (runs in the reading thread; never blocks).

    Returns the task that runs a call, for the engine to queue.
    """
    kind = frame.kind
    if kind is _RESULT:
        waiter = conn.pending.pop(frame.response, None)
        if waiter is None:
            _receive_push(conn, frame)
            return None
        try:
            waiter.set(reply_value(frame))
        except Exception as exc:
            waiter.fail(exc)
        return None
    if kind is _CALL_FETCH or kind is _REMOTE_DO:
        return partial(run_call, conn, frame, None)
    if kind is _CALL or kind is _CALL_WAIT:
        # Made before the call runs, so a release that overtakes the call finds it.
        return partial(run_call, conn, frame, TABLE.lookup(RRID(*frame.response)))
    log.warning("pydistributed: unexpected %s message from %s", kind.name, conn.peer)
    return None


def reply_value(frame: Frame) -> Any:
    """The value a RESULT frame carries; raise the error it carries instead."""
    try:
        value = raw_loads(frame.payload, buffers=frame.buffers)
    except Exception as exc:
        value = capture(exc, PGRP.myid)
    if type(value) is Failure:
        raise value.exception()
    return value


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
    _reply(conn, payload, buffers, response)


def send_result(conn: Connection, response: tuple[int, int], value: Any) -> None:
    """Send ``value`` (or a :class:`Failure`) as the reply to ``response``."""
    try:
        payload, buffers = dumps(value, conn.peer)
    except Exception as exc:
        payload, buffers = dumps(capture(exc, PGRP.myid), conn.peer)
    _reply(conn, payload, buffers, response)


def _reply(
    conn: Connection,
    payload: bytes,
    buffers: Sequence[memoryview | Reference],
    response: tuple[int, int],
) -> None:
    """Send a pickled result as the reply to ``response``."""
    # Replies wait in the outbox while more calls are queued here, to leave in one write;
    # the reply to the last queued call goes out at once.
    engine = PGRP.engine
    try:
        if not engine.busy():
            conn.write_frame(encode_frame(_RESULT, payload, response, _NO_REF, buffers))
        elif conn.send(_RESULT, payload, response, _NO_REF, buffers, defer=True):
            engine.mark_dirty(conn)
    except ProcessExitedException:
        pass


def run_call(conn: Connection, frame: Frame, entry: RemoteValue | None) -> None:
    """Run a received call and deliver its result as its kind says."""
    kind = frame.kind
    failed = False
    try:
        function, args, kwargs = raw_loads(frame.payload, buffers=frame.buffers)
        # The task holding the frame may outlive the call: let the arguments' memory go.
        frame.payload, frame.buffers = b"", ()
        if type(function) is bytes:
            function = resolve(function)
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
