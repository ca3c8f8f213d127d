"""The sandbox's database passwords hold ':', '\\', '#', both quotes and a space, so every test that logs in
proves the files client tools read (.pgpass, MariaDB option files) keep them. These tests check the premise
and the places a bad password used to hide."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

from dbrunbook import errors
from dbrunbook.engines.mariadb.driver import client_defaults
from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import dev_data, run_cli, write_inventory

AWKWARD = ":\\#'\" "


def test_every_sandbox_database_password_is_awkward(dev: LoadedInventory, resolver: SecretResolver) -> None:
    for cluster in dev.inventory.clusters.values():
        for cred in (cluster.credentials, cluster.replication):
            assert cred and cred.password
            value = resolver.resolve(cred.password).reveal()
            assert AWKWARD in value and value == value.strip(), cred.password


def test_mariadb_reads_the_option_file_back_exactly(
    dev: LoadedInventory, resolver: SecretResolver, tmp_path: Path
) -> None:
    cred = dev.inventory.clusters["mariadb-main"].credentials
    assert cred.password
    password = resolver.resolve(cred.password).reveal()
    cnf = tmp_path / "client.cnf"
    cnf.write_text(client_defaults(cred.user, password + "\\"))  # a trailing backslash too
    cnf.chmod(0o600)
    out = subprocess.run(
        ["my_print_defaults", f"--defaults-file={cnf}", "client"], capture_output=True, text=True, check=True
    ).stdout
    assert out == f"--user={cred.user}\n--password={password}\\\n"


def test_restore_fails_fast_when_the_restored_server_refuses_the_login(
    pg_ready: dict[str, Any], restore_target: tuple[str, int], tmp_path: Path
) -> None:
    """Recovery is polled with psql as postgres: a refused login used to look like a slow recovery, for an hour."""
    res = run_cli("backup.full", "--env=dev", "--cluster=pg-main", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    backup = json.loads(res.stdout)["backups"][0]["backup_id"]
    data = copy.deepcopy(dev_data())
    data["clusters"]["pg-main"]["credentials"]["password"] = "env:DBR_WRONG_PASSWORD"
    inv = write_inventory(tmp_path / "wrong.yaml", data)
    data_dir, port = restore_target
    res = run_cli(
        "restore.run",
        f"--env={inv}",
        "--cluster=pg-main",
        "--to=pg-main-2",
        f"--backup={backup}",
        f"--data-dir={data_dir}",
        f"--port={port}",
        env={"DBR_WRONG_PASSWORD": "Wrong-Pass-0815"},
        timeout=600,
    )
    assert res.returncode == errors.DatabaseAuthError.exit_code, res.stderr
    assert "refused postgres's login while recovery was polled" in res.stderr
    assert "password authentication failed" in res.stderr
    assert "Wrong-Pass-0815" not in res.stderr + res.stdout
