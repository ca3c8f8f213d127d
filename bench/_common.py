"""Helpers shared by the benchmarks: run a command (as the database OS user), time it, watch a process's
peak RSS, and find or create the >= 1 GB pgbench database ``bench`` on the sandbox's primary."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dbrunbook.engines.postgresql.driver import pgpass_line

REPO = Path(__file__).resolve().parents[1]
INVOKE = str(Path(sys.executable).parent / "invoke")


def as_user(user: str | None, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` (through runuser when we are root; as ourselves otherwise)."""
    return ["runuser", "-u", user, "--", *argv] if user and os.geteuid() == 0 else argv


def sh(*args: str, user: str | None = None, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    argv = as_user(user, list(args))
    res = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if res.returncode:
        raise SystemExit(f"{' '.join(args[:3])} failed: {res.stderr.strip()[-500:]}")
    return res.stdout


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def du(path: Path) -> int:
    """Bytes under ``path`` (apparent size)."""
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


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


@dataclass(frozen=True)
class Primary:
    """pg-main's primary in inventory/dev.yaml, and an environment whose PGPASSFILE logs in as postgres."""

    user: str
    bindir: str
    data_dir: str
    port: int
    home: str
    env: dict[str, str]

    def tool(self, name: str, *args: str) -> list[str]:
        return [f"{self.bindir}/{name}", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *args]

    def run(self, name: str, *args: str) -> str:
        return sh(*self.tool(name, *args), user=self.user, env=self.env)

    def sql(self, query: str, db: str = "postgres") -> str:
        return self.run("psql", "-d", db, "-Atc", query).strip()


def sandbox() -> tuple[dict[str, Any], dict[str, Any], Primary]:
    """(dev inventory, its pg-main cluster, the primary); writes ~/.pgpass for the primary's OS user."""
    dev = yaml.safe_load((REPO / "inventory/dev.yaml").read_text())
    pg = dev["clusters"]["pg-main"]
    host = pg["hosts"]["pg-main-1"]
    password = Path(pg["credentials"]["password"].removeprefix("file:")).read_text().strip()
    user = host["os_user"]
    home = sh("sh", "-c", "printf %s $HOME", user=user)
    pgpass = Path(home) / ".pgpass"
    # On stdin and escaped as libpq reads it: the sandbox's passwords hold quotes, ':' and '\\' on purpose.
    line = pgpass_line("*", "postgres", password, host="*")
    sh("sh", "-c", 'umask 077; cat > "$1"', "sh", str(pgpass), user=user, stdin=line)
    primary = Primary(user, host["bin_dir"], host["data_dir"], host["port"], home, {"PGPASSFILE": str(pgpass)})
    return dev, pg, primary


def ensure_bench_db(p: Primary, scale: int) -> int:
    """Create the pgbench database ``bench`` at ``scale`` (70 is about 1.05 GB) if missing; its size in bytes."""
    if p.sql("SELECT count(*) FROM pg_database WHERE datname = 'bench'") == "0":
        print(f"creating pgbench database, scale {scale} ...", flush=True)
        p.run("createdb", "bench")
        p.run("pgbench", "-i", "-q", "-s", str(scale), "bench")
    return int(p.sql("SELECT pg_database_size('bench')"))


def wait_for_archiver(p: Primary, timeout: float = 600) -> float:
    """Wait until no WAL segment is waiting for archive_command (no .ready file), so that a backlog of
    wal-push processes does not compete with what is measured; the seconds waited."""
    status = Path(p.data_dir) / "pg_wal" / "archive_status"
    start = time.monotonic()
    while any(status.glob("*.ready")) and time.monotonic() - start < timeout:
        time.sleep(0.5)
    if any(status.glob("*.ready")):
        print(f"warning: WAL archiving still has a backlog after {timeout:.0f}s; figures will be noisy", flush=True)
    return time.monotonic() - start
