"""Remote calls: remotecall, remotecall_fetch, remotecall_wait, remote_do."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from ._cluster import PGRP
from ._exceptions import ChannelClosed, FutureAlreadySet, RemoteException
from ._failure import capture
from ._future import Future
from ._handlers import OK, reply_value, report_remote_do_error
from ._refs import RRID, TABLE, RemoteValue, next_id, next_rrid
from ._serialize import dumps
from ._transport import Connection
from ._waiter import Waiter
from .protocol import Kind, encode_frame

__all__ = (
    "call_on_owner",
    "remote_do",
    "remotecall",
    "remotecall_fetch",
    "remotecall_wait",
)

# Errors of the library's own owner-side operations that callers get unwrapped.
_UNWRAPPED = (TimeoutError, FutureAlreadySet, ChannelClosed)
# Grace on top of a remote timeout before the caller stops waiting for the answer.
_GRACE = 5.0

_CALL_FETCH = Kind.CALL_FETCH
_NO_REF = (0, 0)

PoolDispatch = Callable[..., Any]
_pool_dispatch: dict[str, PoolDispatch] = {}


def _is_pid(target: Any) -> bool:
    return isinstance(target, int) and not isinstance(target, bool)


def _on_pool(kind: str, f: Callable[..., Any], pool: Any, args: Any, kwargs: Any) -> Any:
    """Run the pool variant of ``kind`` (installed by the pool module) for a non-id target."""
    dispatch = _pool_dispatch.get(kind)
    if dispatch is None or isinstance(pool, bool):
        raise TypeError(f"expected a process id (int) or a worker pool, got {type(pool).__name__}")
    return dispatch(f, pool, *args, **kwargs)


def _request(
    conn: Connection,
    kind: Kind,
    message: Any,
    timeout: float | None = None,
    response: RRID | None = None,
) -> Any:
    """Send a call that is answered with a RESULT and wait for the answer."""
    # A plain tuple: the key only has to equal the reply's response (or notify) reference.
    key = (PGRP.myid, next_id())
    payload, buffers = dumps(message, conn.peer, call=True)
    if response is None:
        request = encode_frame(kind, payload, key, _NO_REF, buffers)
    else:
        request = encode_frame(kind, payload, response, key, buffers)
    engine = PGRP.engine
    if timeout is None:
        reply = engine.exchange(conn, request, key)
        if reply is not None:
            return reply_value(reply)
    waiter = Waiter()
    pending = conn.pending
    pending[key] = waiter
    try:
        done = engine.read_for(conn, waiter, timeout, request)
    finally:
        pending.pop(key, None)
    if not done:
        raise TimeoutError(f"no answer from process {conn.peer} within {timeout} s")
    if waiter.error is not None:
        raise waiter.error
    return waiter.value


def _run_here(entry: RemoteValue, f: Callable[..., Any], args: Any, kwargs: Any) -> None:
    try:
        value = f(*args, **kwargs)
    except BaseException as exc:
        value = capture(exc, PGRP.myid)
    entry.store.put(value)


def remotecall(f: Callable[..., Any], pid: Any, /, *args: Any, **kwargs: Any) -> Future:
    """Call ``f(*args, **kwargs)`` on process ``pid`` (or a worker of the pool ``pid``).

    Returns at once with a :class:`Future` owned by that process.
    """
    if not _is_pid(pid):
        future: Future = _on_pool("remotecall", f, pid, args, kwargs)
        return future
    me = PGRP.myid
    if pid == me:
        future = Future._make(me, next_rrid(me))
        TABLE.start()
        PGRP.engine.submit(partial(_run_here, TABLE.lookup(future.rrid), f, args, kwargs))
        return future
    conn = PGRP.connection(pid)
    rrid = next_rrid(me)
    payload, buffers = dumps((f, args, kwargs), pid, call=True)
    future = Future._make(pid, rrid)
    conn.awaiting[rrid] = future
    if conn.send(Kind.CALL, payload, rrid, (0, 0), buffers, defer=True):
        PGRP.engine.mark_dirty(conn)
    return future


def remotecall_fetch(f: Callable[..., Any], pid: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Call ``f(*args, **kwargs)`` on ``pid`` and return its value: one request, one reply.

    Raises :class:`RemoteException` if the call raised there, and
    :class:`ProcessExitedException` if the process dies first.
    """
    if type(pid) is not int and not _is_pid(pid):
        return _on_pool("remotecall_fetch", f, pid, args, kwargs)
    if pid == PGRP.myid:
        try:
            return f(*args, **kwargs)
        except Exception as exc:
            raise RemoteException(pid, exc, traceback.format_exc()) from exc
    return _request(PGRP.connection(pid), _CALL_FETCH, (f, args, kwargs))


def remotecall_wait(f: Callable[..., Any], pid: Any, /, *args: Any, **kwargs: Any) -> Future:
    """Like :func:`remotecall`, but return only once the call finished on ``pid``.

    Raises :class:`RemoteException` if the call raised.
    """
    if not _is_pid(pid):
        waited: Future = _on_pool("remotecall_wait", f, pid, args, kwargs)
        return waited
    if pid == PGRP.myid:
        future = remotecall(f, pid, *args, **kwargs)
        return _raise_failure(future)
    rrid = next_rrid(PGRP.myid)
    future = Future._make(pid, rrid)
    answer = _request(PGRP.connection(pid), Kind.CALL_WAIT, (f, args, kwargs), response=rrid)
    assert answer == OK
    return future


def _raise_failure(future: Future) -> Future:
    from ._failure import Failure

    value = TABLE.lookup(future.rrid).store.fetch()
    if type(value) is Failure:
        raise value.exception()
    return future


def _run_and_report(f: Callable[..., Any], args: Any, kwargs: Any) -> None:
    try:
        f(*args, **kwargs)
    except BaseException as exc:
        report_remote_do_error(exc)


def remote_do(f: Callable[..., Any], pid: Any, /, *args: Any, **kwargs: Any) -> None:
    """Run ``f(*args, **kwargs)`` on ``pid`` and forget it: one message, no reply.

    Errors are printed on that process, never returned.
    """
    if not _is_pid(pid):
        _on_pool("remote_do", f, pid, args, kwargs)
        return
    if pid == PGRP.myid:
        PGRP.engine.submit(partial(_run_and_report, f, args, kwargs))
        return
    conn = PGRP.connection(pid)
    payload, buffers = dumps((f, args, kwargs), pid, call=True)
    if conn.send(Kind.REMOTE_DO, payload, buffers=buffers, defer=True):
        PGRP.engine.mark_dirty(conn)


def call_on_owner(
    f: Callable[..., Any], owner: int, *args: Any, timeout: float | None = None
) -> Any:
    """Run one of the library's owner-side operations on ``owner`` and return its value.

    ``TimeoutError``, ``FutureAlreadySet`` and ``ChannelClosed`` raised there are raised here
    as they are, not wrapped in :class:`RemoteException`.
    """
    if owner == PGRP.myid:
        return f(*args)
    wait = None if timeout is None else timeout + _GRACE
    try:
        return _request(PGRP.connection(owner), Kind.CALL_FETCH, (f, args, {}), wait)
    except RemoteException as exc:
        if isinstance(exc.exception, _UNWRAPPED):
            raise exc.exception from None
        raise


def _apply_changes(changes: list[tuple[RRID, int, int]]) -> None:
    TABLE.apply(changes)


def _send_changes(owner: int, changes: list[tuple[RRID, int, int]]) -> None:
    remote_do(_apply_changes, owner, changes)


TABLE.send_changes = _send_changes
