"""What a shadow-table migration needs from an engine, and the plain data both sides share.

The run (``migrate/shadow/``) decides; the engine's :class:`ShadowDialect` knows the catalog and writes the SQL
(``engines/<engine>/shadow*.py``). Everything that crosses between them is one of these dataclasses."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from dbrunbook.execution.sql import DbSession


@dataclass(frozen=True)
class Column:
    """One column as the catalog shows it. ``type`` is the engine's own spelling (``integer``, ``bigint``,
    ``varchar(20)``): what a cast to it is written with."""

    name: str
    type: str
    nullable: bool = True
    generated: bool = False  # computed by the server: never copied, never written
    identity: bool = False  # PostgreSQL identity: copied with OVERRIDING SYSTEM VALUE


@dataclass(frozen=True)
class Names:
    """Every object a run creates, so that cleanup removes exactly these and nothing of the application's."""

    shadow: str  # the new table, in the original's schema
    old: str  # the original, once swapped out
    log: str  # captured keys (PostgreSQL)
    capture: str  # the capture trigger (and its function)
    reverse: str  # the reverse-sync trigger after the cut-over


@dataclass(frozen=True)
class Mapped:
    """A shadow column filled from an original column, cast to the shadow's type when the types differ."""

    target: str
    source: str
    target_type: str
    source_type: str

    @property
    def cast(self) -> bool:
        return self.target_type != self.source_type


@dataclass(frozen=True)
class ColumnMap:
    """How rows go from the original to the shadow, and what the operator's change does to each column."""

    mapped: tuple[Mapped, ...]
    added: tuple[str, ...]  # shadow columns with no source: their default fills them
    dropped: tuple[str, ...]  # original columns whose data is not copied
    generated: tuple[str, ...]  # computed by the server in the shadow

    def explain(self) -> list[str]:
        lines = [f"copy {len(self.mapped)} columns"]
        casts = [m for m in self.mapped if m.cast]
        lines += [f"  {m.source} -> {m.target} (cast {m.source_type} to {m.target_type})" for m in casts]
        lines += [f"  {m.source} renamed to {m.target}" for m in self.mapped if m.source != m.target and not m.cast]
        lines += [f"  new column {c}: filled by its default" for c in self.added]
        lines += [f"  column {c} dropped: its data is not copied" for c in self.dropped]
        lines += [f"  generated column {c}: computed by the server" for c in self.generated]
        return lines


@dataclass(frozen=True)
class CatalogFacts:
    """What the server says exists, read back after a crash: the truth when the recorded phase is stale."""

    table_is_shadow: bool  # the table's name now belongs to the relation created as the shadow
    old_exists: bool
    shadow_exists: bool


@dataclass(frozen=True)
class TableInfo:
    """One table as the catalog shows it before a run: enough to plan, refuse, and rebuild what depends on it."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # primary key, or a NOT NULL unique key: how rows are matched and chunked
    rows_estimate: int
    total_bytes: int
    refusals: tuple[str, ...] = ()  # why a run cannot work on it ("a partitioned table")
    dependents: tuple[str, ...] = ()  # what the cut-over rebuilds, one line each, for the plan

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Chunk:
    """One copied chunk: rows written and the last key copied (as text, None once the copy reached the end)."""

    rows: int
    last_key: tuple[str, ...] | None


@dataclass(frozen=True)
class RangeSum:
    """One key range's checksum on both sides (rows and a 64-bit hash sum of the mapped columns)."""

    after: tuple[str, ...] | None
    upto: tuple[str, ...] | None
    source: tuple[int, int]
    shadow: tuple[int, int]

    @property
    def equal(self) -> bool:
        return self.source == self.shadow


@dataclass(frozen=True)
class Blocker:
    """A session holding a lock the migration waits for."""

    pid: int
    user: str
    application: str
    xact_age_seconds: float | None
    state: str
    idle: bool = False  # holds a transaction open and runs nothing: what --kill-blockers idle ends

    def describe(self) -> str:
        age = "no transaction" if self.xact_age_seconds is None else f"transaction {self.xact_age_seconds:.0f}s old"
        return f"pid {self.pid} ({self.user}, application '{self.application}', {self.state}, {age})"


@dataclass(frozen=True)
class RunTable:
    """One run's objects: the table, its names, the column map. Engines bind their SQL to it."""

    info: TableInfo
    names: Names
    columns: ColumnMap
    run_id: str
    runs_table: str  # the tool state's runs table, qualified
    extra: dict[str, str] = field(default_factory=dict)


Record = Callable[[DbSession], None]
#: a second session to the same server, for a cut-over that needs one
Opener = Callable[[], AbstractContextManager[DbSession]]


class ShadowDialect(Protocol):
    """One engine's shadow-table SQL. Every method runs statements on the session it is given."""

    #: longest identifier in bytes
    max_identifier: int
    #: how the names of the objects a run creates begin
    name_prefix: str
    #: the tool state's tables for runs and their events, qualified
    runs_table: str
    events_table: str
    #: False when one tool state serves the whole server (MariaDB's ``_dbrunbook``): status then lists the runs
    #: of the tables in the database asked for
    state_per_database: bool
    #: True when captured changes wait in a log for :meth:`apply` (PostgreSQL); False when triggers write the
    #: shadow in the application's transaction (MariaDB)
    logs_changes: bool

    def split_name(self, table: str) -> tuple[str, str]:
        """``schema.table`` (or a bare name) as (schema, table); quoted parts allowed."""
        ...

    def default_schema(self, db: DbSession) -> str:
        """Where a bare table name is: PostgreSQL's current schema, MariaDB's current database."""
        ...

    def catalog_facts(self, db: DbSession, run: RunTable) -> CatalogFacts:
        """Which relation holds the table's name now: the truth after a crash during a swap."""
        ...

    def inspect(self, db: DbSession, schema: str, table: str) -> TableInfo:
        """The table's shape, key, size, what depends on it and why a run could not work on it."""
        ...

    def create_shadow(self, db: DbSession, run: RunTable, alter: str) -> tuple[Column, ...]:
        """Create the empty shadow like the table, run the operator's ALTER on it and return its columns."""
        ...

    def install_capture(self, db: DbSession, run: RunTable, lock_timeout: float) -> None:
        """Start capturing the application's writes (under ``lock_timeout``, LockTimeout when not granted)."""
        ...

    def copy_chunk(
        self, db: DbSession, run: RunTable, after: tuple[str, ...] | None, rows: int, record: Callable[[Chunk], None]
    ) -> Chunk:
        """Copy the next ``rows`` keys after ``after`` in one short transaction; ``record`` writes the
        checkpoint in that same transaction."""
        ...

    def apply(self, db: DbSession, run: RunTable, limit: int) -> int:
        """Apply up to ``limit`` captured changes to the shadow; how many were applied."""
        ...

    def backlog(self, db: DbSession, run: RunTable) -> int:
        """Captured changes not applied yet."""
        ...

    def build_indexes(self, db: DbSession, run: RunTable, step: Callable[[str], None]) -> None:
        """Secondary indexes and constraints on the filled shadow, then ANALYZE."""
        ...

    def checksum(self, db: DbSession, run: RunTable, ranges: int) -> list[RangeSum]:
        """Checksum the whole table in about ``ranges`` key ranges, each in one snapshot, pending keys excluded."""
        ...

    def recopy(self, db: DbSession, run: RunTable, bad: RangeSum) -> None:
        """Copy one range again from the original."""
        ...

    def cutover(self, db: DbSession, run: RunTable, lock_timeout: float, record: Record, open_session: Opener) -> None:
        """Swap the shadow in, atomically, and start the reverse sync with no write in between; ``record`` marks
        the run swapped (in the same transaction where the engine has transactional DDL)."""
        ...

    def rollback(self, db: DbSession, run: RunTable, lock_timeout: float, record: Record) -> None:
        """Swap the old table back while it is still in sync."""
        ...

    def cleanup(self, db: DbSession, run: RunTable) -> list[str]:
        """Drop triggers first, then the run's tables; returns what was dropped."""
        ...

    def prepare(self, db: DbSession, info: TableInfo, run_id: str) -> dict[str, str]:
        """What the run must remember about the table's indexes and constraints before it creates anything."""
        ...

    def discard_shadow(self, db: DbSession, run: RunTable, alter: str) -> tuple[Column, ...]:
        """Like :meth:`create_shadow`, but leaves nothing behind: a plan's proof that the ALTER applies."""
        ...

    def preflight(
        self, db: DbSession, info: TableInfo, *, max_xact_age: float, replicas: int, max_lag: float
    ) -> list[str]:
        """What stops a run from starting now: old transactions on the table (named), replicas not streaming or
        lagging, failing archiving. Empty: go."""
        ...

    def load(self, db: DbSession) -> tuple[int, list[float | None]]:
        """Active sessions other than this one, and each streaming replica's lag in seconds (None: unknown)."""
        ...

    def in_sync(self, db: DbSession, run: RunTable) -> bool:
        """After a cut-over: does the old table still hold what the new one holds (in one snapshot)? What a
        rollback checks before it swaps back."""
        ...

    def after_cutover(self, db: DbSession, run: RunTable) -> None:
        """Work outside the cut-over's lock: validate the foreign keys re-pointed NOT VALID."""
        ...

    def terminate(self, db: DbSession, pid: int) -> None:
        """End a blocking session (``--kill-blockers idle``)."""
        ...

    def blockers(self, db: DbSession, run: RunTable) -> list[Blocker]:
        """Sessions holding locks on the table (named when a lock is not granted)."""
        ...
