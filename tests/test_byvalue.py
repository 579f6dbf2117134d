"""Functions shipped by value are pickled once while nothing they are made of changes."""

from __future__ import annotations

import math
from typing import Any

import pydistributed as dist
from pydistributed import _byvalue
from pydistributed._serialize import _importable

SCALE = 2
ITEMS = [1]


def make(kind: str) -> Any:
    offset = 10

    def plain(x: int) -> int:
        return x * SCALE + int(math.sqrt(4))

    def closure(x: int) -> int:
        return x + offset

    def listed() -> int:
        return len(ITEMS)

    return {"plain": plain, "closure": closure, "listed": listed}[kind]


def test_kept_while_unchanged() -> None:
    f = make("plain")
    first = _byvalue.pickled(f, _importable)
    assert _byvalue.pickled(f, _importable) is first


def test_kept_for_new_functions_of_the_same_code() -> None:
    # A lambda or nested function is a new object each time its definition runs.
    assert _byvalue.pickled(make("plain"), _importable) is _byvalue.pickled(
        make("plain"), _importable
    )


def adder(n: int) -> Any:
    return lambda x: x + n


def test_closures_of_the_same_code_keep_their_own_values(workers2: list[int]) -> None:
    w = workers2[0]
    assert [dist.remotecall_fetch(adder(n), w, 1) for n in (1, 5, 1, 5)] == [2, 6, 2, 6]


def test_not_kept_with_mutable_dependencies() -> None:
    f = make("listed")
    assert _byvalue.pickled(f, _importable) is not _byvalue.pickled(f, _importable)


def test_a_changed_global_is_shipped(workers2: list[int]) -> None:
    global SCALE
    f = make("plain")
    w = workers2[0]
    try:
        assert dist.remotecall_fetch(f, w, 1) == 4
        SCALE = 3
        assert dist.remotecall_fetch(f, w, 1) == 5
    finally:
        SCALE = 2


def test_a_changed_closure_or_default_is_shipped(workers2: list[int]) -> None:
    w = workers2[0]
    offset = 10

    def g(x: int, y: int = 0) -> int:
        return x + y + offset

    assert dist.remotecall_fetch(g, w, 1) == 11
    offset = 20
    assert dist.remotecall_fetch(g, w, 1) == 21
    g.__defaults__ = (100,)
    assert dist.remotecall_fetch(g, w, 1) == 121


def test_a_mutated_global_list_is_shipped(workers2: list[int]) -> None:
    f = make("listed")
    w = workers2[0]
    assert dist.remotecall_fetch(f, w) == 1
    ITEMS.append(2)
    try:
        assert dist.remotecall_fetch(f, w) == 2
    finally:
        del ITEMS[1:]
