"""The PostgreSQL swap: inside the cut-over (or rollback) transaction, after the lock, move the table's name and
everything that hangs on it from one relation to the other.

It reads the catalog in that same transaction, under the lock, so what it rebuilds is what exists at that
moment: index and constraint names, sequences, owner, grants, comment, row level security and policies, replica
identity, publications, the application's triggers, dependent views and the foreign keys that point at the
table. Every definition is read with an empty ``search_path``: qualified, it names the table, and so the
relation that carries the name after the renames."""

from __future__ import annotations

import json

from dbrunbook.engines.postgresql import shadow_catalog as cat
from dbrunbook.engines.postgresql.shadow_sql import STATE_SCHEMA, _dollar, qi
from dbrunbook.engines.shadow_base import RunTable
from dbrunbook.execution.command import SqlStatement
from dbrunbook.execution.sql import DbSession

_CMD = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


def ddl(text: str, what: str, *params: object) -> SqlStatement:
    return SqlStatement(text, params=params, description=what)


def index_pairs(run: RunTable) -> list[tuple[str, str, str, bool]]:
    """(original name, the shadow's temporary name, the old table's temporary name, backs a constraint)."""
    return [(str(a), str(b), str(c), bool(d)) for a, b, c, d in json.loads(run.extra.get("indexes", "[]"))]


def _rename_index(table: str, schema: str, name: str, to: str, constraint: bool) -> SqlStatement:
    if constraint:  # renames the index with it
        return ddl(f"ALTER TABLE {table} RENAME CONSTRAINT {qi(name)} TO {qi(to)}", "rename a constraint")
    return ddl(f"ALTER INDEX {qi(schema, name)} RENAME TO {qi(to)}", "rename an index")


def swap(db: DbSession, run: RunTable, *, forward: bool) -> None:
    """Forward: the shadow becomes the table and the table the old one. Backward: the reverse (a rollback)."""
    schema = run.info.schema
    current, other = (run.names.shadow, run.names.old) if forward else (run.names.old, run.names.shadow)
    here = qi(schema, run.info.name)
    oid = int(db.scalar(cat.q("SELECT %s::regclass::oid", here)))
    incoming = cat.read(db, cat.INCOMING_FKS, oid)
    triggers = cat.read(db, cat.TRIGGERS, oid)
    views = _views(db, oid)
    publications = [r[0] for r in cat.read(db, cat.PUBLICATIONS, oid)]
    sequences = cat.read(db, cat.SEQUENCES, oid)
    properties = cat.read(db, cat.PROPERTIES, oid)[0]
    grants = cat.read(db, cat.GRANTS, oid)
    policies = cat.read(db, cat.POLICIES, oid)
    views = [v for v in views if v[1] == "v"]  # materialized views are rebuilt after the swap (shadow_matview)
    for name, _kind, _def, *_ in reversed(views):
        db.execute(ddl(f"DROP VIEW {name}", "drop a dependent view"))
    moved = qi(schema, other)
    db.execute(ddl(f"ALTER TABLE {here} RENAME TO {qi(other)}", "rename the table out of the way"))
    db.execute(ddl(f"ALTER TABLE {qi(schema, current)} RENAME TO {qi(run.info.name)}", "give the table's name"))
    for original, shadow_tmp, old_tmp, constraint in index_pairs(run):
        away, back = (original, old_tmp) if forward else (original, shadow_tmp)
        db.execute(_rename_index(moved, schema, away, back, constraint))
        db.execute(_rename_index(here, schema, shadow_tmp if forward else old_tmp, original, constraint))
    _sequences(db, run, sequences, here, moved, forward)
    if forward:
        _properties(db, here, properties, grants, policies, schema)
    for pub in publications:
        db.execute(ddl(f"ALTER PUBLICATION {qi(pub)} ADD TABLE {here}", "publish the table"))
        db.execute(ddl(f"ALTER PUBLICATION {qi(pub)} DROP TABLE {moved}", "stop publishing the other"))
    for name, definition, enabled in triggers:
        db.execute(ddl(f"DROP TRIGGER {qi(name)} ON {moved}", "move a trigger"))
        db.execute(ddl(definition, "re-create a trigger"))
        if enabled == "D":
            db.execute(ddl(f"ALTER TABLE {here} DISABLE TRIGGER {qi(name)}", "keep a trigger disabled"))
    for name, _kind, definition, options, owner, comment, acl in views:
        with_ = f" WITH ({options})" if options else ""
        db.execute(ddl(f"CREATE VIEW {name}{with_} AS {definition}", "re-create a dependent view"))
        db.execute(ddl(f"ALTER VIEW {name} OWNER TO {qi(owner)}", "restore the view's owner"))
        _grant(db, name, acl)
        if comment is not None:
            db.execute(ddl(f"COMMENT ON VIEW {name} IS %s", "restore the view's comment", comment))
    for source, name, definition in incoming:
        body = definition.removesuffix(" NOT VALID")
        db.execute(ddl(f"ALTER TABLE {source} DROP CONSTRAINT {qi(name)}", "detach a foreign key"))
        db.execute(ddl(f"ALTER TABLE {source} ADD CONSTRAINT {qi(name)} {body} NOT VALID", "re-point a foreign key"))


def _views(db: DbSession, oid: int) -> list[tuple[str, str, str, str, str, str | None, list[tuple[object, ...]]]]:
    out = []
    for view_oid, kind, name, definition, options, owner, comment, _depth in cat.read(db, cat.VIEWS, oid, oid):
        acl = [tuple(r) for r in cat.read(db, cat.GRANTS, view_oid)]
        out.append((str(name), str(kind), str(definition).rstrip().rstrip(";"), str(options), str(owner), comment, acl))
    return out


def _grant(db: DbSession, target: str, acl: list[tuple[object, ...]]) -> None:
    for grantee, privilege, grantable in acl:
        option = " WITH GRANT OPTION" if grantable else ""
        db.execute(ddl(f"GRANT {privilege} ON {target} TO {grantee}{option}", "copy a grant"))


def _sequences(
    db: DbSession, run: RunTable, rows: list[tuple[object, ...]], here: str, moved: str, forward: bool
) -> None:
    """Serial sequences follow the table's name; an identity goes on after the value the other one reached."""
    to_target = {m.source: m.target for m in run.columns.mapped}
    to_source = {m.target: m.source for m in run.columns.mapped}
    for seq, column, deptype in rows:
        col = str(column)
        mine = to_target.get(col) if forward else to_source.get(col)
        if mine is None:
            continue
        if deptype == "a":
            db.execute(ddl(f"ALTER SEQUENCE {seq} OWNED BY {here}.{qi(mine)}", "re-own a serial sequence"))
            continue
        last, called = db.execute(cat.q(f"SELECT last_value, is_called FROM {seq}"))[0]
        db.execute(
            ddl(
                f"ALTER TABLE {here} ALTER COLUMN {qi(mine)} RESTART WITH %s",
                "go on after the old identity",
                int(last) + (1 if called else 0),
            )
        )
    del moved


def _properties(
    db: DbSession,
    here: str,
    props: tuple[object, ...],
    grants: list[tuple[object, ...]],
    policies: list[tuple[object, ...]],
    schema: str,
) -> None:
    owner, comment, rls, force, replident, _options, replindex = props
    db.execute(ddl(f"ALTER TABLE {here} OWNER TO {qi(str(owner))}", "restore the owner"))
    _grant(db, here, [tuple(g) for g in grants])
    if comment is not None:
        db.execute(ddl(f"COMMENT ON TABLE {here} IS %s", "restore the comment", comment))
    if rls:
        db.execute(ddl(f"ALTER TABLE {here} ENABLE ROW LEVEL SECURITY", "restore row level security"))
    if force:
        db.execute(ddl(f"ALTER TABLE {here} FORCE ROW LEVEL SECURITY", "restore row level security"))
    for name, permissive, cmd, roles, using, check in policies:
        text = (
            f"CREATE POLICY {qi(str(name))} ON {here} AS {'PERMISSIVE' if permissive else 'RESTRICTIVE'} "
            f"FOR {_CMD[str(cmd)]} TO {roles}"
            + (f" USING ({using})" if using else "")
            + (f" WITH CHECK ({check})" if check else "")
        )
        db.execute(ddl(f"DROP POLICY IF EXISTS {qi(str(name))} ON {here}", "replace a policy"))
        db.execute(ddl(text, "copy a policy"))
    identity = {"n": "NOTHING", "f": "FULL"}.get(str(replident))
    if identity:
        db.execute(ddl(f"ALTER TABLE {here} REPLICA IDENTITY {identity}", "restore the replica identity"))
    elif replident == "i" and replindex:
        db.execute(
            ddl(f"ALTER TABLE {here} REPLICA IDENTITY USING INDEX {qi(str(replindex))}", "restore the replica identity")
        )
    del schema


def reverse_sync(run: RunTable) -> tuple[SqlStatement, SqlStatement]:
    """After the cut-over, writes to the table also reach the old one, converted back, so a rollback loses
    nothing. A value that does not convert back closes the window (an event), never fails the application."""
    old = qi(run.info.schema, run.names.old)
    keys = run.info.key
    target = {m.source: m.target for m in run.columns.mapped}
    types = {c.name: c.type for c in run.info.columns}
    mapped = run.columns.mapped
    where = " AND ".join(f"{qi(k)} = OLD.{qi(target[k])}" for k in keys)
    cols = ", ".join(qi(m.source) for m in mapped)
    values = ", ".join(f"CAST(NEW.{qi(m.target)} AS {types[m.source]})" for m in mapped)
    overriding = " OVERRIDING SYSTEM VALUE" if any(c.identity for c in run.info.columns) else ""
    event = f"INSERT INTO {qi(STATE_SCHEMA, 'shadow_events')} (run_id, what) VALUES ('{run.run_id}', "
    body = (
        "BEGIN BEGIN "
        f"IF TG_OP <> 'INSERT' THEN DELETE FROM {old} WHERE {where}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN INSERT INTO {old} ({cols}){overriding} VALUES ({values}); END IF; "
        f"EXCEPTION WHEN OTHERS THEN {event}'reverse sync failed: ' || SQLERRM); "
        "END; RETURN NULL; END"
    )
    function = qi(STATE_SCHEMA, run.names.reverse)
    return (
        ddl(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
            f"SET search_path = pg_catalog, pg_temp AS {_dollar(body)}",
            "create the reverse sync function",
        ),
        ddl(
            f"CREATE TRIGGER {qi(run.names.reverse)} AFTER INSERT OR UPDATE OR DELETE ON "
            f"{qi(run.info.schema, run.info.name)} FOR EACH ROW EXECUTE FUNCTION {function}()",
            "install the reverse sync",
        ),
    )
