"""PostgreSQL LSN and WAL segment arithmetic, and backup_label parsing: pure functions.

``pg_walfile_name()`` refuses to run on a standby, so a backup taken from a replica needs its own.
"""

from __future__ import annotations

import re

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def parse_lsn(text: str) -> int:
    hi, _, lo = text.strip().partition("/")
    if not lo:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def segment_name(timeline: int, lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The WAL file holding ``lsn`` (as pg_walfile_name, which gives the previous file for a boundary LSN
    only after a switch; callers pass stop LSNs, which always lie inside their segment)."""
    segno = lsn // segment_size
    per_xlogid = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_xlogid:08X}{segno % per_xlogid:08X}"


def segment_of_stop(timeline: int, stop_lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The last segment recovery needs: a stop LSN exactly at a boundary belongs to the previous file."""
    return segment_name(timeline, stop_lsn - 1 if stop_lsn % segment_size == 0 else stop_lsn, segment_size)


def parse_backup_label(text: str) -> dict[str, str]:
    """``START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`` and friends, as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    m = re.match(r"([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)", out.get("START WAL LOCATION", ""))
    if m:
        out["start_lsn"], out["start_wal"] = m.group(1), m.group(2)
    return out
