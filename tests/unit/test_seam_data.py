"""Commands and statements as data: quoting, redaction, and refusing secrets where they would leak."""

from __future__ import annotations

import pytest

from dbrunbook.errors import CheckFailed, DbrunbookError, SecretLeakRefused, all_error_classes
from dbrunbook.execution.command import Command, Result, SqlStatement
from dbrunbook.redact import Secret


def test_shell_line_quotes_every_argument() -> None:
    cmd = Command(("psql", "-c", "select 'a b'; drop"), env={"PGAPPNAME": "x y"}, cwd="/tmp/a b")
    assert cmd.shell_line() == "cd '/tmp/a b' && env PGAPPNAME='x y' psql -c 'select '\"'\"'a b'\"'\"'; drop'"


def test_command_refuses_secret_in_argv_and_env() -> None:
    pw = Secret("argv-secret-123", source="test")
    with pytest.raises(SecretLeakRefused):
        Command(("mysql", f"--password={pw.reveal()}"))
    with pytest.raises(SecretLeakRefused):
        Command(("psql",), env={"PGPASSWORD": pw.reveal()})
    # stdin is the allowed channel
    assert Command(("cat",), stdin=pw.reveal()).display() == "cat"


def test_sql_display_masks_secret_params() -> None:
    pw = Secret("sql-secret-456", source="test")
    stmt = SqlStatement("ALTER ROLE r PASSWORD %s", params=(pw, "x"))
    assert stmt.display() == "ALTER ROLE r PASSWORD %s  -- params: ***, 'x'"
    assert stmt.driver_params() == ("sql-secret-456", "x")


def test_result_tail_is_redacted() -> None:
    Secret("tail-secret-789", source="test")
    res = Result("x", 1, "", "a\nb\nauth failed for tail-secret-789\n", 0.1)
    assert res.tail() == "a | b | auth failed for ***"


def test_error_exit_codes_are_distinct_and_messages_one_line() -> None:
    classes = all_error_classes()
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes)), "two error classes share an exit code"
    assert all(0 < c < 126 for c in codes)
    err = CheckFailed("line one\nline two", hint="do this")
    assert err.one_line() == "line one line two (do this)"
    assert issubclass(CheckFailed, DbrunbookError)
