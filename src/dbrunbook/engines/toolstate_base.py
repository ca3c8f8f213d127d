"""What an engine provides so that dbrunbook can keep its own state inside a database server.

The engine-neutral rules (bootstrap planning, lock names, the lock context manager) are in
:mod:`dbrunbook.toolstate`; each engine's SQL is in ``engines/<engine>/toolstate.py``, reached through
``EngineDriver.tool_state()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dbrunbook.execution.command import SqlStatement


@dataclass(frozen=True)
class BootstrapStep:
    """One version of the tool state: the statements that bring version ``version - 1`` to ``version``.

    A step's statements must be safe to run again (``IF NOT EXISTS``): MariaDB commits each DDL
    statement by itself, so a run that stops between a step's statements and the record of its
    version leaves the step half applied, and the next bootstrap runs the whole step again."""

    version: int
    description: str
    statements: tuple[SqlStatement, ...]


class ToolStateDialect(Protocol):
    """One engine's SQL for dbrunbook's state in a server. Lock names arrive qualified and validated."""

    @property
    def home(self) -> str:
        """Where the state lives, for messages: ``schema dbrunbook``, ``database _dbrunbook``."""

    @property
    def steps(self) -> tuple[BootstrapStep, ...]:
        """Every bootstrap step this dbrunbook knows, oldest first."""

    def version_table_exists(self) -> SqlStatement:
        """One row, one column: true once the version table exists."""

    def recorded_version(self) -> SqlStatement:
        """One row, one column: the highest version recorded (NULL when none is)."""

    def record_version(self, step: BootstrapStep, tool_version: str) -> SqlStatement:
        """Record that ``step`` is applied, by this dbrunbook version."""

    def acquire_lock(self, name: str, wait: float) -> SqlStatement:
        """One row, one column, true when the lock was taken. ``wait`` 0 means try once; otherwise the
        statement may wait up to ``wait`` seconds, also bounded by the session's lock timeout."""

    def release_lock(self, name: str) -> SqlStatement:
        """Release one hold of the lock taken by this session."""

    def lock_holder(self, name: str) -> SqlStatement:
        """One row, one column: the server session id holding the lock (NULL when free)."""
