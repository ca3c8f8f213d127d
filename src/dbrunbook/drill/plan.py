"""Restore drills, the pure part: which backup and which recovery target a drill tries, how a validation
query's answer is judged, and the Prometheus metrics a result becomes.

Everything here takes snapshots (the catalog's manifests, the newest archived log time, the clock) and
returns decisions that say why, so a drill's choice can be read back in its stored result.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dbrunbook.drill.result import DrillCheck
from dbrunbook.engines.capabilities import DrillSupport
from dbrunbook.errors import DrillError
from dbrunbook.repository.manifest import Manifest

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KINDS = ("any", "logical", "physical")


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([smhd])", text)
    if not m:
        raise DrillError(f"duration {text!r} must look like 90s, 15m, 4h or 1d")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def consistent_at(m: Manifest) -> datetime:
    """When a backup's data stands: a dump at its start, a physical copy once it completed."""
    return m.start_time if m.kind == "logical" else m.stop_time


@dataclass(frozen=True)
class DrillAsk:
    """What the operator asked a drill for: ``latest``, ``random`` or an id; ``latest`` or ``random``; a kind;
    the seed that repeats a random choice."""

    backup: str = "latest"
    target: str = "latest"
    kind: str = "any"
    seed: int | None = None


@dataclass(frozen=True)
class DrillChoice:
    """The backup a drill restores and its target, and why."""

    backup: Manifest
    target_time: datetime | None  # None: the newest restorable point
    why: str


def choose(
    manifests: Sequence[Manifest],
    drills: DrillSupport,
    *,
    backup: str,
    target: str,
    newest_point: datetime | None,
    rng: random.Random,
    kind: str = "any",
) -> DrillChoice:
    """Pick the backup (``latest``, ``random`` or an id; of one ``kind``: logical, physical — incrementals
    included — or any) and the target (``latest`` or ``random``: a time between the backup's consistent
    point and the newest archived log)."""
    if kind not in KINDS:
        raise DrillError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    candidates = [
        m for m in drills.drillable(manifests) if kind == "any" or (m.kind == "logical") == (kind == "logical")
    ]
    if not candidates:
        raise DrillError(
            "no backup a drill can restore" + (f" of kind {kind}" if kind != "any" else "") + drills.drillable_hint
        )
    if backup == "latest":
        chosen, why = candidates[-1], "the newest backup" if kind == "any" else f"the newest {kind} backup"
    elif backup == "random":
        chosen = rng.choice(candidates)
        why = f"picked at random among {len(candidates)} backups"
    else:
        found = [m for m in candidates if m.backup_id == backup]
        if not found:
            raise DrillError(f"no drillable backup {backup!r} (newest: {candidates[-1].backup_id})")
        chosen, why = found[0], "asked for by id"
    if target == "latest":
        return DrillChoice(chosen, None, f"{why}; recovered to the newest restorable point")
    if target != "random":
        raise DrillError(f"--target must be latest or random, not {target!r}")
    start = consistent_at(chosen)
    if newest_point is None or newest_point <= start + timedelta(seconds=2):
        return DrillChoice(chosen, None, f"{why}; no archived log after it, so recovered to its own end")
    span = (newest_point - start).total_seconds()
    # Whole seconds: binlog timestamps have one-second resolution, and a round target reads better.
    when = start + timedelta(seconds=int(1 + rng.random() * (span - 1)))
    return DrillChoice(chosen, when, f"{why}; target picked at random inside its recovery window")


def judge(actual: object, compare: str, expect: object) -> bool:
    """A validation query's first value against the inventory's expectation: numbers compared as numbers,
    anything else as text."""
    left: object
    right: object
    try:
        left, right = float(str(actual)), float(str(expect))
    except ValueError:
        left, right = str(actual), str(expect)
    ops = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    if compare not in ops:
        raise DrillError(f"unknown comparison {compare!r}")
    try:
        return bool(ops[compare](left, right))
    except TypeError:
        return False


def verdict(
    checks: Sequence[DrillCheck], rto: float, rpo: float | None, rto_target: str | None, rpo_target: str | None
) -> tuple[bool, str]:
    """The drill's outcome and the one line that says why; the first failure wins."""
    for check in checks:
        if not check.ok:
            return False, f"{check.name}: {check.detail}"
    if rto_target and rto > parse_duration(rto_target).total_seconds():
        return False, f"RTO {rto:.0f}s is above the target {rto_target}"
    if rpo_target and rpo is not None and rpo > parse_duration(rpo_target).total_seconds():
        return False, f"RPO {rpo:.0f}s is above the target {rpo_target}"
    return True, f"restored and validated in {rto:.0f}s" + (f", RPO {rpo:.0f}s" if rpo is not None else "")
