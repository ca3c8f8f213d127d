"""MariaDB backups, binlog archiving and point-in-time recovery on the sandbox's mariadb-main: real dumps,
real mariabackup streams, real binlogs replayed into a fresh server on the replica host (over SSH).

The tests share the primary's binlog, so they run one after another on one xdist worker (group "mariadb").
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .mariadb_helpers import My, backup, new_name, restore, snapshot, sync

pytestmark = pytest.mark.xdist_group("mariadb")


def rows(my: My, db: str, port: int) -> list[int]:
    return [int(x) for x in my("SELECT id FROM t ORDER BY id", port=port, db=db).split()]


def test_logical_backup_then_pitr_to_time_position_and_gtid(my: My, my_target: Any) -> None:
    db = new_name("pitr")
    my(f"CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, note VARCHAR(40))")
    my(f"INSERT INTO {db}.t VALUES (1, 'in backup'), (2, 'in backup')")
    b = backup("logical")
    assert b["kind"] == "logical" and b["binlog"]["file"].startswith("mariadb-bin.")
    # Writes go on after the backup, across a binlog rotation.
    my(f"INSERT INTO {db}.t VALUES (3, 'after backup')")
    my("FLUSH BINARY LOGS")
    my(f"INSERT INTO {db}.t VALUES (4, 'before target')")
    file4, pos4, gtid4 = my.position()
    time.sleep(1.2)  # binlog timestamps have one-second resolution
    target_time = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.2)
    my(f"INSERT INTO {db}.t VALUES (5, 'after target')")
    my(f"DELETE FROM {db}.t WHERE id = 1")
    synced = sync()
    assert synced["rotated"] and synced["archived"]

    d1, p1 = my_target(0)
    res = restore(d1, p1, f"--backup={b['backup_id']}", f"--target-time={target_time.isoformat()}")
    assert rows(my, db, p1) == [1, 2, 3, 4]
    import json

    report = json.loads(res.stdout)
    assert report["reached_gtid"] == gtid4 and report["rto_seconds"] > 0
    assert len(report["binlogs_replayed"]) >= 2

    d2, p2 = my_target(1)
    restore(d2, p2, f"--backup={b['backup_id']}", f"--target-position={file4}:{pos4}")
    assert rows(my, db, p2) == [1, 2, 3, 4]

    d3, p3 = my_target(2)
    restore(d3, p3, f"--backup={b['backup_id']}", f"--target-gtid={gtid4}")
    assert rows(my, db, p3) == [1, 2, 3, 4]

    d4, p4 = my_target(3)
    restore(d4, p4, f"--backup={b['backup_id']}")
    assert rows(my, db, p4) == [2, 3, 4, 5]
    my(f"DROP DATABASE {db}")


def create_tricky(my: My) -> str:
    db = new_name("tricky")
    my(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    my((Path(__file__).parent / "tricky_mariadb.sql").read_text(), db=db)
    return db


def test_tricky_schema_restores_identical_from_logical_and_physical_chain(my: My, my_target: Any) -> None:
    db = create_tricky(my)
    before = snapshot(my, db)
    assert {k.split()[0] for k in before} == {"table", "checksum", "view", "procedure", "function", "trigger", "event"}
    logical = backup("logical")
    full = backup("physical")
    assert full["kind"] == "physical"
    my("CALL `fill ✓`(25)", db=db)
    my("UPDATE legacy_myisam SET v = 'changed after the full backup' WHERE k = 1", db=db)
    incremental = backup(incremental=True)
    assert incremental["kind"] == "incremental" and incremental["parent"] == full["backup_id"]
    after = snapshot(my, db)
    assert after != before
    sync()

    d1, p1 = my_target(0)
    restore(
        d1,
        p1,
        f"--backup={logical['backup_id']}",
        f"--target-position={logical['binlog']['file']}:{logical['binlog']['position']}",
    )
    assert snapshot(my, db, p1) == before

    d2, p2 = my_target(1)
    restore(
        d2,
        p2,
        f"--backup={incremental['backup_id']}",
        f"--target-position={incremental['binlog']['file']}:{incremental['binlog']['position']}",
    )
    assert snapshot(my, db, p2) == after
    my(f"DROP DATABASE `{db}`")
