"""S3 stopped while PostgreSQL's archiver runs ``wal-push``: the command fails non-zero, PostgreSQL keeps the
segment, and once S3 is back every segment is in the repository with its exact bytes, nothing lost.

The outage needs a SeaweedFS and a primary of its own: stopping the shared sandbox's S3 would break every
test running beside this one. Both come from the sandbox's own modules under a second layout (ports shifted
by 500 + 100 per xdist worker), and the repository carries an Object Lock policy, so the same run proves WAL
pushed by a host is stored with a retain-until date.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from dbrunbook.backup import objects
from dbrunbook.backup.crypto import parse_identities
from dbrunbook.backup.storage_s3 import S3Storage
from dbrunbook.execution import AuditLog, LocalExecutor, RunSettings
from dbrunbook.inventory import LoadedInventory, SecretResolver, load_inventory
from dbrunbook.redact import Secret
from dbrunbook.sandbox import postgres, seaweed
from dbrunbook.sandbox.layout import SANDBOX_USER, Layout
from tests.integration.conftest import run_cli

BUCKET = "outage-locked"
CLUSTER = "outage-pg"


@dataclass
class Outage:
    layout: Layout
    server: LocalExecutor
    bindir: str
    inventory: LoadedInventory
    env: dict[str, str]
    keys: dict[str, Secret]

    def psql(self, sql: str) -> str:
        out = subprocess.run(
            [
                *(f"{self.bindir}/psql", "-h", "127.0.0.1", "-p", str(self.layout.port("pg-primary"))),
                *("-U", "postgres", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql),
            ],
            env={**os.environ, "PGPASSWORD": self.keys["pg-admin.password"].reveal()},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout.strip()

    def archiver(self) -> dict[str, Any]:
        row = self.psql(
            "SELECT archived_count, coalesce(last_archived_wal,''), failed_count, "
            "coalesce(last_failed_wal,'') FROM pg_stat_archiver"
        )
        archived, last_ok, failed, last_failed = row.split("|")
        return {"archived": int(archived), "last_ok": last_ok, "failed": int(failed), "last_failed": last_failed}

    def storage(self) -> S3Storage:
        repo = self.inventory.inventory.clusters[CLUSTER].repository
        assert repo is not None
        return S3Storage(repo, SecretResolver(self.inventory.base_dir))


def wait(predicate: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


@pytest.fixture
def outage(dev: LoadedInventory, tmp_path: Path, worker_id: str) -> Iterator[Outage]:
    offset = 500 + 100 * (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    as_root = os.geteuid() == 0
    layout = Layout(Path(f"/var/tmp/dbrunbook-outage-{offset}"), SANDBOX_USER if as_root else getpass.getuser(), offset)
    settings = RunSettings(audit=AuditLog(tmp_path / "audit.jsonl", task="outage", env="outage"))
    server = LocalExecutor("outage", settings, os_user=layout.os_user if as_root else None)
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    secrets = Path(str(dev.inventory.clusters["pg-main"].credentials.password).removeprefix("file:")).parent
    keys = {
        n: Secret((secrets / n).read_text().strip()) for n in ("pg-admin.password", "s3-access-key", "s3-secret-key")
    }

    def teardown() -> None:
        postgres.stop(server, bindir, "primary", layout)
        crash_s3(layout)
        shutil.rmtree(layout.root, ignore_errors=True)

    teardown()  # a run killed half-way left its servers
    layout.root.mkdir(mode=0o755)
    owned = [layout.logs, layout.pg, layout.s3]
    subprocess.run(
        ["install", "-d", "-m", "0700", *(["-o", layout.os_user] if as_root else []), *map(str, owned)], check=True
    )
    try:
        seaweed.start(server, layout, keys["s3-access-key"], keys["s3-secret-key"])
        s3 = boto3.client(
            "s3",
            endpoint_url=layout.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=keys["s3-access-key"].reveal(),
            aws_secret_access_key=keys["s3-secret-key"].reveal(),
        )
        wait(lambda: _try(lambda: s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)), "bucket", 60)
        postgres.init_primary(server, bindir, layout, keys["pg-admin.password"])
        postgres.start(server, bindir, "primary", layout, layout.port("pg-primary"))
        pg_main = dev.inventory.clusters["pg-main"]
        assert pg_main.repository is not None and pg_main.encryption is not None
        inv = {
            "version": 1,
            "clusters": {
                CLUSTER: {
                    "engine": "postgresql",
                    "version": "15",
                    "credentials": {"user": "postgres", "password": f"file:{secrets / 'pg-admin.password'}"},
                    "hosts": {
                        "outage-1": {
                            "role": "primary",
                            "connection": {"type": "local"},
                            "port": layout.port("pg-primary"),
                            "data_dir": str(postgres.data_dir(layout, "primary")),
                            "os_user": layout.os_user,
                            "bin_dir": bindir,
                            "socket_dir": str(layout.pg / "run"),
                        }
                    },
                    "repository": {
                        "url": f"s3://{BUCKET}/{CLUSTER}",
                        "endpoint": layout.s3_endpoint,
                        "region": "us-east-1",
                        "access_key": pg_main.repository.access_key,
                        "secret_key": pg_main.repository.secret_key,
                        "object_lock": {"mode": "GOVERNANCE", "days": 1},
                    },
                    "encryption": pg_main.encryption.model_dump(mode="json"),
                }
            },
        }
        (tmp_path / "inv").mkdir()
        (tmp_path / "inv" / "outage.yaml").write_text(yaml.safe_dump(inv))
        env = {"DBRUNBOOK_INVENTORY_DIR": str(tmp_path / "inv"), "DBRUNBOOK_ENV": "outage"}
        yield Outage(layout, server, bindir, load_inventory(str(tmp_path / "inv" / "outage.yaml")), env, keys)
    finally:
        log = layout.logs / "pg-primary.log"
        if log.exists():
            shutil.copy(log, tmp_path / "pg.log")
        teardown()


def crash_s3(layout: Layout) -> None:
    """kill -9: an outage is abrupt, and weed can sit on SIGTERM for 15 s."""
    pid = seaweed.running_pid(layout)
    if pid:
        os.kill(pid, signal.SIGKILL)
        wait(lambda: seaweed.running_pid(layout) is None, "SeaweedFS to exit", 30)


def _try(action: Any) -> bool:
    try:
        action()
    except Exception as exc:  # SeaweedFS answers errors until its volume server is up
        return "BucketAlreadyOwnedByYou" in str(exc)
    return True


def test_s3_outage_during_archive_command_loses_nothing(outage: Outage) -> None:
    for args in (("hosts.setup",), ("archive.setup", "--yes")):
        res = run_cli(*args, "--cluster", CLUSTER, env=outage.env)
        assert res.returncode == 0, res.stderr
    first = outage.archiver()["last_ok"]
    assert first

    crash_s3(outage.layout)
    outage.psql("CREATE TABLE during_outage AS SELECT g FROM generate_series(1, 50000) g")
    stuck = outage.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    outage.psql("SELECT pg_switch_wal()")
    wait(lambda: outage.archiver()["last_failed"] == stuck, f"archive_command to fail on {stuck}", 60)
    assert outage.archiver()["last_ok"] < stuck
    log = (outage.layout.logs / "pg-primary.log").read_text()
    # One line an operator can act on, and the repository error's own exit code, not a traceback.
    assert "archive command failed with exit code 71" in log, log[-2000:]
    assert f"S3 endpoint {outage.layout.s3_endpoint} unreachable" in log
    assert "Traceback" not in log
    assert (postgres.data_dir(outage.layout, "primary") / "pg_wal" / stuck).exists()

    seaweed.start(outage.server, outage.layout, outage.keys["s3-access-key"], outage.keys["s3-secret-key"])
    outage.psql("INSERT INTO during_outage SELECT 1")
    outage.psql("SELECT pg_switch_wal()")  # wakes the archiver instead of waiting out its 60 s retry
    wait(lambda: outage.archiver()["last_ok"] > stuck, f"{stuck} and its successor to be archived", 120)

    store = outage.storage()
    keys = {info.key.split("/")[-1].split(".")[0]: info.key for info in store.list("wal/")}
    names = sorted(n for n in keys if len(n) == 24)
    # Every segment from the one archive.setup proved to the newest one, no gap, each exactly once.
    assert names[0] <= first
    expected = [f"{names[0][:16]}{int(names[0][16:], 16) + i:08X}" for i in range(len(names))]
    assert names == expected, names
    assert stuck in names
    body = hashlib.sha256()
    encryption = outage.inventory.inventory.clusters[CLUSTER].encryption
    assert encryption is not None
    identities = parse_identities(Path(encryption.identities[0].removeprefix("file:")).read_text())
    for chunk in objects.load_key(store, keys[stuck], identities):
        body.update(chunk)
    on_disk = (postgres.data_dir(outage.layout, "primary") / "pg_wal" / stuck).read_bytes()
    assert body.hexdigest() == hashlib.sha256(on_disk).hexdigest()
    head = store._client.head_object(Bucket=BUCKET, Key=f"{store.prefix}/{keys[stuck]}")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(hours=23)
