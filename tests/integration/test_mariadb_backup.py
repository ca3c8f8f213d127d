"""MariaDB backups, binlog archiving and point-in-time recovery on the sandbox's mariadb-main: real dumps,
real mariabackup streams, real binlogs replayed into a fresh server on the replica host (over SSH).

The tests share the primary's binlog, so they run one at a time (the `my` fixture holds a lock).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .mariadb_helpers import My, backup, cli, new_name, restore, snapshot, sync


def rows(my: My, db: str, port: int) -> list[int]:
    return [int(x) for x in my("SELECT id FROM t ORDER BY id", port=port, db=db).split()]


def test_logical_backup_then_pitr_to_time_position_and_gtid(my: My, my_target: Any) -> None:
    db = new_name("pitr")
    my(f"CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, note VARCHAR(40))")
    my(f"INSERT INTO {db}.t VALUES (1, 'in backup'), (2, 'in backup')")
    b = backup("logical")
    assert b["kind"] == "logical" and b["binlog"]["file"].startswith("mariadb-bin.")
    # Writes go on after the backup, across a binlog rotation; one transaction is bigger than the server's
    # default max_allowed_packet once replayed.
    my(f"CREATE TABLE {db}.big (id INT PRIMARY KEY, v TEXT)")
    my("INSERT INTO big SELECT seq, REPEAT(MD5(seq), 24) FROM seq_1_to_30000", db=db)
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
    assert my("CHECKSUM TABLE big", port=p4, db=db) == my("CHECKSUM TABLE big", db=db)
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
    tables = [k.split(" ", 1)[1] for k in before if k.startswith("table ")]
    real_rows = {t: int(my(f"SELECT COUNT(*) FROM `{t.replace('`', '``')}`", db=db)) for t in tables}
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
    res = restore(
        d1,
        p1,
        f"--backup={logical['backup_id']}",
        f"--target-position={logical['binlog']['file']}:{logical['binlog']['position']}",
        "--check-rows",
    )
    assert snapshot(my, db, p1) == before
    # The dump recorded each table's rows from its own stream; the load was counted against them.
    recorded = cli("backup.show", "--cluster=mariadb-main", f"--backup-id={logical['backup_id']}")["extra"][
        "row_counts"
    ]
    assert recorded[db] == real_rows and sum(real_rows.values()) > 0
    counted = json.loads(res.stdout)["row_counts"]
    assert counted["mismatched"] == 0 and counted["tables"] >= len(recorded[db])

    d2, p2 = my_target(1)
    restore(
        d2,
        p2,
        f"--backup={incremental['backup_id']}",
        f"--target-position={incremental['binlog']['file']}:{incremental['binlog']['position']}",
    )
    assert snapshot(my, db, p2) == after
    my(f"DROP DATABASE `{db}`")


def test_follow_streams_and_archives_each_binlog_as_the_server_closes_it(my: My, dev: Any) -> None:
    import threading

    from dbrunbook.engines.mariadb.binlog import BinlogName
    from dbrunbook.inventory import SecretResolver
    from dbrunbook.repository.storage import open_storage

    from .conftest import run_cli

    result: dict[str, Any] = {}

    def run() -> None:
        res = run_cli("binlog.sync", "--env=dev", "--cluster=mariadb-main", "--follow", "--duration=14", "--json")
        result["res"] = res

    follower = threading.Thread(target=run)
    follower.start()
    time.sleep(6)  # the catch-up sync and the stream's start
    closed = []
    for i in range(2):
        my(f"CREATE DATABASE IF NOT EXISTS follow_probe_{i}; DROP DATABASE follow_probe_{i}")
        closed.append(my.position()[0])
        my("FLUSH BINARY LOGS")
    still_open = my.position()[0]
    follower.join(120)
    res = result["res"]
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["follower"] == "mariadb-main-2"
    assert set(closed) <= set(out["streamed"]) and out["streaming"] == still_open
    repo = dev.inventory.clusters["mariadb-main"].repository
    storage = open_storage(repo, SecretResolver(dev.base_dir))
    names = {BinlogName.of_key(i.key).name for i in storage.list("binlog/1/")}
    assert set(closed) <= names and still_open not in names
