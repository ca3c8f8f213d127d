"""The cluster's real password, sent as a parameter through every new session path (transactions, limits,
per-call timeouts, lock timeouts, server errors that quote the value, tool locks), never shows up in the
audit log or in an error's message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbrunbook.errors import DbrunbookError, QueryFailed, ToolLockBusy, is_lock_timeout, is_statement_timeout
from dbrunbook.execution import RunSettings, SqlStatement
from dbrunbook.inventory import LoadedInventory, SecretResolver
from dbrunbook.toolstate import bootstrap, tool_lock

from .conftest import MARIADB_GROUP
from .sqlstate import Server, fresh_server

# Statements whose server error quotes the parameter's value back.
QUOTES_VALUE = {"pg-main": "SELECT %s::int", "mariadb-main": "SELECT 1 FROM t WHERE = %s"}
SLEEP = {"pg-main": "SELECT pg_sleep(5), %s", "mariadb-main": "SELECT SLEEP(5), %s"}


@pytest.fixture(params=["pg-main", pytest.param("mariadb-main", marks=MARIADB_GROUP)])
def server(
    request: pytest.FixtureRequest, dev: LoadedInventory, settings: RunSettings, resolver: SecretResolver
) -> Iterator[Server]:
    if request.param == "mariadb-main":
        request.getfixturevalue("mariadb_exclusive")
    with fresh_server(dev, request.param, settings, resolver) as srv:
        with srv.session() as db:
            db.execute(SqlStatement("CREATE TABLE t (id int PRIMARY KEY, note varchar(200))"))
            db.execute(SqlStatement("INSERT INTO t VALUES (1, 'one')"))
        yield srv


def test_password_never_in_audit_or_errors(server: Server, audit_path: Path) -> None:
    secret = server.login().password
    assert secret is not None and len(server.password) >= 8
    errors: list[DbrunbookError] = []
    with server.session() as holder, server.session() as db:
        with db.transaction():
            db.execute(SqlStatement("INSERT INTO t VALUES (2, %s)", params=(secret,)))
        with pytest.raises(QueryFailed) as caught, db.transaction():
            db.execute(SqlStatement(QUOTES_VALUE[server.cluster_name], params=(secret,), mutating=False))
        errors.append(caught.value)
        with pytest.raises(QueryFailed) as caught:
            db.execute(SqlStatement(SLEEP[server.cluster_name], params=(secret,), mutating=False), timeout=0.5)
        assert is_statement_timeout(caught.value)
        errors.append(caught.value)
        with holder.transaction():
            holder.execute(SqlStatement("UPDATE t SET note = 'held' WHERE id = 1"))
            with pytest.raises(QueryFailed) as caught, db.limits(lock_timeout=1), db.transaction():
                db.execute(SqlStatement("UPDATE t SET note = %s WHERE id = 1", params=(secret,)))
            assert is_lock_timeout(caught.value)
            errors.append(caught.value)
        state = server.engine.tool_state()
        bootstrap(db, state)
        with (
            tool_lock(holder, state, "leak-probe"),
            pytest.raises(ToolLockBusy) as busy,
            tool_lock(db, state, "leak-probe", wait=0.5),
        ):
            pass
        errors.append(busy.value)
        stored = db.scalar(SqlStatement("SELECT note FROM t WHERE id = 2", mutating=False))
    assert stored == server.password  # the value did reach the server, as a parameter
    # The sandbox's passwords hold quotes and backslashes: a server that quotes the value back escaped
    # would show it in pieces the raw value does not match. No piece may show.
    pieces = [server.password, *re.findall(r"[A-Za-z0-9]{6,}", server.password)]
    audit = audit_path.read_text()
    assert not [p for p in pieces if p in audit]
    assert "-- params: ***" in audit
    for err in errors:
        assert not [p for p in pieces if p in err.one_line() or p in repr(err.args)], err.one_line()
    if server.cluster_name == "mariadb-main":
        with server.session() as db:
            db.execute(SqlStatement("DROP DATABASE IF EXISTS _dbrunbook"))
