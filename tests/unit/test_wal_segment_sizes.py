"""WAL names with 1 MiB and 64 MiB segments (initdb --wal-segsize): a log file holds 4096 of the one and
64 of the other, so every name, range and gap depends on the size the cluster was initialised with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dbrunbook.backup.verify import recorded_segment_size, verify, wal_report
from dbrunbook.engines.postgresql.lsn import (
    DEFAULT_SEGMENT_SIZE,
    parse_lsn,
    position,
    segment_name,
    segment_of_stop,
    segment_start,
    segments_between,
    segments_per_log,
)
from dbrunbook.engines.postgresql.restore import newest_segment_start
from dbrunbook.engines.postgresql.wal import push
from dbrunbook.errors import BackupError
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.catalog import Catalog
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.manifest import Manifest
from dbrunbook.repository.storage import open_storage

MIB1 = 1 << 20
MIB64 = 64 << 20


def test_names_at_segment_and_log_file_boundaries() -> None:
    assert segments_per_log(MIB1) == 4096 and segments_per_log(MIB64) == 64
    # 1 MiB: the last segment of log file 0 is 0xFFF, then log file 1 starts at 0.
    assert segment_name(1, parse_lsn("0/FFFFF"), MIB1) == "000000010000000000000000"
    assert segment_name(1, parse_lsn("0/100000"), MIB1) == "000000010000000000000001"
    assert segment_name(1, parse_lsn("0/FFFFFFFF"), MIB1) == "000000010000000000000FFF"
    assert segment_name(1, parse_lsn("1/0"), MIB1) == "000000010000000100000000"
    # 64 MiB: segment 0x3F is the last of a log file.
    assert segment_name(2, parse_lsn("0/3FFFFFF"), MIB64) == "000000020000000000000000"
    assert segment_name(2, parse_lsn("0/4000000"), MIB64) == "000000020000000000000001"
    assert segment_name(2, parse_lsn("0/FFFFFFFF"), MIB64) == "00000002000000000000003F"
    assert segment_name(2, parse_lsn("1/4000028"), MIB64) == "000000020000000100000001"
    assert segment_start("000000020000000100000001", MIB64) == parse_lsn("1/4000000")
    assert segment_start("000000010000000000000FFF", MIB1) == parse_lsn("0/FFF00000")


def test_stop_segment_at_a_boundary_lsn() -> None:
    # A stop LSN on a boundary belongs to the segment before it (pg_walfile_name's answer).
    assert segment_of_stop(1, parse_lsn("0/300000"), MIB1) == "000000010000000000000002"
    assert segment_of_stop(1, parse_lsn("0/300001"), MIB1) == "000000010000000000000003"
    assert segment_of_stop(1, parse_lsn("1/0"), MIB1) == "000000010000000000000FFF"
    assert segment_of_stop(1, parse_lsn("0/8000000"), MIB64) == "000000010000000000000001"
    assert segment_of_stop(1, parse_lsn("1/0"), MIB64) == "00000001000000000000003F"
    # What the 16 MiB arithmetic made of the same stop LSNs: segments the backup never wrote.
    assert segment_of_stop(1, parse_lsn("0/8000000"), DEFAULT_SEGMENT_SIZE) == "000000010000000000000007"
    assert segment_of_stop(1, parse_lsn("0/300000"), DEFAULT_SEGMENT_SIZE) == "000000010000000000000000"


def test_ranges_roll_over_log_files_at_the_size_given() -> None:
    assert segments_between("000000010000000000000FFE", "000000010000000100000001", MIB1) == [
        "000000010000000000000FFE",
        "000000010000000000000FFF",
        "000000010000000100000000",
        "000000010000000100000001",
    ]
    assert segments_between("00000001000000000000003E", "000000010000000100000000", MIB64) == [
        "00000001000000000000003E",
        "00000001000000000000003F",
        "000000010000000100000000",
    ]


def test_a_name_or_size_that_cannot_be_the_clusters_is_refused() -> None:
    with pytest.raises(BackupError, match="000000010000000000000040 does not exist with 64 MiB segments"):
        position("000000010000000000000040", MIB64)
    with pytest.raises(BackupError, match="not a power of two"):
        segments_per_log(16)  # the size in MB, as SHOW prints it, taken for bytes
    with pytest.raises(BackupError, match="not a power of two"):
        segments_per_log(3 << 20)


def test_wal_check_counts_positions_with_the_clusters_size() -> None:
    one = [f"00000001{log:08X}{seg:08X}" for log, seg in ((0, 0xFFD), (0, 0xFFE), (0, 0xFFF), (1, 0), (1, 1))]
    report = wal_report(one, one[0], MIB1, [(one[0], one[1])]).as_dict()
    assert report["gaps"] == [] and report["newest"] == "000000010000000100000001"
    assert report["timelines"][0]["segments"] == 5
    with pytest.raises(BackupError, match="16 MiB segments"):
        wal_report(one, one[0], DEFAULT_SEGMENT_SIZE)

    sixty_four = ["00000001000000000000003E", "00000001000000000000003F", "000000010000000100000001"]
    gaps = wal_report(sixty_four, sixty_four[0], MIB64, [(sixty_four[0],) * 2]).as_dict()["gaps"]
    assert gaps == [
        {"from": "000000010000000100000000", "to": "000000010000000100000000", "missing": 1, "critical": True}
    ]
    # Counted as 16 MiB segments, the same names had 193 missing ones between 0/3F and 1/1.
    assert wal_report(sixty_four, sixty_four[0], DEFAULT_SEGMENT_SIZE).as_dict()["gaps"][0]["missing"] == 193


def test_drill_end_of_archive_lsn_uses_the_size() -> None:
    names = ["00000001000000000000003F", "000000010000000100000002", "000000010000000100000002.partial"]
    assert newest_segment_start(names, MIB64) == ("000000010000000100000002", parse_lsn("1/8000000"))


def physical_manifest(backup_id: str, start: str, stop: str, size: int | None) -> Manifest:
    now = datetime.now(UTC)
    return Manifest(
        backup_id=backup_id,
        kind="physical",
        engine="postgresql",
        cluster="c",
        server_version="15",
        start_wal=start,
        stop_wal=stop,
        start_time=now,
        stop_time=now,
        source_host="h",
        objects=[],
        recipients=[],
        tool_version="t",
        extra={"wal_segment_size": size} if size else {},
    )


def test_wal_check_takes_the_size_a_backup_recorded() -> None:
    old = physical_manifest("20260101T000000Z-F", "000000010000000000000002", "000000010000000000000002", None)
    new = physical_manifest("20260102T000000Z-F", "000000010000000000000009", "000000010000000000000009", MIB1)
    dump = new.model_copy(
        update={"backup_id": "20260103T000000Z-L", "kind": "logical", "extra": {"wal_segment_size": 1}}
    )
    assert recorded_segment_size([old, new, dump]) == (MIB1, new.backup_id)
    assert recorded_segment_size([old]) is None  # then wal.check asks the primary


def test_verify_reads_the_wal_range_of_the_recorded_size(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    repo = open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))
    names = ["000000010000000000000FFF", "000000010000000100000000"]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
        push(repo, tmp_path / name, [recipient])
    good = physical_manifest("20260102T000000Z-F", names[0], names[1], MIB1)
    # A 1 MiB cluster's backup from 0/10500000 to 0/10A00000, its stop segment named with 16 MiB arithmetic
    # (as backup.full did): the range was empty and verify read no WAL at all.
    wrong = physical_manifest("20260103T000000Z-F", "000000010000000000000105", "000000010000000000000010", MIB1)
    reports = [r.as_dict() for r in verify(repo, Catalog([good, wrong]), [good, wrong], [identity])]
    assert (reports[0]["ok"], reports[0]["wal_segments"]) == (True, 2)
    assert (reports[1]["ok"], reports[1]["wal_segments"]) == (False, 0)
    assert "stop WAL 000000010000000000000010 lies before its start WAL" in reports[1]["problems"][0]["problem"]
