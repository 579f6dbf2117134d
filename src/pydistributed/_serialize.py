"""Turning objects into frame payloads and back.

Plain pickle (protocol 5) does the work; a ``reducer_override`` hands functions and classes
that cannot be found again by their qualified name (anything in ``__main__``, lambdas, nested
functions) to cloudpickle, which ships them by value. Buffers of at least
:data:`OOB_THRESHOLD` bytes (NumPy arrays, and ``bytes`` passed at the top level of a call or
returned from one) leave the pickle stream as out-of-band buffers and go to the socket as they
are.

References (Futures, RemoteChannels) need to know which process a payload goes to, to tell
their owner about the new holder; :func:`dumps` publishes that as :func:`destination`.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

__all__ = ("OOB_THRESHOLD", "destination", "dumps", "loads")

OOB_THRESHOLD = 1 << 16

_context = threading.local()


def destination() -> int:
    """The process id the payload being pickled in this thread is going to (0 if unknown)."""
    return getattr(_context, "dest", 0)


def _importable(obj: Any) -> bool:
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module_name in (None, "__main__") or not qualname or "<" in qualname:
        return False
    module = sys.modules.get(module_name)
    if module is None:
        return False
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is obj


def _by_value(obj: Any) -> tuple[Any, tuple[bytes]]:
    import cloudpickle

    return cloudpickle.loads, (cloudpickle.dumps(obj, protocol=5),)


class _OutOfBandBytes:
    """Carries a large top-level ``bytes`` object out of band."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return bytes, (pickle.PickleBuffer(self.data),)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if (type(obj) is types.FunctionType or isinstance(obj, type)) and not _importable(obj):
            return _by_value(obj)
        return NotImplemented


class _Encoder:
    """A pickler kept per thread: building one costs more than pickling a small message."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.buffers: list[memoryview] = []
        self.pickler = _Pickler(self.out, protocol=5, buffer_callback=self._keep)
        self.busy = False

    def _keep(self, buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < OOB_THRESHOLD:
            return True
        self.buffers.append(view)
        return False

    def encode(self, obj: Any) -> tuple[bytes, list[memoryview]]:
        self.busy = True
        try:
            self.pickler.dump(obj)
            return self.out.getvalue(), self.buffers
        finally:
            self.buffers = []
            self.out.seek(0)
            self.out.truncate()
            self.pickler.clear_memo()
            self.busy = False


def _oob(value: Any) -> Any:
    if type(value) is bytes and len(value) >= OOB_THRESHOLD:
        return _OutOfBandBytes(value)
    return value


def _wrap_value(value: Any) -> Any:
    """Mark a large ``bytes`` value, or large ``bytes`` directly in a tuple, as out of band."""
    if type(value) is bytes:
        return _oob(value)
    if type(value) is tuple and bytes in map(type, value):
        return tuple([_oob(v) for v in value])
    return value


def _wrap_call(message: tuple[Any, tuple[Any, ...], dict[str, Any]]) -> Any:
    """Mark large ``bytes`` arguments of a ``(f, args, kwargs)`` call as out of band."""
    f, args, kwargs = message
    if bytes in map(type, args) or (kwargs and bytes in map(type, kwargs.values())):
        return f, tuple([_oob(a) for a in args]), {k: _oob(v) for k, v in kwargs.items()}
    return message


def dumps(obj: Any, dest: int = 0, *, call: bool = False) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj`` for process ``dest``; return the payload and its out-of-band buffers.

    Large ``bytes`` at the top of ``obj`` (its arguments, with ``call`` for a
    ``(f, args, kwargs)`` message) go out of band.
    """
    encoder: _Encoder | None = getattr(_context, "encoder", None)
    if encoder is None or encoder.busy:
        encoder = _Encoder()
        if not hasattr(_context, "encoder"):
            _context.encoder = encoder
    previous = getattr(_context, "dest", 0)
    _context.dest = dest
    try:
        return encoder.encode(_wrap_call(obj) if call else _wrap_value(obj))
    finally:
        _context.dest = previous


def loads(payload: Any, buffers: Sequence[Any] | None = None) -> Any:
    """Inverse of :func:`dumps`."""
    return pickle.loads(payload, buffers=buffers or ())
