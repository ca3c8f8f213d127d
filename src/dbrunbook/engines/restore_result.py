"""What a restore hands back to orchestration, typed: the :class:`RestoreResult` every engine's restore returns
(``restore.run`` prints it, a drill reads where replay reached and the row counts), and the engine-neutral
pieces of it. Each engine's own results live beside its restore (``engines/<engine>/restore_result.py``).

Standard library only: the agent imports :class:`RowCounts` on the database host."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class RowCounts:
    """A restored dump's tables counted after the load (before any replay) against the counts the dump
    recorded: the summary a drill result and ``restore.run --check-rows`` hold."""

    tables: int
    rows: int
    mismatched: int
    mismatches: tuple[str, ...]  # the first few differences, in the operator's words
    seconds: float  # the counting took this long inside the restore: proof, not restore time

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "rows": self.rows,
            "mismatched": self.mismatched,
            "mismatches": list(self.mismatches),
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RowCounts:
        """Read back from the agent's report (JSON)."""
        return cls(
            int(data["tables"]),
            int(data["rows"]),
            int(data["mismatched"]),
            tuple(str(m) for m in data["mismatches"]),
            float(data["seconds"]),
        )

    def mismatch_line(self, verb: str) -> str:
        """``N of M tables <verb>, first <the first difference>``."""
        return f"{self.mismatched} of {self.tables} tables {verb}, first {self.mismatches[0]}"


@dataclass(frozen=True)
class WalReached:
    """Where a restored PostgreSQL's WAL replay stopped: the last replayed LSN and transaction time (either may
    be unknown: nothing replayed)."""

    lsn: str | None
    time: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"reached_lsn": self.lsn, "reached_time": self.time}


@dataclass(frozen=True)
class BinlogReached:
    """Where a restored MariaDB stands: its GTID state after the replay, and the archived binlogs the replay read
    (None: no load or replay ran, the data files are the backup)."""

    gtid: str
    binlogs: tuple[str, ...] | None

    def as_dict(self) -> dict[str, Any]:
        replayed = {} if self.binlogs is None else {"binlogs_replayed": list(self.binlogs)}
        return {**replayed, "reached_gtid": self.gtid}


#: what a drill records as ``reached``
Reached = WalReached | BinlogReached


class RestoreResult(Protocol):
    """What every restore returns (``RestoreMethod.restore``, ``DrillSupport.restore_copy``)."""

    @property
    def reached(self) -> Reached | None:
        """Where replay of the archived log stopped; None when nothing was replayed (a dry run, a dump of one
        database)."""
        ...

    @property
    def row_counts(self) -> RowCounts | None:
        """The restored tables counted against the backup's own counts, when the restore counted them."""
        ...

    def summary_lines(self) -> list[str] | None:
        """The human lines ``restore.run`` prints (None: print the JSON document)."""
        ...

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        ...


class ExplainedPlan(Protocol):
    """A restore plan that explains itself: a dry run prints it."""

    def dry_run_lines(self) -> list[str]: ...

    def as_dict(self) -> dict[str, Any]: ...


def dry_run_lines(backup: str, to: str, data_dir: str, steps: Sequence[str]) -> list[str]:
    """What a restore's dry run prints: where it would restore, then each step."""
    return [f"dry run: restore {backup} to {to}:{data_dir}"] + [f"  - {s}" for s in steps]


@dataclass(frozen=True)
class RestoreDryRun:
    """A physical restore planned, not carried out (``--dry-run``): the plan and the commands it would run."""

    plan: ExplainedPlan
    # The run's own list of planned commands, not a copy: what the restore plans while it unwinds (removing
    # its temporary keys) belongs to the plan it prints.
    commands: Sequence[str]

    @property
    def reached(self) -> Reached | None:
        return None

    @property
    def row_counts(self) -> RowCounts | None:
        return None

    def summary_lines(self) -> list[str] | None:
        return self.plan.dry_run_lines()

    def as_dict(self) -> dict[str, Any]:
        return {**self.plan.as_dict(), "dry_run": True, "plan": list(self.commands)}
