"""PostgreSQL's :class:`~dbrunbook.engines.shadow_base.ShadowDialect`: asynchronous capture into a log table,
keyset copy in short transactions, checksums under one snapshot per range, a swap in one transaction."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

from dbrunbook.engines.postgresql import shadow_catalog as cat
from dbrunbook.engines.postgresql import shadow_matview as matview
from dbrunbook.engines.postgresql import shadow_sql as S
from dbrunbook.engines.postgresql.shadow_swap import ddl, index_pairs, reverse_sync, swap
from dbrunbook.engines.shadow_base import (
    Blocker,
    CatalogFacts,
    Chunk,
    Column,
    Opener,
    RangeSum,
    Record,
    RunTable,
    TableInfo,
)
from dbrunbook.errors import DbrunbookError, PreflightFailed, QueryFailed
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import DbSession

_KINDS = {"p": "a partitioned table", "f": "a foreign table", "v": "a view", "m": "a materialized view"}


def split_name(text: str) -> tuple[str, str]:
    """``schema.table``, either part in double quotes (``"my schema"."Orders"``); a bare name is in ``public``."""
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            j, buf = i + 1, []
            while j < n:
                if text[j] == '"' and j + 1 < n and text[j + 1] == '"':
                    buf.append('"')
                    j += 2
                elif text[j] == '"':
                    break
                else:
                    buf.append(text[j])
                    j += 1
            if j >= n:
                raise PreflightFailed(f"table name {text!r}: a quote is not closed")
            parts.append("".join(buf))
            i = j + 1
        else:
            j = text.find(".", i)
            j = n if j < 0 else j
            parts.append(text[i:j].strip())
            i = j
        if i < n and text[i] == ".":
            i += 1
    if len(parts) == 1:
        parts.insert(0, "")  # the session's current schema
    if len(parts) != 2 or not parts[1] or (not parts[0] and "." in text):
        raise PreflightFailed(f"table name {text!r}: give SCHEMA.TABLE (quote names with dots in double quotes)")
    return parts[0], parts[1]


class _Discard(Exception):
    """Raised inside a transaction to roll it back on purpose."""


PREFLIGHT_XACTS = (
    "SELECT a.pid, coalesce(a.usename, ''), coalesce(a.application_name, ''), "
    "extract(epoch FROM now() - a.xact_start)::float8 FROM pg_stat_activity a "
    "WHERE a.pid <> pg_backend_pid() AND a.xact_start < now() - make_interval(secs => %s) "
    "AND a.pid IN (SELECT l.pid FROM pg_locks l WHERE l.relation = to_regclass(%s)) ORDER BY a.xact_start"
)
STREAMING = (
    "SELECT application_name, extract(epoch FROM coalesce(replay_lag, '0'::interval))::float8 "
    "FROM pg_stat_replication WHERE state = 'streaming'"
)
ARCHIVER = (
    "SELECT coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false), "
    "coalesce(last_failed_wal, '') FROM pg_stat_archiver"
)
ACTIVE = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


class PgShadow:
    max_identifier = 63
    name_prefix = "__dbr_"
    logs_changes = True
    runs_table = "dbrunbook.shadow_runs"
    state_per_database = True
    events_table = "dbrunbook.shadow_events"

    def prepare(self, db: DbSession, info: TableInfo, run_id: str) -> dict[str, str]:
        extra = index_plan(db, info, run_id)
        extra["identity"] = "yes" if any(c.identity for c in info.columns) else "no"
        return extra

    def discard_shadow(self, db: DbSession, run: RunTable, alter: str) -> tuple[Column, ...]:
        found: list[tuple[Column, ...]] = []
        try:
            with db.transaction():
                found.append(self._create(db, run, alter))
                raise _Discard
        except _Discard:
            pass
        return found[0]

    def preflight(
        self, db: DbSession, info: TableInfo, *, max_xact_age: float, replicas: int, max_lag: float
    ) -> list[str]:
        problems = [
            f"pid {pid} ({user}, application '{app}') holds a transaction {age:.0f}s old on the table"
            for pid, user, app, age in db.execute(cat.q(PREFLIGHT_XACTS, max_xact_age, S.qi(info.schema, info.name)))
        ]
        streaming = db.execute(cat.q(STREAMING))
        if len(streaming) < replicas:
            problems.append(f"{len(streaming)} of {replicas} replicas stream from the primary")
        problems += [f"replica {name} lags {lag:.1f}s (limit {max_lag:g}s)" for name, lag in streaming if lag > max_lag]
        failing, wal = db.execute(cat.q(ARCHIVER))[0]
        if failing:
            problems.append(f"archiving fails (last failed WAL {wal})")
        return problems

    def load(self, db: DbSession) -> tuple[int, list[float | None]]:
        active = int(db.scalar(cat.q(ACTIVE)) or 0)
        return active, [float(lag) for _name, lag in db.execute(cat.q(STREAMING))]

    def after_cutover(self, db: DbSession, run: RunTable) -> None:
        matview.rebuild(db, run)
        oid = int(db.scalar(cat.q("SELECT %s::regclass::oid", S.table(run))))
        with db.transaction():
            incoming = cat.read(db, cat.INCOMING_FKS, oid)
        for source, name, _definition in incoming:
            db.execute(
                ddl(f"ALTER TABLE {source} VALIDATE CONSTRAINT {S.qi(name)}", "validate a re-pointed foreign key")
            )

    def split_name(self, table: str) -> tuple[str, str]:
        return split_name(table)

    def default_schema(self, db: DbSession) -> str:
        return str(db.scalar(cat.q("SELECT current_schema()")))

    def catalog_facts(self, db: DbSession, run: RunTable) -> CatalogFacts:
        # The swap and the record of it are one transaction here: the names only confirm the record.
        def exists(name: str) -> bool:
            return bool(db.scalar(cat.q("SELECT to_regclass(%s) IS NOT NULL", S.qi(run.info.schema, name))))

        old, shadow = exists(run.names.old), exists(run.names.shadow)
        return CatalogFacts(old and not shadow, old, shadow)

    def inspect(self, db: DbSession, schema: str, table: str) -> TableInfo:
        rel = cat.relation(db, schema, table)
        if rel is None:
            raise PreflightFailed(f"{db.host}: no table {schema}.{table} in this database")
        with db.transaction():
            db.execute(cat.EMPTY_PATH)  # types of other schemas come back qualified
            columns = cat.columns(db, rel.oid)
            views = cat.read(db, cat.VIEWS, rel.oid, rel.oid)
            outgoing = cat.read(db, cat.OUTGOING_FKS, rel.oid)
            incoming = cat.read(db, cat.INCOMING_FKS, rel.oid)
            triggers = cat.read(db, cat.TRIGGERS, rel.oid)
        key = cat.key(db, rel.oid)
        refusals = [_KINDS[rel.kind]] if rel.kind in _KINDS else []
        refusals += ["a temporary table"] if rel.persistence == "t" else []
        refusals += ["a table with inheritance children or parents"] if rel.inherited else []
        refusals += [] if key else ["a table without a primary key or NOT NULL unique key"]
        refusals += matview.refusals(db, rel.oid)
        refusals += [f"foreign key {f[0]} references the table itself (not supported yet)" for f in outgoing if f[2]]
        dependents = [f"view {v[2]}: re-created after the swap" for v in views if v[1] == "v"]
        dependents += [
            f"materialized view {v[2]}: rebuilt aside after the swap, then swapped in" for v in views if v[1] == "m"
        ]
        dependents += [f"foreign key {f[1]} of {f[0]}: re-pointed NOT VALID, then validated" for f in incoming]
        dependents += [f"trigger {t[0]}: moved to the new table" for t in triggers]
        dependents += [f"foreign key {f[0]}: added to the new table" for f in outgoing if not f[2]]
        return TableInfo(schema, table, columns, key, rel.rows, rel.total_bytes, tuple(refusals), tuple(dependents))

    def create_shadow(self, db: DbSession, run: RunTable, alter: str) -> tuple[Column, ...]:
        with db.transaction():
            return self._create(db, run, alter)

    def _create(self, db: DbSession, run: RunTable, alter: str) -> tuple[Column, ...]:
        """In the caller's transaction: the empty shadow, the operator's ALTER, then every index of the table
        built on the empty shadow (that proves each still applies) and all but the key's dropped until the copy."""
        like = " ".join(
            f"INCLUDING {w}"
            for w in ("DEFAULTS", "IDENTITY", "GENERATED", "CONSTRAINTS", "STORAGE", "COMPRESSION", "COMMENTS")
        )
        shadow = S.shadow(run)
        options = run.extra.get("options", "")
        with_ = f" WITH ({options})" if options else ""
        db.execute(ddl(f"CREATE TABLE {shadow} (LIKE {S.table(run)} {like}){with_}", "create the shadow table"))
        try:
            db.execute(ddl(f"ALTER TABLE {shadow} {alter}", "run the ALTER on the shadow"))
        except DbrunbookError as exc:
            raise PreflightFailed(f"the ALTER fails on the shadow: {exc.message}") from None
        for stmt in _index_statements(run, only_key=False):
            try:
                db.execute(stmt)
            except DbrunbookError as exc:
                raise PreflightFailed(f"{stmt.description} does not fit the changed table: {exc.message}") from None
        for stmt in _drop_secondary(run):
            db.execute(stmt)
        oid = int(db.scalar(cat.q("SELECT %s::regclass::oid", shadow)))
        db.execute(cat.EMPTY_PATH)
        return cat.columns(db, oid)

    def install_capture(self, db: DbSession, run: RunTable, lock_timeout: float) -> None:
        with db.transaction(), db.limits(lock_timeout=lock_timeout):
            db.execute(S.create_log(run))
            db.execute(S.index_log(run))
            db.execute(S.capture_function(run))
            db.execute(S.capture_trigger(run))

    def copy_chunk(
        self, db: DbSession, run: RunTable, after: tuple[str, ...] | None, rows: int, record: Callable[[Chunk], None]
    ) -> Chunk:
        with db.transaction():
            read, written, last = db.execute(S.copy_chunk(run, after, rows))[0]
            # Fewer rows than asked for: the end of the table (rows inserted later are the capture's).
            chunk = Chunk(int(written), tuple(str(v) for v in last) if last and int(read) >= rows else None)
            record(chunk)
        return chunk

    def apply(self, db: DbSession, run: RunTable, limit: int) -> int:
        with db.transaction():
            db.execute(S.repeatable_read())
            return _apply(db, run, limit)

    def backlog(self, db: DbSession, run: RunTable) -> int:
        return int(db.scalar(S.backlog_sql(run)) or 0)

    def build_indexes(self, db: DbSession, run: RunTable, step: Callable[[str], None]) -> None:
        for stmt in _index_statements(run, only_key=None):
            step(stmt.description or "build an index")
            db.execute(stmt)
        for name, definition in json.loads(run.extra.get("outgoing", "[]")):
            step(f"add foreign key {name}")
            db.execute(
                ddl(
                    f"ALTER TABLE {S.shadow(run)} ADD CONSTRAINT {S.qi(name)} {definition} NOT VALID",
                    "add a foreign key",
                )
            )
            db.execute(ddl(f"ALTER TABLE {S.shadow(run)} VALIDATE CONSTRAINT {S.qi(name)}", "validate a foreign key"))
        step("ANALYZE the shadow")
        db.execute(ddl(f"ANALYZE {S.shadow(run)}", "analyze the shadow"))

    def checksum(self, db: DbSession, run: RunTable, ranges: int) -> list[RangeSum]:
        bounds = _boundaries(db, run, ranges)
        edges: list[tuple[str, ...] | None] = [None, *bounds, None]
        out: list[RangeSum] = []
        binary = True
        for after, upto in itertools.pairwise(edges):
            try:
                out.append(_range_sum(db, run, after, upto, binary))
            except QueryFailed as exc:
                if not binary or exc.code != "42883":  # undefined_function: a column type has no hash function
                    raise
                binary = False
                out.append(_range_sum(db, run, after, upto, binary))
        return out

    def recopy(self, db: DbSession, run: RunTable, bad: RangeSum) -> None:
        with db.transaction():
            db.execute(S.delete_range(run, bad.after, bad.upto))
            db.execute(S.copy_range(run, bad.after, bad.upto))

    def cutover(self, db: DbSession, run: RunTable, lock_timeout: float, record: Record, open_session: Opener) -> None:
        del open_session  # one transaction does it all here
        with db.transaction():
            with db.limits(lock_timeout=lock_timeout):
                db.execute(
                    ddl(f"LOCK TABLE {S.table(run)}, {S.shadow(run)} IN ACCESS EXCLUSIVE MODE", "lock the table")
                )
            _apply(db, run, None)  # nothing writes now: drain the log completely
            matview.capture(db, run)
            db.execute(ddl(f"DROP TRIGGER {S.qi(run.names.capture)} ON {S.table(run)}", "stop the capture"))
            swap(db, run, forward=True)
            for stmt in reverse_sync(run):
                db.execute(stmt)
            record(db)

    def rollback(self, db: DbSession, run: RunTable, lock_timeout: float, record: Record) -> None:
        with db.transaction():
            with db.limits(lock_timeout=lock_timeout):
                db.execute(ddl(f"LOCK TABLE {S.table(run)}, {S.old(run)} IN ACCESS EXCLUSIVE MODE", "lock both tables"))
            db.execute(ddl(f"DROP TRIGGER {S.qi(run.names.reverse)} ON {S.table(run)}", "stop the reverse sync"))
            matview.capture(db, run)
            swap(db, run, forward=False)
            record(db)

    def in_sync(self, db: DbSession, run: RunTable) -> bool:
        types = {c.name: c.type for c in run.info.columns}
        back = ", ".join(f"CAST(t.{S.qi(m.target)} AS {types[m.source]})" for m in run.columns.mapped)
        olds = ", ".join(f"o.{S.qi(m.source)}" for m in run.columns.mapped)
        digest = "count(*), coalesce(sum(hashtextextended(ROW({})::text, 0)), 0)::text"
        with db.transaction():
            db.execute(S.repeatable_read())
            a = db.execute(cat.q(f"SELECT {digest.format(back)} FROM {S.table(run)} t"))[0]
            b = db.execute(cat.q(f"SELECT {digest.format(olds)} FROM {S.old(run)} o"))[0]
        return (int(a[0]), int(a[1])) == (int(b[0]), int(b[1]))

    def cleanup(self, db: DbSession, run: RunTable) -> list[str]:
        dropped: list[str] = []
        schema = run.info.schema
        for trig, fn in ((run.names.capture, run.names.capture), (run.names.reverse, run.names.reverse)):
            for rel in (run.info.name, run.names.shadow, run.names.old):
                if _trigger_exists(db, schema, rel, trig):
                    db.execute(ddl(f"DROP TRIGGER {S.qi(trig)} ON {S.qi(schema, rel)}", "remove a trigger"))
                    dropped.append(f"trigger {trig} on {rel}")
            db.execute(ddl(f"DROP FUNCTION IF EXISTS {S.qi(S.STATE_SCHEMA, fn)}()", "remove a function"))
        for rel in (S.log(run), S.shadow(run), S.old(run)):
            if db.scalar(cat.q("SELECT to_regclass(%s) IS NOT NULL", rel)):
                db.execute(ddl(f"DROP TABLE {rel}", "remove a table of the run"))
                dropped.append(f"table {rel}")
        return dropped

    def blockers(self, db: DbSession, run: RunTable) -> list[Blocker]:
        oid = db.scalar(cat.q("SELECT to_regclass(%s)::oid", S.table(run)))
        if oid is None:
            return []
        return [
            Blocker(int(p), str(u), str(a), None if age is None else float(age), str(st), str(st).startswith("idle in"))
            for p, u, a, age, st in db.execute(cat.q(cat.LOCKERS, int(oid)))
        ]

    def terminate(self, db: DbSession, pid: int) -> None:
        db.execute(SqlStatement("SELECT pg_terminate_backend(%s)", params=(pid,), description=f"end session {pid}"))


def _range_sum(
    db: DbSession, run: RunTable, after: tuple[str, ...] | None, upto: tuple[str, ...] | None, binary: bool
) -> RangeSum:
    source_sql, shadow_sql = S.checksum_sql(run, after, upto, binary=binary)
    with db.transaction():
        db.execute(S.repeatable_read())
        a = db.execute(source_sql)[0]
        b = db.execute(shadow_sql)[0]
    return RangeSum(after, upto, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])))


def _apply(db: DbSession, run: RunTable, limit: int | None) -> int:
    batch, clear, rewrite, forget = S.apply_sql(run, limit)
    hi, count = db.execute(batch)[0]
    if hi is None:
        return 0
    for stmt in (clear, rewrite, forget):
        db.execute(SqlStatement(stmt.text, params=(hi,), description=stmt.description))
    return int(count)


def _index_statements(run: RunTable, *, only_key: bool | None) -> list[SqlStatement]:
    """The table's indexes for the shadow, under their temporary names: ``only_key`` True the key's, None all the
    others (after the copy), False every one (on the empty shadow, to prove they apply)."""
    out = []
    for (original, temp, _old, constraint), (definition, contype, is_key) in zip(
        index_pairs(run), json.loads(run.extra.get("index_defs", "[]")), strict=True
    ):
        if (only_key is True and not is_key) or (only_key is None and is_key):
            continue
        shadow = S.shadow(run)
        if contype == "x":  # an exclusion constraint builds its own index
            out.append(
                ddl(f"ALTER TABLE {shadow} ADD CONSTRAINT {S.qi(temp)} {definition}", f"add constraint {original}")
            )
            continue
        out.append(
            ddl(
                definition.replace("\x00NAME\x00", S.qi(temp)).replace("\x00TABLE\x00", shadow),
                f"build index {original}",
            )
        )
        if constraint:
            kind = "PRIMARY KEY" if contype == "p" else "UNIQUE"
            out.append(
                ddl(
                    f"ALTER TABLE {shadow} ADD CONSTRAINT {S.qi(temp)} {kind} USING INDEX {S.qi(temp)}",
                    f"make {original} a constraint",
                )
            )
    return out


def _drop_secondary(run: RunTable) -> list[SqlStatement]:
    out = []
    for (_original, temp, _old, constraint), (_definition, _contype, is_key) in zip(
        index_pairs(run), json.loads(run.extra.get("index_defs", "[]")), strict=True
    ):
        if is_key:
            continue
        what = (
            f"ALTER TABLE {S.shadow(run)} DROP CONSTRAINT {S.qi(temp)}"
            if constraint
            else f"DROP INDEX {S.qi(run.info.schema, temp)}"
        )
        out.append(ddl(what, "drop a proven index until the copy is done"))
    return out


def _boundaries(db: DbSession, run: RunTable, ranges: int) -> list[tuple[str, ...]]:
    rows = int(
        db.scalar(SqlStatement(f"SELECT count(*) FROM {S.table(run)}", description="count rows", mutating=False)) or 0
    )
    step = max(1, rows // max(ranges, 1))
    texts = ", ".join(f"{S.qi(k)}::text" for k in run.info.key)
    found = db.execute(
        SqlStatement(
            f"SELECT {texts} FROM (SELECT {S.key_cols(run)}, row_number() OVER (ORDER BY {S.key_cols(run)}) AS rn "
            f"FROM {S.table(run)}) k WHERE rn %% %s = 0 ORDER BY {S.key_cols(run)}",
            params=(step,),
            description="split the table into checksum ranges",
            mutating=False,
        )
    )
    return [tuple(str(v) for v in r) for r in found]


def _trigger_exists(db: DbSession, schema: str, rel: str, trigger: str) -> bool:
    return bool(
        db.scalar(
            cat.q(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = to_regclass(%s))",
                trigger,
                S.qi(schema, rel),
            )
        )
    )


def index_plan(db: DbSession, info: TableInfo, run_id: str) -> dict[str, str]:
    """The table's indexes, each with its shadow and old temporary names, the definition to build it on the
    shadow (name and table left as placeholders), and outgoing foreign keys: stored with the run."""
    oid = int(db.scalar(cat.q("SELECT %s::regclass::oid", S.qi(info.schema, info.name))))
    pairs, defs = [], []
    for n, (name, definition, constraint, contype, qname, qtable) in enumerate(db.execute(cat.q(cat.INDEXES, oid))):
        pairs.append([name, f"__dbr_{run_id}_i{n}", f"__dbr_{run_id}_o{n}", bool(constraint) and contype in ("p", "u")])
        if contype == "x":
            body = str(
                db.scalar(
                    cat.q(
                        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s AND conrelid = %s",
                        name,
                        oid,
                    )
                )
            )
            defs.append([body, "x", False])
            continue
        head = f"INDEX {qname} ON "
        text = str(definition)
        prefix = text.split(head, 1)
        if len(prefix) != 2 or not prefix[1].startswith((f"{qtable} ", f"ONLY {qtable} ")):
            raise PreflightFailed(f"index {name}: cannot read its definition back ({text[:80]})")
        rest = prefix[1].removeprefix("ONLY ").removeprefix(qtable)
        is_key = _covers(db, oid, name, info.key)
        defs.append([f"{prefix[0]}INDEX \x00NAME\x00 ON \x00TABLE\x00{rest}", str(contype), is_key])
    with db.transaction():
        outgoing = [[str(n), str(d)] for n, d, self_ref in cat.read(db, cat.OUTGOING_FKS, oid) if not self_ref]
        options = str(
            db.scalar(cat.q("SELECT coalesce(array_to_string(reloptions, ', '), '') FROM pg_class WHERE oid = %s", oid))
            or ""
        )
    return {
        "indexes": json.dumps(pairs),
        "index_defs": json.dumps(defs),
        "outgoing": json.dumps(outgoing),
        "options": options,
    }


def _covers(db: DbSession, oid: int, index: str, key: tuple[str, ...]) -> bool:
    cols = db.execute(
        cat.q(
            "SELECT i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL, "
            "array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = k.n WHERE k.o <= i.indnkeyatts ORDER BY k.o) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s AND c.relname = %s",
            oid,
            index,
        )
    )
    return bool(cols) and bool(cols[0][0]) and tuple(cols[0][1]) == key
