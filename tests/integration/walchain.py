"""A backup of the sandbox's pg-main followed by WAL segments that each hold one committed row, all in the
archive: the material for tests of what recovery does when a segment in the middle cannot be had."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from dbrunbook.engines.postgresql.wal import WalName
from dbrunbook.inventory import LoadedInventory, SecretResolver
from dbrunbook.repository.storage import Storage, open_storage

from .conftest import run_cli


@dataclass
class WalChain:
    backup: dict[str, Any]  # backup.full's JSON summary
    table: str  # dropped again on the primary: only a restored copy has it
    lsns: list[str]  # pg_current_wal_lsn() right after each row's commit (before the switch)
    wal_keys: list[str]  # the backup's segments and every later one, oldest first
    after: list[str]  # keys of the segments after the backup's stop segment
    source: Storage


def make_chain(dev: LoadedInventory, sql: Any, rows: int = 3) -> WalChain:
    res = run_cli("backup.full", "--env=dev", "--cluster=pg-main", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    b = json.loads(res.stdout)["backups"][0]
    table = f"walchain_{b['backup_id'][:15].lower()}"
    sql(f"CREATE TABLE {table} (i int)")
    lsns = []
    for i in range(rows):
        sql(f"INSERT INTO {table} VALUES ({i})")
        lsns.append(sql("SELECT pg_current_wal_lsn()"))
        sql("SELECT pg_switch_wal()")
    sql(f"DROP TABLE {table}")
    main = dev.inventory.clusters["pg-main"].repository
    assert main is not None
    source = open_storage(main, SecretResolver(dev.base_dir))
    start = b["start_wal"]
    deadline = time.monotonic() + 60
    while True:  # the switched segments reach the archive
        wal = sorted(
            i.key
            for i in source.list(f"wal/{start[:8]}/")
            if len(WalName.of_key(i.key)) == 24 and WalName.of_key(i.key)[8:] >= start[8:]
        )
        after = [k for k in wal if WalName.of_key(k) > b["stop_wal"]]
        if len(after) >= rows or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(after) >= rows, wal
    return WalChain(b, table, lsns, wal, after, source)


def copy_backup(chain: WalChain, target: Storage) -> None:
    """The backup and its WAL into another repository (a private prefix a test may damage)."""
    for key in [i.key for i in chain.source.list(f"backups/{chain.backup['backup_id']}/")] + chain.wal_keys:
        with chain.source.open(key) as fh:
            target.put(key, [fh.read()])
