"""The moments that take a lock on the application's table: installing capture, the cut-over and the rollback.
Each is tried under a short lock timeout, again after a jittered pause, and in the end the blocker is named."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from dbrunbook.engines.shadow_base import RunTable, ShadowDialect
from dbrunbook.errors import DbrunbookError, LockTimeout, is_lock_timeout, is_statement_timeout
from dbrunbook.execution.sql import DbSession


@dataclass(frozen=True)
class LockAttempts:
    tries: int = 30
    timeout: float = 0.1
    pause: float = 0.5  # average pause between tries, jittered so that two waiters do not march in step
    kill_idle: bool = False  # --kill-blockers idle: halfway through the tries, end sessions idle in a transaction


def with_lock_retries(
    db: DbSession,
    dialect: ShadowDialect,
    run: RunTable,
    what: str,
    attempt: Callable[[], None],
    limits: LockAttempts,
    *,
    sleep: Callable[[float], None] = time.sleep,
    hint: str | None = None,
) -> tuple[int, float]:
    """Run ``attempt`` until its lock is granted: (tries used, seconds of the successful try)."""
    rng = random.Random()  # noqa: S311 - jitter, not a secret
    ended: list[int] = []
    for n in range(1, limits.tries + 1):
        start = time.monotonic()
        try:
            attempt()
            return n, time.monotonic() - start
        except DbrunbookError as exc:
            # MariaDB bounds a sub-second wait with the statement timer: its timeout is a lock timeout here.
            if not (is_lock_timeout(exc) or is_statement_timeout(exc)):
                raise
        if limits.kill_idle and n == max(1, limits.tries // 2):
            ended += _end_idle(db, dialect, run)
        if n < limits.tries:
            sleep(limits.pause * (0.5 + rng.random()))
    blockers = dialect.blockers(db, run)
    named = "; ".join(b.describe() for b in blockers[:3]) or "a session that has gone since"
    if ended:
        named += f" (ended idle sessions {', '.join(str(p) for p in ended)} did not free it)"
    raise LockTimeout(
        f"{run.info.qualified}: the lock for {what} was not granted in {limits.tries} tries of "
        f"{limits.timeout * 1000:.0f} ms: blocked by {named}",
        hint=hint,
    )


def _end_idle(db: DbSession, dialect: ShadowDialect, run: RunTable) -> list[int]:
    """End the sessions that hold the table in a transaction and do nothing (the audit log records each)."""
    ended = []
    for b in dialect.blockers(db, run):
        if b.idle:
            dialect.terminate(db, b.pid)
            ended.append(b.pid)
    return ended
