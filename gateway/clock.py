"""The gateway's clocks, passed in so tests can control time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    """``wall`` is epoch seconds (SigV4 dates, resource timestamps); ``monotonic`` is for
    durations, deadlines and leases."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
