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

import pickle
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

from ._byvalue import pickled
from ._funcref import reference
from .protocol import Reference

__all__ = ("OOB_THRESHOLD", "destination", "dumps", "loads")

OOB_THRESHOLD = 1 << 16

_context = threading.local()

# When set (by _shm.py): given the destination and the out-of-band buffers of a payload,
# returns them with those that go by reference replaced by their descriptors.
share: Callable[[int, list[memoryview]], Sequence[memoryview | Reference]] | None = None


def destination() -> int:
    """The process id the payload being pickled in this thread is going to (0 if unknown)."""
    encoder: _Encoder | None = getattr(_context, "encoder", None)
    return encoder.dest if encoder is not None and encoder.busy else 0


def _importable(obj: Any) -> bool:
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module_name is None or module_name == "__main__" or not qualname or "<" in qualname:
        return False
    module = sys.modules.get(module_name)
    if module is None:
        return False
    if "." not in qualname:
        return getattr(module, qualname, None) is obj
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is obj


def _by_value(obj: Any) -> tuple[Any, tuple[bytes]]:
    import cloudpickle

    if type(obj) is _FUNCTION:
        return cloudpickle.loads, (pickled(obj, _importable),)
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
        if type(obj) is _FUNCTION:
            # The usual case first, inline: a function found by name at the top of its module.
            name = obj.__module__
            if name != "__main__" and getattr(_modules.get(name), obj.__qualname__, None) is obj:
                return NotImplemented
            if not _importable(obj):
                return _by_value(obj)
        elif isinstance(obj, type) and not _importable(obj):
            return _by_value(obj)
        return NotImplemented


_FUNCTION = types.FunctionType
# Values that hold no buffer and nothing for the reducer: plain pickle.dumps pickles them.
_PLAIN = frozenset({int, float, str, bool, type(None)})
_plain_dumps = pickle.dumps
_modules = sys.modules


class _Encoder:
    """A pickler kept per thread: building one costs more than pickling a small message.

    The pickler writes into a list (``write`` is the list's ``append``): a small message
    arrives as one ``bytes`` object, used as the payload without a copy.
    """

    __slots__ = ("buffers", "busy", "chunks", "dest", "pickler", "write")

    def __init__(self) -> None:
        self.dest = 0
        self.chunks: list[bytes] = []
        self.write = self.chunks.append
        self.buffers: list[memoryview] = []
        self.pickler = _Pickler(self, protocol=5, buffer_callback=self._keep)
        self.busy = False

    def _keep(self, buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < OOB_THRESHOLD:
            return True
        self.buffers.append(view)
        return False


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


def dumps(
    obj: Any, dest: int = 0, *, call: bool = False, by_reference: bool = True
) -> tuple[bytes, Sequence[memoryview | Reference]]:
    """Pickle ``obj`` for process ``dest``; return the payload and its out-of-band buffers.

    Large ``bytes`` at the top of ``obj`` (its arguments, with ``call`` for a
    ``(f, args, kwargs)`` message) go out of band. A call's ``f`` found by name at the top of
    its module goes as a reference (see :mod:`._funcref`): the receiver resolves a ``bytes``
    ``f`` with :func:`._funcref.resolve`. Large buffers for a process of this machine may go
    by reference (:mod:`._shm`): the payload must then be sent to ``dest`` as it is; pass
    ``by_reference=False`` for a payload that may not be.
    """
    if type(obj) in _PLAIN:
        return _plain_dumps(obj, 5), []
    if call:
        f, args, kwargs = obj
        if type(f) is _FUNCTION:
            ref = reference(f)
            if ref is not None:
                obj = (ref, args, kwargs)
                if _PLAIN.issuperset(map(type, args)) and (
                    not kwargs or _PLAIN.issuperset(map(type, kwargs.values()))
                ):
                    return _plain_dumps(obj, 5), []
        if bytes in map(type, args) or (kwargs and bytes in map(type, kwargs.values())):
            obj = _wrap_call(obj)
    elif type(obj) is bytes or type(obj) is tuple:
        obj = _wrap_value(obj)
    try:
        encoder: _Encoder = _context.encoder
    except AttributeError:
        encoder = _context.encoder = _Encoder()
    if encoder.busy:
        # Pickling inside pickling (a reducer that calls dumps): a fresh encoder, made the
        # thread's current one meanwhile so that destination() sees its ``dest``.
        _context.encoder = _Encoder()
        try:
            return dumps(obj, dest, by_reference=False)
        finally:
            _context.encoder = encoder
    encoder.dest = dest
    encoder.busy = True
    chunks = encoder.chunks
    buffers = encoder.buffers
    try:
        encoder.pickler.dump(obj)
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        chunks.clear()
        if buffers:
            encoder.buffers = []
        encoder.pickler.clear_memo()
        encoder.busy = False
    if buffers and dest and by_reference and share is not None:
        return payload, share(dest, buffers)
    # The encoder's list when it stayed empty: the caller gets a list of its own.
    return payload, buffers or []


def loads(payload: Any, buffers: Sequence[Any] | None = None) -> Any:
    """Inverse of :func:`dumps`."""
    return pickle.loads(payload, buffers=buffers or ())


# Imported by modules that unpickle on the hot path, to spare a call.
raw_loads = pickle.loads
