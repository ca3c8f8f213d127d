from __future__ import annotations

import pytest

from dbrunbook.engines import get_engine
from dbrunbook.errors import EngineNotSupported
from dbrunbook.inventory import parse_inventory

HOST = (
    parse_inventory(
        """
clusters:
  c:
    engine: postgresql
    credentials: {user: u}
    hosts:
      a: {role: primary, connection: {type: local}, port: 1, data_dir: /x, bin_dir: /opt/pg/bin}
""",
        "t.yaml",
    )
    .clusters["c"]
    .hosts["a"]
)


def test_postgres_binary_versions_parsed() -> None:
    pg = get_engine("postgresql")
    out = (
        "@@dbrunbook@@/opt/pg/bin/psql @@dbrunbook@@/opt/pg/bin/psql\n"
        "psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"
        "@@dbrunbook@@/opt/pg/bin/pg_dump @@dbrunbook@@missing\n"
    )
    found = pg.parse_binaries(out)
    assert [(b.name, b.present, b.major) for b in found] == [("psql", True, "15"), ("pg_dump", False, None)]
    assert pg.major_of("15.18 (Debian 15.18-0+deb12u1)") == "15"
    argv = pg.binaries_command(HOST).argv
    assert "/opt/pg/bin/pg_dump" in argv and not any("password" in a for a in argv)


def test_mariadb_versions() -> None:
    my = get_engine("mariadb")
    assert my.major_of("10.11.19-MariaDB-0+deb12u1-log") == "10.11"
    line = "mariadb-dump from 10.11.19-MariaDB, client 10.19 for debian-linux-gnu (x86_64)"
    assert my.binary_major("mariadb-dump", line) == "10.11"
    assert my.binary_major("mariadb-binlog", "mariadb-binlog Ver 3.5 for debian-linux-gnu") is None


def test_unknown_engine() -> None:
    with pytest.raises(EngineNotSupported):
        get_engine("oracle")
