"""A load harness for tests that change a live server under writes: shadow-table migrations, replica
promotion, cut-over and failover tests (wave 2). Test code: it talks to the servers with psycopg 3 and
PyMySQL directly, and runs pgbench and sysbench as local child processes.

What it offers, for PostgreSQL and MariaDB alike (a :class:`Target` says which server and login):

- :func:`pgbench` and :func:`sysbench` start a background write load for ``seconds`` at ``rate``
  transactions per second. :meth:`BenchLoad.stop` ends it early, :meth:`BenchLoad.wait` lets it run out;
  both give a :class:`LoadResult` with the transactions done and the errors seen. pgbench's count comes
  from ``pgbench_history`` (one row per committed transaction), so it is exact even when the run is cut
  short; sysbench's from its summary, or from its per-second reports when it was stopped.
- :class:`LedgerWriter` inserts, updates and deletes rows of a ledger table on a connection of its own and
  logs every *acknowledged* commit (in memory, and in a JSON-lines file when given one). A commit whose
  answer never came (the connection broke during COMMIT) is logged apart as in doubt. :func:`replay`
  turns the log into the expected table; :func:`compare` finds acknowledged writes the table lost. After
  a cut-over, :meth:`LedgerWriter.retarget` moves the writer to the new server.
- :class:`LatencyProbe` runs a tiny statement every 5 ms on a connection of its own and reports the
  longest stall (the longest gap between two answered statements) and latency percentiles.

Passwords never reach argv: pgbench reads a 0600 ``.pgpass`` file (``PGPASSFILE``); sysbench reads a
0600 ``--config-file``. sysbench's config parser cannot quote a password holding both quote characters
and ``#`` (the sandbox's passwords do, on purpose), so :func:`sysbench` first makes a load user of its
own (``dbr_load``, allowed only its benchmark database) with a random hex password.

Typical use::

    with LatencyProbe(target, "orders") as probe, LedgerWriter(target) as ledger:
        migrate(...)
    assert probe.report().longest_stall_ms < 200
    assert compare(replay(ledger.acknowledged), read_ledger(target), ledger.in_doubt_ids()).ok
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from dbrunbook.engines.postgresql.driver import pgpass_line

from .load_target import Engine, Target, drop_database, ensure_database, ident
from .load_writers import (
    Entry,
    LatencyProbe,
    LedgerDiff,
    LedgerWriter,
    ProbeReport,
    compare,
    ledger_ddl,
    load_log,
    read_ledger,
    replay,
)

__all__ = [
    "BenchLoad",
    "Engine",
    "Entry",
    "LatencyProbe",
    "LedgerDiff",
    "LedgerWriter",
    "LoadResult",
    "ProbeReport",
    "Target",
    "compare",
    "drop_database",
    "drop_load_user",
    "ensure_database",
    "ledger_ddl",
    "load_log",
    "pgbench",
    "read_ledger",
    "replay",
    "running",
    "sysbench",
]

LOAD_USER = "dbr_load"


# -- pgbench and sysbench -------------------------------------------------------------------------------


@dataclass
class LoadResult:
    tool: str
    transactions: int
    errors: int
    seconds: float
    completed: bool  # ran its full time (False: stopped early)
    output: str


class BenchLoad:
    """A benchmark tool running as a local child process; its output goes to a file in ``workdir``."""

    def __init__(
        self,
        tool: str,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        summarize: Callable[[str, bool], tuple[int, int]],
    ) -> None:
        self.tool = tool
        self._argv, self._env, self._summarize = argv, env, summarize
        self._out = workdir / f"{tool}.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._stopped = False

    def start(self) -> Self:
        self._started = time.monotonic()
        with open(self._out, "wb") as out:
            self._proc = subprocess.Popen(
                self._argv, env=self._env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> LoadResult:
        """End the load now (SIGINT, SIGKILL after 5 s) and report what it did."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._stopped = True
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._result()

    def wait(self, timeout: float) -> LoadResult:
        assert self._proc is not None
        self._proc.wait(timeout)
        return self._result()

    def _result(self) -> LoadResult:
        output = self._out.read_text(errors="replace")
        completed = not self._stopped and self._proc is not None and self._proc.returncode == 0
        transactions, errors = self._summarize(output, completed)
        return LoadResult(self.tool, transactions, errors, time.monotonic() - self._started, completed, output)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.stop()


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def _setup(argv: list[str], env: dict[str, str]) -> None:
    res = subprocess.run(
        argv, env=env, capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL
    )
    if res.returncode:
        raise AssertionError(f"{argv[0]} {argv[1]} failed ({res.returncode}): {res.stderr.strip()[-500:]}")


def pgbench(
    target: Target, workdir: Path, *, seconds: int, rate: float, clients: int = 2, scale: int = 1, bindir: str = ""
) -> BenchLoad:
    """pgbench's TPC-B-like write load on ``target.database`` (initialised here, so give it a database of
    its own). Returns the load, not started."""
    assert target.engine == "postgresql"
    binary = f"{bindir}/pgbench" if bindir else "pgbench"
    passfile = _private_file(
        workdir / "pgbench.pgpass", pgpass_line(target.port, target.user, target.password.reveal())
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSFILE": str(passfile)}
    conn = ["-h", target.host, "-p", str(target.port), "-U", target.user]
    _setup([binary, "-i", "-q", "-s", str(scale), *conn, target.database], env)
    argv = [binary, "-n", "-T", str(seconds), "-R", str(rate), "-c", str(clients), "-j", "1", "-P", "1", *conn]

    def summarize(output: str, _completed: bool) -> tuple[int, int]:
        # pgbench_history gets one row per committed transaction: exact even when pgbench was killed.
        (committed,) = target.execute("SELECT count(*) FROM pgbench_history")[0]
        failed = re.search(r"number of failed transactions: (\d+)", output)
        aborted = len(re.findall(r"^client \d+ aborted", output, re.M))
        return int(committed), (int(failed.group(1)) if failed else 0) + aborted

    return BenchLoad("pgbench", [*argv, target.database], env, workdir, summarize)


def sysbench(
    admin: Target, workdir: Path, *, seconds: int, rate: float, threads: int = 2, table_size: int = 1000
) -> BenchLoad:
    """sysbench's ``oltp_write_only`` on MariaDB, in database ``admin.database`` (created here) as a load
    user made here. Errors are counted, not fatal (``--mysql-ignore-errors=all``): a failover test wants
    the load to go on through a broken connection. Returns the load, not started."""
    assert admin.engine == "mariadb" and admin.database
    db = ident(admin.database)
    password = secrets.token_hex(16)
    server = admin.on("")
    server.execute(f"CREATE DATABASE IF NOT EXISTS {db}", f"CREATE USER IF NOT EXISTS '{LOAD_USER}'@'127.0.0.1'")
    server.execute(f"ALTER USER '{LOAD_USER}'@'127.0.0.1' IDENTIFIED BY %s", params=(password,))
    server.execute(f"GRANT ALL PRIVILEGES ON {db}.* TO '{LOAD_USER}'@'127.0.0.1'")
    config = _private_file(
        workdir / "sysbench.cfg",
        "".join(
            f"{k}={v}\n"
            for k, v in {
                "db-driver": "mysql",
                "mysql-host": admin.host,
                "mysql-port": admin.port,
                "mysql-user": LOAD_USER,
                "mysql-password": password,
                "mysql-db": db,
                "tables": 1,
            }.items()
        ),
    )
    # --table-size on the command line: sysbench's config file silently ignores it (the table kept 10,000 rows).
    base = ["sysbench", "oltp_write_only", f"--config-file={config}", f"--table-size={table_size}"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for step in ("cleanup", "prepare"):
        _setup([*base, step], env)
    argv = [*base, f"--time={seconds}", f"--rate={rate:g}", f"--threads={threads}", "--report-interval=1"]
    argv += ["--mysql-ignore-errors=all", "run"]

    def summarize(output: str, completed: bool) -> tuple[int, int]:
        done = re.search(r"^\s+transactions:\s+(\d+)", output, re.M)
        if completed and done:
            ignored = re.search(r"^\s+ignored errors:\s+(\d+)", output, re.M)
            reconnects = re.search(r"^\s+reconnects:\s+(\d+)", output, re.M)
            return int(done.group(1)), sum(int(m.group(1)) for m in (ignored, reconnects) if m)
        # Stopped early: no summary, so add up the one-second reports (rates over 1 s intervals).
        tps = sum(float(x) for x in re.findall(r" tps: ([\d.]+)", output))
        errs = sum(float(x) for x in re.findall(r" err/s: ([\d.]+)", output))
        return round(tps), round(errs)

    return BenchLoad("sysbench", argv, env, workdir, summarize)


def drop_load_user(admin: Target) -> None:
    admin.on("").execute(f"DROP USER IF EXISTS '{LOAD_USER}'@'127.0.0.1'")


@contextlib.contextmanager
def running(*loads: BenchLoad) -> Iterator[tuple[BenchLoad, ...]]:
    """Start several loads together; any still running at the end is stopped."""
    for load in loads:
        load.start()
    try:
        yield loads
    finally:
        for load in loads:
            if load.running:
                load.stop()
