"""Retry delays that grow exponentially: Julia's ``Base.ExponentialBackOff``."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

__all__ = ("ExponentialBackOff",)


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")
    return float(value)


class ExponentialBackOff:
    """An iterable of ``n`` delays (seconds) that grow by about ``factor`` each time.

    As in Julia, each delay is the previous one times ``factor * (1 - jitter + 2 * jitter * r)``
    with ``r`` uniform in ``[0, 1)``, capped at ``max_delay``; the jitter compounds from one
    delay to the next. Unlike Julia, where the first delay is exactly ``first_delay``, the
    jitter applies to every delay: the first is ``first_delay * (1 - jitter + 2 * jitter * r)``,
    capped at ``max_delay``.

    Every iteration draws a fresh sequence; ``len()`` is ``n``.

    Args:
        n: how many delays to yield.
        first_delay: the first delay, before jitter.
        max_delay: the cap on every delay.
        factor: how much each delay grows over the previous one, before jitter.
        jitter: relative spread of the random factor, between 0 (none) and 1.

    Raises:
        ValueError: ``n`` is negative, a delay is negative, ``factor`` is not positive, or
            ``jitter`` is outside ``[0, 1]``.
        TypeError: ``n`` is not an ``int``, or another argument is not a number.

    Example:
        >>> list(ExponentialBackOff(n=3, first_delay=1.0, factor=2.0, jitter=0.0))
        [1.0, 2.0, 4.0]
    """

    __module__ = "pydistributed"
    __slots__ = ("_factor", "_first_delay", "_jitter", "_max_delay", "_n")

    def __init__(
        self,
        n: int = 1,
        first_delay: float = 0.05,
        max_delay: float = 10.0,
        factor: float = 5.0,
        jitter: float = 0.1,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        self._n = n
        self._first_delay = _non_negative("first_delay", first_delay)
        self._max_delay = _non_negative("max_delay", max_delay)
        self._factor = _non_negative("factor", factor)
        if self._factor == 0:
            raise ValueError("factor must be > 0")
        self._jitter = _non_negative("jitter", jitter)
        if self._jitter > 1:
            raise ValueError(f"jitter must be <= 1, not {jitter!r}")

    @property
    def n(self) -> int:
        """How many delays an iteration yields."""
        return self._n

    @property
    def first_delay(self) -> float:
        """The first delay, before jitter."""
        return self._first_delay

    @property
    def max_delay(self) -> float:
        """The cap on every delay."""
        return self._max_delay

    @property
    def factor(self) -> float:
        """The growth from one delay to the next, before jitter."""
        return self._factor

    @property
    def jitter(self) -> float:
        """The relative spread of the random factor applied to each delay."""
        return self._jitter

    def _jittered(self) -> float:
        return 1.0 - self._jitter + random.random() * 2.0 * self._jitter

    def __iter__(self) -> Iterator[float]:
        """Yield ``n`` freshly drawn delays, in seconds."""
        delay = self._first_delay
        for i in range(self._n):
            delay = min(self._max_delay, delay * (self._factor if i else 1.0) * self._jittered())
            yield delay

    def __len__(self) -> int:
        """The number of delays, ``n``."""
        return self._n

    def __repr__(self) -> str:
        return (
            f"ExponentialBackOff(n={self._n}, first_delay={self._first_delay!r}, "
            f"max_delay={self._max_delay!r}, factor={self._factor!r}, jitter={self._jitter!r})"
        )

    def _key(self) -> tuple[int, float, float, float, float]:
        return (self._n, self._first_delay, self._max_delay, self._factor, self._jitter)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExponentialBackOff):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (ExponentialBackOff, self._key())
