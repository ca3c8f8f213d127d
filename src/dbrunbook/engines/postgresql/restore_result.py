"""What a PostgreSQL restore returns: a physical restore carried out (where recovery stopped, how long it took),
and a logical restore of one database, done or planned. Dry runs of a physical restore are the engine-neutral
:class:`~dbrunbook.engines.restore_result.RestoreDryRun` of a :class:`RestorePlan`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbrunbook.engines.postgresql.restore_plan import RestorePlan
from dbrunbook.engines.restore_result import Reached, RowCounts, WalReached


@dataclass(frozen=True)
class RecoveryStop:
    """Where a restored server's recovery stopped: promoted (at the target or the end of the WAL), or paused at
    the target, still in recovery."""

    reached: WalReached
    promoted: bool


@dataclass(frozen=True)
class PgRestored:
    """A physical restore carried out: the server runs on the plan's port."""

    plan: RestorePlan
    stop: RecoveryStop
    rto_seconds: float
    log: str  # the restored server's log file
    keys_on_host: str | None  # the private keys' directory left on the host (a paused copy needs them)
    warning: str | None = None  # keys that should have been removed but could not be

    @property
    def reached(self) -> Reached | None:
        return self.stop.reached

    @property
    def row_counts(self) -> RowCounts | None:
        return None

    def summary_lines(self) -> list[str] | None:
        state = "promoted" if self.stop.promoted else "paused at the target"
        return [
            f"restored {self.plan.backup_id} on {self.plan.host} port {self.plan.port} ({state}) in "
            f"{self.rto_seconds}s; reached LSN {self.stop.reached.lsn}, last transaction {self.stop.reached.time}"
        ]

    def as_dict(self) -> dict[str, Any]:
        out = {
            **self.plan.as_dict(),
            **self.stop.reached.as_dict(),
            "promoted": self.stop.promoted,
            "paused": not self.stop.promoted,
            "rto_seconds": self.rto_seconds,
            "log": self.log,
            "keys_on_host": self.keys_on_host,
        }
        return out if self.warning is None else {**out, "warning": self.warning}


@dataclass(frozen=True)
class PgLogicalRestored:
    """One database of a logical backup restored into a new database."""

    backup: str
    to: str
    port: int
    source_database: str
    database: str

    @property
    def reached(self) -> Reached | None:
        return None

    @property
    def row_counts(self) -> RowCounts | None:
        return None

    def summary_lines(self) -> list[str] | None:
        return None  # the document itself

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup": self.backup,
            "to": self.to,
            "port": self.port,
            "source_database": self.source_database,
            "database": self.database,
        }


@dataclass(frozen=True)
class PgLogicalPlan:
    """A logical restore planned, not carried out (``--dry-run``)."""

    backup: str
    to: str
    database: str
    steps: tuple[str, ...]

    @property
    def reached(self) -> Reached | None:
        return None

    @property
    def row_counts(self) -> RowCounts | None:
        return None

    def summary_lines(self) -> list[str] | None:
        return None  # the document itself

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "backup": self.backup,
            "to": self.to,
            "database": self.database,
            "steps": list(self.steps),
        }
