"""Database names on their way to the PostgreSQL client tools and into object keys."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from dbrunbook.engines.postgresql.dump_host import conninfo_dbname, dump_name, find_dump
from dbrunbook.engines.postgresql.restore_plan import recovery_settings
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.repository.manifest import ObjectEntry
from dbrunbook.repository.storage import check_key

NAMES = [
    "shop",
    "dbname=postgres host=10.0.0.9",
    "postgresql://db2/other",
    "it's",
    "back\\slash",
    "\\'",
    "-d",
    " spaced  ",
    "ünï=cødé",
    "a/../../b",
    "50%",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_database_name_is_one_dbname_for_libpq(name: str) -> None:
    # libpq's own parser (PQconninfoParse), as pg_dump and pg_restore read their -d.
    assert conninfo_to_dict(conninfo_dbname(name)) == {"dbname": name}


def test_quoting_and_what_a_bare_name_meant() -> None:
    assert conninfo_dbname("it's\\") == "dbname='it\\'s\\\\'"
    assert conninfo_to_dict("dbname=postgres host=10.0.0.9") == {"dbname": "postgres", "host": "10.0.0.9"}


@pytest.mark.parametrize("name", NAMES)
def test_every_database_name_has_a_valid_dump_key(name: str) -> None:
    key = check_key(f"backups/20260101T000000Z-L/{dump_name(name)}.zst.age")
    assert key.count("/") == 3  # nothing reaches outside db/


def test_dump_names_stay_readable_and_distinct() -> None:
    assert dump_name("shop") == "db/shop.dump"
    assert dump_name("it's=odd") == "db/it's=odd.dump"
    assert dump_name("back\\slash") == "db/back%5Cslash.dump"
    assert dump_name("a/b") == "db/a%2Fb.dump" != dump_name("a%2Fb") == "db/a%252Fb.dump"
    assert len({dump_name(n) for n in NAMES}) == len(NAMES)


def test_find_dump_reads_new_and_older_names() -> None:
    def entry(name: str) -> ObjectEntry:
        return ObjectEntry(name=name, key=f"k/{name}", size=1, sha256="0" * 64, plain_size=1, plain_sha256="0" * 64)

    objects = [entry("globals.sql"), entry("db/back%5Cslash.dump"), entry("db/50%.dump")]
    assert find_dump(objects, "back\\slash") is objects[1]
    assert find_dump(objects, "50%") is objects[2]  # written before names were encoded
    assert find_dump(objects, "shop") is None


def test_recovery_settings_double_backslashes() -> None:
    # postgresql.conf reads \\ as one backslash; a single one escapes the next character (the closing quote).
    target = RecoveryTarget.from_flags(time=None, lsn=None, xid=None, name="it's\\tab\\", action="pause")
    text = recovery_settings(target, "/v/bin/dbrunbook-host wal-fetch --config 'C:\\c' %f %p", 5499)
    assert "recovery_target_name = 'it''s\\\\tab\\\\'\n" in text
    assert "restore_command = '/v/bin/dbrunbook-host wal-fetch --config ''C:\\\\c'' %f %p'\n" in text


def test_the_controller_builds_every_pg_dump_command_line() -> None:
    """The audit log shows what a logical backup really runs: pg_dumpall, then one pg_dump per database,
    each database as one conninfo value (a name with '=' or a leading '-' cannot become an option)."""
    from dbrunbook.engines.postgresql.dump_host import dump_plan, restore_argv

    plan = dump_plan("/usr/lib/postgresql/15/bin", 5433, "backup", ["app", "-x dbname=other"])
    assert [name for name, _ in plan] == ["globals.sql", "db/app.dump", "db/-x dbname=other.dump"]
    assert plan[0][1] == [
        "/usr/lib/postgresql/15/bin/pg_dumpall", "-h", "127.0.0.1", "-p", "5433", "-U", "backup", "-w", "--globals-only"
    ]  # fmt: skip
    assert plan[2][1][-6:] == ["-w", "-Fc", "-Z", "0", "-d", "dbname='-x dbname=other'"]
    assert restore_argv("", 5433, "backup", "copy")[0] == "pg_restore"
    assert restore_argv("", 5433, "backup", "copy")[-2:] == ["-d", "dbname='copy'"]
