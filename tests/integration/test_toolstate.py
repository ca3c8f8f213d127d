"""dbrunbook's state inside the sandbox's real servers: the versioned bootstrap and the advisory locks.

PostgreSQL keeps it in a schema of the connected database (each test has a fresh database); MariaDB in
the server-wide ``_dbrunbook`` database, dropped before and after each test."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbrunbook.errors import ToolLockBusy, ToolStateTooNew
from dbrunbook.execution import RunSettings, SqlStatement
from dbrunbook.inventory import LoadedInventory, SecretResolver
from dbrunbook.toolstate import bootstrap, current_version, tool_lock

from .conftest import MARIADB_GROUP
from .sqlstate import Server, fresh_server

VERSION_TABLE = {"pg-main": "dbrunbook.schema_version", "mariadb-main": "_dbrunbook.schema_version"}


@pytest.fixture(params=["pg-main", pytest.param("mariadb-main", marks=MARIADB_GROUP)])
def server(
    request: pytest.FixtureRequest, dev: LoadedInventory, settings: RunSettings, resolver: SecretResolver
) -> Iterator[Server]:
    mariadb = request.param == "mariadb-main"
    if mariadb:
        request.getfixturevalue("mariadb_exclusive")
    with fresh_server(dev, request.param, settings, resolver) as srv:
        if mariadb:
            with srv.session() as db:
                db.execute(SqlStatement("DROP DATABASE IF EXISTS _dbrunbook"))
        try:
            yield srv
        finally:
            if mariadb:
                with srv.session() as db:
                    db.execute(SqlStatement("DROP DATABASE IF EXISTS _dbrunbook"))


def test_bootstrap_applies_each_version_once(server: Server, audit_path: Path) -> None:
    with server.session() as db:
        state = server.engine.tool_state()
        assert current_version(db, state) == 0
        first = bootstrap(db, state)
        lines_after_first = len(audit_path.read_text().splitlines())
        second = bootstrap(db, state)
        rows = db.execute(SqlStatement(f"SELECT version, applied_by FROM {VERSION_TABLE[server.cluster_name]}"))
    known = len(state.steps)
    assert (first.before, first.after, first.applied) == (0, known, tuple(range(1, known + 1)))
    assert (second.before, second.after, second.applied) == (known, known, ())
    assert [r[0] for r in rows] == list(range(1, known + 1)) and rows[0][1] == "0.1.0"
    # The second run only took the lock and read: no statement that changes anything.
    second_run = [json.loads(x) for x in audit_path.read_text().splitlines()[lines_after_first:]]
    assert second_run and not [e for e in second_run if e["text"].startswith(("CREATE", "INSERT", "BEGIN"))]


def test_a_newer_recorded_version_is_refused(server: Server) -> None:
    with server.session() as db:
        state = server.engine.tool_state()
        bootstrap(db, state)
        db.execute(
            SqlStatement(
                f"INSERT INTO {VERSION_TABLE[server.cluster_name]} (version, description, applied_by) "
                "VALUES (99, 'from the future', '9.9.9')"
            )
        )
        with pytest.raises(ToolStateTooNew, match=r"at tool state version 99, but this dbrunbook .* knows only up to"):
            bootstrap(db, state)
        assert current_version(db, state) == 99


def test_a_held_lock_is_refused_to_a_second_session_with_the_holder_named(server: Server) -> None:
    state = server.engine.tool_state()
    with server.session() as first, server.session() as second:
        holder_id = first.scalar(
            SqlStatement(
                "SELECT pg_backend_pid()" if server.cluster_name == "pg-main" else "SELECT CONNECTION_ID()",
                mutating=False,
            )
        )
        with tool_lock(first, state, "migrate:orders"):
            busy = rf"lock 'migrate:orders' is held by server session {holder_id}$"
            with pytest.raises(ToolLockBusy, match=busy), tool_lock(second, state, "migrate:orders"):
                pass
            start = time.monotonic()
            with (
                pytest.raises(ToolLockBusy, match=r"\(waited 1 s\)"),
                tool_lock(second, state, "migrate:orders", wait=1),
            ):
                pass
            assert 0.9 < time.monotonic() - start < 4
            # Another name is another lock.
            with tool_lock(second, state, "migrate:customers"):
                pass
        # Released at the end of the block: the second session takes it now, even after a failure inside.
        with pytest.raises(RuntimeError), tool_lock(second, state, "migrate:orders"):
            raise RuntimeError("boom")
        with tool_lock(first, state, "migrate:orders", wait=1):
            pass


def test_bootstrap_waits_for_the_bootstrap_lock(server: Server) -> None:
    state = server.engine.tool_state()
    with server.session() as first, server.session() as second:
        with tool_lock(first, state, "bootstrap"), pytest.raises(ToolLockBusy):
            bootstrap(second, state, wait=0.5)
        # Once the holder lets go, the bootstrap takes the lock and runs.
        result = bootstrap(second, state, wait=5)
    assert result.after == len(state.steps)


def test_bad_lock_names_are_refused_before_reaching_the_server(server: Server) -> None:
    with (
        server.session() as db,
        pytest.raises(ValueError, match="lock name"),
        tool_lock(db, server.engine.tool_state(), "x" * 60),
    ):
        pass
