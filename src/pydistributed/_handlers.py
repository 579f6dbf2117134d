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
from ._interrupt import running_call
from ._refs import RRID, TABLE, RemoteValue
from ._serialize import dumps, loads
from ._transport import Connection
from .protocol import Frame, Kind

__all__ = ("handle_frame", "run_call", "send_result")

log = logging.getLogger("pydistributed")

_CALLS = frozenset({Kind.CALL, Kind.CALL_FETCH, Kind.CALL_WAIT, Kind.REMOTE_DO})
OK = "ok"
# Results of remotecall at most this large (pickled) are pushed to the caller unasked.
PUSH_LIMIT = 1 << 16
# Payload of the RESULT that answers a CALL whose result was not pushed.
NOT_PUSHED = b""


def handle_frame(conn: Connection, frame: Frame) -> None:
    """Dispatch one received frame (runs in the reading thread; never blocks)."""
    kind = frame.kind
    if kind is Kind.RESULT:
        waiter = conn.pending.pop(frame.response, None)
        if waiter is None:
            _receive_push(conn, frame)
            return
        try:
            value = loads(frame.payload, frame.buffers)
        except Exception as exc:
            waiter.fail(capture(exc, PGRP.myid).exception())
            return
        if type(value) is Failure:
            waiter.fail(value.exception())
        else:
            waiter.set(value)
    elif kind in _CALLS:
        entry = None
        if kind is not Kind.CALL_FETCH and kind is not Kind.REMOTE_DO:
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
        payload, buffers = dumps(value, conn.peer)
    except Exception:
        payload, buffers = NOT_PUSHED, []
    if len(payload) > PUSH_LIMIT or buffers:
        payload, buffers = NOT_PUSHED, []
    _send(conn, payload, response, [])


def send_result(conn: Connection, response: tuple[int, int], value: Any) -> None:
    """Send ``value`` (or a :class:`Failure`) as the reply to ``response``."""
    try:
        payload, buffers = dumps(value, conn.peer)
    except Exception as exc:
        payload, buffers = dumps(capture(exc, PGRP.myid), conn.peer)
    _send(conn, payload, response, buffers)


def _send(conn: Connection, payload: bytes, response: tuple[int, int], buffers: Any) -> None:
    # Replies wait in the outbox while more calls are queued here, to leave in one write;
    # the reply to the last queued call goes out at once.
    engine = PGRP.engine
    try:
        if conn.send(Kind.RESULT, payload, response, buffers=buffers, defer=engine.busy()):
            engine.mark_dirty(conn)
    except ProcessExitedException:
        pass


def run_call(conn: Connection, frame: Frame, entry: RemoteValue | None) -> None:
    """Run a received call and deliver its result as its kind says."""
    kind = frame.kind
    failed = False
    try:
        function, args, kwargs = loads(frame.payload, frame.buffers)
        frame.payload = b""
        with running_call():
            value = function(*args, **kwargs)
    except BaseException as exc:
        failed = True
        if kind is Kind.REMOTE_DO:
            _report(exc)
            return
        value = capture(exc, PGRP.myid)
    if kind is Kind.CALL_FETCH:
        send_result(conn, frame.response, value)
    elif kind is Kind.CALL or kind is Kind.CALL_WAIT:
        assert entry is not None
        entry.store.put(value)
        if kind is Kind.CALL:
            _push(conn, frame.response, value)
        else:
            send_result(conn, frame.notify, value if failed else OK)


def _report(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    print(f"Error in remote_do on process {PGRP.myid}:\n{text}", file=sys.stderr, flush=True)
