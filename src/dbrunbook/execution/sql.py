"""Database sessions through the seam: every statement is audited, redacted and skipped in dry runs
when it would change something."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dbrunbook.errors import DbrunbookError, QueryFailed
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.executor import RunSettings

Row = tuple[Any, ...]


class DbSession:
    """A DB-API connection wrapped so that statements can only go through :meth:`execute`."""

    def __init__(
        self,
        host: str,
        settings: RunSettings,
        connection: Any,
        *,
        map_error: Callable[[Exception, str], DbrunbookError] | None = None,
    ) -> None:
        self.host = host
        self.settings = settings
        self._conn = connection
        self._map_error = map_error

    def execute(self, stmt: SqlStatement) -> list[Row]:
        return self._execute(stmt)[1]

    def records(self, stmt: SqlStatement) -> list[dict[str, Any]]:
        """Rows as dictionaries keyed by column name (for SHOW statements with many columns)."""
        columns, rows = self._execute(stmt)
        return [dict(zip(columns, row, strict=False)) for row in rows]

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
            self.settings.audit.record(
                host=self.host,
                kind="sql",
                text=shown,
                duration=time.monotonic() - start,
                exit_status=f"error: {type(exc).__name__}",
                dry_run=False,
            )
            if self._map_error is not None:
                raise self._map_error(exc, self.host) from None
            raise QueryFailed(f"{self.host}: {stmt.description or 'query'} failed: {type(exc).__name__}") from None
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

    def scalar(self, stmt: SqlStatement) -> Any:
        rows = self.execute(stmt)
        return rows[0][0] if rows and rows[0] else None

    def close(self) -> None:
        self._conn.close()
