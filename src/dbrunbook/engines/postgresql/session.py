"""PostgreSQL's side of :class:`~dbrunbook.execution.sql.SessionDialect`: limits as ``lock_timeout`` and
``statement_timeout``, set with ``set_config`` so the values travel as parameters."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import Limits

# Names are put into statement text by read_settings: only these ever are.
SETTINGS = frozenset({"lock_timeout", "statement_timeout"})


def milliseconds(seconds: float) -> str:
    # Rounded up, and at least 1 ms: "0" would switch the limit off.
    return f"{max(1, math.ceil(seconds * 1000))}ms"


def _known(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise ValueError(f"not a session limit dbrunbook sets: {', '.join(unknown)}")
    return names


class PostgresSessionDialect:
    def limit_settings(self, limits: Limits) -> dict[str, object]:
        wanted: dict[str, object] = {}
        if limits.lock_timeout is not None:
            wanted["lock_timeout"] = milliseconds(limits.lock_timeout)
        if limits.statement_timeout is not None:
            wanted["statement_timeout"] = milliseconds(limits.statement_timeout)
        return wanted

    def read_settings(self, names: tuple[str, ...]) -> SqlStatement:
        columns = ", ".join(f"current_setting('{n}')" for n in _known(names))
        return SqlStatement(f"SELECT {columns}", description="read session limits", mutating=False)

    def set_setting(self, name: str, value: object) -> SqlStatement:
        # Session state only: it runs in a dry run too, so the reads a dry run makes are bounded as well.
        return SqlStatement(
            "SELECT set_config(%s, %s, false)",
            params=(_known((name,))[0], str(value)),
            description=f"set {name}",
            mutating=False,
        )

    def read_deadline(self, connection: Any, seconds: float) -> AbstractContextManager[None]:
        # psycopg waits for the server's answer, and the server ends the statement at statement_timeout
        # with 57014: nothing to change on the client.
        return nullcontext()
