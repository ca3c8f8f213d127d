"""Documents ``--json`` prints, pinned key by key: a backup's summary (backup.full, backup.list, drill.history) and
sandbox.status/sandbox.down on a sandbox that is not running. They stay exactly these whatever types carry them."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dbrunbook.backup.summary import summary
from dbrunbook.execution.audit import AuditLog
from dbrunbook.execution.executor import RunSettings
from dbrunbook.repository.manifest import Manifest, ObjectEntry
from dbrunbook.sandbox.manager import Sandbox

OBJECT = {
    "key": "backups/20260102T030405Z-I/data/0001.tar.zst.age",
    "name": "data/0001.tar",
    "size": 3 * 2**20 + 5,
    "plain_size": 10 * 2**20 + 7,
    "sha256": "a" * 64,
    "plain_sha256": "b" * 64,
}


def incremental() -> Manifest:
    return Manifest(
        backup_id="20260102T030405Z-I",
        kind="incremental",
        engine="postgresql",
        cluster="orders-pg",
        parent="20260101T030405Z-F",
        server_version="15.6",
        system_identifier="7300000000000000001",
        timeline=2,
        start_lsn="0/5000028",
        stop_lsn="0/6000100",
        start_wal="000000020000000000000005",
        stop_wal="000000020000000000000006",
        start_time=datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC),
        stop_time=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        source_host="pg1",
        objects=[ObjectEntry.model_validate(OBJECT)],
        recipients=["age1x"],
        tool_version="0.1.0",
        extra={"why": "parent chosen", "wal_segment_size": 16 << 20},
    )


def test_summary_of_an_incremental() -> None:
    doc = summary(incremental()).as_dict()
    assert doc == {
        "cluster": "orders-pg",
        "backup_id": "20260102T030405Z-I",
        "kind": "incremental",
        "parent": "20260101T030405Z-F",
        "why": "parent chosen",
        "source_host": "pg1",
        "start_time": "2026-01-02T03:00:00+00:00",
        "stop_time": "2026-01-02T03:04:05.678000+00:00",
        "seconds": 245.7,
        "start_lsn": "0/5000028",
        "stop_lsn": "0/6000100",
        "start_wal": "000000020000000000000005",
        "stop_wal": "000000020000000000000006",
        "timeline": 2,
        "objects": 1,
        "binlog": None,
        "stored_mib": 3.0,
        "stored_bytes": 3 * 2**20 + 5,
        "plain_mib": 10.0,
    }
    assert list(doc)[:5] == ["cluster", "backup_id", "kind", "parent", "why"]


def test_summary_of_a_mariadb_physical_backup() -> None:
    m = incremental().model_copy(
        update={
            "engine": "mariadb",
            "kind": "physical",
            "parent": None,
            "timeline": None,
            "start_wal": None,
            "stop_wal": None,
            "extra": {"server_id": 1, "binlog": {"file": "mariadb-bin.000007", "position": 385, "gtid": "0-1-9"}},
        }
    )
    doc = summary(m).as_dict()
    assert (doc["parent"], doc["why"], doc["timeline"], doc["start_wal"]) == (None, None, None, None)
    assert doc["binlog"] == {"file": "mariadb-bin.000007", "position": 385, "gtid": "0-1-9"}


@pytest.fixture
def stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Sandbox, Path]:
    from dbrunbook.sandbox.layout import Layout

    monkeypatch.setenv("DBRUNBOOK_PG_BINDIR", "/usr/lib/postgresql/15/bin")
    root = tmp_path / "sb"
    layout = Layout(root=root, os_user=getpass.getuser(), port_offset=9700)
    settings = RunSettings(audit=AuditLog(tmp_path / "audit.jsonl", task="test", env="test"), dry_run=True)
    return Sandbox(layout, settings, tmp_path / "inventory" / "dev.yaml"), root


def test_status_of_a_stopped_sandbox(stopped: tuple[Sandbox, Path]) -> None:
    sandbox, root = stopped
    doc = sandbox.status().as_dict()
    hosts = {
        "pg-main": ("ssh", 35132, 35133),
        "mariadb-main": ("ssh", 33006, 33007),
    }
    dsn = {"pg-main": "postgresql://postgres@127.0.0.1:{}/postgres", "mariadb-main": "mysql://dbrunbook@127.0.0.1:{}/"}
    assert doc == {
        "clusters": [
            {
                "name": name,
                "engine": "postgresql" if name == "pg-main" else "mariadb",
                "primary_dsn": dsn[name].format(primary),
                "replica_dsns": [dsn[name].format(replica)],
                "hosts": [
                    {"name": f"{name}-1", "role": "primary", "port": primary, "via": "local", "running": False},
                    {"name": f"{name}-2", "role": "replica", "port": replica, "via": via, "running": False},
                ],
            }
            for name, (via, primary, replica) in hosts.items()
        ],
        "s3_endpoint": "http://127.0.0.1:38033",
        "bucket": "dbrunbook-backups",
        "ssh": f"{getpass.getuser()}@127.0.0.1:31922",
        "ssh_sudo": None,
        "notes": [],
        "password_files": {
            name: str(root / "secrets" / name)
            for name in (
                "pg-admin.password",
                "pg-replication.password",
                "mariadb-admin.password",
                "mariadb-replication.password",
                "s3-access-key",
                "s3-secret-key",
            )
        },
        "running": {
            "pg-main-1": False,
            "pg-main-2": False,
            "mariadb-main-1": False,
            "mariadb-main-2": False,
            "s3": False,
            "sshd": False,
        },
        "all_running": False,
        "root": str(root),
        "inventory": str(root.parent / "inventory" / "dev.yaml"),
    }
    assert list(doc["clusters"][0]["hosts"][0]) == ["name", "role", "port", "via", "running"]


def test_status_with_the_sudo_login_and_a_note(stopped: tuple[Sandbox, Path]) -> None:
    sandbox, root = stopped
    (root / "ssh-ops").mkdir(parents=True)
    (root / "ssh-ops" / "sshd_config").write_text("")
    doc = sandbox.status().as_dict()
    assert doc["ssh_sudo"] == f"dbrunbook-ops@127.0.0.1:31923 -> sudo -u {getpass.getuser()}"
    assert doc["running"]["sshd-ops"] is False and list(doc["running"])[-1] == "sshd-ops"
    assert doc["clusters"][0]["hosts"][1]["via"] == "ssh+sudo"
    (root / "sudo-login.note").write_text("no sudo here\n")
    doc = sandbox.status().as_dict()
    assert doc["notes"] == ["no sudo here"] and doc["ssh_sudo"] is None and "sshd-ops" not in doc["running"]


def test_down_of_a_stopped_sandbox(stopped: tuple[Sandbox, Path]) -> None:
    sandbox, root = stopped
    doc = sandbox.down(purge=True).as_dict()
    assert doc == {"stopped": True, "purged": True, "root": str(root)}
