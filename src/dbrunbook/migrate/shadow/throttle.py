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
