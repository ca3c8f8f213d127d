"""Integration tests run against the real sandbox (PostgreSQL, MariaDB, SeaweedFS, sshd), started by the
project's own ``sandbox.up``. Nothing here is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.engines.postgresql.driver import pgpass_line
from dbrunbook.execution import AuditLog, Command, RunSettings
from dbrunbook.execution.hosts import executor_for
from dbrunbook.inventory import LoadedInventory, SecretResolver, load_inventory

from . import grouping

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The sandbox's ports move with DBRUNBOOK_SANDBOX_PORT_OFFSET (two checkouts' sandboxes side by side); so
# do the ports tests restore on.
OFFSET = int(os.environ.get("DBRUNBOOK_SANDBOX_PORT_OFFSET", "0"))


#: Every test that takes ``mariadb_exclusive`` (directly, through ``my``, or as a parameter marked with this)
#: runs on one xdist worker, one after the other (``--dist loadgroup`` in pyproject, scheduled by grouping.py):
#: the other worker goes on with the rest instead of waiting for the lock.
MARIADB_GROUP = pytest.mark.xdist_group("mariadb")


def pytest_configure(config: pytest.Config) -> None:
    grouping.start(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    grouping.finish(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    grouping.record(session)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return grouping.GroupScheduling(config, log) if config.getoption("dist") == "loadgroup" else None


# First, so that xdist's own hook (which turns the group into the test's scheduling scope) sees the marks.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if "mariadb_exclusive" in getattr(item, "fixturenames", ()):
            item.add_marker(MARIADB_GROUP)


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


@pytest.fixture(scope="module")
def pg_pair(dev: LoadedInventory, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Any]:
    """An isolated PostgreSQL primary + streaming replica on ports of their own (pairs.py), for this module."""
    from .pairs import pg_pair as make

    with make(dev, tmp_path_factory.mktemp("pg-pair"), worker_id) as pair:
        yield pair


@pytest.fixture(scope="module")
def mariadb_pair(dev: LoadedInventory, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Any]:
    """An isolated MariaDB primary + GTID replica on ports of their own (pairs.py), for this module."""
    from .pairs import mariadb_pair as make

    with make(dev, tmp_path_factory.mktemp("mariadb-pair"), worker_id) as pair:
        yield pair


@pytest.fixture(scope="session")
def pg_ready(sandbox: dict[str, Any]) -> dict[str, Any]:
    for args in (
        ("hosts.setup", "--env=dev", "--cluster=pg-main"),
        ("archive.setup", "--env=dev", "--cluster=pg-main", "--yes"),
    ):
        res = run_cli(*args, timeout=900)
        assert res.returncode == 0, res.stderr
    return sandbox


class Sql:
    """psql against the sandbox primary, password from the sandbox's 0600 file via PGPASSFILE."""

    def __init__(self, dev: LoadedInventory, resolver: SecretResolver, tmp: Path) -> None:
        cluster = dev.inventory.clusters["pg-main"]
        self.bindir = cluster.hosts["pg-main-1"].bin_dir
        self.port = cluster.hosts["pg-main-1"].port  # the primary, shifted by DBRUNBOOK_SANDBOX_PORT_OFFSET
        assert cluster.credentials.password
        password = resolver.resolve(cluster.credentials.password).reveal()
        self.passfile = tmp / "pgpass"
        self.passfile.write_text(pgpass_line("*", "postgres", password))
        self.passfile.chmod(0o600)

    def __call__(self, sql: str, port: int | None = None, db: str = "postgres") -> str:
        res = subprocess.run(
            [
                f"{self.bindir}/psql",
                "-X",
                "-w",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                str(port or self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
            env={"PGPASSFILE": str(self.passfile), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        return res.stdout.strip()


@pytest.fixture
def sql(dev: LoadedInventory, resolver: SecretResolver, tmp_path: Path) -> Sql:
    return Sql(dev, resolver, tmp_path)


@pytest.fixture
def restore_target(ssh_replica: Any, worker_id: str) -> Iterator[tuple[str, int]]:
    home = ssh_replica.home()
    data_dir = f"{home}/dbr-test-restore-{uuid.uuid4().hex[:8]}"
    port = 25460 + OFFSET + (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    yield data_dir, port
    ssh_replica.run(
        Command(
            ("/usr/lib/postgresql/15/bin/pg_ctl", "stop", "-D", data_dir, "-m", "immediate"),
            check=False,
            mutating=False,
        )
    )
    ssh_replica.run(Command(("rm", "-rf", data_dir), mutating=False))


def restore(data_dir: str, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "restore.run",
        "--env=dev",
        "--cluster=pg-main",
        "--to=pg-main-2",
        f"--data-dir={data_dir}",
        f"--port={port}",
        "--json",
        *extra,
        timeout=600,
    )


# -- MariaDB ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def my_ready(sandbox: dict[str, Any]) -> dict[str, Any]:
    res = run_cli("hosts.setup", "--env=dev", "--cluster=mariadb-main", timeout=900)
    assert res.returncode == 0, res.stderr
    return sandbox


@pytest.fixture
def mariadb_exclusive() -> Iterator[None]:
    """The MariaDB tests share one primary's binlog (they rotate, purge and kill dumps on it): one at a time.
    Under ``--dist loadgroup`` they already run on one worker (MARIADB_GROUP); the lock keeps them apart in any
    other run (``--dist load``, two pytest processes on one checkout)."""
    import fcntl
    import tempfile

    fd = os.open(Path(tempfile.gettempdir()) / f"dbrunbook-tests-mariadb-{REPO.name}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def my(
    my_ready: dict[str, Any], mariadb_exclusive: None, dev: LoadedInventory, resolver: SecretResolver, tmp_path: Path
) -> Any:
    from .mariadb_helpers import My

    return My(dev, resolver, tmp_path)


@pytest.fixture
def my_target(ssh_replica: Any, worker_id: str) -> Iterator[Any]:
    """Restore places on the replica host; every server started there is stopped and its files removed."""
    home = ssh_replica.home()
    made: list[str] = []
    base = 23450 + OFFSET + (int(worker_id[2:]) * 10 if worker_id.startswith("gw") else 0)

    def place(n: int = 0) -> tuple[str, int]:
        data_dir = f"{home}/dbr-test-my-{uuid.uuid4().hex[:8]}"
        made.append(data_dir)
        return data_dir, base + n

    yield place
    for data_dir in made:
        ssh_replica.run(
            Command(
                (
                    "sh",
                    "-c",
                    'p=$(cat "$1/mariadbd.pid" 2>/dev/null) && kill -9 "$p"; sleep 0.5; rm -rf "$1"',
                    "sh",
                    data_dir,
                ),
                check=False,
                mutating=False,
            )
        )


@pytest.fixture
def private(my_ready: dict[str, Any], dev: LoadedInventory, tmp_path: Path) -> Iterator[Any]:
    """mariadb-main with its repository in a fresh private prefix, wiped afterwards."""
    from .mariadb_helpers import Private

    repo = Private(dev, tmp_path)
    yield repo
    repo.wipe()
