"""Integration tests run against the real sandbox (PostgreSQL, MariaDB, SeaweedFS, sshd), started by the
project's own ``sandbox.up``. Nothing here is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.execution import AuditLog, RunSettings
from dbrunbook.execution.hosts import executor_for
from dbrunbook.inventory import LoadedInventory, SecretResolver, load_inventory

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def run_cli(
    *args: str, env: dict[str, str] | None = None, audit: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``invoke ARGS`` in the repository the way an operator does, with no TTY and no stdin."""
    full_env = {**os.environ, **(env or {})}
    if audit is not None:
        full_env["DBRUNBOOK_AUDIT_LOG"] = str(audit)
    return subprocess.run(
        [str(BIN / "invoke"), *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def sandbox() -> dict[str, Any]:
    """The running sandbox's status. ``sandbox.up`` is idempotent and locked, so xdist workers share it."""
    res = run_cli("sandbox.up", "--json")
    assert res.returncode == 0, res.stderr
    status: dict[str, Any] = json.loads(res.stdout)
    assert status["all_running"], status["running"]
    return status


@pytest.fixture(scope="session")
def dev(sandbox: dict[str, Any]) -> LoadedInventory:
    return load_inventory(str(REPO / "inventory" / "dev.yaml"))


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def settings(audit_path: Path) -> RunSettings:
    return RunSettings(audit=AuditLog(audit_path, task="test", env="dev"))


@pytest.fixture
def resolver(dev: LoadedInventory) -> SecretResolver:
    return SecretResolver(dev.base_dir)


@pytest.fixture
def ssh_replica(dev: LoadedInventory, settings: RunSettings, resolver: SecretResolver) -> Iterator[Any]:
    """An SSH executor to the PostgreSQL replica's host, through the sandbox's real sshd."""
    cluster = dev.inventory.clusters["pg-main"]
    ex = executor_for("pg-main-2", cluster.hosts["pg-main-2"], settings, resolver)
    yield ex
    ex.close()


def write_inventory(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def dev_data() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load((REPO / "inventory" / "dev.yaml").read_text())
    return data
