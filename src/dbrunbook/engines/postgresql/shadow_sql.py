"""PostgreSQL shadow-migration SQL, built by pure functions from a :class:`RunTable`.

Identifiers are quoted by psycopg (``sql.Identifier``); values travel as parameters. Keys travel as text and are
cast back to the key's type in SQL, so one checkpoint format serves every key type.

Capture is asynchronous: an AFTER ROW trigger logs the keys a write touched (old and new), and :func:`apply_sql`
re-reads those keys from the table. In one REPEATABLE READ transaction it rewrites them in the shadow and deletes
the log rows it saw, and only those: a key with no visible log row has ``shadow = map(table)``, in any snapshot."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from dbrunbook.engines.shadow_base import RunTable
from dbrunbook.execution.command import SqlStatement

STATE_SCHEMA = "dbrunbook"


def qi(*parts: str) -> str:
    """Quoted (and dot-joined) identifier."""
    return sql.Identifier(*parts).as_string(None)


def table(run: RunTable) -> str:
    return qi(run.info.schema, run.info.name)


def shadow(run: RunTable) -> str:
    return qi(run.info.schema, run.names.shadow)


def old(run: RunTable) -> str:
    return qi(run.info.schema, run.names.old)


def log(run: RunTable) -> str:
    return qi(STATE_SCHEMA, run.names.log)


def _types(run: RunTable) -> dict[str, str]:
    return {c.name: c.type for c in run.info.columns}


def key_cols(run: RunTable, alias: str = "") -> str:
    """The key's columns on the original (and in the log, which uses the original's names)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + qi(k) for k in run.info.key)


def shadow_key_cols(run: RunTable, alias: str = "") -> str:
    """The key's columns on the shadow, renamed as the column map says."""
    prefix = f"{alias}." if alias else ""
    target = {m.source: m.target for m in run.columns.mapped}
    return ", ".join(prefix + qi(target[k]) for k in run.info.key)


def key_params(run: RunTable) -> str:
    """``(CAST(%s AS type), ...)``: a key given as text."""
    types = _types(run)
    return "(" + ", ".join(f"CAST(%s AS {types[k]})" for k in run.info.key) + ")"


def _targets(run: RunTable) -> str:
    return ", ".join(qi(m.target) for m in run.columns.mapped)


def _source_list(run: RunTable, alias: str) -> list[str]:
    """The original's columns as the shadow's types, in the map's order."""
    return [
        f"CAST({alias}.{qi(m.source)} AS {m.target_type})" if m.cast else f"{alias}.{qi(m.source)}"
        for m in run.columns.mapped
    ]


def _sources(run: RunTable, alias: str) -> str:
    return ", ".join(_source_list(run, alias))


def _overriding(run: RunTable) -> str:
    return " OVERRIDING SYSTEM VALUE" if run.extra.get("identity") == "yes" else ""


def create_log(run: RunTable) -> SqlStatement:
    types = _types(run)
    cols = ", ".join(f"{qi(k)} {types[k]}" for k in run.info.key)
    return SqlStatement(
        f"CREATE TABLE {log(run)} (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {cols})",
        description="create the capture log",
    )


def index_log(run: RunTable) -> SqlStatement:
    return SqlStatement(f"CREATE INDEX ON {log(run)} ({key_cols(run)})", description="index the capture log by key")


def capture_function(run: RunTable) -> SqlStatement:
    """SECURITY DEFINER: the application's role writes the log without a grant on the dbrunbook schema."""
    keys = run.info.key
    new = ", ".join(f"NEW.{qi(k)}" for k in keys)
    old_ = ", ".join(f"OLD.{qi(k)}" for k in keys)
    insert = f"INSERT INTO {log(run)} ({key_cols(run)}) VALUES "
    body = (
        "BEGIN "
        f"IF TG_OP <> 'INSERT' THEN {insert}({old_}); END IF; "
        f"IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND ({new}) IS DISTINCT FROM ({old_})) "
        f"THEN {insert}({new}); END IF; "
        "RETURN NULL; END"
    )
    return SqlStatement(
        f"CREATE FUNCTION {qi(STATE_SCHEMA, run.names.capture)}() RETURNS trigger LANGUAGE plpgsql "
        f"SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {_dollar(body)}",
        description="create the capture function",
    )


def capture_trigger(run: RunTable) -> SqlStatement:
    return SqlStatement(
        f"CREATE TRIGGER {qi(run.names.capture)} AFTER INSERT OR UPDATE OR DELETE ON {table(run)} "
        f"FOR EACH ROW EXECUTE FUNCTION {qi(STATE_SCHEMA, run.names.capture)}()",
        description="install the capture trigger",
    )


def _dollar(body: str) -> str:
    tag = "$dbr$"
    if tag in body:
        raise ValueError("a function body holds the dollar-quote tag")
    return f"{tag}{body}{tag}"


def chunk_end(run: RunTable, after: Sequence[str] | None, rows: int) -> SqlStatement:
    """The key of the ``rows``-th row after ``after`` (no row: the rest is the last chunk)."""
    where = f"WHERE ({key_cols(run)}) > {key_params(run)} " if after is not None else ""
    texts = ", ".join(f"{qi(k)}::text" for k in run.info.key)
    return SqlStatement(
        f"SELECT {texts} FROM {table(run)} {where}ORDER BY {key_cols(run)} OFFSET %s LIMIT 1",
        params=(*(after or ()), max(rows - 1, 0)),
        description="find the end of the next chunk",
        mutating=False,
    )


def _range(
    run: RunTable, alias: str, after: Sequence[str] | None, upto: Sequence[str] | None, shadow_side: bool
) -> tuple[str, tuple[str, ...]]:
    cols = shadow_key_cols(run, alias) if shadow_side else key_cols(run, alias)
    parts, params = [], []
    if after is not None:
        parts.append(f"({cols}) > {key_params(run)}")
        params += list(after)
    if upto is not None:
        parts.append(f"({cols}) <= {key_params(run)}")
        params += list(upto)
    return (" AND ".join(parts) or "true"), tuple(params)


def copy_range(run: RunTable, after: Sequence[str] | None, upto: Sequence[str] | None) -> SqlStatement:
    """Copy one key range. A key the apply loop wrote already is skipped (its log row, if any, comes later); a
    duplicate on any other unique key fails the statement, never drops a row."""
    where, params = _range(run, "s", after, upto, False)
    return SqlStatement(
        f"INSERT INTO {shadow(run)} ({_targets(run)}){_overriding(run)} SELECT {_sources(run, 's')} "
        f"FROM {table(run)} s WHERE {where} ON CONFLICT ({shadow_key_cols(run)}) DO NOTHING",
        params=params,
        description="copy a chunk",
    )


def delete_range(run: RunTable, after: Sequence[str] | None, upto: Sequence[str] | None) -> SqlStatement:
    where, params = _range(run, "t", after, upto, True)
    return SqlStatement(f"DELETE FROM {shadow(run)} t WHERE {where}", params=params, description="clear a range")


def repeatable_read() -> SqlStatement:
    return SqlStatement("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", description="one snapshot", mutating=False)


def apply_sql(run: RunTable, limit: int | None) -> tuple[SqlStatement, ...]:
    """Apply the oldest ``limit`` log rows (all with None): the end of the batch, then delete the shadow's rows
    of those keys, re-insert them from the table, and delete the log rows, all under one snapshot."""
    batch = (
        f"(SELECT seq FROM {log(run)} ORDER BY seq LIMIT {int(limit)})" if limit else f"(SELECT seq FROM {log(run)})"
    )
    keys = f"(SELECT DISTINCT {key_cols(run)} FROM {log(run)} WHERE seq <= %s)"
    return (
        SqlStatement(
            f"SELECT max(seq), count(*) FROM {batch} b", description="read a batch of captured keys", mutating=False
        ),
        SqlStatement(
            f"DELETE FROM {shadow(run)} t USING {keys} d WHERE ({shadow_key_cols(run, 't')}) = ({key_cols(run, 'd')})",
            description="remove captured keys from the shadow",
        ),
        SqlStatement(
            f"INSERT INTO {shadow(run)} ({_targets(run)}){_overriding(run)} SELECT {_sources(run, 's')} "
            f"FROM {table(run)} s WHERE ({key_cols(run, 's')}) IN {keys}",
            description="rewrite captured keys from the table",
        ),
        SqlStatement(f"DELETE FROM {log(run)} WHERE seq <= %s", description="forget the applied log rows"),
    )


def backlog_sql(run: RunTable) -> SqlStatement:
    return SqlStatement(f"SELECT count(*) FROM {log(run)}", description="count captured changes", mutating=False)


def _hash(columns: str, binary: bool) -> str:
    # Binary: the types' own 64-bit hash functions over the record (no text rendering, about twice as fast);
    # a type with no hash function (json, point) falls back to hashing the row's text.
    row = f"hash_record_extended(ROW({columns}), 0)" if binary else f"hashtextextended(ROW({columns})::text, 0)"
    return f"count(*), coalesce(sum({row}), 0)::text"


def checksum_sql(
    run: RunTable, after: Sequence[str] | None, upto: Sequence[str] | None, *, binary: bool = True
) -> tuple[SqlStatement, SqlStatement]:
    """Row count and hash sum of one range on each side, the original's columns cast to the shadow's types; keys
    with a pending log row are left out on both sides (the apply loop has not caught up with them yet)."""
    src_where, src_params = _range(run, "s", after, upto, False)
    sh_where, sh_params = _range(run, "t", after, upto, True)
    pending_s = f"NOT EXISTS (SELECT 1 FROM {log(run)} l WHERE ({key_cols(run, 'l')}) = ({key_cols(run, 's')}))"
    pending_t = f"NOT EXISTS (SELECT 1 FROM {log(run)} l WHERE ({key_cols(run, 'l')}) = ({shadow_key_cols(run, 't')}))"
    shadow_cols = ", ".join(f"t.{qi(m.target)}" for m in run.columns.mapped)
    return (
        SqlStatement(
            f"SELECT {_hash(_sources(run, 's'), binary)} FROM {table(run)} s WHERE {src_where} AND {pending_s}",
            params=src_params,
            description="checksum a range of the table",
            mutating=False,
        ),
        SqlStatement(
            f"SELECT {_hash(shadow_cols, binary)} FROM {shadow(run)} t WHERE {sh_where} AND {pending_t}",
            params=sh_params,
            description="checksum a range of the shadow",
            mutating=False,
        ),
    )


def copy_chunk(run: RunTable, after: Sequence[str] | None, rows: int) -> SqlStatement:
    """One chunk in one statement and one scan of the key's index: the next ``rows`` rows after ``after``, written
    to the shadow; answers (rows read, rows written, the last key read as text[], NULL when none)."""
    where, params = _range(run, "s", after, None, False)
    keys = run.info.key
    picked = ", ".join(f"{e} AS c{i}" for i, e in enumerate(_source_list(run, "s")))
    key_out = ", ".join(f"s.{qi(k)} AS k{i}" for i, k in enumerate(keys))
    c_cols = ", ".join(f"c{i}" for i in range(len(run.columns.mapped)))
    last = "ARRAY[" + ", ".join(f"k{i}::text" for i in range(len(keys))) + "]"
    order_desc = ", ".join(f"k{i} DESC" for i in range(len(keys)))
    return SqlStatement(
        f"WITH src AS MATERIALIZED (SELECT {picked}, {key_out} FROM {table(run)} s WHERE {where} "
        f"ORDER BY {key_cols(run, 's')} LIMIT %s), "
        f"ins AS (INSERT INTO {shadow(run)} ({_targets(run)}){_overriding(run)} SELECT {c_cols} FROM src "
        f"ON CONFLICT ({shadow_key_cols(run)}) DO NOTHING RETURNING 1) "
        f"SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM ins), "
        f"(SELECT {last} FROM src ORDER BY {order_desc} LIMIT 1)",
        params=(*params, rows),
        description="copy a chunk",
    )
