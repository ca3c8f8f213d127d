"""Runs that would damage each other never overlap: a prune during a backup and a second drill of a cluster
are refused at once (no terminal, no waiting) with one line naming the holder, and neither run loses
anything. On MariaDB with a private repository prefix: the `my` fixture keeps other MariaDB tests away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from .conftest import BIN, REPO, run_cli
from .mariadb_helpers import My, Private, backup, cli, sync
from .procs import wait_for_own


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "invoke"), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_lease(private: Private, purpose: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(f"~{purpose}~" in i.key for i in private.storage.list("locks/")):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {purpose} lease appeared (the run ended with {proc.poll()})")


def _own_dump(proc: subprocess.Popen[str]) -> int:
    """This backup's own mariadb-dump (not a `--version` probe of another test). The dump, not the host command
    that reads it: runuser (like su) stops itself when it sees its child stopped, and is never woken again."""
    found = wait_for_own(proc, lambda argv: argv[0].endswith(b"mariadb-dump") and b"--version" not in argv)
    assert found, "the backup's mariadb-dump never ran"
    return found[0][0]


def test_prune_during_a_backup_is_refused_and_the_backup_completes(my: My, private: Private) -> None:
    keep = backup("logical", env=private.env)
    running = _start("backup.full", private.env, "--cluster=mariadb-main", "--json")
    # Hold the backup mid-stream (its dump stopped), so the prune surely comes while it runs.
    streamer = _own_dump(running)
    os.kill(streamer, signal.SIGSTOP)
    try:
        _wait_for_lease(private, "backup", running)
        before = sorted(i.key for i in private.storage.list("backups/"))
        pruned = run_cli("backup.prune", private.env, "--cluster=mariadb-main", "--yes", timeout=60)
        assert running.poll() is None  # it returned while the backup was still running: it did not wait
    finally:
        os.kill(streamer, signal.SIGCONT)
    assert pruned.returncode == 78, pruned.stderr
    assert pruned.stderr.count("\n") == 1 and "Traceback" not in pruned.stderr
    assert "prune refused: the repository is busy with backup (shared) by " in pruned.stderr
    assert "(backup.full)" in pruned.stderr and f"pid {running.pid}" in pruned.stderr
    assert sorted(i.key for i in private.storage.list("backups/")) == before  # nothing deleted
    out, err = running.communicate(timeout=300)
    assert running.returncode == 0, err
    taken = json.loads(out)["backups"][0]
    listed = [b["backup_id"] for b in cli("backup.list", "--cluster=mariadb-main", env=private.env)["backups"]]
    assert listed == [keep["backup_id"], taken["backup_id"]]
    assert cli("backup.verify", "--cluster=mariadb-main", "--backup-id=all", env=private.env)["ok"]
    assert not [i for i in private.storage.list("locks/") if not i.key.endswith("/released.json")]  # released


def test_a_second_drill_of_a_cluster_is_refused_and_the_first_one_passes(my: My, private: Private) -> None:
    backup("logical", env=private.env)
    my("CREATE DATABASE IF NOT EXISTS lease_probe; DROP DATABASE lease_probe")
    sync(env=private.env)
    first = _start("drill.run", private.env, "--cluster=mariadb-main", "--json")
    _wait_for_lease(private, "drill", first)
    # The first drill's controller held still (its work runs on mariadb-main-2 over SSH, not below it), so
    # the second surely comes while the first one holds its lease.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        listed = run_cli("backup.list", private.env, "--cluster=mariadb-main", "--json")
        second = run_cli("drill.run", private.env, "--cluster=mariadb-main", "--json", timeout=120)
        assert first.poll() is None  # refused while the first one ran, without waiting for it
    finally:
        os.kill(first.pid, signal.SIGCONT)
    holders = json.loads(listed.stdout)["leases"]
    assert [(h["purpose"], h["mode"]) for h in holders] == [("drill", "shared")]
    assert second.returncode == 78, second.stderr
    assert "drill refused: the repository is busy with drill (shared) by " in second.stderr
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    busy = json.loads(second.stdout)
    assert busy["drills"] == [] and busy["busy"][0]["cluster"] == "mariadb-main"
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    (result,) = json.loads(out)["drills"]
    assert result["ok"] and result["torn_down"]
    # Only the first drill stored a result: the refused one touched nothing.
    assert [i.key for i in private.storage.list("drills/")] == [result["stored_as"]]
    assert not [i for i in private.storage.list("locks/") if not i.key.endswith("/released.json")]
