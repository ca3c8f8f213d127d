"""dbrunbook's own state inside a database server, engine-neutral: a versioned bootstrap and advisory locks.

Wave-2 work (shadow-table migrations, versioned migrations, replicas) records its progress in the server it
works on, so that an interrupted run can resume and two runs cannot overlap. This module holds the rules;
the SQL comes from the engine's :class:`~dbrunbook.engines.toolstate_base.ToolStateDialect`
(``engine.tool_state()``)::

    state = engine.tool_state()
    with engine.session(executor, host, login) as db, tool_lock(db, state, "migrate:orders"):
        bootstrap(db, state)
        ...

It sits above ``engines/`` (it uses a dialect and a session), beside ``context.py``, not in
``execution/``: the execution layer never imports engines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from dbrunbook import __version__
from dbrunbook.engines.toolstate_base import BootstrapStep, ToolStateDialect
from dbrunbook.errors import DbrunbookError, ToolLockBusy, ToolStateTooNew, is_lock_timeout
from dbrunbook.execution.sql import DbSession

#: the lock every bootstrap holds, so two runs never apply the same step at once
BOOTSTRAP_LOCK = "bootstrap"
# MariaDB lock names are at most 64 characters; the prefix keeps ours apart from the applications'.
_PREFIX = "dbrunbook:"
_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,54}")


@dataclass(frozen=True)
class BootstrapPlan:
    """What a bootstrap will do to a database at version ``recorded``: apply ``pending``, in order."""

    recorded: int
    known: int
    pending: tuple[BootstrapStep, ...]

    def explain(self) -> str:
        if not self.pending:
            return f"tool state at version {self.recorded}, the newest this dbrunbook knows: nothing to do"
        versions = ", ".join(str(s.version) for s in self.pending)
        return f"tool state at version {self.recorded}: apply {versions} (this dbrunbook knows up to {self.known})"


@dataclass(frozen=True)
class BootstrapResult:
    before: int
    after: int
    applied: tuple[int, ...]


def check_steps(steps: Sequence[BootstrapStep]) -> None:
    """Steps are numbered 1, 2, 3… with no gap, each with statements: a gap would leave a version that
    no database can reach, and a reordering would apply steps out of the order they were written for."""
    for position, step in enumerate(steps, start=1):
        if step.version != position:
            raise ValueError(f"bootstrap step {position} is numbered {step.version}: versions must run 1, 2, 3…")
        if not step.statements:
            raise ValueError(f"bootstrap step {step.version} has no statements")


def plan_bootstrap(steps: Sequence[BootstrapStep], recorded: int, *, where: str) -> BootstrapPlan:
    """The steps still to apply to a database whose recorded version is ``recorded`` (0: never bootstrapped).

    Refuses a database bootstrapped by a newer dbrunbook: this one would not know what its state means."""
    check_steps(steps)
    known = len(steps)
    if recorded > known:
        raise ToolStateTooNew(
            f"{where} is at tool state version {recorded}, but this dbrunbook ({__version__}) knows only up to {known}",
            hint="run the newer dbrunbook that wrote it",
        )
    return BootstrapPlan(recorded=recorded, known=known, pending=tuple(s for s in steps if s.version > recorded))


def current_version(db: DbSession, state: ToolStateDialect) -> int:
    """The version recorded in this database: 0 when it was never bootstrapped."""
    if not db.scalar(state.version_table_exists()):
        return 0
    return int(db.scalar(state.recorded_version()) or 0)


def bootstrap(db: DbSession, state: ToolStateDialect, *, wait: float = 30.0) -> BootstrapResult:
    """Bring the tool state to the newest version this dbrunbook knows. Idempotent; holds
    :data:`BOOTSTRAP_LOCK` (waiting up to ``wait`` seconds); each step and the record of its version are
    one transaction (on MariaDB, where DDL commits by itself, steps are written to be re-run)."""
    with tool_lock(db, state, BOOTSTRAP_LOCK, wait=wait):
        before = current_version(db, state)
        plan = plan_bootstrap(state.steps, before, where=f"{db.host}: {state.home}")
        for step in plan.pending:
            with db.transaction():
                for stmt in step.statements:
                    db.execute(stmt)
                db.execute(state.record_version(step, __version__))
        applied = tuple(s.version for s in plan.pending)
        return BootstrapResult(before=before, after=applied[-1] if applied else before, applied=applied)


def lock_name(name: str) -> str:
    """The server-side name of a dbrunbook lock: ``dbrunbook:<name>``."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"lock name {name!r}: 1 to 54 of A-Z a-z 0-9 _ . : / -")
    return _PREFIX + name


@contextmanager
def tool_lock(db: DbSession, state: ToolStateDialect, name: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the advisory lock ``name`` for the block, on this session (the server frees it if the session
    dies). ``wait`` 0 tries once; otherwise waits up to ``wait`` seconds. Raises :class:`ToolLockBusy`,
    naming the session that holds it, when it cannot be taken."""
    full = lock_name(name)
    if not _acquire(db, state, full, wait):
        holder = db.scalar(state.lock_holder(full))
        who = f"server session {holder}" if holder is not None else "another session"
        raise ToolLockBusy(
            f"{db.host}: lock '{name}' is held by {who}" + (f" (waited {wait:g} s)" if wait > 0 else ""),
            hint="another dbrunbook run is working here; wait for it, or end that session if it is stuck",
        )
    try:
        yield
    except BaseException:
        # The block's error is the one to report; a dead session has let the lock go anyway.
        with suppress(DbrunbookError):
            db.execute(state.release_lock(full))
        raise
    db.execute(state.release_lock(full))


def _acquire(db: DbSession, state: ToolStateDialect, full: str, wait: float) -> bool:
    stmt = state.acquire_lock(full, wait)
    if wait <= 0:
        return bool(db.scalar(stmt))
    try:
        with db.limits(lock_timeout=wait):
            return bool(db.scalar(stmt))
    except DbrunbookError as exc:
        if is_lock_timeout(exc):
            return False
        raise
