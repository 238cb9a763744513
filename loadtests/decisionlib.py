"""The measuring machinery of ``decisions.py``: two or more sides run in alternation, and
their figures set side by side with the ratio ours/theirs; and what every row sends.

Standard library only, and light: ``decide_starts`` imports it, and the fork servers it
measures preload that.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a request carries: the demo's iris row as JSON, as a botocore client sends it.
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
JSON_TYPE = "application/json"
USER_AGENT = (
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1.0 md/arch#x86_64 lang/python#3.11.7 "
    "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.0"
)


def progress(message: str) -> None:
    print(f"decisions: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``values`` (which must not be empty)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 3) if theirs > 0 else None


def side_by_side(
    ours: Sequence[float], theirs: Sequence[float], theirs_name: str, unit: str, scale: float
) -> dict[str, object]:
    """The medians of two interleaved samples (seconds, shown in ``unit`` after
    multiplying by ``scale``) and their ratio ours/theirs."""
    mine, other = statistics.median(ours), statistics.median(theirs)
    return {
        "ours": round(mine * scale, 3),
        "theirs": round(other * scale, 3),
        "theirs_name": theirs_name,
        "unit": unit,
        "ratio": ratio(mine, other),
        "samples": len(ours),
    }


def turns(names: Sequence[str], rounds: int) -> Iterator[str]:
    """Each name once per round, each round starting with the next name, so no side is
    always first (or always after the same one)."""
    for round_number in range(rounds):
        first = round_number % len(names)
        yield from [*names[first:], *names[:first]]


def interleaved(sides: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each side once, discarded (a warm-up), then once per round in ``turns``;
    return each side's results."""
    for run in sides.values():
        run()
    results: dict[str, list[float]] = {name: [] for name in sides}
    for name in turns(list(sides), rounds):
        results[name].append(sides[name]())
    return results


async def interleaved_async(
    sides: Mapping[str, Callable[[], Awaitable[float]]], rounds: int, *, warm_up: bool = True
) -> dict[str, list[float]]:
    """``interleaved`` for coroutine functions (``warm_up`` False: no discarded run)."""
    if warm_up:
        for run in sides.values():
            await run()
    results: dict[str, list[float]] = {name: [] for name in sides}
    for name in turns(list(sides), rounds):
        results[name].append(await sides[name]())
    return results


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``fn``, over ``calls`` calls."""
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls
