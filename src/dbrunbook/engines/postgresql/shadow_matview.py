"""Materialized views on a swapped table: rebuilt aside against the relation that now has the table's name,
with their indexes, then swapped in under a short lock (the old one answers queries until then).

After a cut-over they still read the old table (a matview, like a view, holds the relation, not its name), and
after a rollback the new one; :func:`rebuild` finds those that depend on either of the run's other relations."""

from __future__ import annotations

import json

from dbrunbook.engines.postgresql import shadow_catalog as cat
from dbrunbook.engines.postgresql.shadow_sql import qi
from dbrunbook.engines.postgresql.shadow_swap import ddl
from dbrunbook.engines.shadow_base import RunTable
from dbrunbook.execution.sql import DbSession

MATVIEWS = (
    "SELECT DISTINCT c.oid, n.nspname, c.relname, pg_get_viewdef(c.oid), c.relispopulated, "
    "pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class') "
    "FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class c ON c.oid = r.ev_class "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE d.classid = 'pg_rewrite'::regclass AND c.relkind = 'm' AND d.refobjid = ANY(%s::oid[]) ORDER BY c.oid"
)
# Views or materialized views built on a materialized view: dropping it would need CASCADE.
DEPENDENTS = (
    "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
    "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s AND r.ev_class <> %s"
)


def refusals(db: DbSession, table_oid: int) -> list[str]:
    """Materialized views the swap cannot rebuild (others are built on them)."""
    return [
        f"materialized view {schema}.{name} has views of its own (not supported yet)"
        for oid, schema, name, *_ in db.execute(cat.q(MATVIEWS, [table_oid]))
        if int(db.scalar(cat.q(DEPENDENTS, oid, oid)) or 0)
    ]


def capture(db: DbSession, run: RunTable) -> None:
    """Inside the swap's transaction, before the renames: the definitions of the materialized views on the table,
    qualified, so that they name the table (read after the renames they would name the old relation)."""
    db.execute(cat.EMPTY_PATH)
    oid = int(db.scalar(cat.q("SELECT %s::regclass::oid", qi(run.info.schema, run.info.name))))
    rows = db.execute(cat.q(MATVIEWS, [oid]))
    run.extra["matviews"] = json.dumps(
        [[int(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), str(r[5]), r[6]] for r in rows]
    )


def rebuild(db: DbSession, run: RunTable) -> list[str]:
    """Rebuild the materialized views :func:`capture` saw, now reading the relation that has the table's name."""
    done = []
    for n, (oid, schema, name, definition, populated, owner, comment) in enumerate(
        json.loads(run.extra.pop("matviews", "[]"))
    ):
        _rebuild_one(db, run, n, int(oid), (str(schema), str(name)), str(definition), bool(populated), owner, comment)
        done.append(f"{schema}.{name}")
    return done


def _rebuild_one(
    db: DbSession,
    run: RunTable,
    n: int,
    oid: int,
    where: tuple[str, str],
    definition: str,
    populated: bool,
    owner: object,
    comment: object,
) -> None:
    schema, name = where
    aside_name = f"__dbr_{run.run_id}_mv{n}"
    aside, current = qi(schema, aside_name), qi(schema, name)
    with db.transaction():
        db.execute(cat.EMPTY_PATH)
        indexes = db.execute(cat.q(cat.INDEXES, oid))
        grants = db.execute(cat.q(cat.GRANTS, oid))
        body = definition.rstrip().rstrip(";")
        data = "WITH DATA" if populated else "WITH NO DATA"
        db.execute(ddl(f"CREATE MATERIALIZED VIEW {aside} AS {body} {data}", f"rebuild {schema}.{name} aside"))
        renames = []
        for i, (index, text, _constraint, _contype, qname, qtable) in enumerate(indexes):
            head, sep, rest = str(text).partition(f"INDEX {qname} ON {qtable} ")
            if not sep:
                continue  # a definition this code cannot read back: the rebuilt view goes without that index
            temp = f"__dbr_{run.run_id}_mv{n}_i{i}"
            db.execute(ddl(f"{head}INDEX {qi(temp)} ON {aside} {rest}", f"index {index} of the rebuilt view"))
            renames.append((temp, str(index)))
    with db.transaction():
        db.execute(ddl(f"DROP MATERIALIZED VIEW {current}", f"retire the old {schema}.{name}"))
        db.execute(ddl(f"ALTER MATERIALIZED VIEW {aside} RENAME TO {qi(name)}", f"swap in {schema}.{name}"))
        for temp, original in renames:
            db.execute(ddl(f"ALTER INDEX {qi(schema, temp)} RENAME TO {qi(original)}", "give the index its name"))
        db.execute(ddl(f"ALTER MATERIALIZED VIEW {current} OWNER TO {qi(str(owner))}", "restore the owner"))
        for grantee, privilege, grantable in grants:
            option = " WITH GRANT OPTION" if grantable else ""
            db.execute(ddl(f"GRANT {privilege} ON {current} TO {grantee}{option}", "copy a grant"))
        if comment is not None:
            db.execute(ddl(f"COMMENT ON MATERIALIZED VIEW {current} IS %s", "restore the comment", comment))
