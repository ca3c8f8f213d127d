"""MariaDB's :class:`~dbrunbook.engines.shadow_base.ShadowDialect`: synchronous capture by triggers, keyset copy
with ``INSERT IGNORE … LOCK IN SHARE MODE`` checked by ``SHOW WARNINGS``, one ``RENAME TABLE`` to swap."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from dbrunbook.engines.mariadb import shadow_sql as S
from dbrunbook.engines.mariadb.shadow_sql import PREFIX
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
from dbrunbook.errors import DbrunbookError, MigrationError, PreflightFailed, QueryFailed
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
TRIGGER_NAMES = "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
AUTO_INCREMENT = "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
RENAME_WAITING = (
    "SELECT COUNT(*) > 0 FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for table metadata lock%%' "
    "AND INFO LIKE %s"
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


# The copy's own transactions take no gap locks: fewer waits for the application's inserts.
READ_COMMITTED = SqlStatement(
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED", description="no gap locks", mutating=False
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
    # The cut-over's RENAME takes its metadata locks in name order. Names that sort after the application's make
    # it wait for the table first, and only then take the shadow and the flag, which the application's
    # triggers need: the other order deadlocks with a transaction that holds the table and waits for the shadow.
    name_prefix = PREFIX
    logs_changes = False
    runs_table = "`_dbrunbook`.shadow_runs"
    state_per_database = False
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
        existing = {r[0] for r in db.execute(q(TRIGGER_NAMES, run.info.schema))}
        with _lenient(db), db.limits(lock_timeout=lock_timeout):
            for stmt in S.capture_triggers(run):
                if _trigger_of(stmt) not in existing:
                    db.execute(stmt)

    def copy_chunk(
        self, db: DbSession, run: RunTable, after: tuple[str, ...] | None, rows: int, record: Callable[[Chunk], None]
    ) -> Chunk:
        db.execute(READ_COMMITTED)  # the next transaction only
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
        # Boundaries by walking the primary key (a full COUNT(*) or window over a table under writes can take
        # half a minute: it reads through the secondary index's newer versions).
        step = max(1, run.info.rows_estimate // max(ranges, 1))
        bounds: list[tuple[str, ...]] = []
        after: tuple[str, ...] | None = None
        while True:
            end = db.execute(S.chunk_end(run, after, step))
            if not end:
                break
            after = tuple(str(v) for v in end[0])
            bounds.append(after)
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
            db.execute(S.copy_range(run, bad.after, bad.upto, skip_locked=False))
            _check_warnings(db)

    def cutover(self, db: DbSession, run: RunTable, lock_timeout: float, record: Record, open_session: Opener) -> None:
        """This session locks the table and the shadow (writes wait), moves the triggers (capture off the table,
        reverse sync onto the shadow: no write can pass in between, and they never chain), then a second session
        issues the RENAME, which queues behind the lock; the unlock lets the RENAME through before any waiting
        write (an exclusive metadata lock request goes first). Killed anywhere, the lock goes with the session
        and the waiting RENAME still completes the swap, with the triggers already in place."""
        counter = db.scalar(q(AUTO_INCREMENT, run.info.schema, run.info.name))
        if counter is not None:
            # The new table hands out ids after every id the old one gave, deleted rows' included.
            db.execute(ddl(f"ALTER TABLE {S.shadow(run)} AUTO_INCREMENT = {int(counter) + 1000}", "carry the ids on"))
        db.execute(S.lock_both(run, lock_timeout))
        renamed: list[BaseException | None] = []
        try:
            for stmt in S.drop_triggers(run, "capture"):
                db.execute(stmt)
            with _lenient(db):
                for stmt in S.reverse_triggers(run):
                    db.execute(stmt)
            with open_session() as renamer:
                worker = threading.Thread(target=_rename, args=(renamer, run, renamed), daemon=True)
                worker.start()
                if not _waiting(db, run):
                    raise MigrationError(f"{run.info.qualified}: the swap's RENAME never queued behind the lock")
                db.execute(UNLOCK)
                worker.join(60)
        except BaseException:
            _undo_triggers(db, run, renamed)
            raise
        if not renamed or renamed[0] is not None:
            raise MigrationError(
                f"{run.info.qualified}: the swap's RENAME failed: {renamed[0] if renamed else 'no answer'}"
            )
        record(db)

    def rollback(self, db: DbSession, run: RunTable, lock_timeout: float, record: Record) -> None:
        db.execute(S.swap(run, lock_timeout, forward=False))
        record(db)
        for stmt in S.drop_triggers(run, "reverse"):
            db.execute(stmt)

    def in_sync(self, db: DbSession, run: RunTable) -> bool:
        new_cols = [S.qi(m.target) for m in run.columns.mapped]
        old_cols = [S.qi(m.source) for m in run.columns.mapped]
        with db.transaction():
            a = db.execute(q(f"SELECT {S._row_hash(new_cols)} FROM {S.table(run)}"))[0]
            b = db.execute(q(f"SELECT {S._row_hash(old_cols)} FROM {S.old(run)}"))[0]
        return (int(a[0]), int(a[1])) == (int(b[0]), int(b[1]))

    def after_cutover(self, db: DbSession, run: RunTable) -> None:
        return None

    def catalog_facts(self, db: DbSession, run: RunTable) -> CatalogFacts:
        names = _tables(db, run.info.schema)
        old, shadow = run.names.old in names, run.names.shadow in names
        return CatalogFacts(old and not shadow, old, shadow)

    def cleanup(self, db: DbSession, run: RunTable) -> list[str]:
        for kind in ("capture", "reverse"):
            for stmt in S.drop_triggers(run, kind):
                db.execute(stmt)
        dropped = ["triggers"]
        names = _tables(db, run.info.schema)
        for rel, there in ((S.shadow(run), run.names.shadow in names), (S.old(run), run.names.old in names)):
            if there:
                db.execute(ddl(f"DROP TABLE {rel}", "remove a table of the run"))
                dropped.append(f"table {rel}")
        return dropped

    def blockers(self, db: DbSession, run: RunTable) -> list[Blocker]:
        return [
            Blocker(
                int(pid),
                f"{user}@{host}",
                "",
                None if age is None else float(age),
                str(state),
                str(state) == "Sleep in a transaction",
            )
            for pid, user, host, age, state in db.execute(q(BLOCKERS))
        ]

    def terminate(self, db: DbSession, pid: int) -> None:
        db.execute(SqlStatement(f"KILL CONNECTION {int(pid)}", description=f"end session {pid}"))


@contextmanager
def _lenient(db: DbSession) -> Iterator[None]:
    """Triggers created here keep a sql_mode without strict mode (see shadow_sql.capture_triggers)."""
    mode = db.scalar(q("SELECT @@SESSION.sql_mode"))
    db.execute(q(S.LENIENT))
    try:
        yield
    finally:
        db.execute(
            SqlStatement("SET SESSION sql_mode = %s", params=(mode,), description="restore sql_mode", mutating=False)
        )


def _trigger_of(stmt: SqlStatement) -> str:
    return stmt.text.split("CREATE TRIGGER ", 1)[1].split(" ", 1)[0].rsplit(".", 1)[-1].strip("`")


UNLOCK = SqlStatement("UNLOCK TABLES", description="let the RENAME through", mutating=False)


def _rename(renamer: DbSession, run: RunTable, out: list[BaseException | None]) -> None:
    try:
        renamer.execute(S.swap(run, 30, forward=True))
        out.append(None)
    except BaseException as exc:  # reported by the locking session
        out.append(exc)


def _waiting(db: DbSession, run: RunTable, seconds: float = 5.0) -> bool:
    """Is the RENAME queued for the table's metadata lock yet?"""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if db.scalar(q(RENAME_WAITING, f"%RENAME TABLE {S.table(run)}%")):
            return True
        time.sleep(0.005)
    return False


def _undo_triggers(db: DbSession, run: RunTable, renamed: list[BaseException | None]) -> None:
    """Before the RENAME ran, put capture back on the table (it is still locked, nothing was written)."""
    if renamed and renamed[0] is None:
        return
    with suppress(DbrunbookError):
        for stmt in S.drop_triggers(run, "reverse"):
            db.execute(stmt)
        with _lenient(db):
            for stmt in S.capture_triggers(run):
                db.execute(stmt)
    with suppress(DbrunbookError):
        db.execute(UNLOCK)


def _tables(db: DbSession, schema: str) -> set[str]:
    return {
        r[0] for r in db.execute(q("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", schema))
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
