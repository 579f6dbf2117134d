"""A failed call, as it travels back to the caller.

The exception is pickled on its own, so that a caller that cannot unpickle it (its class is
unknown there, or it holds something unpicklable) still gets a :class:`RemoteException` with a
stand-in keeping the type name and message.
"""

from __future__ import annotations

import pickle
import traceback as tb
from typing import Any

import cloudpickle

from ._exceptions import RemoteException, RemoteExceptionStandIn

__all__ = ("Failure", "capture")


class Failure:
    """What a remote process sends back instead of a value when a call raised."""

    __slots__ = ("blob", "message", "pid", "traceback", "type_name")

    def __init__(self, pid: int, blob: bytes | None, type_name: str, message: str, traceback: str):
        self.pid = pid
        self.blob = blob
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return Failure, (self.pid, self.blob, self.type_name, self.message, self.traceback)

    def exception(self) -> RemoteException:
        """The :class:`RemoteException` to raise on the caller."""
        original: BaseException
        try:
            original = pickle.loads(self.blob) if self.blob is not None else None  # type: ignore[assignment]
        except Exception:
            original = None  # type: ignore[assignment]
        if not isinstance(original, BaseException):
            original = RemoteExceptionStandIn(self.type_name, self.message)
        if isinstance(original, RemoteException):
            return original
        return RemoteException(self.pid, original, self.traceback)


def capture(exc: BaseException, pid: int) -> Failure:
    """Record ``exc`` (being handled on process ``pid``) for sending."""
    if isinstance(exc, RemoteException):
        text = exc.traceback
    else:
        text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    try:
        # cloudpickle ships exception classes of __main__ by value (the caller may not find
        # them by name), and gives a class that came from the caller back as that class.
        blob: bytes | None = cloudpickle.dumps(exc, protocol=5)
    except Exception:
        blob = None
    name = type(exc).__qualname__
    module = type(exc).__module__
    if module != "builtins":
        name = f"{module}.{name}"
    return Failure(pid, blob, name, str(exc), text)
