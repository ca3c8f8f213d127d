"""Tablespaces: a table outside the data directory survives a full backup, an incremental and a restore
into another data directory with the tablespace remapped; restoring onto the live tablespace is refused.

Runs on a primary of its own (:mod:`isolated`): a tablespace on the shared sandbox would make every other
test's restore refuse the (then non-empty) original tablespace directory.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.inventory import LoadedInventory
from dbrunbook.sandbox import postgres

from .conftest import run_cli
from .isolated import Isolated, isolated_cluster

CLUSTER = "ts-pg"


@pytest.fixture
def ts(dev: LoadedInventory, tmp_path: Path, worker_id: str) -> Iterator[Isolated]:
    with isolated_cluster(dev, tmp_path, worker_id, CLUSTER, -6400) as cluster:
        yield cluster


def owned_dir(path: Path, user: str) -> None:
    subprocess.run(["install", "-d", "-m", "0700", *(["-o", user] if os.geteuid() == 0 else []), str(path)], check=True)


def test_tablespace_backup_incremental_and_remapped_restore(ts: Isolated) -> None:
    def cli(*args: str) -> Any:
        res = run_cli(*args, "--cluster", CLUSTER, "--json", env=ts.env)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    root = ts.layout.root
    space = root / "ts-original"
    owned_dir(space, ts.layout.os_user)
    for args in (("hosts.setup",), ("archive.setup", "--yes")):
        cli(*args)
    ts.psql(f"CREATE TABLESPACE far LOCATION '{space}'")
    ts.psql("CREATE TABLE t (i int PRIMARY KEY, pad text) TABLESPACE far")
    ts.psql("INSERT INTO t SELECT g, repeat('a', 200) FROM generate_series(1, 20000) g; CHECKPOINT")
    oid = ts.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'far'")
    cli("backup.full")
    ts.psql("UPDATE t SET pad = 'changed' WHERE i <= 50")
    inc = cli("backup.incremental")["backups"][0]
    assert inc["kind"] == "incremental"
    # The table's pages are in the tablespace: the incremental holds a few of them, not the whole table.
    assert inc["plain_mib"] < 2, inc
    expected = ts.psql("SELECT md5(string_agg(i || pad, ',' ORDER BY i)) FROM t")

    work = root / "work"  # the server's OS user creates the restored directories in here
    owned_dir(work, ts.layout.os_user)
    data_dir = work / "restored"
    port = ts.layout.port("pg-primary") + 1
    restore = ("restore.run", f"--to={ts.host}", f"--data-dir={data_dir}", f"--port={port}")
    refused = run_cli(*restore, "--cluster", CLUSTER, env=ts.env)
    assert refused.returncode == 85, refused.stderr
    assert f"tablespace directory {space} is not empty" in refused.stderr
    assert not data_dir.exists()

    moved = work / "ts-restored"
    result = cli(*restore, f"--tablespace={oid}={moved}", f"--target-lsn={inc['stop_lsn']}")
    assert result["tablespaces"] == {oid: str(moved)}
    try:
        assert ts.psql("SELECT md5(string_agg(i || pad, ',' ORDER BY i)) FROM t", port=port) == expected
        assert ts.psql(f"SELECT pg_tablespace_location({oid})", port=port) == str(moved)
        assert (data_dir / "pg_tblspc" / oid).resolve() == moved.resolve()
        assert any(moved.iterdir())
    finally:
        subprocess.run(
            ["runuser", "-u", ts.layout.os_user, "--", f"{ts.bindir}/pg_ctl", "stop", "-D", str(data_dir), "-m", "fast"]
            if os.geteuid() == 0
            else [f"{ts.bindir}/pg_ctl", "stop", "-D", str(data_dir), "-m", "fast"],
            capture_output=True,
            check=False,
        )
    assert postgres.data_dir(ts.layout, "primary").exists()
