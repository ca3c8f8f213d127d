"""DbSession's transactions, limits and per-call timeouts on the sandbox's real PostgreSQL and MariaDB.

Each test works in a database of its own; the lock tests hold real locks from a second session."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.errors import QueryFailed, is_lock_timeout, is_retryable, is_statement_timeout
from dbrunbook.execution import RunSettings, SqlStatement
from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import MARIADB_GROUP
from .sqlstate import Server, fresh_server

# What each engine answers, by code: the point of QueryFailed.code.
LOCK_TIMEOUT = {"pg-main": "55P03", "mariadb-main": "1205"}
STATEMENT_TIMEOUT = {"pg-main": "57014", "mariadb-main": "1969"}
SLEEP = {"pg-main": "SELECT pg_sleep(5)", "mariadb-main": "SELECT SLEEP(5)"}
# The limits as the server reports them, before and inside a limits() block.
SHOW_LIMITS = {
    "pg-main": "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
    "mariadb-main": "SELECT @@SESSION.innodb_lock_wait_timeout, @@SESSION.lock_wait_timeout, "
    "@@SESSION.max_statement_time",
}


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


def audited(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def q(text: str, *params: Any) -> SqlStatement:
    return SqlStatement(text, params=params, mutating=not text.startswith("SELECT"))


def test_transaction_commits_and_rolls_back_for_real_and_is_audited(server: Server, audit_path: Path) -> None:
    with server.session() as db:
        with db.transaction():
            db.execute(q("INSERT INTO t VALUES (2, 'two')"))
        with pytest.raises(RuntimeError, match="changed my mind"), db.transaction():
            db.execute(q("INSERT INTO t VALUES (3, 'three')"))
            raise RuntimeError("changed my mind")
    with server.session() as other:
        assert other.execute(q("SELECT id FROM t ORDER BY id")) == [(1,), (2,)]
    texts = [(e["text"], e["exit"]) for e in audited(audit_path)]
    i = texts.index(("BEGIN", 0))
    assert texts[i : i + 3] == [("BEGIN", 0), ("INSERT INTO t VALUES (2, 'two')", 0), ("COMMIT", 0)]
    j = texts.index(("BEGIN", 0), i + 1)
    assert texts[j : j + 3] == [("BEGIN", 0), ("INSERT INTO t VALUES (3, 'three')", 0), ("ROLLBACK", 0)]


def test_nested_transaction_is_refused_and_a_failed_statement_is_never_committed(server: Server) -> None:
    with server.session() as db:
        with pytest.raises(QueryFailed, match="nested transactions are not supported"), db.transaction():
            db.execute(q("INSERT INTO t VALUES (4, 'four')"))
            with db.transaction():
                pass
        # A caller that swallows a failure inside still gets no commit: each engine would store another thing.
        with pytest.raises(QueryFailed, match="rolled back, not committed"), db.transaction():
            db.execute(q("INSERT INTO t VALUES (5, 'five')"))
            with pytest.raises(QueryFailed):
                db.execute(q("INSERT INTO t VALUES (1, 'duplicate')"))
        assert db.execute(q("SELECT id FROM t ORDER BY id")) == [(1,)]


def test_dry_run_plans_the_transaction_and_changes_nothing(server: Server, settings: RunSettings) -> None:
    settings.dry_run = True
    try:
        with server.session() as db, db.transaction():
            db.execute(q("DELETE FROM t"))
            assert db.execute(q("SELECT count(*) FROM t")) == [(1,)]
    finally:
        settings.dry_run = False
    host = server.dev.inventory.clusters[server.cluster_name].primary()[0]
    assert settings.plan == [f"[{host}] SQL: BEGIN", f"[{host}] SQL: DELETE FROM t", f"[{host}] SQL: COMMIT"]


def test_lock_timeout_fires_on_a_row_held_by_another_session(server: Server, audit_path: Path) -> None:
    with server.session() as holder, server.session() as waiter, holder.transaction():
        holder.execute(q("UPDATE t SET note = 'held' WHERE id = 1"))
        before = waiter.execute(q(SHOW_LIMITS[server.cluster_name]))
        start = time.monotonic()
        with pytest.raises(QueryFailed) as caught, waiter.limits(lock_timeout=1):
            waiter.execute(q("UPDATE t SET note = 'waiter' WHERE id = 1"))
        assert time.monotonic() - start < 4
        assert caught.value.code == LOCK_TIMEOUT[server.cluster_name]
        assert is_lock_timeout(caught.value) and is_retryable(caught.value)
        assert not is_statement_timeout(caught.value)
        # The block put the connection's own limits back.
        assert waiter.execute(q(SHOW_LIMITS[server.cluster_name])) == before
    failed = [e for e in audited(audit_path) if e["text"] == "UPDATE t SET note = 'waiter' WHERE id = 1"]
    assert len(failed) == 1 and failed[0]["exit"].startswith("error: ")
    assert failed[0]["code"] == LOCK_TIMEOUT[server.cluster_name]


def test_limits_are_applied_inside_the_block_only(server: Server) -> None:
    with server.session() as db:
        before = db.execute(q(SHOW_LIMITS[server.cluster_name]))
        with db.limits(lock_timeout=2.5, statement_timeout=30):
            inside = db.execute(q(SHOW_LIMITS[server.cluster_name]))
        after = db.execute(q(SHOW_LIMITS[server.cluster_name]))
    expected = {"pg-main": ("2500ms", "30s"), "mariadb-main": (3, 3, 30)}[server.cluster_name]
    assert tuple(str(v) if isinstance(v, str) else int(v) for v in inside[0]) == expected
    assert after == before != inside


def test_per_call_timeout_cuts_a_sleep_with_the_statement_timeout_code(server: Server) -> None:
    with server.session() as db:
        before = db.execute(q(SHOW_LIMITS[server.cluster_name]))
        start = time.monotonic()
        with pytest.raises(QueryFailed) as caught:
            db.execute(q(SLEEP[server.cluster_name]), timeout=0.5)
        assert time.monotonic() - start < 3
        assert caught.value.code == STATEMENT_TIMEOUT[server.cluster_name]
        assert is_statement_timeout(caught.value) and not is_retryable(caught.value)
        # The connection survives (the server ended the statement, the client did not hang up) and keeps
        # its own limits.
        assert db.execute(q(SHOW_LIMITS[server.cluster_name])) == before
        assert db.scalar(q("SELECT 40 + 2"), timeout=5) == 42


def test_per_call_timeout_inside_a_transaction_rolls_it_back(server: Server) -> None:
    with server.session() as db:
        with pytest.raises(QueryFailed) as caught, db.transaction():
            db.execute(q("INSERT INTO t VALUES (6, 'six')"))
            db.execute(q(SLEEP[server.cluster_name]), timeout=0.5)
        assert is_statement_timeout(caught.value)
        assert db.execute(q("SELECT id FROM t ORDER BY id")) == [(1,)]
