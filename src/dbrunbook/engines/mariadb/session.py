"""MariaDB's (and MySQL's) side of :class:`~dbrunbook.execution.sql.SessionDialect`.

Lock waits are bounded twice: ``lock_wait_timeout`` covers metadata locks (DDL against a table in use),
``innodb_lock_wait_timeout`` row locks; both count whole seconds. A statement is bounded on the server by
``max_statement_time`` (MySQL: ``max_execution_time``, SELECT only). The client's read deadline is raised
to that bound plus :data:`GRACE`, so the server's own error (1969) arrives before the driver gives up.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import Limits

#: extra seconds the client waits beyond a statement's server-side bound before it drops the connection
GRACE = 10.0


class MariaDBSessionDialect:
    statement_setting = "max_statement_time"

    @property
    def settings(self) -> frozenset[str]:
        # Names are put into statement text: only these ever are.
        return frozenset({"lock_wait_timeout", "innodb_lock_wait_timeout", self.statement_setting})

    def statement_value(self, seconds: float) -> object:
        return round(seconds, 6)

    def limit_settings(self, limits: Limits) -> dict[str, object]:
        wanted: dict[str, object] = {}
        if limits.lock_timeout is not None:
            whole = max(1, math.ceil(limits.lock_timeout))
            wanted["lock_wait_timeout"] = whole
            wanted["innodb_lock_wait_timeout"] = whole
        if limits.statement_timeout is not None:
            wanted[self.statement_setting] = self.statement_value(limits.statement_timeout)
        return wanted

    def read_settings(self, names: tuple[str, ...]) -> SqlStatement:
        columns = ", ".join(f"@@SESSION.{n}" for n in self._known(names))
        return SqlStatement(f"SELECT {columns}", description="read session limits", mutating=False)

    def set_setting(self, name: str, value: object) -> SqlStatement:
        (known,) = self._known((name,))
        # Session state only: it runs in a dry run too, so the reads a dry run makes are bounded as well.
        return SqlStatement(f"SET SESSION {known} = %s", params=(value,), description=f"set {name}", mutating=False)

    def read_deadline(self, connection: Any, seconds: float) -> AbstractContextManager[None]:
        return _read_timeout(connection, seconds + GRACE)

    def _known(self, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in self.settings]
        if unknown:
            raise ValueError(f"not a session limit dbrunbook sets: {', '.join(unknown)}")
        return names


class MySQLSessionDialect(MariaDBSessionDialect):
    statement_setting = "max_execution_time"

    def statement_value(self, seconds: float) -> object:
        return max(1, math.ceil(seconds * 1000))  # milliseconds; 0 would mean no limit


@contextmanager
def _read_timeout(connection: Any, seconds: float) -> Iterator[None]:
    # PyMySQL has no public way to change read_timeout after connecting; it re-reads this attribute
    # before every socket read (pinned by tests/unit/test_sql_dialects.py).
    if not hasattr(connection, "_read_timeout"):
        yield
        return
    saved = connection._read_timeout
    connection._read_timeout = seconds
    try:
        yield
    finally:
        connection._read_timeout = saved
