"""What a MariaDB restore returns once carried out: the plan, what the load and replay did, where the server
stands and how to reach and stop it. A dry run is the engine-neutral
:class:`~dbrunbook.engines.restore_result.RestoreDryRun` of a :class:`MyRestorePlan`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbrunbook.engines.restore_result import BinlogReached, Reached, RowCounts

if TYPE_CHECKING:
    from dbrunbook.engines.mariadb.host import Replay
    from dbrunbook.engines.mariadb.restore import MyRestorePlan


@dataclass(frozen=True)
class MyRestored:
    """A restored MariaDB server, left running on its own port and data directory."""

    plan: MyRestorePlan
    replay: Replay | None  # None: nothing loaded or replayed (the data files are the backup, no binlog after it)
    reached_gtid: str  # the server's GTID state: the backup's, moved on by what the replay logged
    rto_seconds: float
    socket: str
    log: str  # the restored server's log file
    stop: str  # the shell line that stops it

    @property
    def reached(self) -> Reached | None:
        return BinlogReached(self.reached_gtid, None if self.replay is None else tuple(self.replay.files))

    @property
    def row_counts(self) -> RowCounts | None:
        return None if self.replay is None else self.replay.row_counts

    def summary_lines(self) -> list[str] | None:
        counted = self.row_counts
        lines = [f"row counts of {counted.tables} tables ({counted.rows} rows) match the dump's"] if counted else []
        replayed = 0 if self.replay is None else len(self.replay.files)
        return [
            *lines,
            f"restored {self.plan.backup_id} on {self.plan.host} port {self.plan.port} in {self.rto_seconds}s; "
            f"replayed {replayed} binlogs up to {self.plan.target.describe()}; "
            f"reached GTID {self.reached_gtid or '-'}",
            f"  socket {self.socket}; stop it with: {self.stop}",
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.plan.as_dict(),
            **({} if self.replay is None else self.replay.as_dict()),
            "reached_gtid": self.reached_gtid,
            "rto_seconds": self.rto_seconds,
            "socket": self.socket,
            "log": self.log,
            "stop": self.stop,
        }
