"""Where a drill restores when the inventory names no drill host: this machine, found binaries, an
unprivileged user when dbrunbook runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.drill.place import DRILL_USER, find_bin_dir, local_host
from dbrunbook.errors import DrillError
from dbrunbook.inventory.model import Cluster, Drill


def cluster(engine: str = "postgresql", **extra: Any) -> Cluster:
    return Cluster.model_validate(
        {
            "engine": engine,
            "credentials": {"user": "u"},
            "hosts": {
                "db-1": {
                    "role": "primary",
                    "connection": {"type": "ssh", "host": "db-1.example", "user": "ops"},
                    "port": 5432,
                    "data_dir": "/srv/pg",
                    "bin_dir": "/opt/nowhere/bin",
                }
            },
            **extra,
        }
    )


def test_postgresql_binaries_are_found_on_this_machine() -> None:
    # The primary's bin_dir does not exist here; Debian's versioned folder does.
    assert find_bin_dir(cluster(version="15")) == "/usr/lib/postgresql/15/bin"
    config = shutil.which("pg_config")
    assert config
    bindir = subprocess.run([config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    assert find_bin_dir(cluster()) == bindir


def test_missing_binaries_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DrillError, match=r"needs PostgreSQL's server binaries") as err:
        find_bin_dir(cluster(version="9"))
    assert "drill.bin_dir" in (err.value.hint or "")


def test_local_host_runs_as_the_unprivileged_user_when_root() -> None:
    host = local_host(cluster(version="15"), Drill())
    assert host.connection.type == "local" and Path(host.bin_dir or "", "pg_ctl").is_file()
    assert host.os_user == (DRILL_USER if os.geteuid() == 0 else None)
    assert local_host(cluster(version="15"), Drill(bin_dir="/x/bin")).bin_dir == "/x/bin"
    with pytest.raises(DrillError, match="OS user 'no-such-user-here'"):
        local_host(cluster(version="15"), Drill(os_user="no-such-user-here"))


def test_mariadb_uses_path_unless_the_primary_folder_exists_here() -> None:
    assert find_bin_dir(cluster("mariadb")) is None
