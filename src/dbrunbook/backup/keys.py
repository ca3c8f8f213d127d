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


def _probe(storage: Storage, key: str, identities: Sequence[str]) -> list[str] | str:
    try:
        with storage.open(key) as fh:
            head = fh.read(HEADER_PROBE)
        return header_openers(head, identities)
    except (RepositoryError, EncryptionError) as exc:
        return exc.message


def key_status(
    storage: Storage, catalog: Catalog, identities: Sequence[str], recipients: Sequence[str], *, jobs: int = 8
) -> dict[str, Any]:
    public = {recipient_of(i): i for i in identities}
    needs: dict[str, dict[str, int]] = {r: {"backups": 0, "wal": 0} for r in public}
    unreadable: list[str] = []
    backups = []
    # Refused manifests count too: an older dbrunbook's backup waiting for backup.sign still needs its key.
    considered = [*catalog.manifests, *(r.manifest for r in catalog.refused if r.manifest is not None)]
    for m in considered:
        openers = sorted(set(m.recipients) & set(public))
        if not openers:
            unreadable.append(f"backup {m.backup_id}")
        elif len(openers) == 1:
            needs[openers[0]]["backups"] += 1
        backups.append({"backup_id": m.backup_id, "recipients": m.recipients, "opened_by": openers})

    wal_keys = _wal_a_restore_may_read(storage, considered)
    ranges = _wal_ranges(storage, wal_keys, identities, needs, unreadable, jobs=jobs)
    opener_sets: list[set[str]] = [set(b["opened_by"]) for b in backups] + [set(w["opened_by"]) for w in ranges]
    # A manifest that could not even be read says nothing about what it needs: then no key is removable.
    blind = any(r.manifest is None for r in catalog.refused)
    removable = set() if blind else _removable_together(needs, recipients, opener_sets)
    identities_report = [
        {
            "recipient": r,
            "writes_new_objects": r in recipients,
            "only_key_for_backups": n["backups"],
            "only_key_for_wal": n["wal"],
            "removable": r in removable,
        }
        for r, n in needs.items()
    ]
    return {
        "recipients": list(recipients),
        "identities": identities_report,
        "backups": backups,
        "wal": ranges,
        "unreadable": unreadable,
        "recipients_without_identity": [r for r in recipients if r not in public],
    }


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
) -> list[dict[str, Any]]:
    """Runs of consecutive WAL objects opened by the same identities; counts in ``needs`` the WAL only one
    identity opens and adds to ``unreadable`` the WAL none opens."""
    ranges: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for key, found in zip(wal_keys, pool.map(lambda k: _probe(storage, k, identities), wal_keys), strict=True):
            name = name_of(key)
            if isinstance(found, str) or not found:
                unreadable.append(f"WAL {name}" + (f" ({found})" if isinstance(found, str) else ""))
                continue
            opened_by = sorted(recipient_of(i) for i in found)
            if len(opened_by) == 1:
                needs[opened_by[0]]["wal"] += 1
            if ranges and ranges[-1]["opened_by"] == opened_by:
                ranges[-1]["last"], ranges[-1]["count"] = name, ranges[-1]["count"] + 1
            else:
                ranges.append({"opened_by": opened_by, "first": name, "last": name, "count": 1})
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
