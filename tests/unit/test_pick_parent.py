"""When backup.incremental builds on the newest backup, and when it must take a full one instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbrunbook.engines.postgresql.backup import ServerFacts, pick_parent
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.manifest import Manifest, ObjectEntry

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FILES = ObjectEntry(name="files.jsonl", key="k", size=1, sha256="0" * 64, plain_size=1, plain_sha256="0" * 64)
SERVER = ServerFacts("42", 1, True, 1, "h")


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
        "extra": {"hint_bits_logged": True, "data_checksums": 1},
    }
    fields.update(kw)
    return Manifest.model_validate(fields)


def server(**kw: object) -> ServerFacts:
    return ServerFacts(**{**SERVER.__dict__, **kw})


def test_builds_on_the_newest_physical_backup() -> None:
    chain = [m(1), m(2, "incremental", "b1"), m(3, "logical")]
    parent, why = pick_parent(Catalog(chain), SERVER, None)
    assert parent is not None and parent.backup_id == "b2" and why == "incremental on b2"


def test_falls_back_to_a_full_backup_and_says_why() -> None:
    one = Catalog([m(1)])
    assert pick_parent(Catalog([m(1, "logical")]), SERVER, None) == (
        None,
        "there is no physical backup of h to build on",
    )
    assert "another system identifier" in pick_parent(one, server(system_id="43"), None)[1]
    assert "timeline changed since b1 (1 -> 2)" in pick_parent(one, server(timeline=2), None)[1]
    assert "has no file list" in pick_parent(Catalog([m(1, objects=[])]), SERVER, None)[1]
    # Hint bits that do not move page LSNs (no wal_log_hints, no checksums) make page deltas unsafe.
    assert "need wal_log_hints" in pick_parent(one, server(hint_bits_logged=False), None)[1]
    assert "without wal_log_hints" in pick_parent(Catalog([m(1, extra={"data_checksums": 1})]), SERVER, None)[1]
    # pg_checksums --enable rewrote every page with its old LSN.
    assert "data checksums changed since b1" in pick_parent(one, server(data_checksums=0), None)[1]
    # Only a backup of the same host can be a parent (another host's files have other inodes).
    assert "no physical backup of replica" in pick_parent(one, server(source_host="replica"), None)[1]
    mixed = Catalog([m(1), m(2, source_host="replica")])
    assert pick_parent(mixed, SERVER, None)[0].backup_id == "b1"  # type: ignore[union-attr]
    chain = [m(1), m(2, "incremental", "b1"), m(3, "incremental", "b2")]
    assert pick_parent(Catalog(chain), SERVER, 3)[0] is not None
    parent, why = pick_parent(Catalog(chain), SERVER, 2)
    assert parent is None and "already has 2 incrementals (max_chain 2)" in why
    assert pick_parent(one, SERVER, 0)[0] is None  # max_chain 0: never incremental
    broken = Catalog([m(2, "incremental", "gone")])
    assert "chain is broken" in pick_parent(broken, SERVER, None)[1]
