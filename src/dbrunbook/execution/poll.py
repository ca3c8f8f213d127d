"""Waiting for something on a host or in the repository: one loop, with a clock a test can replace.

Every wait in dbrunbook (a WAL segment reaching the repository, a restored server reaching its target, a
sandbox server coming up) is "ask, and if the answer is not there yet, sleep a little and ask again, until
a deadline". Written once here, so a test can run any of them with :class:`FakeClock` and never sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


REAL = Clock()


@dataclass
class FakeClock(Clock):
    """Time that passes only when slept: a wait of an hour runs in microseconds."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.monotonic = lambda: self.now
        self.sleep = self._sleep

    def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    clock: Clock = REAL,
) -> T | None:
    """Call ``check`` until it returns something other than None or False, and return that; None when
    ``timeout`` seconds pass first. ``check`` may raise to stop early (a server that stopped for good)."""
    deadline = clock.monotonic() + timeout
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if clock.monotonic() >= deadline:
            return None
        clock.sleep(interval)
