"""A run's record in the tool state of the database it works on: phase, checkpoint, what it created.

Everything a later ``--resume``, ``cutover``, ``rollback`` or ``cleanup`` needs is in the record (the table's shape
and the column map as they were when the run started), so none of them re-reads a table that may have been
swapped since. The SQL is plain enough for both engines; the table's qualified name comes from the dialect."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from dbrunbook.engines.shadow_base import Chunk, Column, ColumnMap, Mapped, Names, RunTable, TableInfo
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import DbSession
from dbrunbook.migrate.shadow.plan import Phase

_FIELDS = (
    "run_id, table_schema, table_name, alter_sql, phase, checkpoint, rows_copied, checksum_ok, plan, started_by, "
    "started_at, updated_at, message"
)
OPEN = tuple(p.value for p in Phase if p is not Phase.CLEANED)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    schema: str
    table: str
    alter: str
    phase: Phase
    checkpoint: tuple[str, ...] | None
    rows_copied: int
    checksum_ok: bool
    run: RunTable
    started_by: str
    started_at: datetime
    updated_at: datetime
    message: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "table": f"{self.schema}.{self.table}",
            "alter": self.alter,
            "phase": self.phase.value,
            "rows_copied": self.rows_copied,
            "checksum_ok": self.checksum_ok,
            "started_by": self.started_by,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "message": self.message,
            "objects": asdict(self.run.names),
        }


def who() -> str:
    """``host:pid`` of this process: what a busy table's message names."""
    return f"{socket.gethostname()}:{os.getpid()}"


def encode(run: RunTable) -> str:
    return json.dumps(
        {
            "info": {**asdict(run.info), "columns": [asdict(c) for c in run.info.columns]},
            "names": asdict(run.names),
            "columns": {
                "mapped": [asdict(m) for m in run.columns.mapped],
                "added": run.columns.added,
                "dropped": run.columns.dropped,
                "generated": run.columns.generated,
            },
            "extra": run.extra,
        }
    )


def decode(text: str, run_id: str, runs_table: str) -> RunTable:
    doc = json.loads(text)
    i = doc["info"]
    info = TableInfo(
        i["schema"],
        i["name"],
        tuple(Column(**c) for c in i["columns"]),
        tuple(i["key"]),
        int(i["rows_estimate"]),
        int(i["total_bytes"]),
        tuple(i["refusals"]),
        tuple(i["dependents"]),
    )
    c = doc["columns"]
    columns = ColumnMap(
        tuple(Mapped(**m) for m in c["mapped"]), tuple(c["added"]), tuple(c["dropped"]), tuple(c["generated"])
    )
    return RunTable(info, Names(**doc["names"]), columns, run_id, runs_table, dict(doc["extra"]))


def insert(runs_table: str, run: RunTable, alter: str) -> SqlStatement:
    return SqlStatement(
        f"INSERT INTO {runs_table} (run_id, table_schema, table_name, alter_sql, phase, plan, started_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        params=(run.run_id, run.info.schema, run.info.name, alter, Phase.CAPTURE.value, encode(run), who()),
        description=f"record run {run.run_id}",
    )


def set_phase(runs_table: str, run_id: str, phase: Phase, message: str | None = None, **flags: bool) -> SqlStatement:
    extra = "".join(f", {name} = %s" for name in flags)
    return SqlStatement(
        f"UPDATE {runs_table} SET phase = %s, message = %s, updated_at = CURRENT_TIMESTAMP{extra} WHERE run_id = %s",
        params=(phase.value, message, *flags.values(), run_id),
        description=f"run {run_id}: phase {phase.value}",
    )


def claim(runs_table: str, run_id: str) -> SqlStatement:
    return SqlStatement(
        f"UPDATE {runs_table} SET started_by = %s, updated_at = CURRENT_TIMESTAMP WHERE run_id = %s",
        params=(who(), run_id),
        description=f"run {run_id}: worked on by this process",
    )


def checkpoint(runs_table: str, run_id: str, chunk: Chunk) -> SqlStatement:
    return SqlStatement(
        f"UPDATE {runs_table} SET checkpoint = coalesce(%s, checkpoint), rows_copied = rows_copied + %s, "
        "updated_at = CURRENT_TIMESTAMP "
        "WHERE run_id = %s",
        params=(json.dumps(list(chunk.last_key)) if chunk.last_key else None, chunk.rows, run_id),
        description=f"run {run_id}: checkpoint",
    )


def _record(row: tuple[Any, ...], runs_table: str) -> RunRecord:
    run_id, schema, table, alter, phase, point, rows, ok, plan, by, started, updated, message = row
    return RunRecord(
        str(run_id),
        str(schema),
        str(table),
        str(alter),
        Phase(str(phase)),
        tuple(json.loads(point)) if point else None,
        int(rows),
        bool(ok),
        decode(str(plan), str(run_id), runs_table),
        str(by),
        started,
        updated,
        message,
    )


def load(db: DbSession, runs_table: str, run_id: str) -> RunRecord | None:
    rows = db.execute(
        SqlStatement(
            f"SELECT {_FIELDS} FROM {runs_table} WHERE run_id = %s",
            params=(run_id,),
            description=f"read run {run_id}",
            mutating=False,
        )
    )
    return _record(rows[0], runs_table) if rows else None


def runs(db: DbSession, runs_table: str, *, open_only: bool = False) -> list[RunRecord]:
    where = f"WHERE phase IN ({', '.join(['%s'] * len(OPEN))}) " if open_only else ""
    rows = db.execute(
        SqlStatement(
            f"SELECT {_FIELDS} FROM {runs_table} {where}ORDER BY started_at",
            params=OPEN if open_only else (),
            description="list shadow migration runs",
            mutating=False,
        )
    )
    return [_record(r, runs_table) for r in rows]


def events(db: DbSession, events_table: str, run_id: str) -> list[str]:
    rows = db.execute(
        SqlStatement(
            f"SELECT what FROM {events_table} WHERE run_id = %s ORDER BY at",
            params=(run_id,),
            description=f"read run {run_id}'s events",
            mutating=False,
        )
    )
    return [str(r[0]) for r in rows]
