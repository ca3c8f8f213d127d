"""Logical backup of pg-main (every database, with the >= 1 GB pgbench database ``bench``): dbrunbook
against plain ``pg_dump -Fc``, same run, same disk.

- anchor: what an operator would run by hand: ``pg_dump -Fc`` (its default compression) of every database
  that dbrunbook dumps (``datallowconn AND NOT datistemplate``) plus ``pg_dumpall --globals-only``, into
  files on the local disk; once one after the other, once two at a time (like ``--jobs=2``).
- dbrunbook: ``invoke backup.full --kind=logical --jobs=2`` into a ``file://`` repository on the same disk
  (``pg_dump -Fc -Z 0`` per database, streamed through zstd level 1 and age by ``dbrunbook-host
  logical-push``), end to end, including invoke's start-up and the manifest.

Goals: wall time dbrunbook / sequential pg_dump -Fc <= 1.15; peak RSS of logical-push < 300 MiB. Both
ratios are printed, from the medians of --rounds rounds (the three contenders in turn; a 2-core machine
shared with other work is noisy). Everything under /var/tmp/dbrunbook-bench-logical is removed at the end.

    .venv/bin/python bench/pg_logical_vs_pg_dump.py [--scale 70] [--rounds 3]

Needs the sandbox (invoke sandbox.up); run as root or as the database OS user. Creates the pgbench
database ``bench`` when it is missing, then waits for WAL archiving to catch up before measuring: a backlog
of wal-push processes (one per segment, about 70 after creating bench) skews the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from _common import INVOKE, REPO, PeakRss, Primary, du, ensure_bench_db, ids, sandbox, sh, timed, wait_for_archiver

from dbrunbook.engines.postgresql.dump import DATABASES_SQL

WORK = Path("/var/tmp/dbrunbook-bench-logical")


def anchor(p: Primary, databases: list[str], jobs: int) -> tuple[float, int]:
    """pg_dumpall --globals-only, then pg_dump -Fc of each database, ``jobs`` at a time: (seconds, bytes)."""
    out = WORK / f"anchor-{jobs}"
    out.mkdir()
    os.chown(out, *ids(p.user))

    def one(db: str) -> None:
        p.run("pg_dump", "-Fc", "-d", db, "-f", str(out / f"{db}.dump"))

    def run() -> None:
        p.run("pg_dumpall", "--globals-only", "-f", str(out / "globals.sql"))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, databases))

    seconds = timed(run)
    size = du(out)
    shutil.rmtree(out)
    return seconds, size


def warm_cache(p: Primary, databases: list[str]) -> None:
    """Read the databases' files once, so that no contender pays for a cold page cache."""
    oids = dict(line.split("|") for line in p.sql("SELECT datname, oid FROM pg_database").splitlines())
    for db in databases:
        for f in (Path(p.data_dir) / "base" / oids[db]).iterdir():
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale of a new bench database (70: ~1.05 GB)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three contenders; medians are compared")
    args = ap.parse_args()
    dev, pg, p = sandbox()
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    os.chown(WORK, *ids(p.user))
    try:
        size = ensure_bench_db(p, args.scale)
        databases = p.sql(DATABASES_SQL.text).split()
        print(f"database bench: {size / 2**30:.2f} GiB; dumping {', '.join(databases)} and the globals", flush=True)

        bench_inv = json.loads(json.dumps(dev))
        bench_inv["clusters"] = {"pg-main": {**pg, "repository": {"url": f"file://{WORK}/repo"}}}
        inv_path = WORK / "bench.yaml"
        inv_path.write_text(yaml.safe_dump(bench_inv))
        (WORK / "repo").mkdir()
        os.chown(WORK / "repo", *ids(p.user))

        waited = wait_for_archiver(p)
        if waited > 1:
            print(f"  waited {waited:.0f}s for WAL archiving to catch up", flush=True)
        warm_cache(p, databases)
        cmd = [INVOKE, "--search-root", str(REPO), "backup.full", f"--env={inv_path}", "--kind=logical", "--jobs=2"]
        print(f"  dbrunbook runs: {' '.join(cmd)}", flush=True)
        seq: list[float] = []
        ours: list[float] = []
        par: list[float] = []
        out: list[str] = []
        peak = s_ours = 0
        for n in range(1, args.rounds + 1):
            t_seq, s_seq = anchor(p, databases, 1)
            with PeakRss("logical-push") as rss:
                ours.append(timed(lambda: out.append(sh(*cmd, "--json"))))
            s_ours = s_ours or du(WORK / "repo")  # the first backup's
            t_par, s_par = anchor(p, databases, 2)
            seq.append(t_seq)
            par.append(t_par)
            result = json.loads(out[-1])["backups"][0]
            print(
                f"  round {n}: pg_dump -Fc {t_seq:.1f}s, dbrunbook {ours[-1]:.1f}s ({result['seconds']}s inside the "
                f"task), pg_dump -Fc two at a time {t_par:.1f}s",
                flush=True,
            )
            peak = max(peak, rss.peak_kib)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)

    t_ours, t_seq, t_par = (statistics.median(x) for x in (ours, seq, par))
    print(f"medians of {args.rounds} rounds:")
    print(f"logical  dbrunbook {t_ours:7.1f}s  pg_dump -Fc {t_seq:7.1f}s  ratio {t_ours / t_seq:.2f}  (goal <= 1.15)")
    print(
        f"logical  dbrunbook {t_ours:7.1f}s  pg_dump -Fc x2 {t_par:7.1f}s  ratio {t_ours / t_par:.2f}  "
        "(2 at a time, like --jobs=2; for information)"
    )
    print(
        f"stored   dbrunbook {s_ours / 2**20:7.0f} MiB (zstd -1 + age; {result['plain_mib']} MiB of dumps)  "
        f"pg_dump -Fc {s_seq / 2**20:7.0f} MiB (gzip; {s_par / 2**20:.0f} MiB two at a time)"
    )
    print(f"peak RSS of dbrunbook-host logical-push: {peak / 1024:.0f} MiB (goal < 300)")


if __name__ == "__main__":
    main()
