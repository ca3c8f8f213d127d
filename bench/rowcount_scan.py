"""The row counter a logical MariaDB backup runs over its dump stream, against ``wc -l`` over the same bytes.

A logical backup pays for the counter on the thread that feeds the compressor, so it must read far faster
than mariadb-dump writes (about 40-60 MB/s on this machine). Goal: at least 300 MB/s on MariaDB's layout;
``wc -l`` (a single-pass C line counter) over the same bytes is the anchor. Two layouts:

- MariaDB's (one row per line, what dbrunbook's backups get);
- MySQL's (all rows of an INSERT on one line, counted quote-aware), made from the first by joining each
  INSERT's row lines onto its header line: the bytes mysqldump writes. Information only: dbrunbook's
  MariaDB backups do not take this path.

Both layouts must give the same row total (printed).

    .venv/bin/python bench/rowcount_scan.py [--file DUMP.sql] [--mib 512]

Without ``--file`` it dumps the sandbox's mariadb-main (``mariadb-dump --all-databases``) and repeats the
dump's bytes up to ``--mib`` MiB in memory, so the figure is CPU only (no disk, no server).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from _common import REPO

from dbrunbook.engines.mariadb.rowcount import DumpRowCounter

CHUNK = 1 << 20


def sandbox_dump() -> bytes:
    secret = (REPO / ".sandbox/secrets/mariadb-admin.password").read_text().strip()
    with tempfile.NamedTemporaryFile("w", suffix=".cnf") as cnf:
        os.chmod(cnf.name, 0o600)
        cnf.write(f'[client]\nuser=dbrunbook\npassword="{secret}"\nhost=127.0.0.1\nport=23306\n')
        cnf.flush()
        argv = ["mariadb-dump", f"--defaults-extra-file={cnf.name}", "--single-transaction", "--hex-blob"]
        return subprocess.run([*argv, "--all-databases"], capture_output=True, check=True).stdout


def one_line_layout(dump: bytes) -> bytes:
    """MySQL's layout from MariaDB's: the rows of each INSERT joined onto its header line."""
    return re.sub(rb"VALUES\n\(", b"VALUES (", dump.replace(b"),\n(", b"),("))


def scan(data: bytes) -> tuple[float, int]:
    counter = DumpRowCounter()
    start = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        counter.feed(data[i : i + CHUNK])
    counts = counter.finish() or {}
    return time.perf_counter() - start, sum(sum(t.values()) for t in counts.values())


def wc(data: bytes) -> float:
    with tempfile.TemporaryFile() as fh:
        fh.write(data)
        fh.seek(0)
        start = time.perf_counter()
        subprocess.run(["wc", "-l"], stdin=fh, capture_output=True, check=True)
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", type=Path)
    ap.add_argument("--mib", type=int, default=512)
    args = ap.parse_args()
    base = args.file.read_bytes() if args.file else sandbox_dump()
    for layout, sample in (("MariaDB (row per line)", base), ("MySQL (one line per INSERT)", one_line_layout(base))):
        data = sample * max(1, (args.mib << 20) // max(1, len(sample)))
        seconds, rows = scan(data)
        anchor = wc(data)
        mb = len(data) / 1e6
        print(
            f"{layout}: {mb:.0f} MB, {rows} rows per copy of the dump, {seconds:.2f} s = {mb / seconds:.0f} MB/s; "
            f"wc -l {anchor:.2f} s = {mb / anchor:.0f} MB/s; ratio {seconds / anchor:.2f}"
        )


if __name__ == "__main__":
    main()
