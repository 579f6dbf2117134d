"""Functions shipped by value, pickled once while nothing they depend on changes.

cloudpickle pickles a function it cannot refer to by name (one defined in ``__main__``, a
lambda, a nested function) from its code, the globals it names, its closure, defaults and
attributes; that costs ~100 µs even for an empty function, on every call that ships it. The
result is kept (per code object) with a *snapshot* of everything it was made from, and reused
while the snapshot is equal. Only functions whose every dependency is immutable or pickled
by reference are kept (plain values, modules, importable functions and classes): the state of
anything else (a list a global names, a Future in a closure) can change without a trace, and
pickling it can have effects (a Future queues a reference notice).
"""

from __future__ import annotations

import operator
import sys
import types
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ("pickled",)

_MISSING = object()
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_BY_NAME = (types.FunctionType, types.BuiltinFunctionType, type)
_BASE_GLOBALS = ("__package__", "__name__", "__path__", "__file__")

# By code object rather than function: a lambda written in a loop is a new function each
# time, made of the same parts.
_kept: weakref.WeakKeyDictionary[types.CodeType, tuple[tuple[Any, ...], int, bytes]] = (
    weakref.WeakKeyDictionary()
)


_names_of: weakref.WeakKeyDictionary[types.CodeType, list[str]] = weakref.WeakKeyDictionary()


def _names(code: types.CodeType) -> list[str]:
    """The global names ``code`` (and the code nested in it) uses, as cloudpickle finds them."""
    names = _names_of.get(code)
    if names is None:
        from cloudpickle import cloudpickle as cp

        names = _names_of[code] = list(cp._extract_code_globals(code))
    return names


def _plain(value: Any, importable: Callable[[Any], bool]) -> bool:
    """Whether pickling ``value`` depends on nothing but its identity (or value)."""
    if type(value) in _ATOMS or value is _MISSING:
        return True
    if type(value) is tuple:
        return all(_plain(v, importable) for v in value)
    if isinstance(value, types.ModuleType):
        name = value.__name__
        return name != "__main__" and sys.modules.get(name) is value and _by_reference(name)
    if isinstance(value, _BY_NAME):
        module = getattr(value, "__module__", None)
        return module is not None and importable(value) and _by_reference(module)
    return False


def _by_reference(module: str) -> bool:
    from cloudpickle import cloudpickle as cp

    registered = getattr(cp, "_PICKLE_BY_VALUE_MODULES", ())
    return module.split(".")[0] not in registered and module not in registered


def _snapshot(f: types.FunctionType) -> tuple[tuple[Any, ...], list[Any]] | None:
    """What cloudpickle's output for ``f`` is made from (compared by identity), and the parts
    of it that must be plain for the output to be kept; None if it cannot be kept."""
    if f.__dict__ or f.__kwdefaults__:
        return None
    code = f.__code__
    g = f.__globals__
    values = [g.get(name, _MISSING) for name in _names(code)]
    cells = [] if f.__closure__ is None else [c.cell_contents for c in f.__closure__]
    annotations = f.__annotations__
    defaults = f.__defaults__
    made_of = (
        code,
        f.__name__,
        f.__qualname__,
        f.__module__,
        f.__doc__,
        defaults,
        *[g.get(k, _MISSING) for k in _BASE_GLOBALS],
        *values,
        *cells,
        *annotations.keys(),
        *annotations.values(),
    )
    return made_of, [*values, *cells, *(defaults or ()), *annotations.values()]


def pickled(f: types.FunctionType, importable: Callable[[Any], bool]) -> bytes:
    """cloudpickle's pickle of ``f`` (protocol 5), from an earlier call when still valid."""
    import cloudpickle

    try:
        snapshot = _snapshot(f)
    except Exception:  # an empty cell, say
        snapshot = None
    # cloudpickle also ships the submodules of the packages it names that are imported.
    modules = len(sys.modules)
    if snapshot is not None:
        kept = _kept.get(f.__code__)
        if (
            kept is not None
            and kept[1] == modules
            and len(kept[0]) == len(snapshot[0])
            and all(map(operator.is_, kept[0], snapshot[0]))
        ):
            return kept[2]
    data: bytes = cloudpickle.dumps(f, protocol=5)
    if snapshot is not None and all(_plain(v, importable) for v in snapshot[1]):
        _kept[f.__code__] = (snapshot[0], modules, data)
    return data
