"""Full physical backup and restore of a >= 1 GB pgbench database: dbrunbook against pgBackRest, same run.

Both write to a repository on the same local disk, zstd level 1, two processes, encrypted (pgBackRest:
aes-256-cbc with a passphrase; dbrunbook: age). Prints ratios (dbrunbook / pgBackRest); goals are <= 1.0.

    .venv/bin/python bench/pg_backup_vs_pgbackrest.py [--scale 70]

Needs the sandbox (invoke sandbox.up) and Debian's pgbackrest. It points pg-main's archive_command at a
file:// bench repository while it runs and restores the sandbox's own archiving afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
WORK = Path("/var/tmp/dbrunbook-bench")
INVOKE = str(Path(sys.executable).parent / "invoke")


def sh(*args: str, user: str | None = None, env: dict[str, str] | None = None) -> str:
    argv = ["runuser", "-u", user, "--", *args] if user and os.geteuid() == 0 else list(args)
    res = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if res.returncode:
        raise SystemExit(f"{' '.join(args[:3])} failed: {res.stderr.strip()[-500:]}")
    return res.stdout


def timed(fn: Any) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


class PeakRss:
    """Highest resident memory of any process whose command line contains ``needle``."""

    def __init__(self, needle: str) -> None:
        self.needle, self.peak_kib, self._stop = needle, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in Path("/proc").iterdir():
                try:
                    if p.name.isdigit() and self.needle in (p / "cmdline").read_bytes().decode(errors="replace"):
                        for line in (p / "status").read_text().splitlines():
                            if line.startswith("VmRSS:"):
                                self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                except OSError:
                    continue
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1.05 GB)")
    args = ap.parse_args()
    dev = yaml.safe_load((REPO / "inventory/dev.yaml").read_text())
    pg = dev["clusters"]["pg-main"]
    primary = pg["hosts"]["pg-main-1"]
    user, bindir, data_dir, port = primary["os_user"], primary["bin_dir"], primary["data_dir"], primary["port"]
    password = Path(pg["credentials"]["password"].removeprefix("file:")).read_text().strip()

    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    os.chown(WORK, *_ids(user))
    home = sh("sh", "-c", "printf %s $HOME", user=user)
    pgpass = Path(home) / ".pgpass"
    sh("sh", "-c", f'umask 077; printf "%s\\n" "*:*:*:postgres:{password}" > {pgpass}', user=user)
    env = {"PGPASSFILE": str(pgpass)}

    exists = sh(
        f"{bindir}/psql",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "postgres",
        "-Atc",
        "SELECT count(*) FROM pg_database WHERE datname = 'bench'",
        user=user,
        env=env,
    ).strip()
    if exists == "0":
        print(f"creating pgbench database, scale {args.scale} ...", flush=True)
        sh(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "bench", user=user, env=env)
        sh(
            f"{bindir}/pgbench",
            "-i",
            "-q",
            "-s",
            str(args.scale),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "bench",
            user=user,
            env=env,
        )
    size = sh(
        f"{bindir}/psql",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "postgres",
        "-Atc",
        "SELECT pg_database_size('bench')",
        user=user,
        env=env,
    ).strip()
    print(f"database: {int(size) / 2**30:.2f} GiB")

    # dbrunbook: a bench inventory, same cluster, file:// repository on this disk.
    bench_inv = json.loads(json.dumps(dev))
    bench_inv["clusters"] = {"pg-main": pg}
    pg["repository"] = {"url": f"file://{WORK}/dbrunbook-repo"}
    inv_path = WORK / "bench.yaml"
    inv_path.write_text(yaml.safe_dump(bench_inv))
    run = [INVOKE, "--search-root", str(REPO)]
    sh(*run, "archive.setup", f"--env={inv_path}", "--yes")
    try:
        with PeakRss("backup-push") as rss:
            t_ours = timed(lambda: sh(*run, "backup.full", f"--env={inv_path}", "--jobs=2"))
        # The controller wrote the manifest as itself; the host user must read it back for the restore.
        sh("chown", "-R", user, str(WORK / "dbrunbook-repo"))
        listed = json.loads(sh(*run, "backup.list", f"--env={inv_path}", "--json"))["backups"][-1]
        restore_dir = WORK / "dbrunbook-restore"
        cfg = f"{home}/.config/dbrunbook/pg-main/repository.json"
        # Restore the files only (what pgBackRest's restore does), with the identity beside the config.
        identity_ref = pg["encryption"]["identities"][0].removeprefix("file:")
        conf_dir = WORK / "restore-config"
        conf_dir.mkdir()
        doc = json.loads(sh("cat", cfg, user=user))
        shutil.copy(identity_ref, conf_dir / "identity-0")
        doc["identities"] = ["file:identity-0"]
        (conf_dir / "repository.json").write_text(json.dumps(doc))
        sh("chown", "-R", user, str(conf_dir))
        agent = f"{home}/.local/share/dbrunbook/venv/bin/dbrunbook-host"
        t_ours_restore = timed(
            lambda: sh(
                agent,
                "restore-files",
                "--config",
                str(conf_dir / "repository.json"),
                "--manifest-key",
                f"backups/{listed['backup_id']}/manifest.json.zst.age",
                "--dest",
                str(restore_dir),
                "--jobs",
                "2",
                user=user,
            )
        )
    finally:
        sh(*run, "archive.setup", "--env=dev", "--cluster=pg-main", "--yes")

    # pgBackRest 2.x, same knobs.
    conf = WORK / "pgbackrest.conf"
    conf.write_text(
        "[global]\n"
        f"repo1-path={WORK}/pgbackrest-repo\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=bench-pass-123\n"
        "compress-type=zst\ncompress-level=1\nprocess-max=2\nstart-fast=y\narchive-check=n\n"
        f"log-path={WORK}\nlock-path={WORK}/lock\nspool-path={WORK}\n"
        f"[bench]\npg1-path={data_dir}\npg1-port={port}\npg1-user=postgres\n"
        f"pg1-socket-path={Path(data_dir).parent / 'run'}\n"
    )
    os.chown(conf, *_ids(user))
    br = ["pgbackrest", f"--config={conf}", "--stanza=bench"]
    sh(*br, "stanza-create", user=user, env=env)
    t_br = timed(lambda: sh(*br, "backup", "--type=full", user=user, env=env))
    t_br_restore = timed(lambda: sh(*br, f"--pg1-path={WORK}/pgbackrest-restore", "restore", user=user, env=env))

    def du(p: Path) -> int:
        return int(subprocess.run(["du", "-sb", str(p)], capture_output=True, text=True, check=True).stdout.split()[0])

    print(f"backup   dbrunbook {t_ours:7.1f}s  pgBackRest {t_br:7.1f}s  ratio {t_ours / t_br:.2f}  (goal <= 1.0)")
    print(
        f"restore  dbrunbook {t_ours_restore:7.1f}s  pgBackRest {t_br_restore:7.1f}s  "
        f"ratio {t_ours_restore / t_br_restore:.2f}  (goal <= 1.0)"
    )
    print(
        f"stored   dbrunbook {du(WORK / 'dbrunbook-repo') / 2**20:7.0f} MiB  "
        f"pgBackRest {du(WORK / 'pgbackrest-repo') / 2**20:7.0f} MiB"
    )
    print(f"peak RSS of dbrunbook-host backup-push: {rss.peak_kib / 1024:.0f} MiB (goal < 300)")
    for d in ("dbrunbook-restore", "pgbackrest-restore"):
        shutil.rmtree(WORK / d, ignore_errors=True)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


if __name__ == "__main__":
    main()
