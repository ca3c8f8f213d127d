"""A database dropped between a logical backup's listing and its turn is skipped, not the end of the backup;
any other failure of a dump still fails it. Real tool processes (sh standing in for pg_dump) and a real file
repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbrunbook.engines.postgresql.dump_host import push_logical
from dbrunbook.errors import BackupError
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.storage_file import FileStorage

GONE = (
    'echo \'pg_dump: error: connection to server at "127.0.0.1", port 5432 failed: '
    'FATAL:  database "x" does not exist\' >&2; exit 1'
)


def _plan(*failing: tuple[str, str]) -> list[tuple[str, list[str]]]:
    plan = [("globals.sql", ["sh", "-c", "echo globals"]), ("db/a.dump", ["sh", "-c", "echo dump-a"])]
    return plan + [(f"db/{n}.dump", ["sh", "-c", script]) for n, script in failing]


def test_a_database_dropped_meanwhile_is_left_out_and_the_others_are_stored(tmp_path: Path) -> None:
    _identity, recipient = generate_identity()
    storage = FileStorage(tmp_path / "repo")
    entries = push_logical(storage, "L1", [recipient], passfile="/dev/null", dumps=_plan(("x", GONE)))
    assert [e.name for e in entries] == ["globals.sql", "db/a.dump"]


@pytest.mark.parametrize(
    "script",
    [
        "echo 'pg_dump: error: query failed: ERROR:  permission denied for table t' >&2; exit 1",
        "echo 'FATAL:  database \"x\" does not exist' >&2; echo 'and then something else' >&2; exit 1",
    ],
)
def test_any_other_failure_still_fails_the_backup(tmp_path: Path, script: str) -> None:
    _identity, recipient = generate_identity()
    storage = FileStorage(tmp_path / "repo")
    with pytest.raises(BackupError, match="failed"):
        push_logical(storage, "L1", [recipient], passfile="/dev/null", dumps=_plan(("x", script)))
