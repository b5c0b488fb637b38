"""Interleaved rounds and the statistics reported from them.

Every benchmark here compares variants of one operation (raw redis-py, the
extension, flask-redis). On a shared or throttled machine the speed drifts
over seconds, so the variants are measured in rounds, A B C A B C …, each
round starting with the next variant; a ratio is computed within each round,
from measurements taken moments apart, and the median over the rounds is
reported with its interquartile range. Operations that take microseconds
alternate call by call within a round (:func:`alternating`).
"""

from __future__ import annotations

import gc
import statistics
import time
import timeit
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """The median of some measurements and their quartiles."""

    median: float
    low: float  # first quartile
    high: float  # third quartile

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if len(values) < 2:
            return cls(values[0], values[0], values[0])
        low, median, high = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, low, high)


Rounds = dict[str, list[float]]


def interleave(
    measures: Mapping[str, Callable[[], T]], rounds: int, warm_up: bool = True
) -> dict[str, list[T]]:
    """Call each measure once per round, rotating which one goes first.

    :param warm_up: first run a round that is not kept (connections, caches,
        code specialisation).
    :return: for each measure, its result in each round.
    """
    names = list(measures)
    if warm_up:
        for measure in measures.values():
            measure()
    results: dict[str, list[T]] = {name: [] for name in names}
    for round_number in range(rounds):
        start = round_number % len(names)
        for name in names[start:] + names[:start]:
            results[name].append(measures[name]())
    return results


def per_round(
    results: Rounds, combine: Callable[..., float], *names: str
) -> list[float]:
    """``combine`` applied to the named measures of each round."""
    return [
        combine(*values)
        for values in zip(*(results[name] for name in names), strict=True)
    ]


def ratio(results: Rounds, name: str, baseline: str) -> Spread:
    """``name / baseline``, round by round."""
    return Spread.of(per_round(results, lambda a, b: a / b, name, baseline))


def call_timer(
    statement: str,
    namespace: dict[str, object],
    number: int,
    repeat: int = 1,
    context: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Callable[[], float]:
    """A measure: seconds per execution of *statement*, the best of *repeat*
    batches of *number*, each batch run inside ``context()``.

    ``timeit`` compiles the statement into its timing loop once and turns the
    garbage collector off while timing.
    """
    timer = timeit.Timer(statement, globals=namespace)

    def measure() -> float:
        with context():
            return min(timer.repeat(repeat=repeat, number=number)) / number

    return measure


def alternating(
    operations: Mapping[str, Callable[[], object]], calls: int
) -> Callable[[], dict[str, float]]:
    """A measure of several operations at once: each is called *calls* times,
    in turns (A B C, B C A, C A B, …), and each call is timed on its own; the
    result is each operation's median seconds per call.

    Call-by-call turns spread whatever else the machine does evenly over the
    operations, where a burst of other work would slow one block of calls;
    the median ignores the calls such a burst lands on.
    """
    names = list(operations)
    functions = list(operations.values())
    count = len(functions)

    def measure() -> dict[str, float]:
        clock = time.perf_counter
        samples: list[list[float]] = [[] for _ in functions]
        collecting = gc.isenabled()
        gc.disable()
        try:
            for call in range(calls):
                for turn in range(call, call + count):
                    index = turn % count
                    operation = functions[index]
                    started = clock()
                    operation()
                    samples[index].append(clock() - started)
        finally:
            if collecting:
                gc.enable()
        return {
            name: statistics.median(values)
            for name, values in zip(names, samples, strict=True)
        }

    return measure


def bounded(count: int, seconds: float, clock: Callable[[], float]) -> Iterator[int]:
    """``range(count)``, cut short once *seconds* have passed on *clock*."""
    deadline = clock() + seconds
    for index in range(count):
        if clock() >= deadline:
            return
        yield index
