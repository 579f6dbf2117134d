"""Tests of ExponentialBackOff (Julia's ``Base.ExponentialBackOff``) and timedwait."""

from __future__ import annotations

import itertools
import math
import pickle
import threading
import time

import pytest

from pydistributed._backoff import ExponentialBackOff
from pydistributed._timedwait import timedwait

# -- ExponentialBackOff --------------------------------------------------------------------------


def test_defaults() -> None:
    b = ExponentialBackOff()
    assert (b.n, b.first_delay, b.max_delay, b.factor, b.jitter) == (1, 0.05, 10.0, 5.0, 0.1)
    assert len(b) == 1
    [d] = list(b)
    assert 0.05 * 0.9 <= d <= 0.05 * 1.1


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_length(n: int) -> None:
    b = ExponentialBackOff(n=n)
    assert len(b) == n
    assert len(list(b)) == n


def test_n_zero_is_empty() -> None:
    assert list(ExponentialBackOff(n=0)) == []


def test_without_jitter_is_geometric_and_capped() -> None:
    b = ExponentialBackOff(n=6, first_delay=0.1, max_delay=1.0, factor=2.0, jitter=0.0)
    assert list(b) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_first_delay_is_capped() -> None:
    b = ExponentialBackOff(n=3, first_delay=5.0, max_delay=2.0, factor=3.0, jitter=0.0)
    assert list(b) == [2.0, 2.0, 2.0]


def test_every_delay_is_jittered_within_bounds() -> None:
    first, factor, jitter, cap = 1.0, 2.0, 0.25, 20.0
    b = ExponentialBackOff(n=8, first_delay=first, max_delay=cap, factor=factor, jitter=jitter)
    for _ in range(200):
        delays = list(b)
        assert len(delays) == 8
        assert all(0 < d <= cap for d in delays)
        assert first * (1 - jitter) <= delays[0] <= first * (1 + jitter)
        # Julia's rule: each delay grows from the previous one by factor * (1 +- jitter),
        # unless capped; so delay k also lies within the compounded band.
        for k in range(1, 8):
            prev, d = delays[k - 1], delays[k]
            if d < cap:
                assert prev * factor * (1 - jitter) <= d <= prev * factor * (1 + jitter)
            lo = first * factor**k * (1 - jitter) ** (k + 1)
            hi = first * factor**k * (1 + jitter) ** (k + 1)
            assert min(lo, cap) <= d <= min(hi, cap)


def test_jitter_compounds_like_julia() -> None:
    # With factor 1 each delay is the previous one times a factor in [0.5, 1.5]. Drawing each
    # delay independently around first_delay instead would break that ratio bound.
    b = ExponentialBackOff(n=6, first_delay=1.0, max_delay=100.0, factor=1.0, jitter=0.5)
    for _ in range(300):
        delays = list(b)
        for prev, d in itertools.pairwise(delays):
            assert 0.5 * prev <= d <= 1.5 * prev


def test_first_delay_is_jittered_too() -> None:
    b = ExponentialBackOff(n=1, first_delay=1.0, jitter=0.5)
    firsts = {next(iter(b)) for _ in range(50)}
    assert len(firsts) > 1
    assert all(0.5 <= d <= 1.5 for d in firsts)


def test_reiteration_is_fresh() -> None:
    b = ExponentialBackOff(n=4, first_delay=0.5, max_delay=100.0, factor=3.0, jitter=0.0)
    expected = pytest.approx([0.5, 1.5, 4.5, 13.5])
    assert list(b) == expected
    assert list(b) == expected
    # Two iterators over one object do not share state.
    i1, i2 = iter(b), iter(b)
    assert next(i1) == pytest.approx(0.5)
    assert next(i1) == pytest.approx(1.5)
    assert next(i2) == pytest.approx(0.5)
    assert list(i1) == pytest.approx([4.5, 13.5])


def test_jittered_reiterations_differ() -> None:
    b = ExponentialBackOff(n=5, first_delay=0.01, factor=2.0, jitter=0.2)
    assert len({tuple(b) for _ in range(20)}) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1},
        {"first_delay": -0.1},
        {"max_delay": -1.0},
        {"factor": 0.0},
        {"factor": -2.0},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"first_delay": math.nan},
        {"jitter": math.nan},
    ],
)
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ExponentialBackOff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"n": 1.5}, {"n": "3"}, {"factor": "2"}])
def test_wrong_types(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        ExponentialBackOff(**kwargs)  # type: ignore[arg-type]


def test_edge_arguments_accepted() -> None:
    assert list(ExponentialBackOff(n=2, first_delay=0.0, jitter=1.0)) == [0.0, 0.0]
    assert len(list(ExponentialBackOff(n=3, max_delay=math.inf, jitter=0.0))) == 3


def test_repr_round_trips() -> None:
    b = ExponentialBackOff(n=3, first_delay=0.5, max_delay=4.0, factor=2.0, jitter=0.2)
    assert repr(b) == (
        "ExponentialBackOff(n=3, first_delay=0.5, max_delay=4.0, factor=2.0, jitter=0.2)"
    )
    assert eval(repr(b), {"ExponentialBackOff": ExponentialBackOff}) == b


def test_equality_and_pickle() -> None:
    b = ExponentialBackOff(n=3, factor=2)
    assert b == ExponentialBackOff(n=3, factor=2.0)
    assert b != ExponentialBackOff(n=4, factor=2.0)
    assert hash(b) == hash(ExponentialBackOff(n=3, factor=2.0))
    copy = pickle.loads(pickle.dumps(b))
    assert copy == b
    assert len(list(copy)) == 3


def test_public_module() -> None:
    assert ExponentialBackOff.__module__ == "pydistributed"


# -- timedwait -----------------------------------------------------------------------------------


def test_timedwait_ok_at_once() -> None:
    calls = []

    def cb() -> bool:
        calls.append(time.monotonic())
        return True

    t0 = time.monotonic()
    assert timedwait(cb, 10.0, pollint=5.0) == "ok"
    assert len(calls) == 1
    assert time.monotonic() - t0 < 1.0


def test_timedwait_ok_after_polls() -> None:
    calls: list[float] = []

    def cb() -> int:
        calls.append(time.monotonic())
        return len(calls) >= 4  # truthy non-bool values count too

    t0 = time.monotonic()
    assert timedwait(cb, 10.0, pollint=0.05) == "ok"
    assert len(calls) == 4
    # Called at once, then about every pollint.
    assert calls[0] - t0 < 0.04
    assert 0.14 <= calls[-1] - t0 < 2.0


def test_timedwait_ok_when_other_thread_sets_event() -> None:
    ev = threading.Event()
    timer = threading.Timer(0.1, ev.set)
    timer.start()
    try:
        assert timedwait(ev.is_set, 5.0, pollint=0.01) == "ok"
    finally:
        timer.cancel()


def test_timedwait_timed_out() -> None:
    calls: list[float] = []

    def cb() -> bool:
        calls.append(time.monotonic())
        return False

    t0 = time.monotonic()
    assert timedwait(cb, 0.3, pollint=0.1) == "timed_out"
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 2.0
    # Once at the start, about once per pollint, and once at the deadline.
    assert 3 <= len(calls) <= 6
    assert calls[-1] - t0 >= 0.29


def test_timedwait_zero_timeout_checks_once_without_waiting() -> None:
    calls = []
    t0 = time.monotonic()
    assert timedwait(lambda: calls.append(1), 0, pollint=10.0) == "timed_out"
    assert calls == [1]
    assert time.monotonic() - t0 < 1.0


def test_timedwait_short_timeout_does_not_wait_a_whole_pollint() -> None:
    t0 = time.monotonic()
    assert timedwait(lambda: False, 0.1, pollint=10.0) == "timed_out"
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("pollint", [0, -0.1, math.nan, math.inf])
def test_timedwait_bad_pollint(pollint: float) -> None:
    with pytest.raises(ValueError):
        timedwait(lambda: True, 1.0, pollint=pollint)


def test_timedwait_nan_timeout() -> None:
    with pytest.raises(ValueError):
        timedwait(lambda: True, math.nan)
