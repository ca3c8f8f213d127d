"""S3 stopped while PostgreSQL's archiver runs ``wal-push``: the command fails non-zero, PostgreSQL keeps the
segment, and once S3 is back every segment is in the repository with its exact bytes, nothing lost.

The outage needs a SeaweedFS and a primary of its own (:mod:`isolated`): stopping the shared sandbox's S3
would break every test running beside this one. The repository carries an Object Lock policy, so the same
run proves WAL pushed by a host is stored with a retain-until date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbrunbook.inventory import LoadedInventory
from dbrunbook.repository import objects
from dbrunbook.repository.crypto import parse_identities
from dbrunbook.sandbox import postgres

from .conftest import run_cli
from .isolated import BUCKET, Isolated, crash_s3, isolated_cluster, start_s3, wait

CLUSTER = "outage-pg"


@pytest.fixture
def outage(dev: LoadedInventory, tmp_path: Path, worker_id: str) -> Iterator[Isolated]:
    with isolated_cluster(dev, tmp_path, worker_id, CLUSTER, -6000) as cluster:
        yield cluster


def test_s3_outage_during_archive_command_loses_nothing(outage: Isolated) -> None:
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

    start_s3(outage.server, outage.layout, outage.keys)
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
