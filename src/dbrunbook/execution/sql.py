"""Database sessions through the seam: every statement is audited, redacted and skipped in dry runs
when it would change something.

Beyond single statements a session offers what long, careful work on a live server needs:

- :meth:`DbSession.transaction`: BEGIN, COMMIT and ROLLBACK go through the audit log like any statement;
- :meth:`DbSession.limits`: lock and statement timeouts for a block, restored afterwards;
- ``execute(stmt, timeout=...)``: a bound on one call.

The engine-specific SQL for limits comes from the engine's :class:`SessionDialect`; this module never
knows which engine it talks to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Protocol

from dbrunbook.errors import DbrunbookError, EngineNotSupported, QueryFailed
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.executor import RunSettings

Row = tuple[Any, ...]

# Mutating, so a dry run plans the transaction around the statements it plans instead of opening one.
BEGIN = SqlStatement("BEGIN", description="begin transaction")
COMMIT = SqlStatement("COMMIT", description="commit transaction")
ROLLBACK = SqlStatement("ROLLBACK", description="roll back transaction")


@dataclass(frozen=True)
class Limits:
    """Per-connection limits in seconds, in words both engines share. ``None`` leaves a limit as it is.

    - ``lock_timeout``: the longest wait for any lock. PostgreSQL ``lock_timeout`` (error 55P03); MariaDB
      ``lock_wait_timeout`` (metadata locks) and ``innodb_lock_wait_timeout`` (row locks), both whole
      seconds, rounded up (error 1205).
    - ``statement_timeout``: the longest run of one statement. PostgreSQL ``statement_timeout`` (57014);
      MariaDB ``max_statement_time`` (1969).

    Zero is refused: PostgreSQL reads it as "no limit", MariaDB as "do not wait at all".
    """

    lock_timeout: float | None = None
    statement_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("lock_timeout", "statement_timeout"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


class SessionDialect(Protocol):
    """What a session needs from its engine to apply :class:`Limits` (implemented in ``engines/``)."""

    def limit_settings(self, limits: Limits) -> dict[str, object]:
        """The server settings, by name, that give these limits (only those the limits set)."""

    def read_settings(self, names: tuple[str, ...]) -> SqlStatement:
        """One row: the session's current value of each named setting, in order."""

    def set_setting(self, name: str, value: object) -> SqlStatement:
        """Set one session setting (a value from :meth:`limit_settings` or read back by :meth:`read_settings`)."""

    def read_deadline(self, connection: Any, seconds: float) -> AbstractContextManager[None]:
        """How long the client waits for one answer while a statement may run ``seconds`` on the server."""


class DbSession:
    """A DB-API connection wrapped so that statements can only go through :meth:`execute`."""

    def __init__(
        self,
        host: str,
        settings: RunSettings,
        connection: Any,
        *,
        map_error: Callable[[Exception, str], DbrunbookError] | None = None,
        dialect: SessionDialect | None = None,
    ) -> None:
        self.host = host
        self.settings = settings
        self._conn = connection
        self._map_error = map_error
        self._dialect = dialect
        self._in_transaction = False
        self._failed_in_transaction = False

    def execute(self, stmt: SqlStatement, *, timeout: float | None = None) -> list[Row]:
        """Run one statement. ``timeout`` bounds this call on the server (the session's statement timeout,
        set for the call and restored, so the error carries the engine's statement-timeout code and the
        connection stays usable); the client waits a little longer than that for the answer (MariaDB's
        driver otherwise gives up after a fixed 300 s, cutting long DDL)."""
        if timeout is None:
            return self._execute(stmt)[1]
        with self.limits(statement_timeout=timeout):
            return self._execute(stmt)[1]

    def records(self, stmt: SqlStatement, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Rows as dictionaries keyed by column name (for SHOW statements with many columns)."""
        if timeout is None:
            columns, rows = self._execute(stmt)
        else:
            with self.limits(statement_timeout=timeout):
                columns, rows = self._execute(stmt)
        return [dict(zip(columns, row, strict=False)) for row in rows]

    def scalar(self, stmt: SqlStatement, *, timeout: float | None = None) -> Any:
        rows = self.execute(stmt, timeout=timeout)
        return rows[0][0] if rows and rows[0] else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One explicit transaction: COMMIT when the block ends, ROLLBACK (then re-raise) when it raises.

        Nesting is refused (no savepoints). A statement that failed inside the block rolls the whole
        transaction back even when the block caught the error: PostgreSQL has aborted it already and
        MariaDB may have undone part of it (a deadlock undoes all of it), so committing would store
        something else on each engine. Retry the whole block instead (``errors.is_retryable``)."""
        if self._in_transaction:
            raise QueryFailed(
                f"{self.host}: a transaction is already open on this session; nested transactions are not supported"
            )
        self._in_transaction, self._failed_in_transaction = True, False
        try:
            self._execute(BEGIN)
            try:
                yield
            except BaseException:
                self._quietly(ROLLBACK)
                raise
            if self._failed_in_transaction:
                self._execute(ROLLBACK)
                raise QueryFailed(f"{self.host}: a statement in the transaction failed; rolled back, not committed")
            self._execute(COMMIT)
        finally:
            self._in_transaction = False

    @contextmanager
    def limits(self, *, lock_timeout: float | None = None, statement_timeout: float | None = None) -> Iterator[None]:
        """Apply :class:`Limits` to this connection for the block, then put the previous values back.

        Inside a PostgreSQL transaction that a failure aborted, the values cannot be put back by a
        statement; the rollback that follows restores them."""
        dialect = self._require_dialect()
        wanted = dialect.limit_settings(Limits(lock_timeout, statement_timeout))
        if not wanted:
            yield
            return
        names = tuple(wanted)
        saved = dict(zip(names, self._execute(dialect.read_settings(names))[1][0], strict=True))
        deadline: AbstractContextManager[None] = nullcontext()
        if statement_timeout is not None:
            deadline = dialect.read_deadline(self._conn, statement_timeout)
        try:
            for name, value in wanted.items():
                self._execute(dialect.set_setting(name, value))
            with deadline:
                yield
        except BaseException:
            for name, value in saved.items():
                self._quietly(dialect.set_setting(name, value))
            raise
        for name, value in saved.items():
            self._execute(dialect.set_setting(name, value))

    def _require_dialect(self) -> SessionDialect:
        if self._dialect is None:
            raise EngineNotSupported(f"{self.host}: this session's engine does not support per-session limits")
        return self._dialect

    def _quietly(self, stmt: SqlStatement) -> None:
        """Clean-up while another error is on its way: that error is the one to report (this one is audited)."""
        with suppress(DbrunbookError):
            self._execute(stmt)

    def _execute(self, stmt: SqlStatement) -> tuple[list[str], list[Row]]:
        shown = stmt.display()
        if self.settings.dry_run and stmt.mutating:
            self.settings.planned(self.host, f"SQL: {shown}")
            self.settings.audit.record(
                host=self.host, kind="sql", text=shown, duration=0.0, exit_status=None, dry_run=True
            )
            return [], []
        start = time.monotonic()
        try:
            with self._conn.cursor() as cur:
                cur.execute(stmt.text, stmt.driver_params() or None)
                columns = [str(d[0]) for d in cur.description] if cur.description else []
                rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        except Exception as exc:
            self._failed_in_transaction = self._in_transaction
            if self._map_error is not None:
                error = self._map_error(exc, self.host)
            else:
                error = QueryFailed(f"{self.host}: {stmt.description or 'query'} failed: {type(exc).__name__}")
            code = error.code if isinstance(error, QueryFailed) else None
            self.settings.audit.record(
                host=self.host,
                kind="sql",
                text=shown,
                duration=time.monotonic() - start,
                exit_status=f"error: {type(exc).__name__}",
                dry_run=False,
                **({"code": code} if code else {}),
            )
            raise error from None
        self.settings.audit.record(
            host=self.host,
            kind="sql",
            text=shown,
            duration=time.monotonic() - start,
            exit_status=0,
            dry_run=False,
            rows=len(rows),
        )
        return columns, rows

    def close(self) -> None:
        self._conn.close()
