"""Shadow migrations, planned: pure functions from catalog snapshots to decisions that explain themselves.

Nothing here talks to a server. The run (``run.py``) feeds these functions what the engine's shadow dialect read
from the catalog, and acts on what they return: the names of the objects a run creates, the column map from the
original table to the shadow, the size of the next copy chunk, the phase machine and whether a cut-over may start.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dbrunbook.engines.shadow_base import CatalogFacts, Column, ColumnMap, Mapped, Names
from dbrunbook.errors import MigrationError, PreflightFailed

RUN_ID = re.compile(r"[a-z0-9]{1,12}")


def _fit(prefix: str, table: str, max_len: int) -> str:
    name = prefix + table
    if len(name.encode()) <= max_len:
        return name
    # Too long for the engine: keep a readable start of the table's name and a hash that keeps names apart.
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    room = max_len - len(prefix.encode()) - len(digest) - 1
    head = table.encode()[: max(room, 0)].decode(errors="ignore")
    return f"{prefix}{head}_{digest}"


def names_for(run_id: str, table: str, max_len: int, prefix: str = "__dbr_") -> Names:
    """Names for run ``run_id`` on ``table``, each at most ``max_len`` bytes (63 on PostgreSQL, 64 on MariaDB),
    all starting with the engine's ``prefix``."""
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r}: 1 to 12 of a-z 0-9")
    return Names(
        shadow=_fit(f"{prefix}{run_id}_", table, max_len),
        old=_fit(f"{prefix}{run_id}_old_", table, max_len),
        log=f"{prefix}{run_id}_log",
        capture=f"{prefix}{run_id}_capture",
        reverse=f"{prefix}{run_id}_reverse",
    )


def column_map(
    old: Sequence[Column], new: Sequence[Column], key: Sequence[str], renames: Mapping[str, str] | None = None
) -> ColumnMap:
    """Map the original's columns onto the shadow's (after the operator's ALTER ran on it).

    A column that vanished while another appeared looks like a rename the operator did not tell about: copying
    by name would drop its data silently, so it is refused unless ``renames`` says (``--rename-column``)."""
    renames = dict(renames or {})
    old_by = {c.name: c for c in old}
    new_by = {c.name: c for c in new}
    for source, target in renames.items():
        if source not in old_by:
            raise PreflightFailed(f"--rename-column {source}={target}: the table has no column {source}")
        if target not in new_by:
            raise PreflightFailed(f"--rename-column {source}={target}: after the ALTER there is no column {target}")
    targets = {t: s for s, t in renames.items()}
    mapped: list[Mapped] = []
    for col in new:
        origin: str | None = targets.get(col.name, col.name if col.name not in renames else None)
        if col.generated or origin is None or origin not in old_by or old_by[origin].generated:
            continue
        mapped.append(Mapped(col.name, origin, col.type, old_by[origin].type))
    used = {m.source for m in mapped}
    added = tuple(c.name for c in new if not c.generated and c.name not in {m.target for m in mapped})
    dropped = tuple(c.name for c in old if c.name not in used and not c.generated)
    lost_key = [k for k in key if k not in used]
    if lost_key:
        raise PreflightFailed(f"the ALTER removes key column {', '.join(lost_key)}: rows could not be matched")
    if dropped and added:
        raise PreflightFailed(
            f"column {', '.join(dropped)} disappears and {', '.join(added)} appears: a rename?",
            hint="say --rename-column OLD=NEW to keep the data, or drop and add in two runs",
        )
    return ColumnMap(tuple(mapped), added, dropped, tuple(c.name for c in new if c.generated))


def next_chunk_rows(rows: int, seconds: float, target: float, *, low: int = 100, high: int = 200_000) -> int:
    """The next chunk's rows, so that a chunk takes about ``target`` seconds. It at most doubles (a chunk that
    ran fast on cached pages says little about the next) and shrinks at once when a chunk ran long."""
    if seconds <= 0:
        return min(high, max(low, rows * 2))
    wanted = int(rows * target / seconds)
    return min(high, max(low, min(wanted, rows * 2)))


class Phase(StrEnum):
    CAPTURE = "capture"  # shadow made, capture installed, nothing copied yet
    COPY = "copy"  # copying chunks; the checkpoint says where
    INDEX = "index"  # copy done: secondary indexes and constraints being built
    CHECKSUM = "checksum"
    READY = "ready"  # checksum passed: a cut-over may run
    SWAPPED = "swapped"  # the shadow is the table; the old one is kept in sync for a rollback
    ROLLED_BACK = "rolled_back"
    CLEANED = "cleaned"
    FAILED = "failed"


_NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.CAPTURE: frozenset({Phase.COPY}),
    Phase.COPY: frozenset({Phase.INDEX}),
    Phase.INDEX: frozenset({Phase.CHECKSUM}),
    Phase.CHECKSUM: frozenset({Phase.READY, Phase.COPY}),
    Phase.READY: frozenset({Phase.SWAPPED, Phase.CHECKSUM}),
    Phase.SWAPPED: frozenset({Phase.ROLLED_BACK}),
    Phase.ROLLED_BACK: frozenset(),
    Phase.CLEANED: frozenset(),
    Phase.FAILED: frozenset(),
}


def advance(current: Phase, to: Phase) -> Phase:
    """The phase after ``current``; any phase but ``cleaned`` may fail or be cleaned up."""
    if to in (Phase.FAILED, Phase.CLEANED) and current != Phase.CLEANED:
        return to
    if to not in _NEXT[current]:
        raise MigrationError(f"a run in phase {current} cannot go to {to}")
    return to


def resumable(phase: Phase) -> bool:
    """Phases a ``--resume`` continues from (capture still runs: nothing written by the application was lost)."""
    return phase in (Phase.CAPTURE, Phase.COPY, Phase.INDEX, Phase.CHECKSUM, Phase.READY)


@dataclass(frozen=True)
class Readiness:
    ok: bool
    why: str


def cutover_readiness(phase: Phase, backlog: int, max_backlog: int, checksum_ok: bool) -> Readiness:
    """May the cut-over take its lock now? Only after a passing checksum, and only when the captured backlog is
    small enough to drain while the application waits."""
    if phase != Phase.READY:
        return Readiness(False, f"the run is in phase {phase}, not ready")
    if not checksum_ok:
        return Readiness(False, "no passing checksum since the copy")
    if backlog > max_backlog:
        return Readiness(False, f"{backlog} captured changes wait (at most {max_backlog} are drained under the lock)")
    return Readiness(True, f"checksum passed, {backlog} captured changes to drain under the lock")


def derive_phase(recorded: Phase, facts: CatalogFacts) -> Phase:
    """The phase the catalog proves, for a run killed between a swap and the record of it."""
    if facts.table_is_shadow and facts.old_exists and recorded != Phase.ROLLED_BACK:
        return Phase.SWAPPED
    if recorded == Phase.SWAPPED and not facts.table_is_shadow:
        return Phase.ROLLED_BACK
    return recorded


@dataclass(frozen=True)
class ShadowPlan:
    """What ``migrate.shadow.run`` will do to one table: printed by ``plan`` and by a dry run."""

    table: str
    alter: str
    names: Names
    columns: ColumnMap
    key: tuple[str, ...]
    rows_estimate: int
    total_bytes: int
    free_bytes: int | None
    dependents: tuple[str, ...] = field(default_factory=tuple)  # "view v: re-created after the swap"...

    def steps(self) -> list[str]:
        return [
            f"create {self.names.shadow} like {self.table}, run the ALTER on it: {self.alter}",
            f"capture writes to {self.table} with trigger {self.names.capture}",
            f"copy about {self.rows_estimate} rows by key ({', '.join(self.key)}) in short chunks, checkpointed",
            "build the secondary indexes and constraints, ANALYZE",
            "checksum every key range (differing ranges recopied, at most three times)",
            f"cut over under a short lock: drain the capture, swap names; keep {self.names.old} in sync for a rollback",
        ]

    def explain(self) -> list[str]:
        free = "unknown" if self.free_bytes is None else f"{self.free_bytes} bytes"
        out = [f"{self.table}: about {self.rows_estimate} rows, {self.total_bytes} bytes; free disk {free}"]
        out += self.columns.explain()
        out += [f"  {d}" for d in self.dependents]
        out += [f"{n}. {s}" for n, s in enumerate(self.steps(), start=1)]
        return out


def disk_needed(total_bytes: int) -> int:
    """Free space a run needs: the copy, its indexes, the capture log and WAL of all of it (2.2x the table)."""
    return int(total_bytes * 2.2)


_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str, flag: str) -> float:
    """``100ms``, ``0.5s``, ``2m``, or a bare number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise PreflightFailed(f"{flag} {text!r}: give a positive duration like 100ms, 0.5s, 2m")
    return float(m.group(1)) * _SECONDS[m.group(2) or "s"]
