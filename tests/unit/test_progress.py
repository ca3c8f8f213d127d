"""Progress events on the agent's stderr side channel: the protocol, the executor's tap on a real local
process, and how the controller shows them without a terminal."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from dbrunbook.execution import AuditLog, Command, RunSettings
from dbrunbook.execution.executor import LocalExecutor
from dbrunbook.execution.progress import PREFIX, ProgressEvent, ProgressTap, ProgressWriter, decode, encode
from dbrunbook.output import ProgressLines

MIB = 2**20


def test_an_event_survives_its_line_and_other_lines_are_not_events() -> None:
    event = ProgressEvent(5 * MIB, 10 * MIB, "data/0001.tar")
    assert decode(encode(event).rstrip("\n")) == event
    assert decode(encode(ProgressEvent(7)).rstrip("\n")) == ProgressEvent(7, None, "")
    for line in ("dbrunbook-host: 000000010000000000000003 pushed", PREFIX + "{not json", PREFIX + '{"total": 3}', ""):
        assert decode(line) is None


def test_the_tap_splits_events_from_stderr_across_arbitrary_chunks() -> None:
    seen: list[ProgressEvent] = []
    tap = ProgressTap(seen.append)
    text = "warming up\n" + encode(ProgressEvent(1, 4)) + "half a line\n" + encode(ProgressEvent(4, 4, "x"))
    for i in range(0, len(text), 7):  # the runner hands over whatever the pipe had
        tap.write(text[i : i + 7])
    tap.write("no newline yet")
    assert seen == [ProgressEvent(1, 4), ProgressEvent(4, 4, "x")]
    assert tap.kept() == "warming up\nhalf a line\nno newline yet"


def test_the_writer_throttles_but_always_reports_the_end() -> None:
    now = [0.0]
    out = io.StringIO()
    writer = ProgressWriter(out, total=100, interval=1.0, clock=lambda: now[0])
    writer.add(10)  # first: reported
    writer.add(10)  # same instant: not
    now[0] = 1.5
    writer.add(10)  # a second later: reported
    writer.add(70, "last")  # the end: always
    events = [decode(line) for line in out.getvalue().splitlines()]
    assert events == [ProgressEvent(10, 100), ProgressEvent(30, 100), ProgressEvent(100, 100, "last")]


def test_the_executor_hands_a_real_process_events_to_the_callback(tmp_path: Path) -> None:
    """The agent's writer in a real child process, read back through LocalExecutor.run's tap."""
    agent = (
        "import sys\n"
        "from dbrunbook.execution.progress import ProgressWriter\n"
        "w = ProgressWriter(sys.stderr, total=3 * 2**20, interval=0)\n"
        "print('an ordinary warning', file=sys.stderr, flush=True)\n"
        "for i in range(3):\n"
        "    w.add(2**20, f'data/000{i + 1}.tar')\n"
        "print('the result on stdout')\n"
    )
    audit = tmp_path / "audit.jsonl"
    ex = LocalExecutor("here", RunSettings(audit=AuditLog(audit)))
    seen: list[ProgressEvent] = []
    res = ex.run(Command((sys.executable, "-c", agent), mutating=False), on_progress=seen.append)
    assert [e.done for e in seen] == [MIB, 2 * MIB, 3 * MIB]
    assert seen[-1] == ProgressEvent(3 * MIB, 3 * MIB, "data/0003.tar")
    assert res.stdout == "the result on stdout\n"
    assert res.stderr == "an ordinary warning\n"  # events are not part of the command's stderr
    # Without a callback, the events go where the task shows progress (RunSettings.progress)...
    shown: list[ProgressEvent] = []
    ex.settings.progress = shown.append
    ex.run(Command((sys.executable, "-c", agent), mutating=False))
    assert [e.done for e in shown] == [MIB, 2 * MIB, 3 * MIB]
    # ...and with nowhere to go they are dropped: an error message built from stderr never shows them.
    ex.settings.progress = None
    plain = ex.run(Command((sys.executable, "-c", agent), mutating=False))
    assert plain.stderr == "an ordinary warning\n" and PREFIX not in plain.stderr


def test_a_backup_stream_reports_the_bytes_it_planned_and_each_chunk(tmp_path: Path) -> None:
    """push_bundles tells the meter the planned total, then every chunk of every bundle as it streams."""
    from dbrunbook.engines.postgresql.physical import push_bundles
    from dbrunbook.repository.crypto import generate_identity
    from dbrunbook.repository.storage_file import FileStorage

    data = tmp_path / "pgdata"
    (data / "base" / "1").mkdir(parents=True)
    for n in range(3):
        (data / "base" / "1" / f"{16384 + n}").write_bytes(bytes([n]) * (300 << 10))
    _identity, recipient = generate_identity()

    class Meter:
        total: int | None = None

        def __init__(self) -> None:
            self.added: list[tuple[int, str]] = []

        def add(self, count: int, what: str = "") -> None:
            self.added.append((count, what))

    meter = Meter()
    storage = FileStorage(tmp_path / "repo")
    entries = push_bundles(storage, data, "F", [recipient], jobs=2, target=512 << 10, progress=meter)
    assert meter.total == 3 * (300 << 10)
    bundles = {e.name: e.plain_size for e in entries if e.name.startswith("data/")}
    assert len(bundles) >= 2 and {w for _, w in meter.added} == set(bundles)
    # Every byte of every bundle was counted, tar headers and padding on top of the files' bytes.
    assert sum(c for c, _ in meter.added) == sum(bundles.values()) > meter.total

    # The restore meters the same bytes back, against the total the agent computes from the manifest.
    from dbrunbook.engines.postgresql.physical import data_bytes, unpack_all

    back = Meter()
    unpack_all(storage, entries, tmp_path / "restored", [_identity], progress=back)
    assert sum(c for c, _ in back.added) == data_bytes(entries) == sum(bundles.values())
    assert (tmp_path / "restored" / "base" / "1" / "16385").read_bytes() == bytes([1]) * (300 << 10)


def test_without_a_terminal_a_line_every_ten_percent_or_every_minute() -> None:
    now = [1000.0]
    lines: list[str] = []
    show = ProgressLines("backup.full pg-main", lines.append, clock=lambda: now[0])
    for done in range(0, 101, 5):  # every 5%: a line at each new tenth only
        show(ProgressEvent(done * MIB, 100 * MIB))
    assert len(lines) == 10
    assert lines[0].endswith("backup.full pg-main: 10.0 MiB of 100.0 MiB (10%)")
    assert lines[-1].endswith("(100%)")
    # Past the planned bytes (tar headers on top of the files): no line says more than 100%, none twice.
    for done in (101, 110, 120):
        show(ProgressEvent(done * MIB, 100 * MIB))
    assert len(lines) == 10
    # Unknown total (or slow progress): one line a minute.
    lines.clear()
    slow = ProgressLines("restore.run", lines.append, clock=lambda: now[0])
    for step in range(1, 5):
        now[0] += 30
        slow(ProgressEvent(step * MIB, None, "data/0001.tar"))
    assert [line.split(" ", 1)[1] for line in lines] == [
        "restore.run: 2.0 MiB, data/0001.tar",
        "restore.run: 4.0 MiB, data/0001.tar",
    ]
    assert lines[0][:4].isdigit()


def test_the_data_path_tells_the_meter_a_mib_at_a_time_and_the_rest_at_the_end() -> None:
    from dbrunbook.engines.postgresql.physical import metered

    class Meter:
        total: int | None = None

        def __init__(self) -> None:
            self.added: list[int] = []

        def add(self, count: int, what: str = "") -> None:
            self.added.append(count)

    meter = Meter()
    chunks = [b"x" * (512 << 10)] * 5 + [b"h" * 512]
    assert list(metered(chunks, meter, "data/0001.tar")) == chunks  # the bytes pass through untouched
    assert meter.added == [MIB, MIB, (512 << 10) + 512]
