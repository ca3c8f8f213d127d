"""The ledger writer and the latency probe of the load harness (see load.py)."""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from .load_target import Engine, Target, ident, reconnect, rollback_or_drop

# -- ledger writer --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    seq: int
    op: Literal["insert", "update", "delete"]
    id: int
    val: str | None


@dataclass
class LedgerDiff:
    lost: dict[int, tuple[str | None, str | None]]  # id -> (expected, found): an acknowledged write not there
    checked: int

    @property
    def ok(self) -> bool:
        return not self.lost


def ledger_ddl(engine: Engine, table: str) -> str:
    if engine == "postgresql":
        return f"CREATE TABLE IF NOT EXISTS {ident(table)} (id bigint PRIMARY KEY, val text NOT NULL)"
    return f"CREATE TABLE IF NOT EXISTS {ident(table)} (id BIGINT PRIMARY KEY, val VARCHAR(64) NOT NULL) ENGINE=InnoDB"


def replay(entries: list[Entry]) -> dict[int, str]:
    """The table the acknowledged commits leave behind, applied in commit order."""
    state: dict[int, str] = {}
    for e in sorted(entries, key=lambda e: e.seq):
        if e.op == "delete":
            state.pop(e.id, None)
        else:
            assert e.val is not None
            state[e.id] = e.val
    return state


def read_ledger(target: Target, table: str = "dbr_ledger") -> dict[int, str]:
    return {int(i): str(v) for i, v in target.execute(f"SELECT id, val FROM {ident(table)}")}


def compare(expected: dict[int, str], actual: dict[int, str], in_doubt: Collection[int] = ()) -> LedgerDiff:
    """Every row whose last acknowledged write is not what the table shows; rows an in-doubt commit
    touched are skipped (either outcome is correct for them)."""
    lost = {
        i: (expected.get(i), actual.get(i))
        for i in set(expected) | set(actual)
        if i not in in_doubt and expected.get(i) != actual.get(i)
    }
    return LedgerDiff(lost, len(set(expected) | set(actual)))


class LedgerWriter:
    """A thread that writes to ``table`` one small transaction at a time, every ``interval`` seconds.

    Operations are 60% inserts, 25% updates and 15% deletes of rows it wrote before. A failed statement
    is an error and not logged; a failed COMMIT is *in doubt*. It reconnects after errors, so it goes on
    through a restart or a failover (point it elsewhere with :meth:`retarget`)."""

    def __init__(
        self,
        target: Target,
        table: str = "dbr_ledger",
        *,
        interval: float = 0.005,
        seed: int = 13,
        log: Path | None = None,
    ) -> None:
        self.target, self.table, self.interval = target, ident(table), interval
        self.acknowledged: list[Entry] = []
        self.in_doubt: list[Entry] = []
        self.errors: list[str] = []
        self._rand = random.Random(seed)
        self._live: list[int] = []
        self._next_id = 1
        self._seq = 0
        self._log = log
        self._stop = threading.Event()
        self._retarget = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ledger-{table}", daemon=True)
        target.execute(ledger_ddl(target.engine, table), f"DELETE FROM {self.table}")

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> Self:
        self._stop.set()
        self._thread.join(30)
        return self

    def retarget(self, target: Target) -> None:
        self.target = target
        self._retarget.set()

    def in_doubt_ids(self) -> set[int]:
        return {e.id for e in self.in_doubt}

    def expected(self) -> dict[int, str]:
        return replay(self.acknowledged)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self) -> Entry:
        self._seq += 1
        roll = self._rand.random()
        if not self._live or roll < 0.6:
            self._next_id += 1
            return Entry(self._seq, "insert", self._next_id - 1, f"i{self._seq}")
        row = self._rand.choice(self._live)
        if roll < 0.85:
            return Entry(self._seq, "update", row, f"u{self._seq}")
        return Entry(self._seq, "delete", row, None)

    def _sql(self, e: Entry) -> tuple[str, tuple[Any, ...]]:
        if e.op == "insert":
            return f"INSERT INTO {self.table} (id, val) VALUES (%s, %s)", (e.id, e.val)
        if e.op == "update":
            return f"UPDATE {self.table} SET val = %s WHERE id = %s", (e.val, e.id)
        return f"DELETE FROM {self.table} WHERE id = %s", (e.id,)

    def _run(self) -> None:
        conn: Any = None
        while not self._stop.is_set():
            if self._retarget.is_set() or conn is None:
                self._retarget.clear()
                conn = reconnect(conn, self.target, self.errors, autocommit=False)
                if conn is None:
                    continue
            entry = self._next()
            sql, params = self._sql(entry)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, params)
            except Exception as exc:  # the statement failed: nothing was committed
                self.errors.append(f"{entry.op}: {type(exc).__name__}: {exc}")
                conn = rollback_or_drop(conn)
                continue
            try:
                conn.commit()
            except Exception as exc:  # no answer to COMMIT: it may or may not have happened
                self.errors.append(f"commit: {type(exc).__name__}: {exc}")
                self._forget(entry)
                self.in_doubt.append(entry)
                conn = rollback_or_drop(conn)
                continue
            self._acknowledge(entry)
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def _forget(self, e: Entry) -> None:
        if e.id in self._live:
            self._live.remove(e.id)

    def _acknowledge(self, e: Entry) -> None:
        self.acknowledged.append(e)
        if e.op == "insert":
            self._live.append(e.id)
        elif e.op == "delete":
            self._live.remove(e.id)
        if self._log is not None:
            with open(self._log, "a") as fh:
                fh.write(json.dumps({"seq": e.seq, "op": e.op, "id": e.id, "val": e.val}) + "\n")


def load_log(path: Path) -> list[Entry]:
    """A ledger log file read back (for a writer run in another process)."""
    return [Entry(**json.loads(line)) for line in path.read_text().splitlines() if line]


# -- latency probe --------------------------------------------------------------------------------------


@dataclass
class ProbeReport:
    statements: int
    errors: int
    longest_stall_ms: float  # the longest gap between two answered statements
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    error_samples: list[str] = field(default_factory=list)


class LatencyProbe:
    """Runs ``SELECT 1 FROM <table> LIMIT 1`` (or, with ``update=True``, an UPDATE of the row with the
    smallest id) every ``interval`` seconds on an autocommit connection of its own, which holds no lock
    between statements."""

    def __init__(self, target: Target, table: str, *, update: bool = False, interval: float = 0.005) -> None:
        self.target, self.interval = target, interval
        t = ident(table)
        if update:
            # Through a derived table: MariaDB refuses a subquery on the table an UPDATE changes.
            self.sql = f"UPDATE {t} SET id = id WHERE id = (SELECT m FROM (SELECT min(id) AS m FROM {t}) AS x)"
        else:
            self.sql = f"SELECT 1 FROM {t} LIMIT 1"
        self._latencies: list[float] = []
        self._errors: list[str] = []
        self._longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{table}", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> ProbeReport:
        self._stop.set()
        self._thread.join(30)
        return self.report()

    def report(self) -> ProbeReport:
        lat = sorted(self._latencies) or [0.0]
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
        return ProbeReport(
            statements=len(self._latencies),
            errors=len(self._errors),
            longest_stall_ms=self._longest * 1000,
            p50_ms=q[49] * 1000,
            p95_ms=q[94] * 1000,
            p99_ms=q[98] * 1000,
            max_ms=lat[-1] * 1000,
            error_samples=self._errors[:5],
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        conn: Any = None
        last_ok: float | None = None
        while not self._stop.is_set():
            began = time.monotonic()
            if conn is None:
                conn = reconnect(None, self.target, self._errors, autocommit=True)
                if conn is None:
                    continue
            try:
                with conn.cursor() as cur:
                    cur.execute(self.sql)
                    if cur.description:
                        cur.fetchall()
            except Exception as exc:
                self._errors.append(f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                continue
            done = time.monotonic()
            self._latencies.append(done - began)
            if last_ok is not None:
                self._longest = max(self._longest, done - last_ok)
            last_ok = done
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
        if conn is not None:
            conn.close()
