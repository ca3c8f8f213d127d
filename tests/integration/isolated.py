"""A PostgreSQL primary and a SeaweedFS of a test's own, built from the sandbox's modules under a second
layout (ports shifted by a base + 100 per xdist worker), with a one-cluster inventory pointing at them.

For tests that must break or reshape a server (stop its S3, add a tablespace) without touching the shared
sandbox that the other tests use at the same time.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from dbrunbook.engines.postgresql.driver import pgpass_line
from dbrunbook.errors import SandboxError
from dbrunbook.execution import AuditLog, LocalExecutor, RunSettings
from dbrunbook.inventory import LoadedInventory, SecretResolver, load_inventory
from dbrunbook.redact import Secret
from dbrunbook.repository.storage_s3 import S3Storage
from dbrunbook.sandbox import postgres, seaweed
from dbrunbook.sandbox.layout import SANDBOX_USER, Layout

BUCKET = "isolated-locked"


@dataclass
class Isolated:
    layout: Layout
    server: LocalExecutor
    bindir: str
    inventory: LoadedInventory
    env: dict[str, str]
    keys: dict[str, Secret]
    cluster: str
    host: str

    def psql(self, sql: str, port: int | None = None) -> str:
        """As postgres, on the primary (or on ``port``); the password travels in a 0600 pgpass file."""
        passfile = self.layout.root / "pgpass"
        if not passfile.exists():
            passfile.touch(mode=0o600)
            passfile.write_text(pgpass_line("*", "postgres", self.keys["pg-admin.password"].reveal()))
        out = subprocess.run(
            [
                *(f"{self.bindir}/psql", "-h", "127.0.0.1", "-p", str(port or self.layout.port("pg-primary"))),
                *("-U", "postgres", "-d", "postgres", "-w", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql),
            ],
            env={**os.environ, "PGPASSFILE": str(passfile)},
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
        repo = self.inventory.inventory.clusters[self.cluster].repository
        assert repo is not None
        return S3Storage(repo, SecretResolver(self.inventory.base_dir))


def wait(predicate: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


@contextmanager
def isolated_cluster(
    dev: LoadedInventory,
    tmp_path: Path,
    worker_id: str,
    name: str,
    base: int,
    initdb_options: Sequence[str] = (),
) -> Iterator[Isolated]:
    """Cluster ``name`` with one local primary host ``<name>-1``; repository with Object Lock (1 day).
    ``initdb_options`` are added to the sandbox's initdb options (``--wal-segsize=1``).

    Bases in use: -6000 (S3 outage), -6400 (tablespaces), -6800 and -7200 (1 MiB and 64 MiB WAL
    segments), and in pairs.py -5600 and -5200 (primary+replica pairs); each worker adds 100. Negative on purpose:
    weed's gRPC ports (HTTP port + 10000) then stay below Linux's ephemeral range (32768 and up), where a
    client connection of a parallel test could hold the port (seen: "port 39334 ... already in use")."""
    offset = base + 100 * (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    as_root = os.geteuid() == 0
    layout = Layout(
        Path(f"/var/tmp/dbrunbook-isolated-{offset}"), SANDBOX_USER if as_root else getpass.getuser(), offset
    )
    settings = RunSettings(audit=AuditLog(tmp_path / "audit.jsonl", task=name, env=name))
    server = LocalExecutor(name, settings, os_user=layout.os_user if as_root else None)
    bindir = dev.inventory.clusters["pg-main"].hosts["pg-main-1"].bin_dir  # the sandbox's own PostgreSQL
    assert bindir is not None
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
        start_s3(server, layout, keys)
        s3 = boto3.client(
            "s3",
            endpoint_url=layout.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=keys["s3-access-key"].reveal(),
            aws_secret_access_key=keys["s3-secret-key"].reveal(),
        )
        wait(lambda: _try(lambda: s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)), "bucket", 60)
        postgres.init_primary(server, bindir, layout, keys["pg-admin.password"], initdb_options)
        postgres.start(server, bindir, "primary", layout, layout.port("pg-primary"))
        pg_main = dev.inventory.clusters["pg-main"]
        assert pg_main.repository is not None and pg_main.encryption is not None
        inv = {
            "version": 1,
            "clusters": {
                name: {
                    "engine": "postgresql",
                    "version": "15",
                    "credentials": {"user": "postgres", "password": f"file:{secrets / 'pg-admin.password'}"},
                    "hosts": {
                        f"{name}-1": {
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
                        "url": f"s3://{BUCKET}/{name}",
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
        (tmp_path / "inv" / f"{name}.yaml").write_text(yaml.safe_dump(inv))
        env = {"DBRUNBOOK_INVENTORY_DIR": str(tmp_path / "inv"), "DBRUNBOOK_ENV": name}
        loaded = load_inventory(str(tmp_path / "inv" / f"{name}.yaml"))
        yield Isolated(layout, server, bindir, loaded, env, keys, name, f"{name}-1")
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


def start_s3(server: LocalExecutor, layout: Layout, keys: dict[str, Secret]) -> None:
    """weed sometimes dies at start-up on a loaded machine (a panic in runServer, seen once in a full run):
    one clean retry, after removing what a killed weed leaves in /tmp."""
    try:
        seaweed.start(server, layout, keys["s3-access-key"], keys["s3-secret-key"])
    except SandboxError:
        crash_s3(layout)
        for name in ("s3", "weed-master", "weed-volume", "weed-filer"):
            port = layout.port(name)
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port + 10000}.sock"):
                sock.unlink(missing_ok=True)
        seaweed.start(server, layout, keys["s3-access-key"], keys["s3-secret-key"])
