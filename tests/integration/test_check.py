"""inventory.check against the real sandbox: roles verified from the servers themselves."""

from __future__ import annotations

import json
import uuid
from typing import Any

from dbrunbook.engines import Login, get_engine
from dbrunbook.execution import RunSettings, SqlStatement
from dbrunbook.execution.hosts import executor_for
from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import run_cli


def test_check_reports_both_clusters_with_roles_from_the_servers(sandbox: dict[str, Any]) -> None:
    res = run_cli("inventory.check", "--env=dev", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    hosts = {h["host"]: h for h in report["hosts"]}
    assert report["ok"] is True
    assert set(hosts) == {"pg-main-1", "pg-main-2", "mariadb-main-1", "mariadb-main-2"}
    for h in hosts.values():
        assert h["reachable"] and h["ok"], h
        assert h["actual_role"] == h["declared_role"]
        assert all(b["path"] for b in h["binaries"])
    assert hosts["pg-main-1"]["server_version"].startswith("15.")
    assert hosts["mariadb-main-1"]["server_version"].startswith("10.11.")
    # Replicas are reached over SSH, and their upstream is what the server itself reports.
    pg_ports = {c["name"]: c for c in sandbox["clusters"]}["pg-main"]["hosts"]
    assert hosts["pg-main-2"]["via"].startswith("ssh ")
    assert hosts["pg-main-2"]["replication_state"] == "streaming"
    assert hosts["pg-main-2"]["upstream"] == f"127.0.0.1:{pg_ports[0]['port']}"
    assert hosts["mariadb-main-2"]["replication_state"] == "streaming"
    assert {b["major"] for b in hosts["pg-main-2"]["binaries"]} == {"15"}


def test_human_output_names_every_host(sandbox: dict[str, Any]) -> None:
    res = run_cli("inventory.check", "--env=dev")
    assert res.returncode == 0, res.stderr
    for host in ("pg-main/pg-main-1  ok", "pg-main/pg-main-2  ok", "mariadb-main/mariadb-main-2  ok"):
        assert host in res.stdout
    assert "replica (as declared)" in res.stdout


def test_writes_on_primaries_reach_replicas_through_the_seam(
    dev: LoadedInventory, settings: RunSettings, resolver: SecretResolver, mariadb_exclusive: None
) -> None:
    """The sandbox's replication is real: a row written on each primary is read back on its replica,
    the replica's connection going through the SSH tunnel of the execution seam."""
    token = uuid.uuid4().hex
    for cluster_name, table in (("pg-main", "public.dbr_probe"), ("mariadb-main", "dbr_probe.probe")):
        cluster = dev.inventory.clusters[cluster_name]
        engine = get_engine(cluster.engine.value)
        cred = cluster.credentials
        assert cred.password
        login = Login(cred.user, resolver.resolve(cred.password), cred.database)
        primary = executor_for(cluster.primary()[0], cluster.hosts[cluster.primary()[0]], settings, resolver)
        replica_name = next(n for n in cluster.hosts if n != cluster.primary()[0])
        replica = executor_for(replica_name, cluster.hosts[replica_name], settings, resolver)
        with engine.session(primary, cluster.hosts[primary.name], login) as db:
            if cluster_name == "mariadb-main":
                db.execute(SqlStatement("CREATE DATABASE IF NOT EXISTS dbr_probe"))
            db.execute(SqlStatement(f"CREATE TABLE IF NOT EXISTS {table} (token varchar(64))"))
            db.execute(SqlStatement(f"INSERT INTO {table} VALUES (%s)", params=(token,)))
        found: list[Any] = []
        for _ in range(100):
            with engine.session(replica, cluster.hosts[replica_name], login) as db:
                found = db.execute(
                    SqlStatement(f"SELECT count(*) FROM {table} WHERE token = %s", params=(token,), mutating=False)
                )
            if found and found[0][0] == 1:
                break
            import time

            time.sleep(0.1)
        replica.close()
        assert found == [(1,)], f"{cluster_name}: row did not reach the replica"
