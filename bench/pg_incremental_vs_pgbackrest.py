"""Page-level incremental backups against pgBackRest's file-level incrementals, same run, same database.

On a >= 1 GB pgbench database: a full backup with each tool, then two workloads, each followed by an
incremental with each tool, then a restore of the whole chain (full + 2 incrementals) with each tool:

- hot spot: 1% of pgbench_accounts rows updated in one contiguous key range, and 1% new rows appended to
  pgbench_history. Goal: dbrunbook stores at most 10% of pgBackRest's bytes, and takes no longer.
- uniform: 1% of rows updated at random (about half of all pages touched). Goal: never more bytes, never
  slower.
- restore of the chain: goal no slower than pgBackRest's restore of its incremental.

Both write to repositories on the same local disk, zstd level 1, two processes, encrypted. Bytes are what
each tool stored for that backup alone (dbrunbook: the manifest's objects; pgBackRest: its ``delta``).

    .venv/bin/python bench/pg_incremental_vs_pgbackrest.py [--scale 70]

Needs the sandbox (invoke sandbox.up) and Debian's pgbackrest. It points pg-main's archive_command at a
file:// bench repository while it runs and restores the sandbox's own archiving afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml
from _common import INVOKE, REPO, ensure_bench_db, ids, sandbox, sh, timed, wait_for_archiver

WORK = Path("/var/tmp/dbrunbook-bench-incr")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1.05 GB)")
    args = ap.parse_args()
    dev, pg, p = sandbox()
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    os.chown(WORK, *ids(p.user))
    size = ensure_bench_db(p, args.scale)
    rows = int(p.sql("SELECT count(*) FROM pgbench_accounts", "bench"))
    print(f"database: {size / 2**30:.2f} GiB, {rows} accounts")

    bench_inv = json.loads(json.dumps(dev))
    bench_inv["clusters"] = {"pg-main": pg}
    pg["repository"] = {"url": f"file://{WORK}/dbrunbook-repo"}
    inv = WORK / "bench.yaml"
    inv.write_text(yaml.safe_dump(bench_inv))
    run = [INVOKE, "--search-root", str(REPO)]
    conf = WORK / "pgbackrest.conf"
    conf.write_text(
        "[global]\n"
        f"repo1-path={WORK}/pgbackrest-repo\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=bench-pass-123\n"
        "compress-type=zst\ncompress-level=1\nprocess-max=2\nstart-fast=y\narchive-check=n\n"
        f"log-path={WORK}\nlock-path={WORK}/lock\nspool-path={WORK}\n"
        f"[bench]\npg1-path={p.data_dir}\npg1-port={p.port}\npg1-user=postgres\n"
        f"pg1-socket-path={Path(p.data_dir).parent / 'run'}\n"
    )
    os.chown(conf, *ids(p.user))
    br = ["pgbackrest", f"--config={conf}", "--stanza=bench"]
    sh(*br, "stanza-create", user=p.user, env=p.env)

    def ours(kind: str) -> tuple[float, dict[str, Any]]:
        out: list[str] = []
        t = timed(lambda: out.append(sh(*run, f"backup.{kind}", f"--env={inv}", "--jobs=2", "--json")))
        backup = json.loads(out[0])["backups"][0]
        shown = json.loads(sh(*run, "backup.show", f"--env={inv}", f"--backup-id={backup['backup_id']}"))
        backup["bytes"] = sum(o["size"] for o in shown["objects"])
        return t, backup

    def theirs(kind: str) -> tuple[float, int]:
        t = timed(lambda: sh(*br, "backup", f"--type={kind}", user=p.user, env=p.env))
        info = json.loads(sh(*br, "info", "--output=json", user=p.user, env=p.env))
        return t, int(info[0]["backup"][-1]["info"]["repository"]["delta"])

    sh(*run, "archive.setup", f"--env={inv}", "--yes")
    chain = []
    try:
        wait_for_archiver(p)
        t, full = ours("full")
        chain.append(full["backup_id"])
        t_br, b_br = theirs("full")
        mib = full["bytes"] / 2**20
        print(f"full     dbrunbook {t:6.1f}s {mib:8.1f} MiB   pgBackRest {t_br:6.1f}s {b_br / 2**20:8.1f} MiB")
        workloads = {
            "hot spot": (
                f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN {rows // 2} AND "
                f"{rows // 2 + rows // 100 - 1}; INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                f"SELECT 1, 1, g, 1, now() FROM generate_series(1, {rows // 100}) g; CHECKPOINT",
                0.10,
            ),
            "uniform": ("UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE random() < 0.01; CHECKPOINT", 1.0),
        }
        for name, (sql, bytes_goal) in workloads.items():
            p.sql(sql, "bench")
            # The workload leaves a backlog of WAL for the archiver (full-page images after the checkpoint);
            # neither tool should pay for it, nor compete with it for the CPU.
            wait_for_archiver(p)
            t, inc = ours("incremental")
            wait_for_archiver(p)
            assert inc["kind"] == "incremental", inc
            chain.append(inc["backup_id"])
            t_br, b_br = theirs("incr")
            print(
                f"{name:8} dbrunbook {t:6.1f}s {inc['bytes'] / 2**20:8.1f} MiB   pgBackRest {t_br:6.1f}s "
                f"{b_br / 2**20:8.1f} MiB   bytes ratio {inc['bytes'] / b_br:.3f} (goal <= {bytes_goal})  "
                f"time ratio {t / t_br:.2f} (goal <= 1.0)"
            )
    finally:
        sh(*run, "archive.setup", "--env=dev", "--cluster=pg-main", "--yes")

    # Restore of the chain, files only on both sides (what pgBackRest's restore does).
    sh("chown", "-R", p.user, str(WORK / "dbrunbook-repo"))
    conf_dir = WORK / "restore-config"
    conf_dir.mkdir()
    doc = json.loads(sh("cat", f"{p.home}/.config/dbrunbook/pg-main/repository.json", user=p.user))
    shutil.copy(pg["encryption"]["identities"][0].removeprefix("file:"), conf_dir / "identity-0")
    doc.update(identities=["file:identity-0"], repository={"url": f"file://{WORK}/dbrunbook-repo"})
    (conf_dir / "repository.json").write_text(json.dumps(doc))
    sh("chown", "-R", p.user, str(conf_dir))
    agent = f"{p.home}/.local/share/dbrunbook/venv/bin/dbrunbook-host"
    keys = [a for b in chain for a in ("--manifest-key", f"backups/{b}/manifest.json.zst.age")]
    dest = WORK / "dbrunbook-restore"
    t = timed(
        lambda: sh(
            agent,
            "restore-files",
            "--config",
            str(conf_dir / "repository.json"),
            *keys,
            "--dest",
            str(dest),
            "--jobs",
            "2",
            user=p.user,
        )
    )
    t_br = timed(lambda: sh(*br, f"--pg1-path={WORK}/pgbackrest-restore", "restore", user=p.user, env=p.env))
    ratio = t / t_br
    print(f"restore  dbrunbook {t:6.1f}s   pgBackRest {t_br:6.1f}s   ratio {ratio:.2f} (goal <= 1.0)")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
