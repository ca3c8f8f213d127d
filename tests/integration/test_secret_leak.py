"""Known passwords run through real tasks and never show up in the process list, the audit log or output.

Two tests: the PostgreSQL tasks, and the MariaDB tasks (which hold the MariaDB lock). Apart, the PostgreSQL
half runs on the other xdist worker while the MariaDB group goes on; each checks every known secret."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.engines.postgresql.driver import pgpass_line
from dbrunbook.execution import Command
from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import OFFSET, dev_data, run_cli, write_inventory

WRONG = "Leak-Probe-Wrong-8231"


class ProcessListSampler:
    """Reads every process's command line, as `ps` would show it, until stopped.

    With plain os calls, not pathlib: a pass over /proc costs a quarter as much, so the loop both samples
    more often and leaves more of the machine to the processes it watches."""

    def __init__(self) -> None:
        self._raw: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name in os.listdir("/proc"):
                if name.isdigit():
                    raw = _cmdline(name)
                    if raw:
                        self._raw.add(raw)
            self._stop.wait(0.002)

    @property
    def seen(self) -> set[str]:
        return {raw.replace(b"\0", b" ").decode(errors="replace") for raw in self._raw}

    def __enter__(self) -> ProcessListSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cmdline(pid: str) -> bytes:
    try:
        fd = os.open(f"/proc/{pid}/cmdline", os.O_RDONLY)
    except OSError:
        return b""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    return b"".join(chunks)


def known_secrets(dev: LoadedInventory, resolver: SecretResolver) -> list[str]:
    """Every password, S3 key, age identity and signing key of the sandbox's clusters, and a wrong password."""
    known = []
    for cluster in dev.inventory.clusters.values():
        for cred in (cluster.credentials, cluster.replication):
            if cred and cred.password:
                known.append(resolver.resolve(cred.password).reveal())
        repo, enc = cluster.repository, cluster.encryption
        assert repo and repo.secret_key and repo.access_key and enc
        known += [resolver.resolve(repo.secret_key).reveal(), resolver.resolve(repo.access_key).reveal()]
        # The age identity file holds comments too; the key line is the secret.
        known += [line for line in resolver.resolve(enc.identities[0]).reveal().splitlines() if line.startswith("AGE-")]
        # The manifest signing key: the controller's alone, never on a host or in any output.
        assert enc.signing_key
        known += [ln for ln in resolver.resolve(enc.signing_key).reveal().splitlines() if not ln.startswith("-----")]
    known.append(WRONG)
    return known


Task = tuple[tuple[str, ...], dict[str, str] | None]


def run_tasks(tasks: list[Task], audit: Path) -> list[str]:
    """Each task as an operator runs it; what it printed. Restores, drills and replica backups must work."""
    outputs: list[str] = []
    for args, env in tasks:
        res = run_cli(*args, env=env, audit=audit)
        outputs += [res.stdout, res.stderr]
        if args[0] in ("restore.run", "drill.run") or "--source=replica" in args:
            assert res.returncode == 0, res.stderr
    return outputs


def assert_nothing_leaked(known: list[str], seen: set[str], audit_text: str, outputs: list[str]) -> None:
    for secret in known:
        assert not any(secret in cmd for cmd in seen), "a password appeared in the process list"
        assert secret not in audit_text, "a password reached the audit log"
        assert not any(secret in out for out in outputs), "a password reached stdout/stderr"


def test_passwords_never_leak_through_postgresql_tasks(
    tmp_path: Path,
    dev: LoadedInventory,
    resolver: SecretResolver,
    ssh_replica: Any,
    sandbox: dict[str, Any],
    request: pytest.FixtureRequest,
) -> None:
    clusters = dev.inventory.clusters
    known = known_secrets(dev, resolver)
    audit = tmp_path / "audit.jsonl"

    data = dev_data()
    data["clusters"]["pg-main"]["credentials"]["password"] = "env:DBR_LEAK_WRONG"
    wrong_inv = write_inventory(tmp_path / "wrong.yaml", data)

    # pg-main-2 logs in as another user and sudoes to its OS user: a backup from it, a restore and a drill on
    # it put S3 keys, pgpass files and age identities through sudo.
    pg_dir = f"{ssh_replica.home()}/dbr-leak-pg-{uuid.uuid4().hex[:8]}"
    drill_dir = f"{ssh_replica.home()}/dbr-leak-drill-{uuid.uuid4().hex[:8]}"
    pg_ctl = clusters["pg-main"].hosts["pg-main-2"].binary("pg_ctl")
    request.addfinalizer(
        lambda: ssh_replica.run(
            Command(
                ("sh", "-c", '"$1" stop -D "$2" -m immediate; rm -rf "$2" "$3"', "sh", pg_ctl, pg_dir, drill_dir),
                check=False,
                mutating=False,
            )
        )
    )
    data = dev_data()
    data["clusters"]["pg-main"]["drill"].update(host="pg-main-2", data_dir=drill_dir, port=25448)
    sudo_drill = write_inventory(tmp_path / "sudo-drill.yaml", data)
    restore_args = ("--to=pg-main-2", f"--data-dir={pg_dir}", f"--port={25449 + OFFSET}", "--json")
    with ProcessListSampler() as sampler:
        outputs = run_tasks(
            [
                (("inventory.check", "--env=dev", "--json"), None),
                (("inventory.check", "--env=dev"), None),
                (("inventory.show", "--env=dev", "--json"), None),
                (("sandbox.status", "--json"), None),
                (("inventory.check", f"--env={wrong_inv}", "--json"), {"DBR_LEAK_WRONG": WRONG}),
                (("hosts.setup", "--env=dev", "--cluster=pg-main"), None),
                (("archive.setup", "--env=dev", "--cluster=pg-main", "--yes", "--json"), None),
                (("backup.full", "--env=dev", "--cluster=pg-main", "--json"), None),
                (("backup.list", "--env=dev", "--cluster=pg-main", "--json"), None),
                (("backup.show", "--env=dev", "--cluster=pg-main"), None),
                (("backup.incremental", "--env=dev", "--cluster=pg-main", "--json"), None),
                (("backup.verify", "--env=dev", "--cluster=pg-main", "--json"), None),
                (("wal.check", "--env=dev", "--cluster=pg-main", "--json"), None),
                (("keys.status", "--env=dev", "--cluster=pg-main", "--json"), None),
                (("backup.prune", "--env=dev", "--cluster=pg-main", "--dry-run", "--json"), None),
                (("backup.sign", "--env=dev", "--cluster=pg-main", "--dry-run", "--json"), None),
                (
                    ("backup.full", "--env=dev", "--cluster=pg-main", "--kind=logical", "--source=replica", "--json"),
                    None,
                ),
                (("backup.full", "--env=dev", "--cluster=pg-main", "--source=replica", "--json"), None),
                (("restore.run", "--env=dev", "--cluster=pg-main", *restore_args), None),
                (("drill.run", f"--env={sudo_drill}", "--cluster=pg-main", "--json"), None),
                # On this machine: pg_amcheck, validation queries and row counts on the copy.
                (("drill.run", "--env=dev", "--cluster=pg-main", "--json"), None),
            ],
            audit,
        )
        # A program that needs the password gets it from a 0600 file on the host, over SSH.
        pg = clusters["pg-main"]
        replica = pg.hosts["pg-main-2"]
        assert pg.credentials.password
        password = resolver.resolve(pg.credentials.password)
        line = pgpass_line(replica.port, pg.credentials.user, password.reveal())
        with ssh_replica.secret_file(line, "pgpass") as pgpass:
            res = ssh_replica.run(
                Command(
                    (
                        f"{replica.bin_dir}/psql",
                        *("-h", "127.0.0.1", "-p", str(replica.port), "-U", "postgres", "-d", "postgres"),
                        *("-Atc", "select pg_is_in_recovery()"),
                    ),
                    env={"PGPASSFILE": pgpass},
                    mutating=False,
                )
            )
        assert res.stdout.strip() == "t"

    # The sampler really watched: it saw the psql run over SSH and the task processes.
    seen = sampler.seen
    assert any("psql" in cmd and "pg_is_in_recovery" in cmd for cmd in seen)
    assert any("inventory.check" in cmd for cmd in seen)
    assert any("backup-push" in cmd for cmd in seen), "the host-side backup stream was not seen"

    audit_text = audit.read_text() + Path(ssh_replica.settings.audit.path).read_text()
    assert "inventory.check" in audit_text and "psql" in audit_text
    # The sudo host's data path really ran through sudo, and the sampler saw it.
    through_sudo = f"sudo -n -u {ssh_replica.os_user} -- "
    audit_lines = audit_text.splitlines()
    for step in ("backup-push", "logical-push", "restore-files", "pg_amcheck"):
        assert any(through_sudo in line and step in line for line in audit_lines), f"{step} not run through sudo"
    assert any(through_sudo in cmd and "backup-push" in cmd for cmd in seen)
    # The controller built pg_dump's command line: the audit log shows what the host really ran.
    assert any("logical-push" in line and "pg_dump" in line and "-Fc" in line for line in audit_lines)
    assert_nothing_leaked(known, seen, audit_text, outputs)


def test_passwords_never_leak_through_mariadb_tasks(
    tmp_path: Path,
    dev: LoadedInventory,
    resolver: SecretResolver,
    ssh_replica: Any,
    sandbox: dict[str, Any],
    mariadb_exclusive: None,
    request: pytest.FixtureRequest,
) -> None:
    known = known_secrets(dev, resolver)
    audit = tmp_path / "audit.jsonl"
    from .mariadb_helpers import My

    # A transaction in the open binlog: binlog.sync below then has a binlog to close and push.
    My(dev, resolver, tmp_path)("CREATE DATABASE IF NOT EXISTS leak_probe; DROP DATABASE leak_probe")
    my_dir = f"{ssh_replica.home()}/dbr-leak-{uuid.uuid4().hex[:8]}"
    request.addfinalizer(
        lambda: ssh_replica.run(
            Command(
                ("sh", "-c", 'kill -9 $(cat "$1/mariadbd.pid"); sleep 0.5; rm -rf "$1"', "sh", my_dir),
                check=False,
                mutating=False,
            )
        )
    )
    restore_args = ("--to=mariadb-main-2", f"--data-dir={my_dir}", "--port=23449", "--json")
    with ProcessListSampler() as sampler:
        outputs = run_tasks(
            [
                (("hosts.setup", "--env=dev", "--cluster=mariadb-main"), None),
                # Physical first: the restore below takes the newest, a dump, so it loads it with my-replay.
                (("backup.full", "--env=dev", "--cluster=mariadb-main", "--kind=physical", "--json"), None),
                (("backup.full", "--env=dev", "--cluster=mariadb-main", "--json"), None),
                (("binlog.sync", "--env=dev", "--cluster=mariadb-main", "--json"), None),
                (("binlog.check", "--env=dev", "--cluster=mariadb-main", "--json"), None),
                (("backup.verify", "--env=dev", "--cluster=mariadb-main", "--json"), None),
                (("restore.run", "--env=dev", "--cluster=mariadb-main", *restore_args), None),
                # mariadb-check, validation queries, row counts on the copy.
                (("drill.run", "--env=dev", "--cluster=mariadb-main", "--json"), None),
                (("drill.history", "--env=dev", "--json"), None),
            ],
            audit,
        )

    seen = sampler.seen
    for step in ("my-dump-push", "my-physical-push", "binlog-push", "my-replay"):
        assert any(step in cmd for cmd in seen), f"{step} was not seen"
    audit_text = audit.read_text() + Path(ssh_replica.settings.audit.path).read_text()
    assert "mariadb" in audit_text
    assert_nothing_leaked(known, seen, audit_text, outputs)
