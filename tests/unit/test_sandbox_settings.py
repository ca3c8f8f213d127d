"""The sandbox's wave-2 settings and how ``up`` tells that a running MariaDB was started with others."""

from __future__ import annotations

from pathlib import Path

from dbrunbook.sandbox import mariadb, postgres
from dbrunbook.sandbox.layout import Layout

LAYOUT = Layout(Path("/sb"), "dbrunbook")


def test_postgresql_preloads_pg_stat_statements_from_its_own_included_file() -> None:
    assert "shared_preload_libraries = 'pg_stat_statements'" in postgres.server_settings(LAYOUT, 25432)
    assert postgres.INCLUDE_LINE == "include_if_exists = 'dbrunbook.conf'"


def test_mariadb_runs_with_performance_schema() -> None:
    assert "--performance-schema=ON" in mariadb.server_argv(LAYOUT, "primary", 23306)


def test_changed_options_names_what_differs_and_nothing_else() -> None:
    wanted = mariadb.server_argv(LAYOUT, "primary", 23306)
    assert mariadb.changed_options(wanted, wanted) == []
    old = [a for a in wanted if a != "--performance-schema=ON"]
    assert mariadb.changed_options(old, wanted) == ["--performance-schema"]
    moved = [a.replace("--port=23306", "--port=23406") for a in wanted]
    assert mariadb.changed_options(moved, wanted) == ["--port"]
    assert mariadb.changed_options([], wanted) == sorted({a.split("=", 1)[0] for a in wanted})
