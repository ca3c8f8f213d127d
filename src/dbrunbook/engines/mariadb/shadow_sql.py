"""MariaDB shadow-migration SQL, built by pure functions from a :class:`RunTable`.

Capture is synchronous, as pt-online-schema-change does it: AFTER triggers write each change into the shadow in
the application's own transaction, so there is no backlog to apply and a snapshot always sees both tables agree.

The cut-over is one ``RENAME TABLE`` (MariaDB refuses RENAME under LOCK TABLES, error 1192). Right after it, the
capture triggers leave the old table and the reverse-sync triggers join the new one. That cannot be one atomic
step, and triggers must never chain (a trigger on the table writing a table with triggers of its own): a statement
the application prepared before the inner trigger existed does not notice it and fails with 1146 naming one of
its tables (seen with sysbench's prepared statements on 10.11). Writes in the few milliseconds between the RENAME
and the reverse triggers do not reach the old table: the rollback's checksum finds any and refuses."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dbrunbook.engines.shadow_base import RunTable
from dbrunbook.execution.command import SqlStatement

STATE_DB = "_dbrunbook"
#: after every ASCII name (see MyShadow.name_prefix)
PREFIX = "~dbr_"
_INTEGER = ("tinyint", "smallint", "mediumint", "int", "bigint")


def qi(*parts: str) -> str:
    return ".".join("`" + p.replace("`", "``") + "`" for p in parts)


def table(run: RunTable) -> str:
    return qi(run.info.schema, run.info.name)


def shadow(run: RunTable) -> str:
    return qi(run.info.schema, run.names.shadow)


def old(run: RunTable) -> str:
    return qi(run.info.schema, run.names.old)


def cast_param(column_type: str) -> str:
    """``%s`` cast back to a key column's type (keys travel as text)."""
    t = column_type.lower()
    base = t.split("(")[0].split()[0]
    if base in _INTEGER:
        return "CAST(%s AS UNSIGNED)" if "unsigned" in t else "CAST(%s AS SIGNED)"
    if base in ("decimal", "numeric"):
        return f"CAST(%s AS {t.replace(' unsigned', '').replace(' zerofill', '')})"
    if base in ("datetime", "timestamp"):
        return "CAST(%s AS DATETIME(6))"
    if base == "date":
        return "CAST(%s AS DATE)"
    return "%s"


def _types(run: RunTable) -> dict[str, str]:
    return {c.name: c.type for c in run.info.columns}


def key_cols(run: RunTable, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + qi(k) for k in run.info.key)


def shadow_key_cols(run: RunTable, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    target = {m.source: m.target for m in run.columns.mapped}
    return ", ".join(prefix + qi(target[k]) for k in run.info.key)


def key_params(run: RunTable) -> str:
    types = _types(run)
    return "(" + ", ".join(cast_param(types[k]) for k in run.info.key) + ")"


def _range(
    run: RunTable, cols: str, after: Sequence[str] | None, upto: Sequence[str] | None
) -> tuple[str, tuple[str, ...]]:
    parts, params = [], []
    if after is not None:
        parts.append(f"({cols}) > {key_params(run)}")
        params += list(after)
    if upto is not None:
        parts.append(f"({cols}) <= {key_params(run)}")
        params += list(upto)
    return (" AND ".join(parts) or "TRUE"), tuple(params)


def chunk_end(run: RunTable, after: Sequence[str] | None, rows: int) -> SqlStatement:
    where, params = _range(run, key_cols(run), after, None)
    return SqlStatement(
        f"SELECT {key_cols(run)} FROM {table(run)} WHERE {where} ORDER BY {key_cols(run)} LIMIT 1 OFFSET %s",
        params=(*params, max(rows - 1, 0)),
        description="find the end of the next chunk",
        mutating=False,
    )


def copy_range(
    run: RunTable, after: Sequence[str] | None, upto: Sequence[str] | None, *, skip_locked: bool = True
) -> SqlStatement:
    """INSERT IGNORE skips the keys a trigger wrote already; SHOW WARNINGS afterwards tells those (a duplicate of
    the primary key) from anything else IGNORE would have swallowed.

    The rows are read with a shared lock (a row deleted between the read and the insert would otherwise come back),
    but SKIP LOCKED: a row the application holds is being written by it, and its trigger writes the shadow in the
    same transaction. Never waiting for the application's locks is what keeps the copy out of deadlocks with it
    (a multi-row transaction that locks rows of the chunk in another order). A skipped row whose writer rolls
    back is missing from the shadow: the checksum finds it and the range is copied again, waiting this time."""
    where, params = _range(run, key_cols(run), after, upto)
    targets = ", ".join(qi(m.target) for m in run.columns.mapped)
    sources = ", ".join(qi(m.source) for m in run.columns.mapped)
    return SqlStatement(
        f"INSERT IGNORE INTO {shadow(run)} ({targets}) SELECT {sources} FROM {table(run)} "
        f"WHERE {where} ORDER BY {key_cols(run)} LOCK IN SHARE MODE{' SKIP LOCKED' if skip_locked else ''}",
        params=params,
        description="copy a chunk",
    )


def delete_range(run: RunTable, after: Sequence[str] | None, upto: Sequence[str] | None) -> SqlStatement:
    where, params = _range(run, shadow_key_cols(run), after, upto)
    return SqlStatement(f"DELETE FROM {shadow(run)} WHERE {where}", params=params, description="clear a range")


def _row_hash(columns: Sequence[str]) -> str:
    # 64 bits of SHA-1 over the columns as text, NULL kept apart from any string.
    text = ", ".join(f"IFNULL(CAST({c} AS CHAR), '\\\\N')" for c in columns)
    digest = f"CAST(CONV(LEFT(SHA1(CONCAT_WS(CHAR(31), {text})), 16), 16, 10) AS UNSIGNED)"
    return f"COUNT(*), CAST(COALESCE(SUM({digest}), 0) AS CHAR)"


def checksum_sql(
    run: RunTable, after: Sequence[str] | None, upto: Sequence[str] | None
) -> tuple[SqlStatement, SqlStatement]:
    src_where, src_params = _range(run, key_cols(run), after, upto)
    sh_where, sh_params = _range(run, shadow_key_cols(run), after, upto)
    return (
        SqlStatement(
            f"SELECT {_row_hash([qi(m.source) for m in run.columns.mapped])} FROM {table(run)} WHERE {src_where}",
            params=src_params,
            description="checksum a range of the table",
            mutating=False,
        ),
        SqlStatement(
            f"SELECT {_row_hash([qi(m.target) for m in run.columns.mapped])} FROM {shadow(run)} WHERE {sh_where}",
            params=sh_params,
            description="checksum a range of the shadow",
            mutating=False,
        ),
    )


def _upsert(into: str, cols: str, values: Sequence[str], names: Sequence[str]) -> str:
    # ON DUPLICATE KEY UPDATE locks only the duplicate primary key record; REPLACE takes a next-key lock (the gap
    # before it too), which blocks the copy's and other sessions' inserts there.
    sets = ", ".join(f"{n} = VALUES({n})" for n in names)
    return f"INSERT INTO {into} ({cols}) VALUES ({', '.join(values)}) ON DUPLICATE KEY UPDATE {sets};"


def _delete(table_: str, match: str) -> str:
    # Only a row that is there: a DELETE that finds nothing would lock the gap (the application runs in
    # REPEATABLE READ) and block inserts across it. The row cannot appear meanwhile: whoever copies it holds a
    # lock on the original row, which this transaction holds for its own write.
    return f"IF EXISTS (SELECT 1 FROM {table_} WHERE {match}) THEN DELETE FROM {table_} WHERE {match}; END IF;"


def _triggers(run: RunTable, *, reverse: bool) -> list[SqlStatement]:
    m = run.columns.mapped
    target = {x.source: x.target for x in m}
    keys = run.info.key
    if reverse:  # on the shadow (made before the swap; the trigger goes with it), into the old table
        on, into = shadow(run), old(run)
        names, new = [qi(x.source) for x in m], [f"NEW.{qi(x.target)}" for x in m]
        match = " AND ".join(f"{qi(k)} = OLD.{qi(target[k])}" for k in keys)
        moved = " OR ".join(f"NOT (NEW.{qi(target[k])} <=> OLD.{qi(target[k])})" for k in keys)
    else:  # on the table, into the shadow
        on, into = table(run), shadow(run)
        names, new = [qi(x.target) for x in m], [f"NEW.{qi(x.source)}" for x in m]
        match = " AND ".join(f"{qi(target[k])} = OLD.{qi(k)}" for k in keys)
        moved = " OR ".join(f"NOT (NEW.{qi(k)} <=> OLD.{qi(k)})" for k in keys)
    put = _upsert(into, ", ".join(names), new, names)
    kind = "reverse" if reverse else "capture"
    bodies = {
        "INSERT": put,
        "UPDATE": f"IF {moved} THEN {_delete(into, match)} END IF; {put}",
        "DELETE": _delete(into, match),
    }
    return [
        SqlStatement(
            f"CREATE TRIGGER {qi(run.info.schema, trigger_name(run, f'{kind}_{event.lower()[:3]}'))} AFTER {event} "
            f"ON {on} FOR EACH ROW BEGIN {body} END",
            description=f"create the {kind} trigger on {event.lower()}",
        )
        for event, body in bodies.items()
    ]


def capture_triggers(run: RunTable) -> list[SqlStatement]:
    """The table's writes, written into the shadow in the same transaction. Created without strict mode (a
    trigger keeps the sql_mode it was created with): a value the shadow cannot hold is stored as the server
    converts it, with a warning, and never fails the application's write; the checksum finds it."""
    return _triggers(run, reverse=False)


def reverse_triggers(run: RunTable) -> list[SqlStatement]:
    """On the shadow, under the cut-over's lock: once it is the table, its writes go back into the old one (a
    rollback loses nothing)."""
    return _triggers(run, reverse=True)


def drop_triggers(run: RunTable, kind: str) -> list[SqlStatement]:
    return [
        SqlStatement(
            f"DROP TRIGGER IF EXISTS {qi(run.info.schema, trigger_name(run, f'{kind}_{e}'))}",
            description=f"remove the {kind} trigger on {e}",
        )
        for e in ("ins", "upd", "del")
    ]


LENIENT = (
    "SET SESSION sql_mode = REPLACE(REPLACE(@@SESSION.sql_mode, 'STRICT_TRANS_TABLES', ''), 'STRICT_ALL_TABLES', '')"
)


def trigger_name(run: RunTable, suffix: str) -> str:
    return f"{PREFIX}{run.run_id}_{suffix}"


def swap(run: RunTable, wait: float, *, forward: bool) -> SqlStatement:
    """The one atomic statement of a cut-over (forward) or rollback.

    ``WAIT n`` counts whole seconds (a fraction is read as 0, NOWAIT); the statement timer, which takes
    fractions, ends the wait sooner (error 1969; nothing was renamed, RENAME is atomic)."""
    w = f"WAIT {max(1, math.ceil(wait))}"
    t, sh, ol = table(run), shadow(run), old(run)
    pairs = [(t, ol), (sh, t)] if forward else [(t, sh), (ol, t)]
    text = f"RENAME TABLE {pairs[0][0]} {w} TO {pairs[0][1]}, {pairs[1][0]} TO {pairs[1][1]}"
    if wait < 1:
        text = f"SET STATEMENT max_statement_time = {wait:.3f} FOR {text}"
    return SqlStatement(text, description="swap the tables" if forward else "swap the tables back")


def lock_both(run: RunTable, wait: float) -> SqlStatement:
    """The table and the shadow locked for writing, waiting at most ``wait`` seconds (the statement timer takes
    fractions of a second, ``lock_wait_timeout`` only whole ones)."""
    text = f"LOCK TABLES {table(run)} WRITE, {shadow(run)} WRITE"
    if wait < 1:
        text = f"SET STATEMENT max_statement_time = {wait:.3f} FOR {text}"
    else:
        text = f"SET STATEMENT lock_wait_timeout = {math.ceil(wait)} FOR {text}"
    return SqlStatement(text, description="lock the table and the shadow", mutating=False)
