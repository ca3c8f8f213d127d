"""WAL arithmetic of verify and wal.check: segment ranges and gaps from file names alone."""

from __future__ import annotations

from typing import Any

from dbrunbook.backup.verify import wal_report
from dbrunbook.engines.postgresql.lsn import DEFAULT_SEGMENT_SIZE as MIB16
from dbrunbook.engines.postgresql.lsn import segments_between


def test_segments_between_rolls_over_log_files() -> None:
    assert segments_between("0000000100000000000000FE", "000000010000000100000001", MIB16) == [
        "0000000100000000000000FE",
        "0000000100000000000000FF",
        "000000010000000100000000",
        "000000010000000100000001",
    ]
    # 64 MiB segments: 64 per log file.
    assert segments_between("00000002000000000000003F", "000000020000000100000000", 64 << 20) == [
        "00000002000000000000003F",
        "000000020000000100000000",
    ]


def test_wal_report_finds_gaps_and_timeline_switches() -> None:
    names = [
        "000000010000000000000001",  # before the oldest backup: not needed, holes there are not gaps
        "000000010000000000000005",
        "000000010000000000000006",
        "000000010000000000000007.partial",
        "00000002.history",
        "000000020000000000000007",
        "000000020000000000000008",
        "00000002000000000000000B",
        "00000002000000000000000B.00000028.backup",
    ]
    report = wal_report(names, "000000010000000000000005", MIB16).as_dict()
    gap = {"from": "000000010000000000000009", "to": "00000001000000000000000A", "missing": 2}
    assert report["gaps"] == [{**gap, "critical": True}]  # no backup after it: nothing restores to now
    after = [("000000010000000000000005", "000000010000000000000006"), ("00000002000000000000000B",) * 2]
    assert wal_report(names, "000000010000000000000005", MIB16, backups=after).as_dict()["gaps"] == [
        {**gap, "critical": False}
    ]
    # Inside the PITR window (after the start of the backup it restores from): critical.
    window = wal_report(
        names, "000000010000000000000005", MIB16, backups=after, window_from="000000010000000000000005"
    ).as_dict()
    assert window["gaps"] == [{**gap, "critical": True}]
    inside = [("000000010000000000000008", "00000001000000000000000B")]
    assert wal_report(names, "000000010000000000000005", MIB16, backups=inside).as_dict()["gaps"] == [
        {**gap, "critical": True}
    ]
    assert report["timeline_switches"] == 1
    assert [(t["timeline"], t["first"], t["last"], t["history_file"]) for t in report["timelines"]] == [
        (1, "000000010000000000000001", "000000010000000000000006", True),
        (2, "000000020000000000000007", "00000002000000000000000B", True),
    ]
    assert report["newest"] == "00000002000000000000000B"
    assert wal_report(names[:3], "000000010000000000000005", MIB16).as_dict()["gaps"] == []
    lost_history = wal_report([n for n in names if not n.endswith(".history")], None, MIB16).as_dict()
    assert lost_history["timelines"][1]["history_file"] is False


def test_wal_check_steps_over_a_stray_name_far_ahead_and_lists_impossible_ones() -> None:
    """Anything can write into the repository: a name billions of segments ahead is one gap (found at once,
    not position by position), and a name no 16 MiB segment can have is listed, not a crash."""
    import threading

    from dbrunbook.backup.verify import wal_report

    names = ["000000010000000000000001", "000000010000000000000002", "00000001FFFFFFF000000001"]
    names.append("0000000100000000000001FF")  # segment 0x1FF cannot exist with 16 MiB segments
    out: list[dict[str, Any]] = []
    worker = threading.Thread(
        target=lambda: out.append(wal_report(names, "000000010000000000000001", 16 << 20).as_dict())
    )
    worker.daemon = True
    worker.start()
    worker.join(120)  # a hang guard, not a speed test: the old loop walked all 2^36 missing positions
    assert out, "wal_report walked the gap position by position"
    report = out[0]
    (gap,) = report["gaps"]
    assert (gap["from"], gap["to"]) == ("000000010000000000000003", "00000001FFFFFFF000000000")
    assert report["unexpected_names"] == ["0000000100000000000001FF"]
