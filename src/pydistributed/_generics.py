"""Module-level ``fetch``, ``wait``, ``put``, ``take`` and ``isready`` (Julia's generics).

They work on Futures, RemoteChannels and Channels, and ``put``/``take``/``wait``/``isready``
on anything with the method of that name (worker pools: ``put(pool, pid)``, ``take(pool)``).
A ``timeout`` is passed on only when given, so objects whose methods take none still work.
"""

from __future__ import annotations

import time
from typing import Any

from ._channel import Channel
from ._future import Future
from ._remotechannel import RemoteChannel

__all__ = ("fetch", "isready", "put", "take", "wait")

_REFERENCES = (Future, RemoteChannel, Channel)


def _method(x: Any, name: str) -> Any:
    method = getattr(x, name, None)
    if not callable(method):
        raise TypeError(f"{name}() is not defined for {type(x).__name__}")
    return method


def fetch(x: Any, /, *, timeout: float | None = None) -> Any:
    """The value of a Future, or the first item of a (Remote)Channel without taking it;
    anything else is returned unchanged.

    Blocks until there is a value; raises ``TimeoutError`` after ``timeout`` seconds, and
    what the object's ``fetch`` raises (:class:`RemoteException` for a failed call).
    """
    if isinstance(x, _REFERENCES):
        return x.fetch() if timeout is None else x.fetch(timeout=timeout)
    return x


def wait(x: Any, /, *, timeout: float | None = None) -> Any:
    """Block until ``x`` is ready: a Future has its value, a channel an item. Returns ``x``.

    ``x`` may be a list or tuple: then every element is waited for (``timeout`` bounds the
    whole wait). A failed call does not raise here (``fetch`` does).

    Raises:
        TimeoutError: ``timeout`` seconds passed first.
        TypeError: ``x`` (or an element) cannot be waited for.
    """
    if isinstance(x, list | tuple):
        deadline = None if timeout is None else time.monotonic() + timeout
        for item in x:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait(item, timeout=left)
        return x
    method = _method(x, "wait")
    if timeout is None:
        method()
    else:
        method(timeout)
    return x


def put(x: Any, v: Any, /, *, timeout: float | None = None) -> Any:
    """``x.put(v)``: set a Future, put an item into a (Remote)Channel, give a worker back to
    a pool. Returns what that returns (``v`` for a Channel, ``x`` for a reference).

    Raises:
        FutureAlreadySet: ``x`` is a Future that has a value.
        ChannelClosed: ``x`` is a closed channel.
        TimeoutError: ``timeout`` seconds passed first.
    """
    method = _method(x, "put")
    return method(v) if timeout is None else method(v, timeout=timeout)


def take(x: Any, /, *, timeout: float | None = None) -> Any:
    """``x.take()``: remove and return the first item of a (Remote)Channel, or a free worker
    of a pool, blocking until there is one.

    Raises:
        TypeError: ``x`` is a Future (a value, not a queue) or has no ``take``.
        ChannelClosed: ``x`` is a closed and drained channel.
        TimeoutError: ``timeout`` seconds passed first.
    """
    method = _method(x, "take")
    return method() if timeout is None else method(timeout=timeout)


def isready(x: Any, /) -> bool:
    """Whether ``fetch(x)``/``take(x)`` would return without blocking."""
    return bool(_method(x, "isready")())
