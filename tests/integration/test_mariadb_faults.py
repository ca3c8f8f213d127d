"""MariaDB backups when things go wrong: a purged binlog that was never archived, a flipped byte in the
repository, the wrong age identity, a dump killed half-way. Each runs against a private repository prefix
(same primary, same SeaweedFS), so the sandbox's own archive is never damaged."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from dbrunbook.inventory import LoadedInventory

from .conftest import BIN, REPO, run_cli
from .mariadb_helpers import My, Private, backup, cli, new_name, restore, sync
from .procs import kill_own


def test_purged_binlog_never_archived_is_reported_with_the_exact_gap(my: My, private: Private) -> None:
    db = new_name("purge")
    my(f"CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY)")
    backup("logical", env=private.env)
    sync(env=private.env)
    assert run_cli("binlog.check", "--cluster=mariadb-main", private.env).returncode == 0
    lost = []
    for i in range(2):
        my(f"INSERT INTO {db}.t VALUES ({i})")
        lost.append(my.position()[0])
        my("FLUSH BINARY LOGS")
    sync()  # the sandbox's own archive keeps them; only the private one will miss them
    my(f"PURGE BINARY LOGS TO '{my.position()[0]}'")
    res = run_cli("binlog.check", "--cluster=mariadb-main", private.env, "--json")
    assert res.returncode == 82, res.stderr
    report = json.loads(res.stdout)
    assert report["gaps"] == [{"from": lost[0], "to": lost[1], "missing": 2}]
    assert f"{lost[0]}..{lost[1]}" in res.stderr and "Traceback" not in res.stderr
    my(f"DROP DATABASE {db}")


def test_closed_binlog_not_archived_is_at_risk_when_the_server_expires_binlogs(my: My, private: Private) -> None:
    backup("logical", env=private.env)
    sync(env=private.env)
    my("FLUSH BINARY LOGS")
    my("CREATE DATABASE IF NOT EXISTS risk_probe; DROP DATABASE risk_probe")
    pending = my.position()[0]
    my("FLUSH BINARY LOGS")
    my("SET GLOBAL binlog_expire_logs_seconds = 86400")
    try:
        res = run_cli("binlog.check", "--cluster=mariadb-main", private.env, "--json")
    finally:
        my("SET GLOBAL binlog_expire_logs_seconds = 0")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert pending in report["at_risk"] and report["expiry_seconds"] == 86400
    sync()


def test_flipped_byte_fails_verify_and_restore_naming_the_object(my: My, private: Private, my_target: Any) -> None:
    b = backup("logical", env=private.env)
    assert cli("backup.verify", "--cluster=mariadb-main", env=private.env)["ok"]
    key = f"backups/{b['backup_id']}/dump.sql.zst.age"
    with private.storage.open(key) as fh:
        body = bytearray(fh.read())
    body[len(body) // 2] ^= 0x01
    private.storage.delete([key])
    private.storage.put(key, [bytes(body)])
    res = run_cli("backup.verify", "--cluster=mariadb-main", private.env)
    assert res.returncode == 81 and key in res.stderr and "Traceback" not in res.stderr
    data_dir, port = my_target(0)
    res = restore(data_dir, port, env=private.env, check=False)
    assert res.returncode != 0 and key in res.stderr and "Traceback" not in res.stderr


def test_wrong_identity_is_one_clear_line(my: My, dev: LoadedInventory, tmp_path: Path, my_target: Any) -> None:
    right = Private(dev, tmp_path)
    try:
        backup("logical", env=right.env)
        other = tmp_path / "other-identity.txt"
        subprocess.run(["age-keygen", "-o", str(other)], check=True, capture_output=True)
        wrong = Private(dev, tmp_path, identity_file=other, url=right.url)
        res = run_cli("backup.verify", "--cluster=mariadb-main", wrong.env)
        assert res.returncode != 0 and "identit" in res.stderr and "Traceback" not in res.stderr
        data_dir, port = my_target(0)
        res = restore(data_dir, port, env=wrong.env, check=False)
        assert res.returncode != 0 and "identit" in res.stderr and "Traceback" not in res.stderr
    finally:
        right.wipe()


def test_killed_dump_and_killed_controller_leave_no_backup(my: My, private: Private) -> None:
    """Only this test's own processes are killed (by ancestry): the old version killed the first
    `mariadb-dump` on the machine, which could be another test's, or inventory.check's `--version` probe."""
    db = new_name("bulk")
    # Enough data that the dump streams for a moment.
    my(f"CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT)")
    my("INSERT INTO t SELECT seq, REPEAT(MD5(seq), 30) FROM seq_1_to_120000", db=db)
    try:
        for victim in (b"mariadb-dump", b"invoke"):
            proc = subprocess.Popen(
                [str(BIN / "invoke"), "backup.full", private.env, "--cluster=mariadb-main"],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            if victim == b"invoke":
                # Kill only once the host side streams: the host command runs the dump for us.
                killed = kill_own(b"my-dump-push", proc)
                if killed is not None:
                    proc.send_signal(signal.SIGKILL)
            else:
                killed = kill_own(b"mariadb-dump", proc, program=True)
            _, err = proc.communicate(timeout=120)
            assert killed is not None, f"the backup finished before {victim.decode()} could be killed"
            if victim == b"mariadb-dump":
                assert b"--single-transaction" in killed  # the backup's own dump, not a probe
                assert proc.returncode != 0, err
                assert b"mariadb-dump failed" in err and b"Traceback" not in err
            time.sleep(2)  # an orphaned host stream may finish its object; it must not make a backup
            listed = cli("backup.list", "--cluster=mariadb-main", env=private.env)["backups"]
            assert listed == []
        assert backup("logical", env=private.env)["kind"] == "logical"
    finally:
        my(f"DROP DATABASE {db}")


def test_prune_expires_the_binlogs_of_deleted_backups(my: My, dev: LoadedInventory, tmp_path: Path) -> None:
    from dbrunbook.engines.mariadb.binlog import BinlogName

    repo = Private(dev, tmp_path, retention={"keep_last": 1})
    try:
        first = backup("logical", env=repo.env)
        sync(env=repo.env)
        my("CREATE DATABASE IF NOT EXISTS prune_probe; DROP DATABASE prune_probe")
        my("FLUSH BINARY LOGS")
        second = backup("logical", env=repo.env)
        my("CREATE DATABASE IF NOT EXISTS prune_probe; DROP DATABASE prune_probe")
        sync(env=repo.env)  # rotates: the second backup's own binlog is archived too

        def names() -> list[str]:
            return sorted(BinlogName.of_key(i.key).name for i in repo.storage.list("binlog/"))

        before = names()
        assert before[0] < second["binlog"]["file"]
        plan = cli("backup.prune", "--cluster=mariadb-main", "--dry-run", env=repo.env)["clusters"][0]
        assert plan["delete"] == [first["backup_id"]] and plan["binlog_keep_from"] == {"1": second["binlog"]["file"]}
        assert names() == before  # a dry run deletes nothing
        cli("backup.prune", "--cluster=mariadb-main", "--yes", env=repo.env)
        after = names()
        assert after == [n for n in before if n >= second["binlog"]["file"]] and after
        listed = cli("backup.list", "--cluster=mariadb-main", env=repo.env)["backups"]
        assert [b["backup_id"] for b in listed] == [second["backup_id"]]
    finally:
        repo.wipe()


def test_restore_refuses_used_places_and_dry_run_changes_nothing(my: My, my_target: Any, ssh_replica: Any) -> None:
    from dbrunbook.execution import Command

    backup("logical")  # something to restore, also on a sandbox that has no backup yet
    data_dir, port = my_target(6)
    ssh_replica.run(Command(("sh", "-c", 'mkdir -p "$1" && echo keep > "$1/precious"', "sh", data_dir)))
    res = restore(data_dir, port, check=False)
    assert res.returncode != 0 and "is not empty" in res.stderr and "Traceback" not in res.stderr
    res = restore(data_dir, port, "--force", check=False)  # no TTY and no --yes: it must not go ahead
    assert res.returncode != 0
    kept = ssh_replica.run(Command(("cat", f"{data_dir}/precious"), mutating=False))
    assert kept.stdout.strip() == "keep"
    fresh, _ = my_target(7)
    res = restore(fresh, my.port, check=False)
    assert res.returncode != 0 and f"port {my.port} is in use" in res.stderr
    res = restore(fresh, port, "--dry-run")
    steps = json.loads(res.stdout)["steps"]
    assert steps[0].startswith(f"check that {fresh} is empty") and any("on port" in s for s in steps)
    gone = ssh_replica.run(Command(("test", "-e", fresh), mutating=False, check=False))
    assert gone.exit_code != 0, "a dry run created the data directory"
