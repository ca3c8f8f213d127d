"""Names that client tools or configuration files would misread: databases named like connection
strings (or with quotes, backslashes, a leading dash) back up and restore as themselves, and recovery
settings with backslashes read back in PostgreSQL exactly as given."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from dbrunbook.engines.postgresql.dump_host import conninfo_dbname
from dbrunbook.engines.postgresql.restore_plan import recovery_settings
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.inventory import LoadedInventory
from dbrunbook.sandbox.layout import SANDBOX_USER

from .conftest import Sql, run_cli
from .forged import private_repo


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_databases_named_like_connection_strings_dump_and_restore_as_themselves(
    pg_ready: dict[str, Any], sql: Sql, dev: LoadedInventory, tmp_path: Path
) -> None:
    port = dev.inventory.clusters["pg-main"].hosts["pg-main-1"].port
    # A repository prefix of its own: this logical backup must not become the "latest" other tests restore.
    repo = private_repo(dev, tmp_path)
    env = f"--env={repo.inventory}"
    tag = uuid.uuid4().hex[:6]
    # Bare, the first is a connection string for the database "postgres"; the second is one libpq refuses,
    # and its leading dash made an option of it.
    names = [f"dbname=postgres host=127.0.0.1 application_name={tag}", f"-it's\\{tag}=odd"]
    created: list[str] = []
    try:
        for i, name in enumerate(names):
            sql(f"CREATE DATABASE {ident(name)}", port=port)
            created.append(name)
            sql(f"CREATE TABLE marker (v text); INSERT INTO marker VALUES ('{tag}-{i}')", port, conninfo_dbname(name))
        res = run_cli("backup.full", env, "--cluster=pg-main", "--kind=logical", "--json", timeout=600)
        assert res.returncode == 0, res.stderr
        backup = json.loads(res.stdout)["backups"][0]
        for i, name in enumerate(names):
            copy = f"{name} c='x'"  # the copy's name goes to pg_restore -d
            res = run_cli(
                *("restore.run", env, "--cluster=pg-main", "--to=pg-main-1", "--json"),
                *(f"--backup={backup['backup_id']}", f"--database={name}:{copy}"),
                timeout=600,
            )
            assert res.returncode == 0, res.stderr
            created.append(copy)
            assert sql("SELECT string_agg(v, ',') FROM marker", port, conninfo_dbname(copy)) == f"{tag}-{i}"
    finally:
        for name in created:
            sql(f"DROP DATABASE IF EXISTS {ident(name)}", port=port)
        repo.wipe()


def test_recovery_settings_read_back_in_postgresql(dev: LoadedInventory) -> None:
    """``postgres -C`` parses the settings as the server's start would: a backslash is an escape in
    postgresql.conf strings, so a name ending in one ended the string early and the server did not start."""
    bindir = dev.inventory.clusters["pg-main"].hosts["pg-main-1"].bin_dir
    name = "nightly\\tab\\"  # a literal backslash-t, and a backslash at the end
    command = "/opt/db run/bin/dbrunbook-host wal-fetch --config 'C:\\dbr' %f %p"
    settings = recovery_settings(RecoveryTarget.from_flags(time=None, lsn=None, xid=None, name=name), command, 5499)
    as_root = os.geteuid() == 0
    folder = Path(f"/var/tmp/dbrunbook-conf-{uuid.uuid4().hex[:8]}")
    subprocess.run(["install", "-d", "-m", "0700", *(["-o", SANDBOX_USER] if as_root else []), str(folder)], check=True)
    try:
        conf = folder / "postgresql.conf"
        conf.write_text(settings)
        if as_root:
            subprocess.run(["chown", SANDBOX_USER, str(conf)], check=True)
        as_user = ["runuser", "-u", SANDBOX_USER, "--"] if as_root else []
        for setting, expected in (("recovery_target_name", name), ("restore_command", command), ("port", "5499")):
            res = subprocess.run(
                [*as_user, f"{bindir}/postgres", "-D", str(folder), "-C", setting],
                capture_output=True,
                text=True,
                check=False,
                cwd="/",
            )
            assert res.returncode == 0, res.stderr
            assert res.stdout.rstrip("\n") == expected
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)
