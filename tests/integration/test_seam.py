"""The execution seam on both transports: real local processes and a real sshd."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.errors import CommandFailed
from dbrunbook.execution import AuditLog, Command, LocalExecutor, RunSettings
from dbrunbook.redact import Secret


def test_local_dry_run_skips_mutations_but_runs_probes(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    settings = RunSettings(audit=AuditLog(audit, task="t"), dry_run=True)
    ex = LocalExecutor("here", settings)
    target = tmp_path / "created"
    res = ex.run(Command(("touch", str(target)), description="make file"))
    assert res.dry_run and not target.exists()
    probe = ex.run(Command(("echo", "probe"), mutating=False))
    assert probe.stdout.strip() == "probe"
    assert settings.plan == [f"[here] touch {target}"]
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["dry_run"] for e in entries] == [True, False]
    assert entries[1]["exit"] == 0 and entries[1]["host"] == "here" and entries[1]["task"] == "t"
    assert oct(audit.stat().st_mode & 0o777) == "0o600"


def test_failed_command_raises_with_output_tail(tmp_path: Path) -> None:
    ex = LocalExecutor("here", RunSettings(audit=AuditLog(tmp_path / "a.jsonl")))
    with pytest.raises(CommandFailed, match=r"here: list it exited 2: .*No such file"):
        ex.run(Command(("ls", "/nonexistent-dir"), description="list it"))


def test_ssh_runs_as_the_os_user_through_sudo_and_streams_stdin(ssh_replica: Any, sandbox: dict[str, Any]) -> None:
    # pg-main-2 logs in as one user and works as another, through sudo: the production layout.
    login = ssh_replica.run(Command(("id", "-un"), mutating=False, as_os_user=False)).stdout.strip()
    user = ssh_replica.run(Command(("id", "-un"), mutating=False)).stdout.strip()
    assert sandbox["ssh_sudo"].startswith(f"{login}@")
    assert login == ssh_replica.user != user == ssh_replica.os_user
    payload = os.urandom(150_000).hex()  # 300 kB through stdin, checked on the far side
    remote = ssh_replica.run(Command(("sha256sum",), stdin=payload, mutating=False)).stdout.split()[0]
    assert remote == hashlib.sha256(payload.encode()).hexdigest()


def test_ssh_secret_file_is_private_and_removed(ssh_replica: Any) -> None:
    secret = Secret("seam-secret-value-91", source="test")
    with ssh_replica.secret_file(secret, "pw") as path:
        mode = ssh_replica.run(Command(("stat", "-c", "%a %U", path), mutating=False)).stdout.split()
        content = ssh_replica.run(Command(("cat", path), mutating=False)).stdout
        parent = ssh_replica.run(Command(("stat", "-c", "%a", str(Path(path).parent)), mutating=False)).stdout
    assert mode[0] == "600" and parent.strip() == "700"
    assert content == "seam-secret-value-91"
    gone = ssh_replica.run(Command(("test", "-e", path), mutating=False, check=False))
    assert gone.exit_code == 1


def test_ssh_dry_run_changes_nothing_on_the_host(ssh_replica: Any, settings: RunSettings) -> None:
    marker = "/tmp/dbrunbook-dry-run-marker"
    ssh_replica.run(Command(("rm", "-f", marker), mutating=False))
    settings.dry_run = True
    try:
        ssh_replica.run(Command(("touch", marker), description="touch marker"))
    finally:
        settings.dry_run = False
    exists = ssh_replica.run(Command(("test", "-e", marker), mutating=False, check=False))
    assert exists.exit_code == 1
    assert settings.plan == [f"[pg-main-2] sudo -n -u {ssh_replica.os_user} -- touch {marker}"]
