"""The pure part of inventory.check: declared topology + server snapshot -> problems."""

from __future__ import annotations

from dbrunbook.engines import BinaryInfo, ServerProbe
from dbrunbook.hosts.check import assess
from dbrunbook.inventory import Role, parse_inventory

INV = parse_inventory(
    """
clusters:
  pg:
    engine: postgresql
    version: "15"
    credentials: {user: postgres}
    hosts:
      a: {role: primary, connection: {type: local}, port: 5432, data_dir: /x}
      b: {role: replica, replicates_from: a, connection: {type: local}, port: 5433, data_dir: /y}
""",
    "t.yaml",
)
PG = INV.clusters["pg"]
BINS = [BinaryInfo("pg_dump", "/usr/bin/pg_dump", "pg_dump (PostgreSQL) 15.4", "15")]


def probe(role: Role, **kw: object) -> ServerProbe:
    return ServerProbe(version="15.4", major="15", role=role, **kw)  # type: ignore[arg-type]


def test_healthy_primary_and_replica() -> None:
    assert assess(PG, "a", probe(Role.PRIMARY), BINS) == []
    replica = probe(Role.REPLICA, upstream_host="127.0.0.1", upstream_port=5432, replication_state="streaming")
    assert assess(PG, "b", replica, BINS) == []


def test_role_mismatch() -> None:
    assert assess(PG, "b", probe(Role.PRIMARY), BINS) == [
        "declared replica but the server is a primary (accepts writes)"
    ]
    assert assess(PG, "a", probe(Role.REPLICA), BINS) == ["declared primary but the server is a replica (in recovery)"]


def test_replica_from_wrong_upstream_and_stopped() -> None:
    replica = probe(Role.REPLICA, upstream_host="10.0.0.9", upstream_port=5432, replication_state="stopping")
    problems = assess(PG, "b", replica, BINS)
    assert "replication is not running (stopping)" in problems
    assert "replicates from 10.0.0.9:5432, inventory says a (127.0.0.1:5432)" in problems


def test_binaries_missing_or_other_major() -> None:
    bins = [
        BinaryInfo("pg_dump", None, None, None),
        BinaryInfo("pg_restore", "/p", "pg_restore (PostgreSQL) 13.2", "13"),
    ]
    problems = assess(PG, "a", probe(Role.PRIMARY), bins)
    assert "client binary pg_dump not found on PATH" in problems
    assert "pg_restore is version 13 but the server is 15" in problems


def test_server_version_differs_from_inventory() -> None:
    p = ServerProbe(version="16.1", major="16", role=Role.PRIMARY)
    assert assess(PG, "a", p, []) == ["server is version 16, inventory expects 15"]


def test_unreachable_server_still_reports_binaries() -> None:
    assert assess(PG, "a", None, [BinaryInfo("psql", None, None, None)]) == ["client binary psql not found on PATH"]
