"""PostgreSQL LSN and WAL segment arithmetic, and backup_label parsing: pure functions.

``pg_walfile_name()`` refuses to run on a standby, so a backup taken from a replica needs its own.

The segment size is chosen at initdb (``--wal-segsize``, 1 MiB to 1 GiB) and decides every name: a log
file (the middle 8 hex digits) holds 4 GiB of WAL, so 4096 segments of 1 MiB but only 64 of 64 MiB.
Every function that turns an LSN into a name, or walks from one name to the next, takes the size; only
manifests written without ``wal_segment_size`` fall back to :data:`DEFAULT_SEGMENT_SIZE`.
"""

from __future__ import annotations

import re

from dbrunbook.errors import BackupError

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
LOG_FILE_BYTES = 0x1_0000_0000  # the WAL bytes one log file (middle 8 hex digits of a name) spans


def parse_lsn(text: str) -> int:
    hi, _, lo = text.strip().partition("/")
    if not lo:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def segments_per_log(segment_size: int) -> int:
    # PostgreSQL allows powers of two from 1 MiB to 1 GiB; anything else is a misread setting.
    if segment_size < 1 << 20 or segment_size > 1 << 30 or segment_size & (segment_size - 1):
        raise BackupError(f"wal_segment_size {segment_size} is not a power of two between 1 MiB and 1 GiB")
    return LOG_FILE_BYTES // segment_size


def segment_name(timeline: int, lsn: int, segment_size: int) -> str:
    """The WAL file holding ``lsn`` (as pg_walfile_name, which gives the previous file for a boundary LSN
    only after a switch; callers pass stop LSNs, which always lie inside their segment)."""
    return name_at(f"{timeline:08X}", lsn // segment_size, segment_size)


def segment_of_stop(timeline: int, stop_lsn: int, segment_size: int) -> str:
    """The last segment recovery needs: a stop LSN exactly at a boundary belongs to the previous file
    (what pg_walfile_name answers for it)."""
    return segment_name(timeline, stop_lsn - 1 if stop_lsn % segment_size == 0 else stop_lsn, segment_size)


def position(name: str, segment_size: int) -> int:
    """A segment's place in the WAL stream, counted in segments (timeline left out): its start LSN over
    the segment size. Refuses a name whose segment number does not exist at this size, the sign that the
    size is not the one the cluster was initialised with."""
    per_log = segments_per_log(segment_size)
    log, seg = int(name[8:16], 16), int(name[16:24], 16)
    if seg >= per_log:
        raise BackupError(
            f"WAL segment {name[:24]} does not exist with {segment_size >> 20} MiB segments "
            f"(at most {per_log} per log file): the WAL segment size used is not the cluster's"
        )
    return log * per_log + seg


def name_at(timeline: str, pos: int, segment_size: int) -> str:
    """The segment name at ``pos`` (as :func:`position` counts) on ``timeline`` (8 hex digits)."""
    per_log = segments_per_log(segment_size)
    return f"{timeline}{pos // per_log:08X}{pos % per_log:08X}"


def segment_start(name: str, segment_size: int) -> int:
    """The LSN at which segment ``name`` begins."""
    return position(name, segment_size) * segment_size


def segments_between(start: str, stop: str, segment_size: int) -> list[str]:
    """Every segment name from ``start`` to ``stop`` inclusive, on ``start``'s timeline."""
    tli = start[:8]
    first, last = position(start, segment_size), position(stop, segment_size)
    return [name_at(tli, p, segment_size) for p in range(first, last + 1)]


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


def segment_position(name: str) -> tuple[int, int]:
    """Where a WAL segment lies in the WAL stream, timeline left out: later timelines continue the count.
    A (log, segment) pair rather than one number, so any wal_segment_size sorts right."""
    return int(name[8:16], 16), int(name[16:24], 16)
