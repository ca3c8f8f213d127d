"""WAL segments of 1 MiB and 64 MiB (``initdb --wal-segsize``): a full backup, an incremental, verify,
wal.check and a point-in-time restore between the two backups all work, and every WAL name dbrunbook
computes is the one PostgreSQL uses.

Each size needs a primary of its own (:mod:`isolated`, bases -6800 and -7200): the segment size is fixed
at initdb. With the 16 MiB arithmetic, a 1 MiB cluster's manifest named a stop segment before its start
(verify then read no WAL), and a 64 MiB cluster's backup waited for a segment far in the future and failed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.inventory import LoadedInventory

from .conftest import run_cli
from .isolated import Isolated, isolated_cluster

BASES = {1: -6800, 64: -7200}


def _stop(pg: Isolated, data_dir: Path) -> None:
    argv = [f"{pg.bindir}/pg_ctl", "stop", "-D", str(data_dir), "-m", "fast"]
    as_user = ["runuser", "-u", pg.layout.os_user, "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_user, *argv], capture_output=True, check=False)


@pytest.mark.parametrize("mib", [1, 64])
def test_backups_verify_and_pitr_with_wal_segments_of(
    mib: int, dev: LoadedInventory, tmp_path: Path, worker_id: str
) -> None:
    size = mib << 20
    name = f"seg{mib}-pg"
    with isolated_cluster(dev, tmp_path, worker_id, name, BASES[mib], (f"--wal-segsize={mib}",)) as pg:

        def cli(*args: str) -> Any:
            res = run_cli(*args, "--cluster", name, "--json", env=pg.env)
            assert res.returncode == 0, res.stderr
            return json.loads(res.stdout)

        # pg_settings gives the size in bytes (unit B), what the manifest records.
        assert pg.psql("SELECT setting || unit FROM pg_settings WHERE name = 'wal_segment_size'") == f"{size}B"
        cli("hosts.setup")
        cli("archive.setup", "--yes")
        # No backup records the size yet: wal.check asks the primary.
        check = cli("wal.check")
        assert (check["wal_segment_size"], check["wal_segment_size_from"]) == (size, f"server {pg.host}")

        pg.psql("CREATE TABLE t (i int PRIMARY KEY, pad text)")
        pg.psql("INSERT INTO t SELECT g, repeat('a', 500) FROM generate_series(1, 2000) g")
        full = cli("backup.full")["backups"][0]
        # About 4 MB of WAL: several 1 MiB segments for the restore to fetch and replay.
        pg.psql("INSERT INTO t SELECT g, repeat('b', 500) FROM generate_series(2001, 8000) g")
        mark = pg.psql("SELECT pg_current_wal_lsn()")
        pg.psql("INSERT INTO t SELECT g, 'c' FROM generate_series(8001, 9000) g")
        inc = cli("backup.incremental")["backups"][0]
        assert inc["kind"] == "incremental" and inc["parent"] == full["backup_id"]

        for b in (full, inc):
            # pg_walfile_name answers the previous segment for a boundary LSN, as a stop segment must.
            assert b["stop_wal"] == pg.psql(f"SELECT pg_walfile_name('{b['stop_lsn']}')"), b
        if mib == 1:
            assert int(inc["start_wal"][16:], 16) - int(full["stop_wal"][16:], 16) >= 3, (full, inc)

        verified = cli("backup.verify", "--backup-id=all")
        assert verified["ok"], verified
        for b, report in zip((full, inc), verified["backups"], strict=True):
            assert b["start_wal"][:16] == b["stop_wal"][:16]  # one log file: the count below is plain
            assert report["wal_segments"] == int(b["stop_wal"][16:], 16) - int(b["start_wal"][16:], 16) + 1
        check = cli("wal.check")
        assert (check["wal_segment_size"], check["gaps"]) == (size, [])
        assert check["wal_segment_size_from"] == f"backup {inc['backup_id']}"

        work = pg.layout.root / "work"  # the server's OS user creates the restored data directory in here
        owner = ["-o", pg.layout.os_user] if os.geteuid() == 0 else []
        subprocess.run(["install", "-d", "-m", "0700", *owner, str(work)], check=True)
        data_dir = work / "restored"
        port = pg.layout.port("pg-primary") + 1
        try:
            cli(
                *("restore.run", f"--to={pg.host}", f"--data-dir={data_dir}", f"--port={port}"),
                *(f"--backup={full['backup_id']}", f"--target-lsn={mark}"),
            )
            rows = pg.psql("SELECT count(*), max(i), count(*) FILTER (WHERE pad = 'c') FROM t", port=port)
            assert rows == "8000|8000|0"  # the target LSN: every row before it, none after
        finally:
            _stop(pg, data_dir)
