"""MariaDB's :class:`~dbrunbook.engines.shadow_base.ShadowDialect`: synchronous capture by triggers, keyset copy
with ``INSERT IGNORE … LOCK IN SHARE MODE`` checked by ``SHOW WARNINGS``, one ``RENAME TABLE`` to swap."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from dbrunbook.engines.mariadb import shadow_sql as S
from dbrunbook.engines.shadow_base import Blocker, CatalogFacts, Chunk, Column, RangeSum, Record, RunTable, TableInfo
from dbrunbook.errors import DbrunbookError, PreflightFailed, QueryFailed
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import DbSession


def q(text: str, *params: object) -> SqlStatement:
    return SqlStatement(text, params=params, description="read the catalog", mutating=False)


def ddl(text: str, what: str) -> SqlStatement:
    return SqlStatement(text, description=what)


TABLE = (
    "SELECT TABLE_TYPE, COALESCE(ENGINE, ''), COALESCE(CREATE_OPTIONS, ''), COALESCE(TABLE_ROWS, 0), "
    "COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
)
COLUMNS = (
    "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES', EXTRA LIKE '%%GENERATED%%' FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
)
KEYS = (
    "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR '\\n'), "
    "SUM(NULLABLE = 'YES') = 0 AND SUM(SUB_PART IS NOT NULL) = 0 FROM information_schema.STATISTICS "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 GROUP BY INDEX_NAME "
    "ORDER BY INDEX_NAME = 'PRIMARY' DESC, COUNT(*), INDEX_NAME"
)
TRIGGERS = (
    "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s "
    "AND TRIGGER_NAME NOT LIKE '\\_\\_dbr\\_%%'"
)
INCOMING = (
    "SELECT CONCAT(CONSTRAINT_SCHEMA, '.', TABLE_NAME, ' ', CONSTRAINT_NAME) "
    "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s"
)
OUTGOING = (
    "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s"
)
VIEWS = (
    "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.VIEWS "
    "WHERE VIEW_DEFINITION LIKE CONCAT('%%`', %s, '`.`', %s, '`%%')"
)
OLD_XACTS = (
    "SELECT p.ID, p.USER, COALESCE(p.HOST, ''), TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), COALESCE(p.COMMAND, '') "
    "FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
    "WHERE p.ID <> CONNECTION_ID() AND t.trx_started < NOW() - INTERVAL %s SECOND ORDER BY t.trx_started"
)
STREAMING = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND IN ('Binlog Dump', 'Binlog Dump GTID')"
# A session with an open transaction, or one waiting for the table's metadata lock, is what a RENAME waits for.
BLOCKERS = (
    "SELECT p.ID, p.USER, COALESCE(p.HOST, ''), TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), "
    "CONCAT(COALESCE(p.COMMAND, ''), IF(t.trx_started IS NULL, '', ' in a transaction')) "
    "FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t ON p.ID = t.trx_mysql_thread_id "
    "WHERE p.ID <> CONNECTION_ID() AND (t.trx_started IS NOT NULL OR p.STATE LIKE 'Waiting for table metadata lock%%') "
    "AND p.COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon') ORDER BY t.trx_started IS NULL, t.trx_started"
)


def split_name(text: str) -> tuple[str, str]:
    """``db.table`` (either part in backticks); a bare name is in the session's database (returned as '')."""
    parts, i, n = [], 0, len(text)
    while i < n:
        if text[i] == "`":
            j, buf = i + 1, []
            while j < n and not (text[j] == "`" and text[j + 1 : j + 2] != "`"):
                buf.append(text[j])
                j += 2 if text[j] == "`" else 1
            if j >= n:
                raise PreflightFailed(f"table name {text!r}: a backtick is not closed")
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
        parts.insert(0, "")
    if len(parts) != 2 or not parts[1]:
        raise PreflightFailed(f"table name {text!r}: give DATABASE.TABLE")
    return parts[0], parts[1]


class MyShadow:
    max_identifier = 64
    logs_changes = False
    runs_table = "`_dbrunbook`.shadow_runs"
    events_table = "`_dbrunbook`.shadow_events"

    def split_name(self, table: str) -> tuple[str, str]:
        return split_name(table)

    def default_schema(self, db: DbSession) -> str:
        found = db.scalar(q("SELECT DATABASE()"))
        if not found:
            raise PreflightFailed("give the table as DATABASE.TABLE, or --database")
        return str(found)

    def inspect(self, db: DbSession, schema: str, table: str) -> TableInfo:
        rows = db.execute(q(TABLE, schema, table))
        if not rows:
            raise PreflightFailed(f"{db.host}: no table {schema}.{table}")
        kind, engine, options, tuples, size = rows[0]
        columns = _columns(db, schema, table)
        key: tuple[str, ...] = ()
        for _name, cols, usable in db.execute(q(KEYS, schema, table)):
            if usable:
                key = tuple(str(cols).split("\n"))
                break
        triggers = [r[0] for r in db.execute(q(TRIGGERS, schema, table))]
        incoming = [r[0] for r in db.execute(q(INCOMING, schema, table))]
        outgoing = [r[0] for r in db.execute(q(OUTGOING, schema, table))]
        refusals = [] if kind == "BASE TABLE" else [f"a {str(kind).lower()}"]
        refusals += [] if str(engine).lower() == "innodb" else [f"an {engine} table (InnoDB only)"]
        refusals += ["a partitioned table"] if "partitioned" in str(options) else []
        refusals += [] if key else ["a table without a primary key or NOT NULL unique key"]
        refusals += (
            [f"it has triggers of its own ({', '.join(triggers)}; --triggers=suffix is not built yet)"]
            if triggers
            else []
        )
        refusals += [f"foreign key {f} references it (--foreign-keys=rebuild is not built yet)" for f in incoming]
        refusals += [f"it has foreign key {f} (not moved yet)" for f in outgoing]
        views = [
            f"view {r[0]}: names the table, so it reads the new one after the swap"
            for r in db.execute(q(VIEWS, schema, table))
        ]
        return TableInfo(schema, table, columns, key, int(tuples), int(size), tuple(refusals), tuple(views))

    def prepare(self, db: DbSession, info: TableInfo, run_id: str) -> dict[str, str]:
        return {}

    def create_shadow(self, db: DbSession, run: RunTable, alter: str) -> tuple[Column, ...]:
        db.execute(ddl(f"CREATE TABLE {S.shadow(run)} LIKE {S.table(run)}", "create the shadow table"))
        try:
            db.execute(ddl(f"ALTER TABLE {S.shadow(run)} {alter}", "run the ALTER on the shadow"))
        except DbrunbookError as exc:
            db.execute(ddl(f"DROP TABLE IF EXISTS {S.shadow(run)}", "remove the shadow"))
            raise PreflightFailed(f"the ALTER fails on the shadow: {exc.message}") from None
        return _columns(db, run.info.schema, run.names.shadow)

    def discard_shadow(self, db: DbSession, run: RunTable, alter: str) -> tuple[Column, ...]:
        try:
            return self.create_shadow(db, run, alter)
        finally:
            db.execute(ddl(f"DROP TABLE IF EXISTS {S.shadow(run)}", "remove the trial shadow"))

    def preflight(
        self, db: DbSession, info: TableInfo, *, max_xact_age: float, replicas: int, max_lag: float
    ) -> list[str]:
        problems = [
            f"session {pid} ({user}@{host}, {cmd}) holds a transaction {age}s old"
            for pid, user, host, age, cmd in db.execute(q(OLD_XACTS, int(max_xact_age)))
        ]
        streaming = int(db.scalar(q(STREAMING)) or 0)
        if streaming < replicas:
            problems.append(f"{streaming} of {replicas} replicas read the binlog")
        return problems

    def load(self, db: DbSession) -> tuple[int, list[float | None]]:
        running = db.execute(q("SHOW GLOBAL STATUS LIKE 'Threads_running'"))
        active = max(0, int(running[0][1]) - 1) if running else 0
        return active, [None] * int(db.scalar(q(STREAMING)) or 0)

    def install_capture(self, db: DbSession, run: RunTable, lock_timeout: float) -> None:
        """Idempotent: a try that lost the lock halfway is finished by the next."""
        have = {
            r[0]
            for r in db.execute(
                q("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", S.STATE_DB)
            )
        }
        if f"__dbr_{run.run_id}_flag" not in have:
            for stmt in S.flag_tables(run):
                db.execute(stmt)
        existing = {
            r[0]
            for r in db.execute(
                q("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", run.info.schema)
            )
        }
        with db.limits(lock_timeout=lock_timeout):
            for suffix, stmt in zip(S.TRIGGER_SUFFIXES, S.triggers(run), strict=True):
                if S.trigger_name(run, suffix) not in existing:
                    db.execute(stmt)

    def copy_chunk(
        self, db: DbSession, run: RunTable, after: tuple[str, ...] | None, rows: int, record: Callable[[Chunk], None]
    ) -> Chunk:
        with db.transaction():
            end = db.execute(S.chunk_end(run, after, rows))
            upto = tuple(str(v) for v in end[0]) if end else None
            db.execute(S.copy_range(run, after, upto))
            copied = int(db.scalar(q("SELECT ROW_COUNT()")) or 0)
            _check_warnings(db)
            chunk = Chunk(max(copied, 0), upto)
            record(chunk)
        return chunk

    def apply(self, db: DbSession, run: RunTable, limit: int) -> int:
        return 0  # the triggers wrote every change already

    def backlog(self, db: DbSession, run: RunTable) -> int:
        return 0

    def build_indexes(self, db: DbSession, run: RunTable, step: Callable[[str], None]) -> None:
        step("ANALYZE the shadow (its indexes came with CREATE TABLE LIKE)")
        db.execute(q(f"ANALYZE TABLE {S.shadow(run)}"))

    def checksum(self, db: DbSession, run: RunTable, ranges: int) -> list[RangeSum]:
        count = int(db.scalar(q(f"SELECT COUNT(*) FROM {S.table(run)}")) or 0)
        step = max(1, count // max(ranges, 1))
        keys = S.key_cols(run)
        bounds = [
            tuple(str(v) for v in r)
            for r in db.execute(
                q(
                    f"SELECT {keys} FROM (SELECT {keys}, ROW_NUMBER() OVER (ORDER BY {keys}) AS rn "
                    f"FROM {S.table(run)}) k WHERE rn %% %s = 0 ORDER BY {keys}",
                    step,
                )
            )
        ]
        edges: list[tuple[str, ...] | None] = [None, *bounds, None]
        out = []
        for after, upto in itertools.pairwise(edges):
            source, shadow = S.checksum_sql(run, after, upto)
            with db.transaction():
                a = db.execute(source)[0]
                b = db.execute(shadow)[0]
            out.append(RangeSum(after, upto, (int(a[0]), int(a[1])), (int(b[0]), int(b[1]))))
        return out

    def recopy(self, db: DbSession, run: RunTable, bad: RangeSum) -> None:
        with db.transaction():
            db.execute(S.delete_range(run, bad.after, bad.upto))
            db.execute(S.copy_range(run, bad.after, bad.upto))
            _check_warnings(db)

    def cutover(self, db: DbSession, run: RunTable, lock_timeout: float, record: Record) -> None:
        db.execute(S.swap(run, lock_timeout, forward=True))
        record(db)  # after the RENAME: a crash in between is read back from the flag (catalog_facts)

    def rollback(self, db: DbSession, run: RunTable, lock_timeout: float, record: Record) -> None:
        db.execute(S.swap(run, lock_timeout, forward=False))
        record(db)

    def after_cutover(self, db: DbSession, run: RunTable) -> None:
        return None

    def catalog_facts(self, db: DbSession, run: RunTable) -> CatalogFacts:
        names = {
            r[0]
            for r in db.execute(
                q("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", run.info.schema)
            )
        }
        flag = db.execute(q(f"SELECT v FROM {S.flag(run)}")) if f"__dbr_{run.run_id}_flag" in _state_tables(db) else []
        return CatalogFacts(bool(flag) and flag[0][0] == 1, run.names.old in names, run.names.shadow in names)

    def cleanup(self, db: DbSession, run: RunTable) -> list[str]:
        dropped = []
        for suffix in S.TRIGGER_SUFFIXES:
            db.execute(
                ddl(f"DROP TRIGGER IF EXISTS {S.qi(run.info.schema, S.trigger_name(run, suffix))}", "remove a trigger")
            )
        dropped.append("triggers")
        state = _state_tables(db)
        names = {
            r[0]
            for r in db.execute(
                q("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", run.info.schema)
            )
        }
        for rel, there in ((S.shadow(run), run.names.shadow in names), (S.old(run), run.names.old in names)):
            if there:
                db.execute(ddl(f"DROP TABLE {rel}", "remove a table of the run"))
                dropped.append(f"table {rel}")
        for which in ("", "_on", "_off"):
            if f"__dbr_{run.run_id}_flag{which}" in state:
                db.execute(ddl(f"DROP TABLE {S.flag(run, which)}", "remove a flag"))
        return dropped

    def blockers(self, db: DbSession, run: RunTable) -> list[Blocker]:
        return [
            Blocker(int(pid), f"{user}@{host}", "", None if age is None else float(age), str(state))
            for pid, user, host, age, state in db.execute(q(BLOCKERS))
        ]


def _state_tables(db: DbSession) -> set[str]:
    return {
        r[0]
        for r in db.execute(q("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", S.STATE_DB))
    }


def _columns(db: DbSession, schema: str, table: str) -> tuple[Column, ...]:
    return tuple(
        Column(str(n), str(t), bool(null), bool(gen)) for n, t, null, gen in db.execute(q(COLUMNS, schema, table))
    )


def _check_warnings(db: DbSession) -> None:
    """INSERT IGNORE turns every refusal into a warning: only a duplicate of the primary key (a row a trigger
    wrote first) is expected; anything else is a row the changed table refuses."""
    for _level, code, message in db.execute(q("SHOW WARNINGS")):
        if int(code) == 1062 and str(message).endswith("for key 'PRIMARY'"):
            continue
        state = "23000" if int(code) == 1062 else "22000"
        raise QueryFailed(f"{db.host}: MariaDB warning {code}: {message}", code=state)
