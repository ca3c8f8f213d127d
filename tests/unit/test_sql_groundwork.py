"""The pure parts of the SQL groundwork: error codes, limits per engine, bootstrap planning, lock keys."""

from __future__ import annotations

import pymysql
import pytest

from dbrunbook.engines import get_engine
from dbrunbook.engines.mariadb.driver import map_error as my_map_error
from dbrunbook.engines.mariadb.session import GRACE, MariaDBSessionDialect, MySQLSessionDialect
from dbrunbook.engines.postgresql.session import PostgresSessionDialect
from dbrunbook.engines.postgresql.toolstate import STEPS as PG_STEPS
from dbrunbook.engines.postgresql.toolstate import advisory_key, key_halves
from dbrunbook.engines.toolstate_base import BootstrapStep
from dbrunbook.errors import (
    CheckFailed,
    QueryFailed,
    ToolStateTooNew,
    is_deadlock,
    is_lock_timeout,
    is_retryable,
    is_statement_timeout,
)
from dbrunbook.execution import SqlStatement
from dbrunbook.execution.sql import Limits
from dbrunbook.redact import Secret
from dbrunbook.toolstate import check_steps, lock_name, plan_bootstrap


@pytest.mark.parametrize(
    ("code", "lock", "deadlock", "statement", "retry"),
    [
        ("55P03", True, False, False, True),
        ("1205", True, False, False, True),
        ("40P01", False, True, False, True),
        ("1213", False, True, False, True),
        ("40001", False, False, False, True),
        ("57014", False, False, True, False),
        ("1969", False, False, True, False),
        ("3024", False, False, True, False),
        ("23505", False, False, False, False),
        (None, False, False, False, False),
    ],
)
def test_errors_are_classified_by_code_alone(
    code: str | None, lock: bool, deadlock: bool, statement: bool, retry: bool
) -> None:
    # The message says "lock timeout" every time: only the code may decide.
    err = QueryFailed("db1: lock timeout deadlock canceling statement", code=code)
    assert (is_lock_timeout(err), is_deadlock(err), is_statement_timeout(err), is_retryable(err)) == (
        lock,
        deadlock,
        statement,
        retry,
    )


def test_other_errors_have_no_code() -> None:
    assert not is_lock_timeout(CheckFailed("lock timeout 55P03")) and not is_retryable(RuntimeError("1205"))


def test_mariadb_errors_carry_the_errno_and_no_secret() -> None:
    secret = Secret("Unit-Secret-Value-5531", source="test")
    exc = pymysql.err.OperationalError(1205, f"Lock wait timeout exceeded near '{secret.reveal()}'")
    mapped = my_map_error(exc, "db1")
    assert isinstance(mapped, QueryFailed) and mapped.code == "1205"
    assert secret.reveal() not in mapped.one_line() and "***" in mapped.one_line()


# How each server quotes a statement back: parameters bound on the client, escaped, so not the raw value.
ESCAPED = "Unit-'Quote\\Secret-7713"


def test_mariadb_syntax_errors_do_not_quote_the_statement() -> None:
    Secret(ESCAPED, source="test")
    quoted = ESCAPED.replace("\\", "\\\\").replace("'", "\\'")
    exc = pymysql.err.ProgrammingError(1064, f"You have an error in your SQL syntax; near '= '{quoted}'' at line 1")
    mapped = my_map_error(exc, "db1")
    assert isinstance(mapped, QueryFailed) and mapped.code == "1064"
    assert "Quote" not in mapped.one_line() and "statement not shown" in mapped.one_line()


def test_postgres_syntax_errors_do_not_quote_the_statement() -> None:
    import psycopg

    class Syntax(psycopg.errors.SyntaxError):
        sqlstate = "42601"

    quoted = ESCAPED.replace("'", "''")
    mapped = get_engine("postgresql").map_error(Syntax(f"syntax error at or near \"'{quoted}'\""), "db1")
    assert isinstance(mapped, QueryFailed) and mapped.code == "42601"
    assert "Quote" not in mapped.one_line() and "statement not shown" in mapped.one_line()


def test_postgres_errors_carry_the_sqlstate() -> None:
    import psycopg

    class Stuck(psycopg.errors.LockNotAvailable):
        sqlstate = "55P03"

    mapped = get_engine("postgresql").map_error(Stuck("canceling statement due to lock timeout"), "db1")
    assert isinstance(mapped, QueryFailed) and mapped.code == "55P03" and is_lock_timeout(mapped)


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_limits_refuse_zero_and_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        Limits(lock_timeout=bad)


def test_limits_per_engine() -> None:
    limits = Limits(lock_timeout=0.2, statement_timeout=1.25)
    assert PostgresSessionDialect().limit_settings(limits) == {"lock_timeout": "200ms", "statement_timeout": "1250ms"}
    # Whole seconds only on MariaDB, rounded up so a limit never becomes "do not wait".
    assert MariaDBSessionDialect().limit_settings(limits) == {
        "lock_wait_timeout": 1,
        "innodb_lock_wait_timeout": 1,
        "max_statement_time": 1.25,
    }
    assert MySQLSessionDialect().limit_settings(Limits(statement_timeout=1.25)) == {"max_execution_time": 1250}
    assert PostgresSessionDialect().limit_settings(Limits()) == {}


def test_setting_names_never_come_from_outside() -> None:
    for dialect in (PostgresSessionDialect(), MariaDBSessionDialect()):
        with pytest.raises(ValueError, match="not a session limit"):
            dialect.read_settings(("lock_timeout; DROP TABLE x",))
        with pytest.raises(ValueError, match="not a session limit"):
            dialect.set_setting("search_path", "evil")
    stmt = MariaDBSessionDialect().set_setting("innodb_lock_wait_timeout", 3)
    assert (stmt.text, stmt.params, stmt.mutating) == ("SET SESSION innodb_lock_wait_timeout = %s", (3,), False)


def test_pymysql_rereads_read_timeout_and_the_deadline_restores_it() -> None:
    # The per-call deadline relies on this private attribute: a PyMySQL upgrade that renames it fails here.
    conn = pymysql.connections.Connection(host="127.0.0.1", read_timeout=300, defer_connect=True)
    assert conn._read_timeout == 300
    with MariaDBSessionDialect().read_deadline(conn, 900):
        assert conn._read_timeout == 900 + GRACE
    assert conn._read_timeout == 300


def step(version: int) -> BootstrapStep:
    return BootstrapStep(version, f"step {version}", (SqlStatement(f"SELECT {version}"),))


def test_bootstrap_plans_only_the_missing_steps_in_order() -> None:
    steps = (step(1), step(2), step(3))
    assert [s.version for s in plan_bootstrap(steps, 0, where="db1").pending] == [1, 2, 3]
    plan = plan_bootstrap(steps, 1, where="db1")
    assert [s.version for s in plan.pending] == [2, 3]
    assert plan.explain() == "tool state at version 1: apply 2, 3 (this dbrunbook knows up to 3)"
    assert plan_bootstrap(steps, 3, where="db1").pending == ()


def test_bootstrap_refuses_a_newer_database() -> None:
    with pytest.raises(ToolStateTooNew, match=r"db1: schema dbrunbook is at tool state version 4.*up to 3") as caught:
        plan_bootstrap((step(1), step(2), step(3)), 4, where="db1: schema dbrunbook")
    assert caught.value.exit_code == 35


@pytest.mark.parametrize("versions", [(2,), (1, 3), (1, 1), (2, 1)])
def test_bootstrap_steps_must_run_one_two_three(versions: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="versions must run 1, 2, 3"):
        check_steps(tuple(step(v) for v in versions))


def test_engine_steps_are_well_formed() -> None:
    for engine in ("postgresql", "mariadb", "mysql"):
        check_steps(get_engine(engine).tool_state().steps)
    assert all(s.mutating for s in PG_STEPS[0].statements)


def test_lock_keys_are_stable_signed_64_bit_and_distinct() -> None:
    # Pinned: a key that changed between versions would let an old and a new dbrunbook run together.
    assert advisory_key("dbrunbook:bootstrap") == advisory_key("dbrunbook:bootstrap") == 2674373152686730597
    keys = {advisory_key(lock_name(f"migrate:t{i}")) for i in range(1000)}
    assert len(keys) == 1000 and all(-(2**63) <= k < 2**63 for k in keys)
    high, low = key_halves(-1)
    assert (high, low) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert key_halves(0x0000000100000002) == (1, 2)


@pytest.mark.parametrize("name", ["", "x" * 55, "has space", "quote'", "semi;colon"])
def test_lock_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="lock name"):
        lock_name(name)


def test_lock_names_fit_mariadb() -> None:
    assert lock_name("migrate:orders.customers") == "dbrunbook:migrate:orders.customers"
    assert len(lock_name("x" * 54)) == 64  # GET_LOCK's limit
