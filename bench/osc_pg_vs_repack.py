"""Rebuild ``pgbench_accounts`` (scale 30, fillfactor 90) on the sandbox's PostgreSQL under ``pgbench -R``:
``invoke migrate.shadow.run`` against pg_repack (``postgresql-15-repack``), in the same run.

Prints wall time, the longest stall a 5 ms probe saw, WAL written, the oldest transaction each tool kept open,
the share of pgbench's fixed rate that got through, and dbrunbook / pg_repack ratios (lower is better). Targets
(issue 14): wall <= 1.5x, stall <= 1.0x, WAL <= 1.3x, oldest snapshot <= 2 s, pgbench keeps >= 95%.

Installing postgresql-15-repack upgrades the server packages: restart the sandbox when ``SHOW server_version``
and ``pg_config --version`` differ (the script checks).

    .venv/bin/python bench/osc_pg_vs_repack.py [--scale 30] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import psycopg
from _common import INVOKE, REPO, Primary, as_user, sandbox

DB = "bench_osc"


class Probe(threading.Thread):
    """A one-row read every 5 ms, and the age of the oldest transaction of each tool, on their own connections."""

    def __init__(self, conninfo: dict[str, object]) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(**conninfo, autocommit=True)  # type: ignore[arg-type]
        self.watch = psycopg.connect(**conninfo, autocommit=True)  # type: ignore[arg-type]
        self.stop = threading.Event()
        self.longest = 0.0
        self.oldest: dict[str, float] = {}

    def run(self) -> None:
        last, n = time.monotonic(), 0
        while not self.stop.is_set():
            self.conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
            now = time.monotonic()
            self.longest, last, n = max(self.longest, now - last), now, n + 1
            if n % 20 == 0:
                for app, age in self.watch.execute(
                    "SELECT application_name, max(extract(epoch FROM now() - xact_start)) FROM pg_stat_activity "
                    "WHERE application_name IN ('pg_repack', 'dbrunbook') AND xact_start IS NOT NULL GROUP BY 1"
                ):
                    self.oldest[app] = max(self.oldest.get(app, 0.0), float(age or 0))
            time.sleep(0.005)


def wal_lsn(p: Primary) -> int:
    hi, lo = p.sql("SELECT pg_current_wal_lsn()").split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def measure(p: Primary, name: str, argv: list[str], conninfo: dict[str, object], rate: int) -> dict[str, float]:
    pgbench = subprocess.Popen(
        as_user(p.user, [*p.tool("pgbench"), "-n", "-c", "2", "-j", "1", "-R", str(rate), "-T", "3600", "-P", "1", DB]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **p.env},
    )
    time.sleep(2)
    probe = Probe(conninfo)
    probe.start()
    wal, start = wal_lsn(p), time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    wall = time.monotonic() - start
    wal = wal_lsn(p) - wal
    probe.stop.set()
    pgbench.terminate()
    out, _ = pgbench.communicate(timeout=30)
    if res.returncode:
        raise SystemExit(f"{name} failed: {(res.stderr or res.stdout)[-800:]}")
    tps = [float(x) for x in re.findall(r"([\d.]+) tps,", out)]
    kept = (sum(tps) / len(tps) / rate) if tps else 0.0
    app = "pg_repack" if "repack" in name else "dbrunbook"
    print(f"{name}: {wall:.1f}s", flush=True)
    return {"wall": wall, "stall": probe.longest, "wal": wal, "oldest": probe.oldest.get(app, 0.0), "kept": kept}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=30)
    ap.add_argument("--rate", type=int, default=200)
    args = ap.parse_args()
    dev, pg, p = sandbox()
    running = p.sql("SHOW server_version").split()[0]
    installed = subprocess.run(["pg_config", "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    if running != installed:
        raise SystemExit(f"the server runs {running}, the binaries are {installed}: restart the sandbox first")
    p.sql(f"DROP DATABASE IF EXISTS {DB}")
    p.run("createdb", DB)
    print(f"pgbench -i -s {args.scale} -F 90 ...", flush=True)
    p.run("pgbench", "-i", "-q", "-s", str(args.scale), "-F", "90", DB)
    p.sql("CREATE EXTENSION pg_repack", db=DB)
    password = Path(pg["credentials"]["password"].removeprefix("file:")).read_text().strip()
    conninfo = {"host": "127.0.0.1", "port": p.port, "user": "postgres", "password": password, "dbname": DB}
    # PGPASSFILE names a 0600 file; the password itself never reaches argv.
    tool = ["env", f"PGPASSFILE={p.env['PGPASSFILE']}", *p.tool("pg_repack"), "-d", DB, "-t", "pgbench_accounts"]
    repack = measure(p, "pg_repack", as_user(p.user, tool), conninfo, args.rate)
    ours = measure(
        p,
        "dbrunbook",
        [
            INVOKE,
            "migrate.shadow.run",
            "--cluster",
            "pg-main",
            "--database",
            DB,
            "--table",
            "public.pgbench_accounts",
            "--alter",
            "SET (fillfactor = 90)",
            "--yes",
            "--json",
        ],
        conninfo,
        args.rate,
    )
    print(json.dumps({"pg_repack": repack, "dbrunbook": ours}, indent=2))
    rows = args.scale * 100_000
    print(f"pgbench_accounts {rows} rows under pgbench -R {args.rate}")
    for key, label, goal in (("wall", "wall", "<= 1.5"), ("stall", "stall", "<= 1.0"), ("wal", "WAL", "<= 1.3")):
        ratio = ours[key] / max(repack[key], 1e-9)
        print(
            f"{label:<6} dbrunbook {ours[key]:>14.3f}  pg_repack {repack[key]:>14.3f}  ratio {ratio:.2f} (goal {goal})"
        )
    print(f"oldest transaction  dbrunbook {ours['oldest']:.1f}s  pg_repack {repack['oldest']:.1f}s (goal <= 2 s)")
    print(f"pgbench kept        dbrunbook {ours['kept']:.0%}  pg_repack {repack['kept']:.0%} (goal >= 95%)")
    p.sql(f"DROP DATABASE {DB} WITH (FORCE)")
    del dev


if __name__ == "__main__":
    main()
