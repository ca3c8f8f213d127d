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
from pathlib import Path

import yaml
from _common import INVOKE, REPO, PeakRss, du, ensure_bench_db, ids, sandbox, sh, timed

WORK = Path("/var/tmp/dbrunbook-bench")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1.05 GB)")
    args = ap.parse_args()
    dev, pg, primary = sandbox()
    user, data_dir, port, home, env = primary.user, primary.data_dir, primary.port, primary.home, primary.env

    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    os.chown(WORK, *ids(user))
    size = ensure_bench_db(primary, args.scale)
    print(f"database: {size / 2**30:.2f} GiB")

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
    os.chown(conf, *ids(user))
    br = ["pgbackrest", f"--config={conf}", "--stanza=bench"]
    sh(*br, "stanza-create", user=user, env=env)
    t_br = timed(lambda: sh(*br, "backup", "--type=full", user=user, env=env))
    t_br_restore = timed(lambda: sh(*br, f"--pg1-path={WORK}/pgbackrest-restore", "restore", user=user, env=env))

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


if __name__ == "__main__":
    main()
