"""Shipping code (by value and by reference) and large data to the workers."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import pydistributed as dist
from support import identity

COUNTER = 0
SCALE = 3


def bump() -> int:
    """Importable: runs on the worker's own copy of this module, whose state persists."""
    global COUNTER
    COUNTER += 1
    return COUNTER


def module_is_loaded_here(name: str) -> bool:
    return name in sys.modules


def make_adder(n: int) -> Any:
    def add(x: int) -> int:
        return x + n

    return add


class Point:
    """An importable class: instances travel by reference to it."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


def test_importable_function_travels_by_reference(cluster: list[int]) -> None:
    a = cluster[0]
    first = dist.remotecall_fetch(bump, a)
    assert dist.remotecall_fetch(bump, a) == first + 1
    assert COUNTER == 0
    assert dist.remotecall_fetch(module_is_loaded_here, a, __name__)


def test_lambda_travels_by_value(cluster: list[int]) -> None:
    assert dist.remotecall_fetch(lambda x, y=1: x * y + SCALE, cluster[0], 4, y=2) == 11
    # By value: a lambda's globals travel with it; the worker's module state is not used.
    assert dist.remotecall_fetch(lambda: COUNTER, cluster[1]) == 0


def test_closure_travels_by_value(cluster: list[int]) -> None:
    add5 = make_adder(5)
    assert dist.remotecall_fetch(add5, cluster[0], 10) == 15
    offset = 100
    assert dist.remotecall_fetch(lambda x: x + offset, cluster[1], 1) == 101


def test_nested_function_travels_by_value(cluster: list[int]) -> None:
    def inner(values: list[int]) -> int:
        return sum(v * SCALE for v in values)

    assert dist.remotecall_fetch(inner, cluster[0], [1, 2, 3]) == 18


def test_nested_class_travels_by_value(cluster: list[int]) -> None:
    class Box:
        def __init__(self, v: int) -> None:
            self.v = v

    def unbox(box: Box) -> int:
        return box.v * 2

    assert dist.remotecall_fetch(unbox, cluster[0], Box(21)) == 42
    box = dist.remotecall_fetch(lambda: Box(7), cluster[0])
    assert box.v == 7


def test_builtins_partials_and_methods(cluster: list[int]) -> None:
    a = cluster[0]
    assert dist.remotecall_fetch(sorted, a, [3, 1, 2], reverse=True) == [3, 2, 1]
    assert dist.remotecall_fetch(functools.partial(pow, 2), a, 10) == 1024
    assert dist.remotecall_fetch(Point(3, -4).norm1, a) == 7
    assert dist.remotecall_fetch(identity, a, Point(1, 2)) == Point(1, 2)


def test_nested_data_round_trip(cluster: list[int]) -> None:
    value = {"a": [1, 2.5, None, True], ("t", 1): {"s": {1, 2}}, "b": b"\x00\xff" * 10}
    assert dist.remotecall_fetch(identity, cluster[0], value) == value


def test_large_numpy_array_round_trip(cluster: list[int]) -> None:
    array = np.random.default_rng(1).random(50 * 2**20 // 8)
    assert array.nbytes == 50 * 2**20
    back = dist.remotecall_fetch(identity, cluster[0], array)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    assert np.array_equal(back, array)
    assert float(dist.remotecall_fetch(np.sum, cluster[1], array)) == pytest.approx(array.sum())


def test_numpy_arrays_of_many_kinds(cluster: list[int]) -> None:
    arrays = [
        np.arange(100_000, dtype=np.int32).reshape(100, 1000),
        np.arange(200_000, dtype=np.float64)[::2],
        np.asfortranarray(np.ones((300, 300))),
        np.zeros(0),
        np.array(["a", "bc"]),
    ]
    for array, back in zip(
        arrays, dist.remotecall_fetch(identity, cluster[0], arrays), strict=True
    ):
        assert back.dtype == array.dtype
        assert np.array_equal(back, array)


def test_large_bytes_round_trip(cluster: list[int]) -> None:
    data = os.urandom(20 * 2**20)
    assert dist.remotecall_fetch(identity, cluster[0], data) == data
    assert dist.remotecall(identity, cluster[1], data).fetch() == data
    # Inside containers too, and as a keyword argument.
    nested = dist.remotecall_fetch(lambda *, blob: [blob, blob[:10]], cluster[0], blob=data)
    assert nested[0] == data
    assert nested[1] == data[:10]
    assert isinstance(nested[0], bytes)


def test_large_result_made_on_the_worker(cluster: list[int]) -> None:
    data = dist.remotecall_fetch(lambda n: b"\x07" * n, cluster[0], 30 * 2**20)
    assert len(data) == 30 * 2**20
    assert data.count(b"\x07") == len(data)


# -- functions sent as a cached reference (_funcref) ----------------------------------------

_MODULE = "shipped_by_name_{}"


def _write_module(path: Any, name: str, value: int) -> None:
    source = f"def answer():\n    return {value}\n\n\ndef other():\n    return -1\n"
    (path / f"{name}.py").write_text(source)


def _reload(name: str) -> int:
    import importlib

    importlib.invalidate_caches()
    return importlib.reload(sys.modules[name]).answer()


def _import(path: str, name: str) -> int:
    import importlib

    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module(name).answer()


@contextlib.contextmanager
def _module_here_and_on(worker: int, path: Any, name: str, value: int) -> Iterator[Any]:
    """A module written to ``path``, imported here and on ``worker``; forgotten after."""
    import importlib

    _write_module(path, name, value)
    sys.path.insert(0, str(path))
    try:
        module = importlib.import_module(name)
        assert dist.remotecall_fetch(_import, worker, str(path), name) == value
        yield module
    finally:
        sys.path.remove(str(path))
        sys.modules.pop(name, None)


def test_a_function_sent_by_reference_follows_a_reload_on_both_ends(
    workers2: list[int], tmp_path: Any
) -> None:
    import importlib

    w = workers2[0]
    name = _MODULE.format(os.getpid())
    with _module_here_and_on(w, tmp_path, name, 1) as module:
        for _ in range(3):  # the reference is cached on both ends after the first call
            assert dist.remotecall_fetch(module.answer, w) == 1
        before = module.answer
        _write_module(tmp_path, name, 2)
        # Reloaded on the worker only: the master's reference still names `answer`, which the
        # worker now finds as its new function.
        assert dist.remotecall_fetch(_reload, w, name) == 2
        assert dist.remotecall_fetch(module.answer, w) == 2
        # Reloaded here too: a new function object, the same name.
        importlib.invalidate_caches()
        module = importlib.reload(module)
        assert dist.remotecall_fetch(module.answer, w) == 2
        # The function from before the reload is no longer what its name finds here: its
        # cached reference must not be used (it would reach the worker's new `answer`).
        assert dist.remotecall_fetch(before, w) == 1


def test_a_function_whose_name_was_rebound_goes_by_value(
    workers2: list[int], tmp_path: Any
) -> None:
    w = workers2[0]
    with _module_here_and_on(w, tmp_path, _MODULE.format(os.getpid()) + "_rebound", 7) as module:
        original = module.answer
        assert dist.remotecall_fetch(original, w) == 7
        # The name now leads elsewhere here: `original` can no longer go by name (it goes by
        # value), and the reference cached for it must not be used for `other`.
        module.answer = module.other
        assert dist.remotecall_fetch(original, w) == 7
        assert dist.remotecall_fetch(module.answer, w) == -1
