"""Recovery never ends early in silence. PostgreSQL takes any restore_command status from 1 to 125 for "no
more WAL" and promotes there, dropping every later transaction: a segment that could not be fetched must stop
recovery, and a restore to "latest" that ended before the newest archived segment must fail (86)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbrunbook.engines.postgresql.wal import WalName
from dbrunbook.execution import Command
from dbrunbook.inventory import LoadedInventory

from .conftest import restore, run_cli
from .forged import private_repo
from .walchain import copy_backup, make_chain

PG_BIN = "/usr/lib/postgresql/15/bin"


def _on_host(ssh_replica: Any, script: str, *args: str, check: bool = False) -> Any:
    return ssh_replica.run(Command(("sh", "-c", script, "sh", *args), mutating=False, check=check))


def _keys_left(ssh_replica: Any, port: int) -> bool:
    home = ssh_replica.home()
    return bool(_on_host(ssh_replica, 'test -e "$1"', f"{home}/.config/dbrunbook/restore-pg-main-{port}").ok)


def test_restore_to_latest_that_stops_before_the_newest_segment_fails_and_leaves_the_copy_up(
    pg_ready: dict[str, Any],
    dev: LoadedInventory,
    sql: Any,
    ssh_replica: Any,
    restore_target: tuple[str, int],
    tmp_path: Path,
) -> None:
    chain = make_chain(dev, sql)
    forged = private_repo(dev, tmp_path)
    data_dir, port = restore_target
    try:
        copy_backup(chain, forged.storage)
        doomed = chain.after[0]  # after the backup's own segments, before the newest
        forged.storage.delete([doomed])
        res = run_cli(
            "restore.run",
            f"--env={forged.inventory}",
            "--cluster=pg-main",
            "--to=pg-main-2",
            f"--data-dir={data_dir}",
            f"--port={port}",
            timeout=600,
        )
        newest = WalName.of_key(chain.wal_keys[-1])
        assert res.returncode == 86, res.stderr
        assert "before the newest archived WAL segment" in res.stderr and newest in res.stderr, res.stderr
        reached = WalName.of_key(chain.after[0])
        assert f"segment {reached[:8]}" in res.stderr and "Traceback" not in res.stderr
        # Left up for a look: the copy runs, without the rows after the hole, and holds no keys any more.
        assert _on_host(ssh_replica, f'"{PG_BIN}/pg_isready" -q -h 127.0.0.1 -p "$1"', str(port)).ok
        assert not _keys_left(ssh_replica, port)
    finally:
        forged.wipe()


def test_a_fetch_that_fails_mid_chain_stops_recovery_instead_of_promoting(
    pg_ready: dict[str, Any],
    dev: LoadedInventory,
    sql: Any,
    ssh_replica: Any,
    restore_target: tuple[str, int],
) -> None:
    """Paused mid-chain, the restore is sent on to the end of the archive, and the next fetch hits an OSError
    (its temporary file cannot be created). Before, wal-fetch exited 1 and PostgreSQL promoted right there,
    without the later rows; now recovery stops with the fetch's 128 and the copy is never promoted."""
    chain = make_chain(dev, sql)
    data_dir, port = restore_target
    own = f"--backup={chain.backup['backup_id']}"
    res = restore(data_dir, port, own, f"--target-lsn={chain.lsns[0]}", "--target-action=pause")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["paused"] is True
    assert _keys_left(ssh_replica, port)  # a paused copy still replays WAL: its keys stay until it is done
    # Inject: the fetch's temporary file is a directory, so open() raises IsADirectoryError.
    _on_host(ssh_replica, 'mkdir "$1/pg_wal/.RECOVERYXLOG.dbrunbook-tmp"', data_dir, check=True)
    _on_host(ssh_replica, "sed -i '/^recovery_target/d' \"$1/postgresql.auto.conf\"", data_dir, check=True)
    _on_host(ssh_replica, f'"{PG_BIN}/pg_ctl" restart -D "$1" -l "$1/dbrunbook-restore.log" -m fast -w -t 60', data_dir)
    status = _on_host(ssh_replica, f'sleep 3; "{PG_BIN}/pg_ctl" status -D "$1"', data_dir)
    log = _on_host(ssh_replica, 'cat "$1/dbrunbook-restore.log"', data_dir).stdout
    assert status.exit_code == 3, f"the copy is still running (promoted without the later WAL?): {log[-2000:]}"
    assert "could not restore file" in log and "exit code 128" in log, log[-2000:]
    assert "IsADirectoryError" in log and "selected new timeline ID" not in log, log[-2000:]
    assert _on_host(ssh_replica, 'test -e "$1/recovery.signal"', data_dir).ok  # never promoted


def test_a_wal_name_archived_twice_is_refused_not_chosen(
    pg_ready: dict[str, Any],
    dev: LoadedInventory,
    sql: Any,
    ssh_replica: Any,
    restore_target: tuple[str, int],
    tmp_path: Path,
) -> None:
    """Any host can write into the repository and encrypt to the recipients: a second object under an archived
    segment's name (other content, its own digest) must never be replayed. wal.check names it (82), and a
    restore stops there instead of choosing (the old wal-fetch took whichever key listed first)."""
    import hashlib

    from dbrunbook.repository.objects import load_key, store

    chain = make_chain(dev, sql)
    forged = private_repo(dev, tmp_path)
    data_dir, port = restore_target
    try:
        copy_backup(chain, forged.storage)
        target = WalName.of_key(chain.after[0])
        # Another segment's content: real-looking WAL that does not belong under this name.
        body = b"".join(load_key(chain.source, chain.after[1], _identities(dev)))
        key = WalName(target).key(hashlib.sha256(body).hexdigest())
        store(forged.storage, target, key, [body], forged.recipients)
        env = f"--env={forged.inventory}"
        checked = run_cli("wal.check", env, "--cluster=pg-main")
        assert checked.returncode == 82 and f"archived twice with different content, first {target}" in checked.stderr
        res = run_cli(
            "restore.run", env, "--cluster=pg-main", "--to=pg-main-2", f"--data-dir={data_dir}", f"--port={port}"
        )
        assert res.returncode == 85 and "exit code 128" in res.stderr, res.stderr  # stopped, not promoted
        log = _on_host(ssh_replica, 'cat "$1/dbrunbook-restore.log"', data_dir).stdout
        assert f"{target} is archived 2 times with different content" in log
    finally:
        forged.wipe()


def _identities(dev: LoadedInventory) -> list[str]:
    from dbrunbook.inventory import SecretResolver
    from dbrunbook.repository.crypto import parse_identities

    enc = dev.inventory.clusters["pg-main"].encryption
    assert enc is not None
    return parse_identities(SecretResolver(dev.base_dir).resolve(enc.identities[0]).reveal())
