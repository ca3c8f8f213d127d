"""What the PostgreSQL catalog says about a table a shadow migration works on, read with ``search_path`` empty so
that every definition comes back schema-qualified (a view's text then still means the same table after a rename).
"""

from __future__ import annotations

from dataclasses import dataclass

from dbrunbook.engines.shadow_base import Column
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import DbSession, Row


def q(text: str, *params: object) -> SqlStatement:
    return SqlStatement(text, params=params, description="read the catalog", mutating=False)


EMPTY_PATH = SqlStatement(
    "SELECT set_config('search_path', '', true)", description="qualify every name", mutating=False
)

TABLE = (
    "SELECT c.oid, c.relkind, c.relpersistence, "
    "EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid), "
    "pg_total_relation_size(c.oid), greatest(c.reltuples, 0)::bigint "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s"
)
COLUMNS = (
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, a.attgenerated <> '', "
    "a.attidentity <> '' FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attnum"
)
# Unique, valid, total, on plain columns: the primary key first, then the narrowest NOT NULL one.
KEYS = (
    "SELECT i.indisprimary, array_agg(a.attname ORDER BY k.ord), bool_and(a.attnotnull) "
    "FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
    "WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL "
    "AND k.ord <= i.indnkeyatts GROUP BY i.indexrelid, i.indisprimary "
    "ORDER BY i.indisprimary DESC, count(*), i.indexrelid"
)
INDEXES = (
    "SELECT ic.relname, pg_get_indexdef(i.indexrelid), con.conname IS NOT NULL, coalesce(con.contype, ''), "
    "quote_ident(ic.relname), quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
    "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid "
    "WHERE i.indrelid = %s ORDER BY ic.relname"
)
OUTGOING_FKS = (
    "SELECT conname, pg_get_constraintdef(oid), confrelid = conrelid FROM pg_constraint "
    "WHERE conrelid = %s AND contype = 'f' ORDER BY conname"
)
INCOMING_FKS = (
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE confrelid = %s AND conrelid <> confrelid AND contype = 'f' ORDER BY 1, 2"
)
TRIGGERS = (
    "SELECT tgname, pg_get_triggerdef(oid), tgenabled FROM pg_trigger "
    "WHERE tgrelid = %s AND NOT tgisinternal AND tgname NOT LIKE '\\_\\_dbr\\_%%' ORDER BY tgname"
)
# Views on the table, and views on those, deepest last.
VIEWS = (
    "WITH RECURSIVE deps(oid, depth) AS ("
    " SELECT DISTINCT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
    " WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s AND r.ev_class <> %s"
    " UNION ALL SELECT DISTINCT r.ev_class, deps.depth + 1 FROM deps"
    " JOIN pg_depend d ON d.refobjid = deps.oid AND d.classid = 'pg_rewrite'::regclass"
    " JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> deps.oid AND deps.depth < 20) "
    "SELECT c.oid, c.relkind, c.oid::regclass::text, pg_get_viewdef(c.oid), "
    "coalesce(array_to_string(c.reloptions, ', '), ''), pg_get_userbyid(c.relowner), "
    "obj_description(c.oid, 'pg_class'), max(deps.depth) "
    "FROM deps JOIN pg_class c ON c.oid = deps.oid GROUP BY c.oid ORDER BY max(deps.depth), c.oid"
)
GRANTS = (
    "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, "
    "a.privilege_type, a.is_grantable FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
    "WHERE c.oid = %s AND a.grantee <> c.relowner ORDER BY 1, 2"
)
PROPERTIES = (
    "SELECT pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'), c.relrowsecurity, "
    "c.relforcerowsecurity, c.relreplident, coalesce(array_to_string(c.reloptions, ', '), ''), "
    "(SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
    "WHERE i.indrelid = c.oid AND i.indisreplident) FROM pg_class c WHERE c.oid = %s"
)
POLICIES = (
    "SELECT p.polname, p.polpermissive, p.polcmd, "
    "coalesce((SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ') "
    "FROM unnest(p.polroles) r), 'PUBLIC'), pg_get_expr(p.polqual, p.polrelid), "
    "pg_get_expr(p.polwithcheck, p.polrelid) FROM pg_policy p WHERE p.polrelid = %s ORDER BY p.polname"
)
PUBLICATIONS = (
    "SELECT p.pubname FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid "
    "WHERE pr.prrelid = %s ORDER BY 1"
)
# Sequences owned by a column: serial (deptype a) and identity (deptype i).
SEQUENCES = (
    "SELECT s.oid::regclass::text, a.attname, d.deptype FROM pg_depend d "
    "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
    "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
    "WHERE d.classid = 'pg_class'::regclass AND d.refobjid = %s AND d.deptype IN ('a', 'i') ORDER BY 2"
)
LOCKERS = (
    "SELECT a.pid, coalesce(a.usename, ''), coalesce(a.application_name, ''), "
    "extract(epoch FROM now() - a.xact_start)::float8, coalesce(a.state, '') FROM pg_stat_activity a "
    "WHERE a.pid <> pg_backend_pid() AND a.pid IN (SELECT l.pid FROM pg_locks l WHERE l.relation = %s) "
    "ORDER BY a.xact_start NULLS LAST"
)


@dataclass(frozen=True)
class Relation:
    oid: int
    kind: str
    persistence: str
    inherited: bool
    total_bytes: int
    rows: int


def relation(db: DbSession, schema: str, name: str) -> Relation | None:
    rows = db.execute(q(TABLE, schema, name))
    if not rows:
        return None
    oid, kind, persistence, inherited, size, tuples = rows[0]
    return Relation(int(oid), str(kind), str(persistence), bool(inherited), int(size), int(tuples))


def columns(db: DbSession, oid: int) -> tuple[Column, ...]:
    return tuple(
        Column(str(n), str(t), bool(null), bool(gen), bool(ident))
        for n, t, null, gen, ident in db.execute(q(COLUMNS, oid))
    )


def key(db: DbSession, oid: int) -> tuple[str, ...]:
    for _primary, cols, not_null in db.execute(q(KEYS, oid)):
        if not_null:
            return tuple(str(c) for c in cols)
    return ()


def read(db: DbSession, stmt: str, *params: object) -> list[Row]:
    """A catalog query with every name in its answers schema-qualified (inside a transaction of the caller's)."""
    db.execute(EMPTY_PATH)
    return db.execute(q(stmt, *params))
