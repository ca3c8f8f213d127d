"""The pure half of a PostgreSQL restore: backup + target + destination -> a plan that explains itself.

Nothing here touches a host or the repository, so the dry run prints the plan and the unit tests check it
without a server. :mod:`dbrunbook.engines.postgresql.restore` carries the plan out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from dbrunbook.engines.postgresql.wal import segment_size
from dbrunbook.engines.restore_result import dry_run_lines
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.errors import RestoreError
from dbrunbook.repository.manifest import Manifest


def recovery_settings(target: RecoveryTarget, restore_command: str, port: int) -> str:
    """Appended to postgresql.auto.conf (read last, so it wins over the copied settings)."""

    def q(v: str) -> str:
        # postgresql.conf strings take backslash escapes (\n, \t, octal; \x is x): a backslash must be
        # doubled, or a value ending in one swallows its closing quote and the server does not start.
        return "'" + v.replace("\\", "\\\\").replace("'", "''").replace("\n", "\\n").replace("\r", "\\r") + "'"

    lines = [
        "# added by dbrunbook restore.run",
        f"restore_command = {q(restore_command)}",
        f"port = {port}",
        # A restored copy must never push its WAL into the source's repository, nor follow its primary.
        "archive_mode = 'off'",
        "primary_conninfo = ''",
        "primary_slot_name = ''",
        "recovery_target_timeline = 'latest'",
    ]
    if target.kind != "latest":
        setting = {
            "time": "recovery_target_time",
            "lsn": "recovery_target_lsn",
            "xid": "recovery_target_xid",
            "name": "recovery_target_name",
        }[target.kind]
        lines += [f"{setting} = {q(str(target.value))}", f"recovery_target_action = {q(target.action)}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RestorePlan:
    cluster: str
    backup_id: str
    backup_stop_time: datetime
    host: str
    data_dir: str
    port: int
    target: RecoveryTarget
    wal_from: str | None
    steps: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)  # backup ids, full first; the last is backup_id
    tablespaces: dict[str, str] = field(default_factory=dict)  # oid -> directory on the target host
    remapped: frozenset[str] = frozenset()  # oids the operator placed with --tablespace
    wal_segment_size: int = 16 << 20  # the source's, from the manifest: names the segment recovery reached
    digests: dict[str, str] = field(default_factory=dict, repr=False)  # backup id -> Manifest.digest()

    def dry_run_lines(self) -> list[str]:
        return dry_run_lines(self.backup_id, self.host, self.data_dir, self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "backup": self.backup_id,
            "backup_stop_time": self.backup_stop_time.isoformat(),
            "to": self.host,
            "data_dir": self.data_dir,
            "port": self.port,
            "target": self.target.describe(),
            "target_action": self.target.action,
            "wal_from": self.wal_from,
            "chain": self.chain,
            "tablespaces": self.tablespaces,
            "steps": self.steps,
        }


def plan_restore(
    manifest: Manifest,
    cluster: str,
    host: str,
    data_dir: str,
    port: int,
    target: RecoveryTarget,
    chain: Sequence[Manifest] = (),
    *,
    tablespaces: dict[str, str] | None = None,
    remap: Sequence[str] = (),
) -> RestorePlan:
    """``chain`` is every backup the restore needs, full first (just ``manifest`` for a full backup).
    ``tablespaces`` are the backup's (oid -> original directory), ``remap`` the operator's OID=DIR."""
    chain = list(chain) or [manifest]
    places = _remap_tablespaces(manifest, dict(tablespaces or {}), remap)
    _check_places(data_dir, places)
    _check_chain(manifest, chain)
    _check_target_time(manifest, target)
    return RestorePlan(
        cluster,
        manifest.backup_id,
        manifest.stop_time,
        host,
        data_dir,
        port,
        target,
        manifest.start_wal,
        _steps(manifest, chain, host, data_dir, port, target, places),
        [m.backup_id for m in chain],
        places,
        frozenset(oid for oid in (m.partition("=")[0] for m in remap)),
        segment_size(manifest),
        {m.backup_id: m.digest() for m in chain},
    )


def _remap_tablespaces(manifest: Manifest, places: dict[str, str], remap: Sequence[str]) -> dict[str, str]:
    """The backup's tablespace directories with the operator's OID=DIR applied."""
    for mapping in remap:
        oid, sep, location = mapping.partition("=")
        if not sep or not location.startswith("/"):
            raise RestoreError(f"--tablespace {mapping!r} must look like OID=/absolute/dir")
        if oid not in places:
            raise RestoreError(
                f"--tablespace {mapping}: backup {manifest.backup_id} has no tablespace {oid} "
                f"(it has: {', '.join(sorted(places)) or 'none'})"
            )
        places[oid] = location
    return places


def _check_places(data_dir: str, places: dict[str, str]) -> None:
    """A tablespace directory may not be, hold or sit inside the data directory or another tablespace:
    the restore would unpack one into the other, and an incremental's cleanup would delete it."""
    named = [("the data directory", PurePosixPath(data_dir))] + [
        (f"tablespace {oid}", PurePosixPath(loc)) for oid, loc in sorted(places.items())
    ]
    for oid, loc in sorted(places.items()):
        if not loc.startswith("/"):
            raise RestoreError(f"tablespace {oid}: {loc!r} is not an absolute path")
    for i, (what_a, a) in enumerate(named):
        for what_b, b in named[i + 1 :]:
            if a == b or a in b.parents or b in a.parents:
                raise RestoreError(f"{what_a} ({a}) and {what_b} ({b}) overlap; give each its own directory")


def _check_chain(manifest: Manifest, chain: Sequence[Manifest]) -> None:
    """A physical restore starts from a full backup and applies each incremental on its parent, in order."""
    if manifest.kind not in ("physical", "incremental"):
        raise RestoreError(f"backup {manifest.backup_id} is {manifest.kind}; this restore path takes physical backups")
    if chain[-1].backup_id != manifest.backup_id or chain[0].kind != "physical":
        raise RestoreError(f"the chain of {manifest.backup_id} does not start with a full backup")
    for before, after in itertools.pairwise(chain):
        if after.kind != "incremental" or after.parent != before.backup_id:
            raise RestoreError(f"backup {after.backup_id} does not build on {before.backup_id}: broken chain")


def _check_target_time(manifest: Manifest, target: RecoveryTarget) -> None:
    """A target time before the backup became consistent cannot be reached from it."""
    if target.kind == "time" and target.value:
        try:
            when = datetime.fromisoformat(target.value)
        except ValueError:
            raise RestoreError(f"--target-time {target.value!r} is not an ISO 8601 timestamp") from None
        if when.tzinfo is not None and when < manifest.stop_time:
            raise RestoreError(
                f"--target-time {target.value} is before backup {manifest.backup_id} became consistent "
                f"({manifest.stop_time.isoformat()}); choose an older backup"
            )


def _steps(
    manifest: Manifest,
    chain: Sequence[Manifest],
    host: str,
    data_dir: str,
    port: int,
    target: RecoveryTarget,
    places: dict[str, str],
) -> list[str]:
    """What the restore will do, in the operator's words (the dry run prints them)."""
    return [
        f"check that {data_dir} on {host} is empty and port {port} is free",
        *(
            f"{'unpack full backup' if m.kind == 'physical' else 'apply incremental'} {m.backup_id} "
            f"({m.plain_size / 2**20:.0f} MiB in {len(m.objects)} objects)"
            for m in chain
        ),
        *(f"restore tablespace {oid} into {location} (must be empty)" for oid, location in sorted(places.items())),
        f"write recovery settings: restore_command from the repository, WAL from {manifest.start_wal}, "
        f"target {target.describe()}, then {target.action}",
        f"start PostgreSQL on port {port} and wait until the target is reached",
    ]
