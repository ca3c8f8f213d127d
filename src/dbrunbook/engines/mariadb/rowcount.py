"""Per-table row counts of a MariaDB/MySQL dump, read from the dump stream itself as it goes by.

The counts come from the dump's own snapshot because they ARE the dump: no second session, no second
scan of the server. A drill later loads the dump and compares ``COUNT(*)`` of every table with them.

The stream is scanned with bytes methods only (``find``/``count``, C speed, a few passes per byte);
Python code runs once per chunk and once per section, never once per row. It relies on what
``mariadb-dump`` writes with its default comments and locks:

- ``USE `db`;`` before each database's tables;
- ``-- Dumping data for table `t``` then ``LOCK TABLES``, the INSERTs and ``UNLOCK TABLES;`` per table;
- strings escape newlines (``\\n``), so a raw newline never falls inside a value.

MariaDB 10.x writes one row per line after ``INSERT INTO `t` VALUES``: every line in a data section that
starts with ``(`` is a row. MySQL's mysqldump writes all rows of an INSERT on one line: those lines are
counted by their top-level ``),(`` separators, outside quoted strings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from dbrunbook.engines.restore_result import RowCounts

if TYPE_CHECKING:
    from dbrunbook.repository.manifest import Manifest

SECTION = b"\n-- Dumping data for table "
USE = b"\nUSE `"
END = b"\nUNLOCK TABLES;"
INSERT = b"\nINSERT INTO "
KEEP = 4096  # bytes kept of a row line that spans chunks: enough to know it is one
SKIP_SCHEMAS = ("mysql",)  # tables the server writes itself (statistics, GTID state): not comparable


def identifier(text: bytes, pos: int) -> tuple[str, int]:
    """The backtick-quoted identifier starting at ``pos`` (doubled backticks inside) and where it ends."""
    if text[pos : pos + 1] != b"`":
        raise ValueError("not a quoted identifier")
    out = bytearray()
    i = pos + 1
    while True:
        j = text.index(b"`", i)
        out += text[i:j]
        if text[j + 1 : j + 2] == b"`":
            out += b"`"
            i = j + 2
            continue
        return out.decode("utf-8", errors="replace"), j + 1


def tuples_on_line(line: bytes) -> int:
    """Rows of a one-line extended INSERT (``INSERT INTO `t` VALUES (..),(..);``).

    Escaped backslashes go first, then escaped quotes: after that every ``'`` opens or closes a string,
    and the separators inside strings can be subtracted from the total.
    """
    _, end = identifier(line, line.index(b"`"))
    values = line.find(b" VALUES ", end)
    if values < 0 or line.rstrip().endswith(b"VALUES"):
        return 0
    body = line[values:].replace(b"\\\\", b"").replace(b"\\'", b"")
    inside = b"'".join(body.split(b"'")[1::2])
    return body.count(b"),(") - inside.count(b"),(") + 1


class DumpRowCounter:
    """Feed it the dump's chunks in order; ``counts`` is ``{database: {table: rows}}``.

    Memory: the start of the current line only, except for lines that are not rows (DDL, a one-line
    INSERT), which are kept whole until they end — the dump tool itself holds such a line in memory.
    """

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self._db = ""
        self._table: str | None = None
        self._rows = 0
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._row_line = False  # the pending line is a row: only its start is kept
        self.problem = ""

    def wrap(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.feed(chunk)
            yield chunk

    def feed(self, chunk: bytes) -> None:
        """Never raises: a dump it cannot read leaves ``problem`` set and the backup goes on uncounted."""
        if self.problem:
            return
        try:
            last = chunk.rfind(b"\n")
            if last < 0:
                self._hold(chunk)
                return
            # One copy of the chunk per call; the pending line start is at most a few KiB (or a DDL line).
            self._scan(b"".join([b"\n", *self._pending, memoryview(chunk)[: last + 1]]))
            self._pending, self._pending_len, self._row_line = [], 0, False
            self._hold(chunk[last + 1 :])
        except Exception as exc:  # whatever it is, the backup must go on
            self.problem = f"row counts not recorded: the dump's layout was not understood ({exc})"

    def _hold(self, piece: bytes) -> None:
        if not piece:
            return
        if not self._pending and self._table is not None and piece.startswith(b"("):
            self._row_line = True
        if self._row_line:
            piece = piece[: max(0, KEEP - self._pending_len)]
            if not piece:
                return
        self._pending.append(piece)
        self._pending_len += len(piece)

    def finish(self) -> dict[str, dict[str, int]] | None:
        """The counts, or None when the dump could not be read (see ``problem``)."""
        if self._pending and not self.problem:
            self.feed(b"\n")
        self._close()
        return None if self.problem else self.counts

    def _close(self) -> None:
        if self._table is not None:
            self.counts.setdefault(self._db, {})[self._table] = self._rows
        self._table, self._rows = None, 0

    def _scan(self, text: bytes) -> None:
        """``text`` is whole lines, each preceded by its newline (the first one by a made-up one)."""
        pos, size = 0, len(text)
        while pos < size:
            if self._table is not None:
                end = text.find(END, pos)
                stop = size if end < 0 else end
                if text.find(SECTION, pos, stop) >= 0:
                    raise ValueError(f"table {self._table!r}: its data has no UNLOCK TABLES before the next table")
                self._rows += text.count(b"\n(", pos, stop)
                self._rows += self._one_line_inserts(text, pos, stop)
                if end < 0:
                    return
                self._close()
                pos = end + 1
                continue
            start = text.find(SECTION, pos)
            limit = size if start < 0 else start
            use = text.rfind(USE, pos, limit)
            if use >= 0:
                self._db = identifier(text, use + len(USE) - 1)[0]
            if start < 0:
                return
            self._table = identifier(text, start + len(SECTION))[0]
            self._rows = 0
            nl = text.find(b"\n", start + 1)
            pos = size if nl < 0 else nl

    @staticmethod
    def _one_line_inserts(text: bytes, pos: int, stop: int) -> int:
        rows = 0
        at = text.find(INSERT, pos, stop)
        while at >= 0:
            nl = text.find(b"\n", at + 1)
            nl = len(text) if nl < 0 else nl
            rows += tuples_on_line(text[at + 1 : nl])
            at = text.find(INSERT, nl, stop)
        return rows


def uncounted(backup: Manifest) -> str | None:
    """Why a backup has no row counts to compare, or None when it recorded them."""
    if backup.kind != "logical":
        return f"backup {backup.backup_id} is {backup.kind}: only dumps record row counts"
    if "row_counts" not in backup.extra:
        why = backup.extra.get("row_counts_problem") or "taken before dbrunbook recorded them"
        return f"backup {backup.backup_id} recorded no row counts ({why})"
    return None


def checked_tables(counts: Mapping[str, Mapping[str, int]]) -> list[tuple[str, str, int]]:
    """The tables a restore compares, in a stable order."""
    return [
        (db, table, rows)
        for db, tables in sorted(counts.items())
        if db not in SKIP_SCHEMAS
        for table, rows in sorted(tables.items())
    ]


MARK = "dbrunbook-rows"


CLOCK = f"SELECT '{MARK}', '{{}}', ROUND(UNIX_TIMESTAMP(NOW(6)) * 1000);\n"


def count_sql(tables: list[tuple[str, str, int]]) -> bytes:
    """One ``COUNT(*)`` per table, each tagged with its index so the answer needs no name parsing,
    between two readings of the server's clock (the time the counting took is not restore time)."""

    def quote(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    counts = "".join(
        # Identifiers are quoted (doubled backticks); there is no value to bind.
        f"SELECT '{MARK}', {i}, COUNT(*) FROM {quote(db)}.{quote(t)};\n"  # noqa: S608
        for i, (db, t, _) in enumerate(tables)
    )
    return (CLOCK.format("start") + counts + CLOCK.format("end")).encode()


def parse_counts(lines: list[str]) -> tuple[dict[int, int], float]:
    """The client's batch output of :func:`count_sql` (its header lines have no number): the count of
    each table by index, and the seconds the counting took."""
    out: dict[int, int] = {}
    clock: dict[str, int] = {}
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3 or parts[0] != MARK or not parts[2].isdigit():
            continue
        if parts[1].isdigit():
            out[int(parts[1])] = int(parts[2])
        elif parts[1] in ("start", "end"):
            clock[parts[1]] = int(parts[2])
    seconds = (clock["end"] - clock["start"]) / 1000 if len(clock) == 2 else 0.0
    return out, seconds


def compare(
    tables: list[tuple[str, str, int]], got: Mapping[int, int], seconds: float = 0.0, shown: int = 5
) -> RowCounts:
    """The restored tables' row counts against the backup's: a summary a drill result can hold."""
    wrong = [
        f"{db}.{t}: {got.get(i, 'no answer')} rows restored, the backup had {rows}"
        for i, (db, t, rows) in enumerate(tables)
        if got.get(i) != rows
    ]
    return RowCounts(
        tables=len(tables),
        rows=sum(r for _, _, r in tables),
        mismatched=len(wrong),
        mismatches=tuple(wrong[:shown]),
        seconds=round(seconds, 3),
    )
