"""MariaDB shadow-migration SQL, built by pure functions from a :class:`RunTable`.

Capture is synchronous, as pt-online-schema-change does it: AFTER triggers write each change into the shadow in
the application's own transaction, so there is no backlog to apply and a snapshot always sees both tables agree.

The cut-over is one ``RENAME TABLE`` (MariaDB refuses RENAME under LOCK TABLES, error 1192, so the swap cannot be
prepared under a lock). To make the reverse sync start in that same atomic statement, every trigger of the run
asks a one-row *flag* table first: capture writes while the flag says 0, the reverse sync while it says 1, and the
RENAME that swaps the tables also swaps the flag table for one holding 1. A trigger branch that is not taken may
name a table that does not exist (the shadow's name after the swap): MariaDB opens it only when it runs."""

from __future__ import annotations

from collections.abc import Sequence

from dbrunbook.engines.shadow_base import RunTable
from dbrunbook.execution.command import SqlStatement

STATE_DB = "_dbrunbook"
_INTEGER = ("tinyint", "smallint", "mediumint", "int", "bigint")


def qi(*parts: str) -> str:
    return ".".join("`" + p.replace("`", "``") + "`" for p in parts)


def table(run: RunTable) -> str:
    return qi(run.info.schema, run.info.name)


def shadow(run: RunTable) -> str:
    return qi(run.info.schema, run.names.shadow)


def old(run: RunTable) -> str:
    return qi(run.info.schema, run.names.old)


def flag(run: RunTable, which: str = "") -> str:
    return qi(STATE_DB, f"__dbr_{run.run_id}_flag{which}")


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


def copy_range(run: RunTable, after: Sequence[str] | None, upto: Sequence[str] | None) -> SqlStatement:
    """INSERT IGNORE skips the keys a trigger wrote already; SHOW WARNINGS afterwards tells those (a duplicate of
    the primary key) from anything else IGNORE would have swallowed."""
    where, params = _range(run, key_cols(run), after, upto)
    targets = ", ".join(qi(m.target) for m in run.columns.mapped)
    sources = ", ".join(qi(m.source) for m in run.columns.mapped)
    return SqlStatement(
        f"INSERT IGNORE INTO {shadow(run)} ({targets}) SELECT {sources} FROM {table(run)} "
        f"WHERE {where} ORDER BY {key_cols(run)} LOCK IN SHARE MODE",
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


def _when(run: RunTable, value: int, body: str) -> str:
    return f"IF (SELECT v FROM {flag(run)} LIMIT 1) = {value} THEN {body} END IF;"


def _event(run: RunTable, what: str) -> str:
    return (
        f"DECLARE CONTINUE HANDLER FOR SQLEXCEPTION INSERT INTO {qi(STATE_DB, 'shadow_events')} (run_id, what) "
        f"VALUES ('{run.run_id}', '{what}');"
    )


def triggers(run: RunTable) -> list[SqlStatement]:
    """Capture on the table (flag 0: write the shadow) and the reverse sync on the shadow (flag 1: write the old
    table), both made before the copy; the flag decides which one works."""
    m = run.columns.mapped
    fwd_cols = ", ".join(qi(x.target) for x in m)
    fwd_new = ", ".join(f"NEW.{qi(x.source)}" for x in m)
    rev_cols = ", ".join(qi(x.source) for x in m)
    rev_new = ", ".join(f"NEW.{qi(x.target)}" for x in m)
    keys = run.info.key
    target = {x.source: x.target for x in m}
    fwd_match = " AND ".join(f"{qi(target[k])} = OLD.{qi(k)}" for k in keys)
    rev_match = " AND ".join(f"{qi(k)} = OLD.{qi(target[k])}" for k in keys)
    fwd_moved = " OR ".join(f"NOT (NEW.{qi(k)} <=> OLD.{qi(k)})" for k in keys)
    rev_moved = " OR ".join(f"NOT (NEW.{qi(target[k])} <=> OLD.{qi(target[k])})" for k in keys)
    sh, ol = shadow(run), old(run)
    bodies = {
        ("capture_ins", "INSERT", False): _when(run, 0, f"REPLACE INTO {sh} ({fwd_cols}) VALUES ({fwd_new});"),
        ("capture_upd", "UPDATE", False): _when(
            run,
            0,
            f"IF {fwd_moved} THEN DELETE IGNORE FROM {sh} WHERE {fwd_match}; END IF; "
            f"REPLACE INTO {sh} ({fwd_cols}) VALUES ({fwd_new});",
        ),
        ("capture_del", "DELETE", False): _when(run, 0, f"DELETE IGNORE FROM {sh} WHERE {fwd_match};"),
        ("reverse_ins", "INSERT", True): _when(run, 1, f"REPLACE INTO {ol} ({rev_cols}) VALUES ({rev_new});"),
        ("reverse_upd", "UPDATE", True): _when(
            run,
            1,
            f"IF {rev_moved} THEN DELETE IGNORE FROM {ol} WHERE {rev_match}; END IF; "
            f"REPLACE INTO {ol} ({rev_cols}) VALUES ({rev_new});",
        ),
        ("reverse_del", "DELETE", True): _when(run, 1, f"DELETE IGNORE FROM {ol} WHERE {rev_match};"),
    }
    out = []
    for (suffix, event, reverse), body in bodies.items():
        on = sh if reverse else table(run)
        # A write the other table refuses must not fail the application's: the event says so (a capture failure
        # shows in the checksum, a reverse-sync failure closes the rollback window).
        handler = _event(run, f"{'reverse sync' if reverse else 'capture'} failed on {event.lower()}")
        out.append(
            SqlStatement(
                f"CREATE TRIGGER {qi(run.info.schema, trigger_name(run, suffix))} AFTER {event} ON {on} "
                f"FOR EACH ROW BEGIN {handler} {body} END",
                description=f"create trigger {suffix}",
            )
        )
    return out


def trigger_name(run: RunTable, suffix: str) -> str:
    return f"__dbr_{run.run_id}_{suffix}"


TRIGGER_SUFFIXES = ("capture_ins", "capture_upd", "capture_del", "reverse_ins", "reverse_upd", "reverse_del")


def flag_tables(run: RunTable) -> list[SqlStatement]:
    return [
        SqlStatement(f"CREATE TABLE {flag(run)} (v TINYINT NOT NULL) ENGINE=InnoDB", description="create the flag"),
        SqlStatement(f"INSERT INTO {flag(run)} VALUES (0)", description="capture on"),
        SqlStatement(
            f"CREATE TABLE {flag(run, '_on')} (v TINYINT NOT NULL) ENGINE=InnoDB", description="create the swap flag"
        ),
        SqlStatement(f"INSERT INTO {flag(run, '_on')} VALUES (1)", description="reverse sync on, once swapped in"),
    ]


def swap(run: RunTable, wait: float, *, forward: bool) -> SqlStatement:
    """The one atomic statement of a cut-over (forward) or rollback: tables and flags together."""
    w = f"WAIT {max(wait, 0.001):g}"
    if forward:
        pairs = [
            (table(run), old(run)),
            (shadow(run), table(run)),
            (flag(run), flag(run, "_off")),
            (flag(run, "_on"), flag(run)),
        ]
    else:
        pairs = [
            (table(run), shadow(run)),
            (old(run), table(run)),
            (flag(run), flag(run, "_on")),
            (flag(run, "_off"), flag(run)),
        ]
    first, *rest = pairs
    text = f"RENAME TABLE {first[0]} {w} TO {first[1]}" + "".join(f", {a} TO {b}" for a, b in rest)
    return SqlStatement(text, description="swap the tables" if forward else "swap the tables back")
