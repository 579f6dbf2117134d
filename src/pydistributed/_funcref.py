"""Module-level functions, shipped as a cached pickled reference.

Pickling a function by name makes the pickler look the module up and the unpickler import it:
on both ends more work than the rest of a small call. So a caller pickles each module-level
function once, by name, and a call carries those bytes in place of the function; the callee
keeps the function that each such reference named. Both ends check on every use that the name
still leads to the same function, so rebinding the name or reloading the module is seen.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ("reference", "resolve")

# Each cache is emptied when it reaches this many entries.
_LIMIT = 4096

_modules = sys.modules
_references: dict[types.FunctionType, bytes] = {}
_functions: dict[bytes, Callable[..., Any]] = {}


def _found_by_name(f: Any) -> bool:
    return getattr(_modules.get(f.__module__), f.__qualname__, None) is f


def reference(f: types.FunctionType) -> bytes | None:
    """The pickled by-name reference to ``f``, or ``None`` unless ``f`` is a function found
    by its name at the top of its module (not ``__main__``)."""
    ref = _references.get(f)
    if ref is not None:
        if _found_by_name(f):
            return ref
        del _references[f]
        return None
    qualname = f.__qualname__
    if f.__module__ == "__main__" or "." in qualname or not _found_by_name(f):
        return None
    ref = pickle.dumps(f, protocol=5)
    if len(_references) >= _LIMIT:
        _references.clear()
    _references[f] = ref
    return ref


def resolve(ref: bytes) -> Callable[..., Any]:
    """The function a :func:`reference` names, as its module here has it now."""
    f = _functions.get(ref)
    if f is not None and _found_by_name(f):
        return f
    named: Callable[..., Any] = pickle.loads(ref)
    if not callable(named):
        raise TypeError(f"a call named a {type(named).__name__} object, which is not callable")
    if len(_functions) >= _LIMIT:
        _functions.clear()
    _functions[ref] = named
    return named
