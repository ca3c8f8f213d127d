"""When backup.incremental builds on the newest backup, and when it must take a full one instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbrunbook.backup.catalog import Catalog
from dbrunbook.backup.manifest import Manifest, ObjectEntry
from dbrunbook.backup.pg_backup import pick_parent

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FILES = ObjectEntry(name="files.jsonl", key="k", size=1, sha256="0" * 64, plain_size=1, plain_sha256="0" * 64)


def m(i: int, kind: str = "physical", parent: str | None = None, **kw: object) -> Manifest:
    fields: dict[str, object] = {
        "backup_id": f"b{i}",
        "kind": kind,
        "parent": parent,
        "engine": "postgresql",
        "cluster": "pg",
        "system_identifier": "42",
        "server_version": "15",
        "timeline": 1,
        "start_lsn": f"0/{i}000000",
        "start_time": T0 + timedelta(hours=i),
        "stop_time": T0 + timedelta(hours=i, minutes=5),
        "source_host": "h",
        "objects": [FILES],
        "recipients": [],
        "tool_version": "t",
    }
    fields.update(kw)
    return Manifest.model_validate(fields)


def test_builds_on_the_newest_physical_backup() -> None:
    chain = [m(1), m(2, "incremental", "b1"), m(3, "logical")]
    parent, why = pick_parent(Catalog(chain), "42", 1, None)
    assert parent is not None and parent.backup_id == "b2" and why == "incremental on b2"


def test_falls_back_to_a_full_backup_and_says_why() -> None:
    assert pick_parent(Catalog([m(1, "logical")]), "42", 1, None) == (None, "there is no physical backup to build on")
    assert "another system identifier" in pick_parent(Catalog([m(1)]), "43", 1, None)[1]
    assert "timeline changed since b1 (1 -> 2)" in pick_parent(Catalog([m(1)]), "42", 2, None)[1]
    assert "has no file list" in pick_parent(Catalog([m(1, objects=[])]), "42", 1, None)[1]
    chain = [m(1), m(2, "incremental", "b1"), m(3, "incremental", "b2")]
    assert pick_parent(Catalog(chain), "42", 1, 3)[0] is not None
    parent, why = pick_parent(Catalog(chain), "42", 1, 2)
    assert parent is None and "already has 2 incrementals (max_chain 2)" in why
    assert pick_parent(Catalog([m(1)]), "42", 1, 0)[0] is None  # max_chain 0: never incremental
