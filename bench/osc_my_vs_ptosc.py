"""Online schema change of a sysbench table on the sandbox's MariaDB under ``sysbench --rate`` load:
``invoke migrate.shadow.run`` against pt-online-schema-change (percona-toolkit), the same ALTER, in the same run.

Prints wall time, the longest stall a 5 ms probe saw, sysbench's errors, and dbrunbook / pt-osc ratios (lower is
better). Targets (issue 14): wall time <= 1.1x, stall <= 1.0x, zero errors for both.

    .venv/bin/python bench/osc_my_vs_ptosc.py [--rows 2000000] [--rate 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymysql
import yaml
from _common import INVOKE, REPO

DB = "dbr_osc_bench"
USER = "dbr_osc"


class Probe(threading.Thread):
    """A one-row read every 5 ms on its own connection: the longest gap between two answers is the stall."""

    def __init__(self, connect: dict[str, object]) -> None:
        super().__init__(daemon=True)
        self.conn = pymysql.connect(**connect, autocommit=True)
        self.stop = threading.Event()
        self.longest = 0.0

    def run(self) -> None:
        last = time.monotonic()
        with self.conn.cursor() as cur:
            while not self.stop.is_set():
                cur.execute("SELECT k FROM sbtest1 WHERE id = 1")
                now = time.monotonic()
                self.longest = max(self.longest, now - last)
                last = now
                time.sleep(0.005)


def sysbench(cfg: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["sysbench", "oltp_write_only", f"--config-file={cfg}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def errors(output: str) -> int:
    return int(sum(float(x) for x in re.findall(r"err/s: ([\d.]+)", output)))


def measure(
    name: str, argv: list[str], cfg: Path, connect: dict[str, object], rate: int, env: dict[str, str]
) -> dict[str, float]:
    load = sysbench(
        cfg, "--time=3600", f"--rate={rate}", "--threads=2", "--report-interval=1", "--mysql-ignore-errors=all", "run"
    )
    time.sleep(2)
    probe = Probe(connect)
    probe.start()
    start = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    wall = time.monotonic() - start
    time.sleep(1)
    probe.stop.set()
    load.terminate()
    out, _ = load.communicate(timeout=30)
    if res.returncode:
        raise SystemExit(f"{name} failed: {(res.stderr or res.stdout)[-800:]}")
    print(f"{name}: {wall:.1f}s; {res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ''}", flush=True)
    return {"wall": wall, "stall": probe.longest, "errors": errors(out)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--rate", type=int, default=100)
    args = ap.parse_args()
    dev = yaml.safe_load((REPO / "inventory/dev.yaml").read_text())
    c = dev["clusters"]["mariadb-main"]
    host = c["hosts"]["mariadb-main-1"]
    admin_pw = Path(c["credentials"]["password"].removeprefix("file:")).read_text().strip()
    admin = pymysql.connect(
        host="127.0.0.1", port=host["port"], user=c["credentials"]["user"], password=admin_pw, autocommit=True
    )
    password = secrets.token_hex(16)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
        cur.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1'")
        cur.execute(f"ALTER USER '{USER}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
        # pt-osc reads the processlist and status; the bench user gets what it needs, nothing of the sandbox's.
        cur.execute(f"GRANT ALL PRIVILEGES ON {DB}.* TO '{USER}'@'127.0.0.1'")
        cur.execute(f"GRANT PROCESS, REPLICATION CLIENT, SUPER ON *.* TO '{USER}'@'127.0.0.1'")
    work = Path(tempfile.mkdtemp(prefix="dbr-osc-bench-"))
    cfg = work / "sysbench.cfg"
    cfg.write_text(
        f"db-driver=mysql\nmysql-host=127.0.0.1\nmysql-port={host['port']}\nmysql-user={USER}\n"
        f"mysql-password={password}\nmysql-db={DB}\ntables=1\n"
    )
    cfg.chmod(0o600)
    defaults = work / "my.cnf"
    defaults.write_text(f"[client]\nuser={USER}\npassword={password}\n")
    defaults.chmod(0o600)
    print(f"preparing sbtest1 with {args.rows} rows ...", flush=True)
    for step in ("cleanup", "prepare"):
        # --table-size on the command line: sysbench's config file ignores it (the harness's too, see the note).
        subprocess.run(
            ["sysbench", "oltp_write_only", f"--config-file={cfg}", f"--table-size={args.rows}", step],
            check=True,
            capture_output=True,
        )
    with admin.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {DB}.sbtest1")
        print(f"sbtest1 holds {cur.fetchone()[0]} rows", flush=True)
    connect = {"host": "127.0.0.1", "port": host["port"], "user": USER, "password": password, "database": DB}
    env = {**os.environ}
    pt = measure(
        "pt-online-schema-change",
        [
            "pt-online-schema-change",
            "--execute",
            "--no-version-check",
            "--recursion-method=none",
            "--alter",
            "ADD COLUMN note1 VARCHAR(20)",
            "--critical-load",
            "Threads_running=1000",
            "--max-load",
            "Threads_running=1000",
            "--no-check-replication-filters",
            f"F={defaults},h=127.0.0.1,P={host['port']},D={DB},t=sbtest1",
        ],
        cfg,
        connect,
        args.rate,
        env,
    )
    ours = measure(
        "dbrunbook",
        [
            INVOKE,
            "migrate.shadow.run",
            "--cluster",
            "mariadb-main",
            "--database",
            DB,
            "--table",
            "sbtest1",
            "--alter",
            "ADD COLUMN note2 VARCHAR(20)",
            "--yes",
            "--json",
        ],
        cfg,
        connect,
        args.rate,
        env,
    )
    print(json.dumps({"pt_osc": pt, "dbrunbook": ours}, indent=2))
    print(f"rows {args.rows} under sysbench --rate {args.rate}")
    ratio = ours["wall"] / pt["wall"]
    print(f"wall   dbrunbook {ours['wall']:7.1f}s  pt-osc {pt['wall']:7.1f}s  ratio {ratio:.2f} (goal <= 1.1)")
    print(
        f"stall  dbrunbook {ours['stall'] * 1000:7.0f}ms pt-osc {pt['stall'] * 1000:7.0f}ms ratio "
        f"{ours['stall'] / max(pt['stall'], 1e-3):.2f} (goal <= 1.0)"
    )
    print(f"errors dbrunbook {ours['errors']:7.0f}   pt-osc {pt['errors']:7.0f}   (goal 0 for both)")
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {DB}")
        cur.execute(f"DROP USER IF EXISTS '{USER}'@'127.0.0.1'")
    sys.exit(0)


if __name__ == "__main__":
    main()
