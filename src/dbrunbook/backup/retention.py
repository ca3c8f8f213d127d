"""Retention: which backups and which WAL a policy keeps. Pure: (backups, policy, now) -> a plan that
says, for every backup, keep or delete and why. ``backup.prune`` executes the plan.

Physical backups (full and incremental) and logical dumps are counted separately, each kind with the
whole policy. Grandfather-father-son rules count like restic's ``--keep-daily`` and friends: ``daily: 7`` keeps the
newest backup of each of the 7 most recent calendar days *that have a backup*, so a week without backups
does not empty the repository. Days, weeks (ISO), months and years are those of the policy's time zone:
a backup at 23:30 in Berlin belongs to that Berlin day, whatever UTC says.

Safety rules, applied after the policy:
- a kept incremental keeps every backup it builds on;
- the newest restorable backup of each kind is always kept, whatever the policy says;
- the PITR window keeps every backup that ends inside it, plus the newest one before it (the base a
  restore to the window's first second starts from);
- WAL is kept from the oldest kept physical backup's start segment; everything before it is expired.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dbrunbook.engines.postgresql.lsn import segment_position
from dbrunbook.errors import ConfigError
from dbrunbook.inventory.model import Retention

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SEGMENT = re.compile(r"^[0-9A-F]{24}$")


@dataclass(frozen=True)
class BackupFacts:
    """What the planner needs of one complete backup (from its manifest)."""

    backup_id: str
    kind: str  # physical | incremental | logical
    stop_time: datetime
    parent: str | None = None
    start_wal: str | None = None
    rolls_forward: bool | None = None  # can a log replay start from it? default: physical kinds only

    @property
    def pitr_base(self) -> bool:
        # MariaDB dumps record their binlog position, so they start a recovery too; pg_dump output cannot.
        return self.rolls_forward if self.rolls_forward is not None else self.kind != "logical"


@dataclass(frozen=True)
class Decision:
    backup_id: str
    keep: bool
    reasons: tuple[str, ...]

    def explain(self) -> str:
        verb = "keep  " if self.keep else "delete"
        return f"{verb} {self.backup_id}: {'; '.join(self.reasons)}"


@dataclass(frozen=True)
class RetentionPlan:
    decisions: list[Decision]  # oldest first
    wal_keep_from: str | None  # first segment still needed; None keeps all WAL
    pitr_from: datetime | None
    notes: list[str] = field(default_factory=list)

    @property
    def delete(self) -> list[str]:
        return [d.backup_id for d in self.decisions if not d.keep]

    @property
    def keep(self) -> list[str]:
        return [d.backup_id for d in self.decisions if d.keep]

    def explain(self) -> list[str]:
        lines = [d.explain() for d in self.decisions]
        lines.append(f"WAL: keep from segment {self.wal_keep_from}" if self.wal_keep_from else "WAL: nothing expires")
        return lines + self.notes


def parse_window(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([smhdw])", text)
    if not m:
        raise ConfigError(f"retention pitr_window {text!r} must look like 7d, 36h or 2w")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"retention timezone {name!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None


def _buckets(
    backups: Sequence[BackupFacts], count: int | None, key: Callable[[datetime], Hashable], tz: ZoneInfo
) -> dict[str, Hashable]:
    """The newest backup of each of the ``count`` most recent buckets that hold one: id -> bucket."""
    if not count:
        return {}
    chosen: dict[str, Hashable] = {}
    seen: set[Hashable] = set()
    for b in sorted(backups, key=lambda b: b.stop_time, reverse=True):
        bucket = key(b.stop_time.astimezone(tz))
        if bucket in seen:
            continue
        seen.add(bucket)
        chosen[b.backup_id] = bucket
        if len(seen) == count:
            break
    return chosen


def _label(bucket: Hashable) -> str:
    if isinstance(bucket, tuple):
        return "-".join(f"{p:02d}" if isinstance(p, int) and p < 100 else str(p) for p in bucket)
    return str(bucket)


def plan_retention(backups: Sequence[BackupFacts], policy: Retention | None, now: datetime) -> RetentionPlan:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ordered = sorted(backups, key=lambda b: (b.stop_time, b.backup_id))
    reasons: dict[str, list[str]] = {b.backup_id: [] for b in ordered}
    restorable, notes = _restorable(ordered)

    counts = () if policy is None else (policy.keep_last, policy.daily, policy.weekly, policy.monthly, policy.yearly)
    if policy is None or (all(v is None for v in counts) and policy.pitr_window is None):
        decisions = [Decision(b.backup_id, True, ("no retention policy",)) for b in ordered]
        return RetentionPlan(decisions, None, None, [*notes, "no retention policy: no complete backup is deleted"])

    # Physical chains and logical dumps are counted apart: a nightly pg_dump must not push the night's base
    # backup out of its daily slot, and each kind keeps its own newest copy.
    families = {
        "physical": [b for b in ordered if b.kind != "logical"],
        "logical": [b for b in ordered if b.kind == "logical"],
    }
    for family in families.values():
        _calendar_reasons(family, policy, reasons)
    pitr_from = None
    if policy.pitr_window:
        pitr_from = now - parse_window(policy.pitr_window)
        notes += _pitr_reasons(ordered, restorable, pitr_from, reasons)
    for kind, family in families.items():
        good = [b for b in restorable if b in family]
        if good and not reasons[good[-1].backup_id]:
            reasons[good[-1].backup_id].append(f"the newest restorable {kind} backup is always kept")
    # Parents of kept backups, newest first, so a chain's reasons propagate to its root.
    for b in reversed(ordered):
        if reasons[b.backup_id] and b.parent in reasons:
            assert b.parent is not None
            if not any(r.startswith("needed by") for r in reasons[b.parent]):
                reasons[b.parent].append(f"needed by {b.backup_id}")

    decisions = [
        Decision(b.backup_id, bool(reasons[b.backup_id]), tuple(reasons[b.backup_id]) or ("outside the policy",))
        for b in ordered
    ]
    starts = [b.start_wal for b in ordered if reasons[b.backup_id] and b.kind != "logical" and b.start_wal]
    wal_keep_from = min(starts, key=segment_position, default=None)
    if wal_keep_from is None:
        notes.append("note: no physical backup is kept, so WAL is left alone")
    return RetentionPlan(decisions, wal_keep_from, pitr_from, notes)


def _restorable(ordered: Sequence[BackupFacts]) -> tuple[list[BackupFacts], list[str]]:
    """Backups whose whole chain is in the repository, and a note for each one that is not."""
    ids = {b.backup_id for b in ordered}
    by_id = {b.backup_id: b for b in ordered}
    ok: list[BackupFacts] = []
    notes: list[str] = []
    for b in ordered:
        cur, steps = b, 0
        while cur.parent is not None and cur.parent in ids and steps <= len(ids):
            cur, steps = by_id[cur.parent], steps + 1
        if cur.parent is None:
            ok.append(b)
        else:
            notes.append(f"note: {b.backup_id} cannot be restored, {cur.parent} of its chain is missing")
    return ok, notes


def _calendar_reasons(ordered: Sequence[BackupFacts], policy: Retention, reasons: dict[str, list[str]]) -> None:
    tz = zone(policy.timezone)
    if policy.keep_last:
        for b in ordered[-policy.keep_last :]:
            reasons[b.backup_id].append(f"one of the last {policy.keep_last}")
    rules: list[tuple[str, int | None, Callable[[datetime], Hashable]]] = [
        ("daily", policy.daily, lambda t: t.date()),
        ("weekly", policy.weekly, lambda t: tuple(t.isocalendar())[:2]),
        ("monthly", policy.monthly, lambda t: (t.year, t.month)),
        ("yearly", policy.yearly, lambda t: t.year),
    ]
    for name, count, key in rules:
        for backup_id, bucket in _buckets(ordered, count, key, tz).items():
            reasons[backup_id].append(f"{name} {_label(bucket)}")


def _pitr_reasons(
    ordered: Sequence[BackupFacts], restorable: Sequence[BackupFacts], start: datetime, reasons: dict[str, list[str]]
) -> list[str]:
    physical = [b for b in restorable if b.pitr_base]
    base = [b for b in physical if b.stop_time <= start]
    notes = []
    if base:
        reasons[base[-1].backup_id].append(f"base of the PITR window from {start:%Y-%m-%d %H:%M %Z}")
    elif physical:
        notes.append(f"note: no backup is older than the PITR window start {start:%Y-%m-%d %H:%M %Z}")
    for b in ordered:
        if b.stop_time > start:
            reasons[b.backup_id].append("inside the PITR window")
    return notes


def expired_wal(names: Sequence[str], keep_from: str | None) -> list[str]:
    """WAL file names (segments, ``.partial`` and ``.backup`` files) before ``keep_from``. Timeline
    history files are never expired: they are tiny and every later timeline needs them.

    Never past the newest segment actually archived: a ``keep_from`` beyond it (a backup claiming a start
    segment that does not exist yet) would otherwise expire the whole archive."""
    if keep_from is None:
        return []
    segments = [n for n in names if SEGMENT.match(n[:24]) and not n.endswith(".history")]
    if not segments:
        return []
    limit = min(segment_position(keep_from), max(segment_position(n) for n in segments))
    return [n for n in segments if segment_position(n) < limit]


INCOMPLETE_GRACE = timedelta(hours=24)


def stale_incomplete(
    newest_object: dict[str, datetime], complete: set[str], now: datetime, grace: timedelta = INCOMPLETE_GRACE
) -> list[str]:
    """Backups that never got a manifest (killed, failed) and whose newest object is older than ``grace``:
    their objects can go. A younger one may be a backup still running."""
    return sorted(i for i, t in newest_object.items() if i not in complete and now - t > grace)
