"""Passwords in the files client tools read: .pgpass lines and MariaDB option files keep every character."""

from __future__ import annotations

import pytest

from dbrunbook.engines.mariadb.driver import client_defaults, option_value
from dbrunbook.engines.postgresql.driver import pgpass_line
from dbrunbook.errors import SecretError

AWKWARD = "ab:c\\d#e f'g\"h\\"


def libpq_fields(line: str) -> list[str]:
    """Split a .pgpass line the way libpq does: ':' separates, a backslash takes the next character as is."""
    fields: list[str] = []
    current, escaped = "", False
    for ch in line.rstrip("\n"):
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            fields, current = [*fields, current], ""
        else:
            current += ch
    return [*fields, current]


def test_pgpass_escapes_colon_and_backslash() -> None:
    line = pgpass_line(5432, "post:gres", AWKWARD)
    assert line == "127.0.0.1:5432:*:post\\:gres:ab\\:c\\\\d#e f'g\"h\\\\\n"
    assert libpq_fields(line) == ["127.0.0.1", "5432", "*", "post:gres", AWKWARD]


def test_pgpass_any_port() -> None:
    assert libpq_fields(pgpass_line("*", "postgres", "a:b")) == ["127.0.0.1", "*", "*", "postgres", "a:b"]


def test_pgpass_refuses_a_line_break_without_showing_it() -> None:
    with pytest.raises(SecretError) as err:
        pgpass_line(5432, "postgres", "line1\nline2")
    assert "line1" not in err.value.one_line()


def test_option_file_values_are_quoted_and_escaped() -> None:
    assert option_value(AWKWARD) == '"ab:c\\\\d#e f\'g\\"h\\\\"'
    assert option_value("a\nb") == '"a\\nb"'
    assert client_defaults('us"er', "pw") == '[client]\nuser="us\\"er"\npassword="pw"\n'
