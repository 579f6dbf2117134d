"""Julia's parallel macros as functions and decorators: ``macros.jl``.

``@spawnat p expr`` becomes ``spawnat(p, f, *args)`` or ``@spawnat(p)`` over a ``def`` (the
name is bound to the Future); ``@fetchfrom``, ``@spawn`` and ``@fetch`` likewise;
``@everywhere`` runs source code, or defines a function or class, in ``__main__`` of every
process; ``@distributed`` splits an iterable into one contiguous chunk per worker.
"""

from __future__ import annotations

import functools
import itertools
import sys
import traceback
import types
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ._cluster import PGRP
from ._exceptions import DistributedError, RemoteException
from ._future import Future
from ._helpers import Group
from ._processes import procs, workers
from ._remotecall import remotecall, remotecall_fetch
from ._workerpool import CachingPool

__all__ = ("clear", "distributed", "everywhere", "fetchfrom", "spawn", "spawnat")

T = TypeVar("T")
_MISSING: Any = object()
_turn = itertools.count()


def _next_worker() -> int:
    """Julia's ``nextproc``: the workers in turn."""
    pids = workers()
    return pids[next(_turn) % len(pids)]


def _target(p: int | str) -> int:
    if p == "any":
        return _next_worker()
    if isinstance(p, bool) or not isinstance(p, int):
        raise TypeError(f'expected a process id or "any", not {p!r}')
    return p


def spawnat(p: int | str, f: Callable[..., Any] = _MISSING, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``f(*args, **kwargs)`` on process ``p`` (an id, or ``"any"``: workers in turn).

    Returns a :class:`Future` at once. ``spawnat(myid(), f)`` runs ``f`` on a thread of this
    process (Julia's ``@async``). Called with ``p`` alone it is a decorator: ``@spawnat(2)``
    over a ``def`` starts the function there and binds its name to the Future.
    """
    if f is _MISSING:
        return lambda g: remotecall(g, _target(p))
    return remotecall(f, _target(p), *args, **kwargs)


def spawn(f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
    """``spawnat("any", f, *args, **kwargs)``; also a bare decorator (``@spawn``)."""
    return remotecall(f, _next_worker(), *args, **kwargs)


def fetchfrom(p: int | str, f: Callable[..., Any] = _MISSING, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``f(*args, **kwargs)`` on process ``p`` (an id, or ``"any"``) and return its value.

    Raises :class:`RemoteException` if it raised there. Called with ``p`` alone it is a
    decorator that binds the name to the value: ``@fetchfrom(2)`` over a ``def``.
    """
    if f is _MISSING:
        return lambda g: remotecall_fetch(g, _target(p))
    return remotecall_fetch(f, _target(p), *args, **kwargs)


# -- everywhere ------------------------------------------------------------------------------


def _main_namespace() -> dict[str, Any]:
    return vars(sys.modules["__main__"])


def _exec_in_main(code: str, times: int, as_expression: bool) -> Any:
    namespace = _main_namespace()
    compiled = compile(code, "<everywhere>", "eval" if as_expression else "exec")
    value = None
    for _ in range(times):
        if as_expression:
            value = eval(compiled, namespace)
        else:
            exec(compiled, namespace)
    return value


def _define_in_main(name: str, obj: Any) -> None:
    namespace = _main_namespace()
    if isinstance(obj, types.FunctionType):
        home = sys.modules.get(obj.__module__ or "")
        if home is None or obj.__globals__ is not vars(home):
            obj = _rebind(obj, namespace)
    namespace[name] = obj


def _rebind(f: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    """``f`` shipped by value, its globals now those of ``__main__`` (as in Julia, where a
    function defined everywhere looks its globals up on the process that runs it)."""
    for key, value in f.__globals__.items():
        if not key.startswith("__"):
            namespace.setdefault(key, value)
    g = types.FunctionType(f.__code__, namespace, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__dict__.update(f.__dict__)
    g.__qualname__ = f.__qualname__
    g.__doc__ = f.__doc__
    g.__module__ = "__main__"
    return g


def _target_list(targets: int | Iterable[int] | None) -> list[int]:
    if targets is None:
        return procs()
    if isinstance(targets, int):
        return [targets]
    return [int(p) for p in targets]


def _run_everywhere(
    targets: list[int], function: Callable[..., Any], args: tuple[Any, ...]
) -> dict[int, Any]:
    """Run ``function(*args)`` once on each distinct process of ``targets`` (here last, in
    this thread); return the values, or raise an ExceptionGroup of the failures."""
    me = PGRP.myid
    distinct = list(dict.fromkeys(targets))
    futures: dict[int, Future] = {}
    errors: dict[int, Exception] = {}
    for pid in distinct:
        if pid != me:
            try:
                futures[pid] = remotecall(function, pid, *args)
            except DistributedError as exc:
                errors[pid] = exc
    values: dict[int, Any] = {}
    if me in distinct:
        try:
            values[me] = function(*args)
        except Exception as exc:
            errors[me] = RemoteException(me, exc, traceback.format_exc())
    for pid, future in futures.items():
        try:
            values[pid] = future.fetch()
        except DistributedError as exc:
            errors[pid] = exc
    if errors:
        failed = [errors[pid] for pid in distinct if pid in errors]
        raise ExceptionGroup(
            f"everywhere failed on {len(failed)} of {len(distinct)} processes", failed
        )
    return values


def everywhere(code: Any = _MISSING, procs: int | Iterable[int] | None = None) -> Any:
    """Run source code, or define a function or class, in ``__main__`` of every process.

    ``everywhere("import numpy as np")`` executes the code on every process (this one
    included; ``procs=`` names others, and a process listed twice runs it twice), in
    parallel, and returns when all are done. With ``procs`` a single id and the code an
    expression, its value is returned.

    ``everywhere(f)`` (or ``@everywhere`` / ``@everywhere(procs=[...])`` over a ``def`` or
    ``class``) binds ``f`` by its name in ``__main__`` of those processes, so that code run
    there later can use it, and returns ``f``. A function sent by value looks its globals
    up in ``__main__`` there (those it used here are added where missing).

    Raises:
        ExceptionGroup: of one :class:`RemoteException` (or ``ProcessExitedException``) per
            process where it failed.
        SyntaxError: the code does not compile (checked here, before anything is sent).
    """
    if code is _MISSING:
        return lambda obj: everywhere(obj, procs=procs)
    targets = _target_list(procs)
    if isinstance(code, str):
        as_expression = isinstance(procs, int) and _is_expression(code)
        compile(code, "<everywhere>", "eval" if as_expression else "exec")
        counts: dict[int, int] = {}
        for pid in targets:
            counts[pid] = counts.get(pid, 0) + 1
        # One call per process, running the code as many times as the process is listed.
        values: dict[int, Any] = {}
        for times in sorted(set(counts.values())):
            group = [p for p in counts if counts[p] == times]
            values.update(_run_everywhere(group, _exec_in_main, (code, times, as_expression)))
        return values.get(procs) if as_expression and isinstance(procs, int) else None
    name = getattr(code, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"everywhere expects source code, a function or a class, not {code!r}")
    _run_everywhere(targets, _define_in_main, (name, code))
    return code


def _is_expression(code: str) -> bool:
    try:
        compile(code, "<everywhere>", "eval")
    except SyntaxError:
        return False
    return True


# -- distributed -------------------------------------------------------------------------------


def splitrange(n: int, np: int) -> list[tuple[int, int]]:
    """Julia's ``splitrange``: ``[lo, hi)`` bounds of at most ``np`` contiguous chunks of
    ``range(n)`` whose sizes differ by at most one (fewer chunks when ``n < np``)."""
    each, extras = divmod(n, np)
    chunks = []
    lo = 0
    for _ in range(np if each > 0 else extras):
        hi = lo + each + (1 if extras > 0 else 0)
        extras -= 1
        chunks.append((lo, hi))
        lo = hi
    return chunks


def _chunks(iterable: Iterable[Any], np: int) -> list[Sequence[Any]]:
    seq: Sequence[Any]
    if isinstance(iterable, Sequence) or hasattr(iterable, "__array__"):
        seq = iterable  # type: ignore[assignment]
    else:
        seq = list(iterable)
    return [seq[lo:hi] for lo, hi in splitrange(len(seq), np)]


def _reduce_chunk(
    reducer: Callable[[Any, Any], Any], body: Callable[[Any], Any], chunk: Any
) -> Any:
    return functools.reduce(reducer, map(body, chunk))


def _run_chunk(body: Callable[[Any], Any], chunk: Any) -> None:
    deque(map(body, chunk), maxlen=0)


def distributed(*args: Any) -> Callable[[Callable[[Any], Any]], Any]:
    """Julia's ``@distributed``: a parallel for loop over ``iterable``, one chunk per worker.

    ``distributed(reducer, iterable)(body)`` splits ``iterable`` into contiguous chunks
    (Julia's ``splitrange``: one per worker, sizes differing by at most one, fewer when the
    iterable is shorter), reduces ``body(i)`` over each chunk with ``reducer`` on its worker,
    and returns the reduction of those partial results, in chunk order, made here. As a
    decorator, ``@distributed(operator.add, range(n))`` over a ``def`` binds its name to the
    result.

    ``distributed(iterable)(body)`` (no reducer) starts ``body(i)`` for every ``i`` at once
    and returns the list of Futures, one per chunk (their values are None).

    A ``range`` travels as a ``range``; other sequences as slices; any other iterable is
    made a list first.
    """
    if len(args) == 2:
        reducer, iterable = args
        return lambda body: _preduce(reducer, body, iterable)
    if len(args) == 1:
        (iterable,) = args
        return lambda body: _pfor(body, iterable)
    raise TypeError("distributed expects (reducer, iterable) or (iterable)")


def _preduce(reducer: Callable[[Any, Any], Any], body: Callable[[Any], Any], iterable: Any) -> Any:
    pids = workers()
    chunks = _chunks(iterable, len(pids))
    if not chunks:
        raise ValueError("distributed: reduction over an empty iterable")
    # One remotecall_fetch per chunk, each from its own thread: a single message each way,
    # the answer read by the thread waiting for it.
    partials: list[Any] = [None] * len(chunks)
    errors: list[BaseException | None] = [None] * len(chunks)

    def reduce_on(i: int) -> None:
        try:
            partials[i] = remotecall_fetch(_reduce_chunk, pids[i], reducer, body, chunks[i])
        except BaseException as exc:
            errors[i] = exc

    helpers = Group()
    for i in range(1, len(chunks)):
        helpers.start(functools.partial(reduce_on, i))
    try:
        reduce_on(0)
    finally:
        helpers.join()
    for error in errors:
        if error is not None:
            raise error
    return functools.reduce(reducer, partials)


def _pfor(body: Callable[[Any], Any], iterable: Any) -> list[Future]:
    pids = workers()
    return [
        remotecall(_run_chunk, pid, body, chunk)
        for pid, chunk in zip(pids, _chunks(iterable, len(pids)), strict=False)
    ]


# -- clear ---------------------------------------------------------------------------------------


def _clear_names(names: list[str], module_name: str) -> None:
    module = sys.modules.get(module_name)
    if module is None:
        return
    namespace = vars(module)
    for name in names:
        if name in namespace:
            namespace[name] = None


def clear(
    names: CachingPool | str | Iterable[str],
    pids: int | Iterable[int] | None = None,
    mod: str = "__main__",
) -> Any:
    """Julia's ``clear!``: empty a :class:`CachingPool`, or set global names to None.

    ``clear(pool)`` drops the functions a CachingPool cached on its workers and returns the
    pool. ``clear(names, pids=None, mod="__main__")`` sets each global of ``names`` (one name
    or several) that is defined in module ``mod`` to None on processes ``pids`` (default:
    every worker); names not defined there are ignored. Waits until done everywhere.

    Raises:
        ExceptionGroup: of the failures, one per process.
    """
    if isinstance(names, CachingPool):
        return names.clear()
    names = [names] if isinstance(names, str) else list(names)
    targets = workers() if pids is None else _target_list(pids)
    _run_everywhere(targets, _clear_names, (names, mod))
    return None
