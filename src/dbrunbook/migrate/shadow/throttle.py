"""When the copy must wait: fail closed. A check that cannot answer is a reason to wait, never to go on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dbrunbook.errors import DbrunbookError, MigrationError

Check = Callable[[], str | None]


@dataclass(frozen=True)
class Limits:
    max_lag: float = 1.0
    max_active: int | None = None
    critical_active: int | None = None
    pause_file: str | None = None


def load_reason(active: int, lags: list[float | None], limits: Limits, replicas: int) -> str | None:
    """Why the copy should wait given the server's load (None: go)."""
    if limits.critical_active is not None and active >= limits.critical_active:
        raise MigrationError(f"{active} active sessions reach --critical-load {limits.critical_active}: stopped")
    if limits.max_active is not None and active > limits.max_active:
        return f"{active} active sessions (limit {limits.max_active})"
    if len(lags) < replicas:
        return f"{len(lags)} of {replicas} replicas streaming"
    worst = max((lag for lag in lags if lag is not None), default=0.0)
    if worst > limits.max_lag:
        return f"replica lag {worst:.1f}s (limit {limits.max_lag:g}s)"
    return None


@dataclass
class Throttle:
    checks: list[Check]
    pause_file: str | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    interval: float = 0.25
    waited: float = 0.0
    last_reason: str | None = field(default=None)

    def reason(self) -> str | None:
        if self.pause_file and Path(self.pause_file).exists():
            return f"pause file {self.pause_file} exists"
        for check in self.checks:
            try:
                why = check()
            except MigrationError:
                raise
            except DbrunbookError as exc:
                why = f"a throttle check failed: {exc.one_line()}"
            if why:
                return why
        return None

    def wait(self, say: Callable[[str], None]) -> None:
        """Return once no check asks to wait; says why it waits when the reason changes."""
        while (why := self.reason()) is not None:
            if why != self.last_reason:
                say(f"paused: {why}")
            self.last_reason = why
            start = self.clock()
            self.sleep(self.interval)
            self.waited += self.clock() - start
        self.last_reason = None


class DiskLow(Exception):
    """Free space fell under half of ``--min-free``: the run removes capture, then the shadow, and stops."""


_SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, flag: str) -> int:
    """``500M``, ``20G``, ``1T`` or a number of bytes."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise MigrationError(f"{flag} {text!r}: give a size like 500M, 20G or 1T")
    return int(float(m.group(1)) * _SIZES[m.group(2)])


def disk_verdict(free: int | None, min_free: int | None) -> str:
    """``go``, ``pause`` (under ``min_free``: the copy waits, capture goes on) or ``abort`` (under half of it:
    the application's writes must never fail because the tool filled the disk)."""
    if min_free is None or free is None:
        return "go"
    if free < min_free // 2:
        return "abort"
    return "pause" if free < min_free else "go"


@dataclass
class DiskGuard:
    """Free space of the data directory's filesystem, read at most every ``every`` seconds (through the seam)."""

    read: Callable[[], int | None]
    min_free: int
    every: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _at: float = field(default=-1e9)
    _free: int | None = field(default=None)

    def __call__(self) -> str | None:
        if self.clock() - self._at >= self.every:
            self._free, self._at = self.read(), self.clock()
        verdict = disk_verdict(self._free, self.min_free)
        if verdict == "abort":
            raise DiskLow(f"{self._free} bytes free, under half of --min-free ({self.min_free})")
        return f"{self._free} bytes free, under --min-free ({self.min_free})" if verdict == "pause" else None
