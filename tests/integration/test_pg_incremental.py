"""Page-level incremental backups on the real sandbox: a full backup, then two incrementals with writes,
drops, truncations and creations in between; each point of the chain restores identical, and point-in-time
recovery works from inside the chain."""

from __future__ import annotations

import json
import uuid
from typing import Any

from .conftest import Sql, restore, run_cli
from .test_pg_backup import snapshot


def take(kind: str) -> dict[str, Any]:
    res = run_cli(f"backup.{kind}", "--env=dev", "--cluster=pg-main", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    backup: dict[str, Any] = json.loads(res.stdout)["backups"][0]
    return backup


def test_incremental_chain_restores_every_point(
    pg_ready: dict[str, Any], sql: Sql, restore_target: tuple[str, int]
) -> None:
    db = f"inc_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE DATABASE {db}")
    sql(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int, filler text);"
        "INSERT INTO accounts SELECT g, 0, repeat('x', 80) FROM generate_series(1, 60000) g;"
        "CREATE TABLE doomed AS SELECT g FROM generate_series(1, 5000) g;"
        "CREATE TABLE emptied AS SELECT g FROM generate_series(1, 5000) g;"
        "CHECKPOINT",
        db=db,
    )
    full = take("full")
    assert full["kind"] == "physical"
    points = [(full, snapshot(sql, db, sql.port))]

    # A hot spot (1% of the rows, one key range), a dropped, a truncated and a new table.
    sql(
        "UPDATE accounts SET balance = balance + 1 WHERE id BETWEEN 1000 AND 1600;"
        "DROP TABLE doomed; TRUNCATE emptied;"
        "CREATE TABLE born AS SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
        db=db,
    )
    inc1 = take("incremental")
    assert inc1["kind"] == "incremental" and inc1["parent"], inc1
    points.append((inc1, snapshot(sql, db, sql.port)))
    # Pages, not files: the 7 MiB accounts table changed in a few pages only.
    assert inc1["plain_mib"] < full["plain_mib"] / 3, (inc1, full)

    sql("INSERT INTO born SELECT g, 'second' FROM generate_series(1, 100) g", db=db)
    between = sql("SELECT clock_timestamp()")
    sql("DELETE FROM accounts WHERE id > 59000; INSERT INTO emptied VALUES (42)", db=db)
    inc2 = take("incremental")
    assert inc2["kind"] == "incremental" and inc2["parent"], inc2
    points.append((inc2, snapshot(sql, db, sql.port)))
    schema_now = snapshot(sql, db, sql.port)[0]  # rows are checked one by one below

    data_dir, port = restore_target
    for backup, expected in points[1:] + points[:1]:
        res = restore(
            data_dir, port, f"--backup={backup['backup_id']}", f"--target-lsn={backup['stop_lsn']}", "--force", "--yes"
        )
        assert res.returncode == 0, res.stderr
        result = json.loads(res.stdout)
        assert result["chain"][-1] == backup["backup_id"] and len(result["chain"]) >= 1
        if backup["kind"] == "incremental":
            assert len(result["chain"]) >= 2
        assert snapshot(sql, db, port) == expected, backup["backup_id"]
        # Every relation, including the indexes rebuilt from pages of several backups, passes amcheck.
        sql("CREATE EXTENSION IF NOT EXISTS amcheck", port=port, db=db)
        sql("SELECT bt_index_check('accounts_pkey', true)", port=port, db=db)

    # PITR inside the chain: from the first incremental to a time before the second.
    res = restore(data_dir, port, f"--backup={inc1['backup_id']}", f"--target-time={between}", "--force", "--yes")
    assert res.returncode == 0, res.stderr
    assert sql("SELECT count(*), count(*) FILTER (WHERE md5 = 'second') FROM born", port=port, db=db) == "3100|100"
    assert sql("SELECT count(*) FROM accounts", port=port, db=db) == "60000"
    assert sql("SELECT count(*) FROM emptied", port=port, db=db) == "0"
    assert schema_now == snapshot(sql, db, port)[0]
    sql(f"DROP DATABASE {db}")
