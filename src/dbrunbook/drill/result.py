"""A drill's result, typed: what ``drill.run`` prints, what the repository stores under ``drills/`` and what
``drill.history``, ``drill.report`` and the metrics read back.

The document's shape is a contract (scripts, dashboards and old stored results read it), so ``as_dict`` renders
exactly the keys, order and values drills have always written, and ``from_dict`` reads any stored result back,
older ones included, filling what they lack with neutral values instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dbrunbook.engines.capabilities import Check
from dbrunbook.engines.restore_result import BinlogReached, Reached, WalReached
from dbrunbook.repository.manifest import Manifest

Plain = int | float | str | None  # a validation query's answer as JSON holds it


@dataclass(frozen=True)
class Validation:
    """One of the inventory's validation queries, run on the copy: its first value and the judgement on it."""

    name: str
    ok: bool
    actual: Plain
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "actual": self.actual, "detail": self.detail}


DrillCheck = Check | Validation


def check_from(doc: Mapping[str, object]) -> DrillCheck:
    """A stored check: a validation carries its ``actual`` value; any other integer is a count of a Check."""
    name, ok, detail = str(doc.get("name", "")), bool(doc.get("ok")), str(doc.get("detail", ""))
    if "actual" in doc:
        actual = doc["actual"]
        return Validation(name, ok, actual if isinstance(actual, int | float | str) else None, detail)
    counts = {k: v for k, v in doc.items() if k not in ("name", "ok", "detail") and isinstance(v, int)}
    return Check(name, ok, detail, counts)


def reached_from(doc: Mapping[str, object]) -> Reached | None:
    """What replay reached, from a restore's report or a stored result's ``reached`` (None: it says nothing)."""
    if "reached_gtid" in doc:
        files = doc.get("binlogs_replayed")
        binlogs = None if files is None else tuple(str(f) for f in files) if isinstance(files, list) else (str(files),)
        return BinlogReached(str(doc["reached_gtid"]), binlogs)
    if "reached_lsn" in doc or "reached_time" in doc:
        return WalReached(_text(doc.get("reached_lsn")), _text(doc.get("reached_time")))
    return None


@dataclass(frozen=True)
class DrillPlace:
    """Where the drill restored: a host (``local``: this machine), the data directory and the port."""

    host: str
    data_dir: str
    port: int


@dataclass(frozen=True)
class DrillPick:
    """The backup and target the drill chose, why, and what they measure: the backup's age and stored size,
    and the RPO (the age of the newest restorable point; None when nothing is archived)."""

    backup: str
    kind: str
    target_time: datetime | None  # None: the newest restorable point
    why: str
    backup_age_seconds: float
    backup_size_bytes: int
    rpo_seconds: float | None

    @property
    def target(self) -> str:
        """The target as printed and stored: an ISO time, or ``latest``."""
        return self.target_time.isoformat() if self.target_time else "latest"


@dataclass(frozen=True)
class DrillRecovery:
    """The restore once it succeeded: its RTO and where replay stopped."""

    rto_seconds: float
    reached: Reached | None


@dataclass(frozen=True)
class DrillResult:
    """One drill of one cluster, passed or failed. ``place``, ``pick`` and ``recovery`` are None when the drill
    failed before it got there; ``stored_as`` is set once the result is stored, ``heartbeat`` by drill.run."""

    cluster: str
    engine: str
    started: datetime
    rto_target: str | None
    rpo_target: str | None
    tool_version: str
    checks: tuple[DrillCheck, ...]
    place: DrillPlace | None
    pick: DrillPick | None
    recovery: DrillRecovery | None
    reason: str
    torn_down: bool
    ok: bool
    ended: datetime
    duration_seconds: float
    teardown_problem: str | None = None
    exit_code: int | None = None
    stored_as: str | None = None
    heartbeat: str | None = None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "cluster": self.cluster,
            "engine": self.engine,
            "started": self.started.isoformat(),
            "rto_target": self.rto_target,
            "rpo_target": self.rpo_target,
            "tool_version": self.tool_version,
            "checks": [c.as_dict() for c in self.checks],
        }
        if self.place is not None:
            doc.update(host=self.place.host, data_dir=self.place.data_dir, port=self.place.port)
        if (pick := self.pick) is not None:
            doc.update(
                backup=pick.backup,
                kind=pick.kind,
                target_time=pick.target,
                why=pick.why,
                backup_age_seconds=pick.backup_age_seconds,
                backup_size_bytes=pick.backup_size_bytes,
                rpo_seconds=pick.rpo_seconds,
            )
        if (recovery := self.recovery) is not None:
            doc["rto_seconds"] = recovery.rto_seconds
            doc["reached"] = recovery.reached.as_dict() if recovery.reached else {}
        doc.update(reason=self.reason, torn_down=self.torn_down)
        if self.teardown_problem is not None:
            doc["teardown_problem"] = self.teardown_problem
        doc.update(ok=self.ok, ended=self.ended.isoformat(), duration_seconds=self.duration_seconds)
        for key, value in (("exit_code", self.exit_code), ("stored_as", self.stored_as), ("heartbeat", self.heartbeat)):
            if value is not None:
                doc[key] = value
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> DrillResult:
        """A stored result (JSON read back from the repository): tolerant of older results without newer keys."""
        started = datetime.fromisoformat(doc["started"])
        return cls(
            cluster=str(doc.get("cluster", "")),
            engine=str(doc.get("engine", "")),
            started=started,
            rto_target=_text(doc.get("rto_target")),
            rpo_target=_text(doc.get("rpo_target")),
            tool_version=str(doc.get("tool_version", "")),
            checks=tuple(check_from(c) for c in doc.get("checks") or () if isinstance(c, Mapping)),
            place=_place_from(doc),
            pick=_pick_from(doc),
            recovery=_recovery_from(doc),
            reason=str(doc.get("reason", "")),
            torn_down=bool(doc.get("torn_down", False)),
            ok=bool(doc.get("ok", False)),
            ended=datetime.fromisoformat(doc["ended"]) if doc.get("ended") else started,
            duration_seconds=_number(doc.get("duration_seconds")) or 0.0,
            teardown_problem=_text(doc.get("teardown_problem")),
            exit_code=int(doc["exit_code"]) if doc.get("exit_code") is not None else None,
            stored_as=_text(doc.get("stored_as")),
            heartbeat=_text(doc.get("heartbeat")),
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object) -> float | None:
    """A stored number as JSON held it: an int stays an int, so reading a result back never reformats it."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _place_from(doc: Mapping[str, Any]) -> DrillPlace | None:
    if "host" not in doc:
        return None
    return DrillPlace(str(doc["host"]), str(doc.get("data_dir", "")), int(doc.get("port") or 0))


def _pick_from(doc: Mapping[str, Any]) -> DrillPick | None:
    if "backup" not in doc:
        return None
    target = doc.get("target_time")
    return DrillPick(
        backup=str(doc["backup"]),
        kind=str(doc.get("kind", "")),
        target_time=datetime.fromisoformat(target) if target and target != "latest" else None,
        why=str(doc.get("why", "")),
        backup_age_seconds=_number(doc.get("backup_age_seconds")) or 0.0,
        backup_size_bytes=int(doc.get("backup_size_bytes") or 0),
        rpo_seconds=_number(doc.get("rpo_seconds")),
    )


def _recovery_from(doc: Mapping[str, Any]) -> DrillRecovery | None:
    rto = _number(doc.get("rto_seconds"))
    if rto is None:
        return None
    reached = doc.get("reached")
    return DrillRecovery(rto, reached_from(reached) if isinstance(reached, Mapping) else None)


@dataclass(frozen=True)
class ReportCluster:
    """What drill.report draws for one cluster: its targets, its drill results and its backups' sizes."""

    name: str
    engine: str
    rto_target: float | None  # seconds
    rpo_target: float | None
    drills: Sequence[DrillResult]
    backups: Sequence[Manifest]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "engine": self.engine,
            "rto_target": self.rto_target,
            "rpo_target": self.rpo_target,
            # A stored result lacks what its drill never reached: the page draws those as empty.
            "drills": [{k: doc.get(k) for k in REPORTED} for doc in (d.as_dict() for d in self.drills)],
            "backups": [
                {"backup_id": b.backup_id, "stop_time": b.stop_time.isoformat(), "stored_bytes": b.total_size}
                for b in self.backups
            ],
        }


REPORTED = ("started", "ok", "backup", "target_time", "rto_seconds", "rpo_seconds", "reason")
