"""The keyring: which identity each backup and WAL file needs, and key rotation.

A backup's manifest records the recipients its objects were encrypted to, so backups need no download.
WAL files carry no manifest: their age headers are read (the first few KiB of each object, in parallel)
and tried against each identity, from the oldest backup's start segment on. Older WAL is not needed by
any restore.

Rotation: the new recipient replaces the old ones for every object written from now on (WAL pushed by
the primary included: its host config is rewritten at once), while the old identities stay in the
keyring so backups made before the rotation still restore. ``keys.status`` then says, for each identity,
how many backups and WAL files only it can open; at zero, it can leave the keyring.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dbrunbook.backup.retention import expired_wal
from dbrunbook.engines.postgresql.lsn import segment_position
from dbrunbook.errors import ConfigError, EncryptionError, RepositoryError
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.crypto import HEADER_PROBE, generate_identity, header_openers, parse_identities, recipient_of
from dbrunbook.repository.logs import name_of
from dbrunbook.repository.manifest import Manifest
from dbrunbook.repository.storage import Storage


@dataclass(frozen=True)
class IdentityNeeds:
    """One identity of the keyring: whether new objects are encrypted to it, what only it opens, and
    whether it can leave the keyring (together with the other removable ones)."""

    recipient: str
    writes_new_objects: bool
    only_key_for_backups: int
    only_key_for_wal: int
    removable: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "writes_new_objects": self.writes_new_objects,
            "only_key_for_backups": self.only_key_for_backups,
            "only_key_for_wal": self.only_key_for_wal,
            "removable": self.removable,
        }


@dataclass(frozen=True)
class BackupKeys:
    """A backup's recipients (from its manifest) and the identities of the keyring that open it."""

    backup_id: str
    recipients: tuple[str, ...]
    opened_by: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "recipients": list(self.recipients), "opened_by": list(self.opened_by)}


@dataclass(frozen=True)
class WalRange:
    """A run of consecutive archived WAL files that the same identities open."""

    opened_by: tuple[str, ...]
    first: str
    last: str
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {"opened_by": list(self.opened_by), "first": self.first, "last": self.last, "count": self.count}


@dataclass(frozen=True)
class KeyStatus:
    """``keys.status`` of one cluster: which identity each backup and WAL file needs."""

    cluster: str
    recipients: tuple[str, ...]
    identities: tuple[IdentityNeeds, ...]
    backups: tuple[BackupKeys, ...]
    wal: tuple[WalRange, ...]
    unreadable: tuple[str, ...]  # "backup <id>" or "WAL <name>": what no identity opens
    recipients_without_identity: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "recipients": list(self.recipients),
            "identities": [i.as_dict() for i in self.identities],
            "backups": [b.as_dict() for b in self.backups],
            "wal": [w.as_dict() for w in self.wal],
            "unreadable": list(self.unreadable),
            "recipients_without_identity": list(self.recipients_without_identity),
        }


@dataclass(frozen=True)
class Rotation:
    """What ``keys.rotate`` did: the keyring afterwards, the new recipient, the recipients it no longer
    encrypts to, and whether the primary's WAL archiving was switched over."""

    status: KeyStatus
    new_recipient: str
    retired: tuple[str, ...]
    wal_host_config_updated: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.status.as_dict(),
            "new_recipient": self.new_recipient,
            "retired": list(self.retired),
            "wal_host_config_updated": self.wal_host_config_updated,
        }


@dataclass(frozen=True)
class RotationPlan:
    """What ``keys.rotate --dry-run`` says it would do."""

    cluster: str
    identity_file: str
    would_retire: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "dry_run": True,
            "identity_file": self.identity_file,
            "would_retire": list(self.would_retire),
        }


def _probe(storage: Storage, key: str, identities: Sequence[str]) -> list[str] | str:
    try:
        with storage.open(key) as fh:
            head = fh.read(HEADER_PROBE)
        return header_openers(head, identities)
    except (RepositoryError, EncryptionError) as exc:
        return exc.message


def key_status(
    cluster: str,
    storage: Storage,
    catalog: Catalog,
    identities: Sequence[str],
    recipients: Sequence[str],
    *,
    jobs: int = 8,
) -> KeyStatus:
    public = {recipient_of(i): i for i in identities}
    needs: dict[str, dict[str, int]] = {r: {"backups": 0, "wal": 0} for r in public}
    unreadable: list[str] = []
    backups: list[BackupKeys] = []
    # Refused manifests count too: an older dbrunbook's backup waiting for backup.sign still needs its key.
    considered = [*catalog.manifests, *(r.manifest for r in catalog.refused if r.manifest is not None)]
    for m in considered:
        openers = sorted(set(m.recipients) & set(public))
        if not openers:
            unreadable.append(f"backup {m.backup_id}")
        elif len(openers) == 1:
            needs[openers[0]]["backups"] += 1
        backups.append(BackupKeys(m.backup_id, tuple(m.recipients), tuple(openers)))

    wal_keys = _wal_a_restore_may_read(storage, considered)
    ranges = _wal_ranges(storage, wal_keys, identities, needs, unreadable, jobs=jobs)
    opener_sets: list[set[str]] = [set(b.opened_by) for b in backups] + [set(w.opened_by) for w in ranges]
    # A manifest that could not even be read says nothing about what it needs: then no key is removable.
    blind = any(r.manifest is None for r in catalog.refused)
    removable = set() if blind else _removable_together(needs, recipients, opener_sets)
    return KeyStatus(
        cluster,
        tuple(recipients),
        tuple(
            IdentityNeeds(r, r in recipients, n["backups"], n["wal"], removable=r in removable)
            for r, n in needs.items()
        ),
        tuple(backups),
        tuple(ranges),
        tuple(unreadable),
        tuple(r for r in recipients if r not in public),
    )


def _wal_a_restore_may_read(storage: Storage, considered: Sequence[Manifest]) -> list[str]:
    """WAL a restore may still read: what retention would not expire (from the oldest backup's start on,
    and every timeline history file)."""
    starts = [m.start_wal for m in considered if m.start_wal]
    oldest = min(starts, key=segment_position, default=None)
    all_wal = [info.key for info in storage.list("wal/")]
    expired = set(expired_wal([name_of(k) for k in all_wal], oldest))
    return [k for k in all_wal if name_of(k) not in expired]


def _wal_ranges(
    storage: Storage,
    wal_keys: Sequence[str],
    identities: Sequence[str],
    needs: dict[str, dict[str, int]],
    unreadable: list[str],
    *,
    jobs: int,
) -> list[WalRange]:
    """Runs of consecutive WAL objects opened by the same identities; counts in ``needs`` the WAL only one
    identity opens and adds to ``unreadable`` the WAL none opens."""
    ranges: list[WalRange] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for key, found in zip(wal_keys, pool.map(lambda k: _probe(storage, k, identities), wal_keys), strict=True):
            name = name_of(key)
            if isinstance(found, str) or not found:
                unreadable.append(f"WAL {name}" + (f" ({found})" if isinstance(found, str) else ""))
                continue
            opened_by = tuple(sorted(recipient_of(i) for i in found))
            if len(opened_by) == 1:
                needs[opened_by[0]]["wal"] += 1
            if ranges and ranges[-1].opened_by == opened_by:
                ranges[-1] = replace(ranges[-1], last=name, count=ranges[-1].count + 1)
            else:
                ranges.append(WalRange(opened_by, name, name, 1))
    return ranges


def _removable_together(
    needs: dict[str, dict[str, int]], recipients: Sequence[str], opener_sets: list[set[str]]
) -> set[str]:
    """Removable together, not one by one: an object encrypted to A and B needs neither alone, but it
    needs one of them. Grow the set of identities that can all go at once."""
    removable: set[str] = set()
    for r in sorted(needs):
        if r not in recipients and all(o - (removable | {r}) for o in opener_sets if o):
            removable.add(r)
    return removable


def new_identity_file(path: Path) -> str:
    """The identity in ``path``, created (0600, in a 0700 folder when new) if the file does not exist."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path} is readable by others; chmod 600 it before using it as an identity")
        found = parse_identities(path.read_text())
        if not found:
            raise ConfigError(f"{path} holds no age identity")
        return found[0]
    private, public = generate_identity()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"# dbrunbook backup identity\n# public key: {public}\n{private}\n")
    return private
