"""PostgreSQL physical backup, WAL archiving and point-in-time recovery on the real sandbox.

Restores go to the replica's host over SSH, into a fresh data directory on a spare port.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from dbrunbook import errors
from dbrunbook.execution import Command
from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import Sql, restore, run_cli
from .procs import wait_for_own


def take_backup() -> dict[str, Any]:
    res = run_cli("backup.full", "--env=dev", "--cluster=pg-main", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    backup: dict[str, Any] = json.loads(res.stdout)["backups"][0]
    return backup


def test_backup_is_listed_and_restores_to_a_point_in_time(
    pg_ready: dict[str, Any], sql: Sql, restore_target: tuple[str, int], ssh_replica: Any
) -> None:
    table = f"pitr_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE TABLE {table} (i int)")
    backup = take_backup()
    listed = json.loads(run_cli("backup.list", "--env=dev", "--cluster=pg-main", "--json").stdout)["backups"]
    assert backup["backup_id"] in [b["backup_id"] for b in listed]
    sql(f"INSERT INTO {table} VALUES (1)")
    sql(f"INSERT INTO {table} VALUES (2)")
    between = sql("SELECT clock_timestamp()")
    sql(f"INSERT INTO {table} VALUES (3)")
    sql("SELECT pg_switch_wal()")

    data_dir, port = restore_target
    res = restore(data_dir, port, f"--backup={backup['backup_id']}", f"--target-time={between}")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["promoted"] is True and result["rto_seconds"] > 0
    assert sql(f"SELECT string_agg(i::text, ',' ORDER BY i) FROM {table}", port=port) == "1,2"
    # Promoted: the private identities and S3 keys it fetched WAL with are gone from the host.
    assert result["keys_on_host"] is None
    keys = f"{ssh_replica.home()}/.config/dbrunbook/restore-pg-main-{port}"
    assert ssh_replica.run(Command(("test", "-e", keys), mutating=False, check=False)).exit_code == 1


def test_restore_to_named_point_and_lsn(pg_ready: dict[str, Any], sql: Sql, restore_target: tuple[str, int]) -> None:
    table = f"named_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE TABLE {table} (i int)")
    # Its own backup: another worker's newer one could lie after the targets below.
    own = f"--backup={take_backup()['backup_id']}"
    sql(f"INSERT INTO {table} VALUES (1)")
    point = f"before-two-{uuid.uuid4().hex[:6]}"
    res = run_cli("backup.restore-point", "--env=dev", "--cluster=pg-main", f"--name={point}", "--json")
    assert res.returncode == 0, res.stderr
    sql(f"INSERT INTO {table} VALUES (2)")
    lsn_after_two = sql("SELECT pg_current_wal_insert_lsn()")
    sql(f"INSERT INTO {table} VALUES (3)")
    sql("SELECT pg_switch_wal()")

    data_dir, port = restore_target
    res = restore(data_dir, port, own, f"--target-name={point}")
    assert res.returncode == 0, res.stderr
    assert sql(f"SELECT string_agg(i::text, ',' ORDER BY i) FROM {table}", port=port) == "1"

    # Same place again, now up to an LSN, and paused there instead of promoted.
    res = restore(data_dir, port, own, f"--target-lsn={lsn_after_two}", "--target-action=pause", "--force", "--yes")
    assert res.returncode == 0, res.stderr
    paused = json.loads(res.stdout)
    assert paused["paused"] is True and paused["keys_on_host"].endswith(f"/restore-pg-main-{port}")
    assert sql(f"SELECT string_agg(i::text, ',' ORDER BY i) FROM {table}", port=port) == "1,2"


def test_restore_refuses_non_empty_dir_and_dry_run_changes_nothing(
    pg_ready: dict[str, Any], ssh_replica: Any, restore_target: tuple[str, int]
) -> None:
    data_dir, port = restore_target
    dry = restore(data_dir, port, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True and any("unpack full backup" in s for s in plan["steps"])
    assert ssh_replica.run(Command(("test", "-e", data_dir), mutating=False, check=False)).exit_code == 1

    ssh_replica.run(Command(("mkdir", "-p", data_dir), mutating=False))
    ssh_replica.run(Command(("touch", f"{data_dir}/precious"), mutating=False))
    res = restore(data_dir, port)
    assert res.returncode == errors.RestoreError.exit_code
    assert "is not empty" in res.stderr and "Traceback" not in res.stderr
    assert ssh_replica.run(Command(("test", "-e", f"{data_dir}/precious"), mutating=False, check=False)).ok


def test_any_object_recovers_by_hand_with_age_and_zstd(
    pg_ready: dict[str, Any], dev: LoadedInventory, resolver: SecretResolver, tmp_path: Path
) -> None:
    """The emergency path: `age -d -i identity OBJECT | zstd -d` gives back a plain tar of the data dir."""
    from dbrunbook.repository.objects import read_raw
    from dbrunbook.repository.storage import open_storage

    backup = take_backup()
    cluster = dev.inventory.clusters["pg-main"]
    assert cluster.repository and cluster.encryption
    storage = open_storage(cluster.repository, resolver)
    identity = tmp_path / "identity.txt"
    identity.write_text(resolver.resolve(cluster.encryption.identities[0]).reveal())
    listing: list[str] = []
    keys = [o.key for o in storage.list(f"backups/{backup['backup_id']}/data/")]
    assert keys
    for key in keys:
        obj = tmp_path / "object"
        with obj.open("wb") as out:
            for chunk in read_raw(storage, key):
                out.write(chunk)
        pipeline = f"age -d -i {identity} {obj} | zstd -d -q | tar -t"
        listing += subprocess.run(["sh", "-c", pipeline], capture_output=True, text=True, check=True).stdout.split()
    assert "PG_VERSION" in listing and "global/pg_control" in listing


def test_corrupted_object_fails_restore_naming_it(
    pg_ready: dict[str, Any], dev: LoadedInventory, resolver: SecretResolver, restore_target: tuple[str, int]
) -> None:
    """Bit rot in the repository: replace one data object with a copy that has one byte flipped."""
    import boto3

    backup = take_backup()
    cluster = dev.inventory.clusters["pg-main"]
    repo = cluster.repository
    assert repo and repo.access_key and repo.secret_key
    s3 = boto3.client(
        "s3",
        endpoint_url=repo.endpoint,
        region_name="us-east-1",
        aws_access_key_id=resolver.resolve(repo.access_key).reveal(),
        aws_secret_access_key=resolver.resolve(repo.secret_key).reveal(),
    )
    bucket, _, prefix = repo.url.removeprefix("s3://").partition("/")
    key = f"{prefix}/backups/{backup['backup_id']}/data/0001.tar.zst.age"
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[-100] ^= 0x40
    s3.delete_object(Bucket=bucket, Key=key)
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))

    data_dir, port = restore_target
    res = restore(data_dir, port, f"--backup={backup['backup_id']}")
    assert res.returncode != 0
    assert f"backups/{backup['backup_id']}/data/0001.tar.zst.age" in res.stderr
    assert "Traceback" not in res.stderr


def test_backup_from_replica_restores(pg_ready: dict[str, Any], sql: Sql, restore_target: tuple[str, int]) -> None:
    table = f"fromrep_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE TABLE {table} AS SELECT 42 AS answer")
    res = run_cli("backup.full", "--env=dev", "--cluster=pg-main", "--source=replica", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    backup = json.loads(res.stdout)["backups"][0]
    assert backup["source_host"] == "pg-main-2"
    data_dir, port = restore_target
    res = restore(data_dir, port, f"--backup={backup['backup_id']}")
    assert res.returncode == 0, res.stderr
    assert sql(f"SELECT answer FROM {table}", port=port) == "42"


def test_killed_backup_is_never_listed_and_the_next_one_works(pg_ready: dict[str, Any], sql: Sql) -> None:
    """kill -9 of the controller while the data directory streams: no manifest, so no backup."""
    import os
    import signal
    import time

    table = f"bulk_{uuid.uuid4().hex[:8]}"
    # Enough data that the stream lasts long enough to be caught in the act.
    sql(f"CREATE TABLE {table} AS SELECT md5(i::text) || md5((i * 7)::text) AS v FROM generate_series(1, 1500000) i")
    before = {
        b["backup_id"]
        for b in json.loads(run_cli("backup.list", "--env=dev", "--cluster=pg-main", "--json").stdout)["backups"]
    }
    env = {**os.environ}
    from .conftest import BIN, REPO

    proc = subprocess.Popen(
        [str(BIN / "invoke"), "backup.full", "--env=dev", "--cluster=pg-main"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    found = wait_for_own(proc, lambda argv: b"backup-push" in argv and b"--backup-id" in argv)
    caught = bool(found)
    # Its own backup id: other tests may take backups of pg-main meanwhile.
    killed_id = found[0][1][found[0][1].index(b"--backup-id") + 1].decode() if found else ""
    if caught:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    sql(f"DROP TABLE {table}")
    assert caught, "the backup finished before it could be killed"
    time.sleep(2)  # let the orphaned stream finish or fail; it must not make a backup appear
    after = {
        b["backup_id"]
        for b in json.loads(run_cli("backup.list", "--env=dev", "--cluster=pg-main", "--json").stdout)["backups"]
    }
    assert killed_id and killed_id not in after
    backup = take_backup()
    assert backup["backup_id"] not in before


def snapshot(sql: Sql, db: str, port: int) -> tuple[str, list[tuple[str, str]]]:
    """The schema as pg_dump prints it and an md5 of every table's rows (large objects included)."""
    env = {"PGPASSFILE": str(sql.passfile)}
    schema = subprocess.run(
        [f"{sql.bindir}/pg_dump", "-w", "--schema-only", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    hashes = subprocess.run(
        [
            f"{sql.bindir}/psql",
            "-X",
            "-w",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # pg_dump brackets its output with a random restrict key since 15.14; it says nothing of the data.
    schema = "\n".join(ln for ln in schema.splitlines() if not ln.startswith(("\\restrict", "\\unrestrict")))
    rows = []
    for table in [*hashes, "pg_catalog.pg_largeobject"]:
        digest = subprocess.run(
            [
                f"{sql.bindir}/psql",
                "-X",
                "-w",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        rows.append((table, digest))
    return schema, rows


def create_tricky_database(sql: Sql) -> str:
    db = f"tricky_{uuid.uuid4().hex[:8]}"
    sql(f'CREATE DATABASE "{db}"')
    schema_sql = (Path(__file__).parent / "tricky_schema.sql").read_text()
    subprocess.run(
        [
            f"{sql.bindir}/psql",
            "-X",
            "-w",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(sql.port),
            "-U",
            "postgres",
            "-d",
            db,
            "-f",
            "-",
        ],
        input=schema_sql,
        env={"PGPASSFILE": str(sql.passfile)},
        capture_output=True,
        text=True,
        check=True,
    )
    return db


def test_tricky_database_restores_identical(
    pg_ready: dict[str, Any], sql: Sql, restore_target: tuple[str, int], tmp_path: Path
) -> None:
    """Quoted and non-ASCII names, enums, domains, partitions, triggers, functions, large objects and
    generated columns: schema dump and per-table content hashes equal before and after."""
    db = create_tricky_database(sql)

    before = snapshot(sql, db, sql.port)
    assert len(before[1]) == 5  # two tables, two partitions, the large objects
    backup = take_backup()
    data_dir, port = restore_target
    res = restore(data_dir, port, f"--backup={backup['backup_id']}")
    assert res.returncode == 0, res.stderr
    after = snapshot(sql, db, port)
    sql(f'DROP DATABASE "{db}"')
    assert after[0] == before[0]
    assert after[1] == before[1]


def test_logical_backup_restores_a_database_identical(pg_ready: dict[str, Any], sql: Sql) -> None:
    db = create_tricky_database(sql)
    res = run_cli("backup.full", "--env=dev", "--cluster=pg-main", "--kind=logical", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    backup = json.loads(res.stdout)["backups"][0]
    assert backup["kind"] == "logical"
    copy = f"{db}_copy"
    res = run_cli(
        "restore.run",
        "--env=dev",
        "--cluster=pg-main",
        "--to=pg-main-1",
        f"--backup={backup['backup_id']}",
        f"--database={db}:{copy}",
        "--json",
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    try:
        assert snapshot(sql, copy, sql.port) == snapshot(sql, db, sql.port)
        again = run_cli(
            "restore.run",
            "--env=dev",
            "--cluster=pg-main",
            "--to=pg-main-1",
            f"--backup={backup['backup_id']}",
            f"--database={db}:{copy}",
        )
        assert again.returncode == errors.RestoreError.exit_code and "already exists" in again.stderr
    finally:
        sql(f'DROP DATABASE IF EXISTS "{copy}"')
        sql(f'DROP DATABASE "{db}"')


def test_restore_to_a_transaction_id(pg_ready: dict[str, Any], sql: Sql, restore_target: tuple[str, int]) -> None:
    table = f"xid_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE TABLE {table} (i int)")
    own = f"--backup={take_backup()['backup_id']}"  # not another worker's newer one
    sql(f"INSERT INTO {table} VALUES (1)")
    xid = sql(f"WITH ins AS (INSERT INTO {table} VALUES (2)) SELECT txid_current()")
    sql(f"INSERT INTO {table} VALUES (3)")
    sql("SELECT pg_switch_wal()")
    data_dir, port = restore_target
    res = restore(data_dir, port, own, f"--target-xid={xid}")
    assert res.returncode == 0, res.stderr
    # recovery_target_inclusive defaults to on: the target transaction itself is kept.
    assert sql(f"SELECT string_agg(i::text, ',' ORDER BY i) FROM {table}", port=port) == "1,2"
