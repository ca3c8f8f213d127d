"""The pure parts of MariaDB backup and recovery: names, coordinates, binlog headers, replay planning."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbrunbook.backup.retention import BackupFacts, plan_retention
from dbrunbook.engines.mariadb.backup import pick_physical_parent
from dbrunbook.engines.mariadb.binlog import (
    BinlogName,
    Coordinates,
    Gtid,
    ReplayTarget,
    archived,
    binlog_report,
    binlog_start,
    checkpoint_lsns,
    covers,
    dump_coordinates,
    expired_binlogs,
    files_to_replay,
    mariabackup_coordinates,
    parse_gtid_state,
)
from dbrunbook.engines.mariadb.driver import MariaDB, MySQL, client_defaults
from dbrunbook.engines.mariadb.host import HeadTail, binlog_args
from dbrunbook.engines.mariadb.restore import plan_my_restore
from dbrunbook.errors import BackupError, EngineNotSupported, RestoreError
from dbrunbook.inventory.model import Host, Retention
from dbrunbook.repository.manifest import Manifest

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def test_binlog_keys_round_trip_and_keep_servers_apart() -> None:
    name = BinlogName(7, "mariadb-bin.000042")
    key = name.key("ab" * 32)
    assert key == f"binlog/7/mariadb-bin.000042.sha256-{'ab' * 8}.zst.age"
    assert BinlogName.of_key(key) == name and name.number == 42
    other = BinlogName(8, "mariadb-bin.000042").key("cd" * 32)
    assert archived([key, other, "binlog/7/stray-object"], 7) == {"mariadb-bin.000042": key}
    with pytest.raises(BackupError):
        BinlogName(1, "mariadb-bin.index")


MARIADB_HEAD = """-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB
-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;
-- CHANGE MASTER TO MASTER_LOG_FILE='mariadb-bin.000005', MASTER_LOG_POS=389;
"""
MARIADB_TAIL = """-- SET GLOBAL gtid_slave_pos='0-1-10,1-2-3';
-- Dump completed on 2026-11-29 19:03:09
"""
MYSQL_HEAD = """-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000003', SOURCE_LOG_POS=157;
SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5';
"""


def test_dump_coordinates_of_mariadb_and_mysql_dumps() -> None:
    assert dump_coordinates(MARIADB_HEAD, MARIADB_TAIL) == Coordinates("mariadb-bin.000005", 389, "0-1-10,1-2-3")
    mysql = dump_coordinates(MYSQL_HEAD, "")
    assert (mysql.file, mysql.position, mysql.gtid) == (
        "binlog.000003",
        157,
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
    )
    with pytest.raises(BackupError, match="binlog position"):
        dump_coordinates("-- MariaDB dump\n", MARIADB_TAIL)


def test_mariabackup_files() -> None:
    info = (
        "tool_name = mariabackup\n"
        "binlog_pos = filename 'mariadb-bin.000007', position '901', GTID of the last change '0-1-13'\n"
    )
    assert mariabackup_coordinates(info) == Coordinates("mariadb-bin.000007", 901, "0-1-13")
    assert mariabackup_coordinates("tool_name = mariabackup\n") is None
    lsns = checkpoint_lsns("backup_type = incremental\nfrom_lsn = 44420\nto_lsn = 50000\nlast_lsn = 50012\n")
    assert lsns == {"from_lsn": 44420, "to_lsn": 50000, "last_lsn": 50012}


def test_head_tail_keeps_only_the_edges() -> None:
    chunks = [b"A" * 70000, b"B" * 300000, b"C" * 10]
    tap = HeadTail(iter(chunks))
    assert b"".join(tap) == b"".join(chunks)
    assert tap.head == b"A" * 65536 and tap.tail == (b"B" * 300000 + b"C" * 10)[-65536:]


def _event(kind: int, stamp: int, body: bytes) -> bytes:
    length = 19 + len(body) + 4  # header, body, CRC32
    return struct.pack("<IBIIIH", stamp, kind, 1, length, 0, 0) + body + b"\0\0\0\0"


def test_binlog_start_reads_the_gtid_list_event() -> None:
    stamp = int(T0.timestamp())
    gtids = struct.pack("<I", 2 | (1 << 28)) + struct.pack("<IIQ", 0, 1, 42) + struct.pack("<IIQ", 3, 2, 7)
    data = b"\xfebin" + _event(15, stamp, b"\x04\x00" + b"x" * 90) + _event(163, stamp + 1, gtids) + b"tail"
    start = binlog_start(data)
    assert start.created == T0
    assert start.before == {0: Gtid(0, 1, 42), 3: Gtid(3, 2, 7)}
    no_list = b"\xfebin" + _event(15, stamp, b"x" * 90) + _event(2, stamp, b"BEGIN")
    assert binlog_start(no_list).before == {}
    with pytest.raises(BackupError, match="magic"):
        binlog_start(b"PK\x03\x04")


def test_gtid_state_and_coverage() -> None:
    state = parse_gtid_state("0-1-10, 1-2-3")
    assert covers(state, Gtid.parse("0-1-10")) and not covers(state, Gtid.parse("0-1-11"))
    assert not covers(state, Gtid.parse("5-1-1"))
    with pytest.raises(RestoreError):
        Gtid.parse("3e11fa47:1-5")


def test_replay_target_flags() -> None:
    assert ReplayTarget.from_flags(None, None, None).kind == "latest"
    t = ReplayTarget.from_flags("2026-11-20T04:00:00+01:00", None, None)
    assert t.time == T0
    with pytest.raises(RestoreError, match="time zone"):
        ReplayTarget.from_flags("2026-11-20T04:00:00", None, None)
    with pytest.raises(RestoreError, match="one recovery target"):
        ReplayTarget.from_flags("2026-11-20T04:00:00Z", None, "0-1-2")
    with pytest.raises(RestoreError, match="FILE:POSITION"):
        ReplayTarget.from_flags(None, "mariadb-bin.000003", None)
    p = ReplayTarget.from_flags(None, "mariadb-bin.000003:120", None)
    assert (p.file, p.position) == ("mariadb-bin.000003", 120)


ARCHIVE = [f"mariadb-bin.{n:06d}" for n in (3, 4, 5, 6)]


def test_files_to_replay_from_the_backup_to_the_target() -> None:
    start = Coordinates("mariadb-bin.000004", 389)
    latest = ReplayTarget("latest")
    assert files_to_replay(start, ARCHIVE, latest) == ARCHIVE[1:]
    pos = ReplayTarget("position", file="mariadb-bin.000005", position=10)
    assert files_to_replay(start, ARCHIVE, pos) == ["mariadb-bin.000004", "mariadb-bin.000005"]
    with pytest.raises(RestoreError, match="before the backup"):
        files_to_replay(start, ARCHIVE, ReplayTarget("position", file="mariadb-bin.000004", position=100))
    with pytest.raises(RestoreError, match="not in the repository"):
        files_to_replay(start, ARCHIVE, ReplayTarget("position", file="mariadb-bin.000009", position=4))
    with pytest.raises(RestoreError, match=r"mariadb-bin\.000005 is missing"):
        files_to_replay(start, [ARCHIVE[0], ARCHIVE[1], ARCHIVE[3]], latest)


def test_binlog_args_stop_where_one_reader_over_all_files_would() -> None:
    from dbrunbook.engines.mariadb.binlog import BinlogStart

    nxt = BinlogStart(T0 + timedelta(minutes=5), {0: Gtid(0, 1, 50)})
    start = Coordinates("mariadb-bin.000004", 389)
    at_time = ReplayTarget("time", time=T0 + timedelta(minutes=1))
    assert binlog_args(start, at_time, "mariadb-bin.000004", nxt) == (
        ["--start-position=389", "--stop-datetime=2026-11-20 03:01:00"],
        True,
    )
    assert binlog_args(None, ReplayTarget("time", time=T0 + timedelta(hours=1)), "x.000004", nxt)[1] is False
    gtid_here = ReplayTarget("gtid", gtid=Gtid(0, 1, 45))
    assert binlog_args(None, gtid_here, "x.000004", nxt) == (["--stop-position=0-1-45"], True)
    gtid_later = ReplayTarget("gtid", gtid=Gtid(0, 1, 60))
    assert binlog_args(None, gtid_later, "x.000004", nxt) == ([], False)
    assert binlog_args(None, gtid_later, "x.000004", None) == (["--stop-position=0-1-60"], True)
    pos = ReplayTarget("position", file="x.000005", position=77)
    assert binlog_args(None, pos, "x.000004", nxt) == ([], False)
    assert binlog_args(None, pos, "x.000005", None) == (["--stop-position=77"], True)


def test_binlog_report_names_the_exact_gap_and_the_files_at_risk() -> None:
    archive = ["mariadb-bin.000003", "mariadb-bin.000004"]
    server = ["mariadb-bin.000007", "mariadb-bin.000008", "mariadb-bin.000009"]
    report = binlog_report(archive, server, "mariadb-bin.000004", 86400).as_dict()
    assert report["gaps"] == [{"from": "mariadb-bin.000005", "to": "mariadb-bin.000006", "missing": 2}]
    assert report["at_risk"] == ["mariadb-bin.000007", "mariadb-bin.000008"]
    quiet = binlog_report(
        [*archive, "mariadb-bin.000005", "mariadb-bin.000006"], server, "mariadb-bin.000004", 0
    ).as_dict()
    assert quiet["gaps"] == [] and quiet["at_risk"] == [] and quiet["not_archived_yet"]
    # Holes before the oldest backup's start are not gaps: no recovery reads them.
    assert (
        binlog_report(
            ["mariadb-bin.000001", "mariadb-bin.000004"], ["mariadb-bin.000005"], "mariadb-bin.000004", 0
        ).as_dict()["gaps"]
        == []
    )


def test_expired_binlogs_stop_at_the_oldest_kept_start() -> None:
    archive = {f"mariadb-bin.{n:06d}": f"k{n}" for n in range(1, 6)}
    assert expired_binlogs(archive, "mariadb-bin.000003") == ["k1", "k2"]
    assert expired_binlogs(archive, None) == []


def _manifest(
    backup_id: str, kind: str, *, parent: str | None = None, host: str = "db-1", at: datetime = T0
) -> Manifest:
    return Manifest(
        backup_id=backup_id,
        kind=kind,
        engine="mariadb",
        cluster="c",
        parent=parent,
        server_version="10.11.19-MariaDB",
        stop_lsn="5000" if kind != "logical" else None,
        start_time=at,
        stop_time=at + timedelta(minutes=1),
        source_host=host,
        objects=[],
        recipients=["age1" + "q" * 58],
        tool_version="0",
        extra={"server_id": 1, "binlog": {"file": "mariadb-bin.000004", "position": 389, "gtid": "0-1-10"}},
    )


def test_incremental_parent_rules() -> None:
    full = _manifest("F1", "physical")
    inc = _manifest("I1", "incremental", parent="F1")
    assert pick_physical_parent([full, inc], "db-1", 7)[0] == inc
    assert pick_physical_parent([full, inc], "db-1", 2)[0] is None
    assert "db-2" in pick_physical_parent([full, _manifest("F2", "physical", host="db-2")], "db-1", 7)[1]
    assert "broken" in pick_physical_parent([inc], "db-1", 7)[1]
    assert pick_physical_parent([_manifest("L1", "logical")], "db-1", 7) == (None, "no earlier physical backup")


def test_restore_plan_refuses_targets_before_the_backup() -> None:
    m = _manifest("L1", "logical")
    archive = {n: f"key/{n}" for n in ARCHIVE}
    plan = plan_my_restore("c", m, [m], archive, "db-2", "/srv/new/", 3400, ReplayTarget("latest"))
    assert plan.binlogs == ARCHIVE[1:] and plan.binlog_keys == [f"key/{n}" for n in ARCHIVE[1:]]
    assert plan.data_dir == "/srv/new" and "load dump.sql of L1" in plan.steps()
    with pytest.raises(RestoreError, match="before backup"):
        plan_my_restore("c", m, [m], archive, "db-2", "/d", 1, ReplayTarget("time", time=T0 - timedelta(hours=1)))
    with pytest.raises(RestoreError, match="already in backup"):
        plan_my_restore("c", m, [m], archive, "db-2", "/d", 1, ReplayTarget("gtid", gtid=Gtid(0, 1, 9)))


def test_check_rows_needs_a_dump_that_recorded_counts() -> None:
    archive = {n: f"key/{n}" for n in ARCHIVE}
    dump = _manifest("L1", "logical")
    with pytest.raises(RestoreError, match="recorded no row counts"):
        plan_my_restore("c", dump, [dump], archive, "db-2", "/d", 1, ReplayTarget("latest"), check_rows=True)
    copy = _manifest("F1", "physical")
    with pytest.raises(RestoreError, match="backup F1 is physical"):
        plan_my_restore("c", copy, [copy], archive, "db-2", "/d", 1, ReplayTarget("latest"), check_rows=True)
    dump.extra["row_counts"] = {"shop": {"orders": 1000}}
    plan = plan_my_restore("c", dump, [dump], archive, "db-2", "/d", 1, ReplayTarget("latest"), check_rows=True)
    assert plan.check_rows and any("count the rows of every table" in step for step in plan.steps())


def test_mariadb_dumps_are_pitr_bases_in_retention() -> None:
    backups = [
        BackupFacts("L1", "logical", T0, rolls_forward=True),
        BackupFacts("L2", "logical", T0 + timedelta(days=3), rolls_forward=True),
    ]
    plan = plan_retention(backups, Retention(keep_last=1, pitr_window="2d"), T0 + timedelta(days=3, hours=1))
    assert plan.keep == ["L1", "L2"]
    assert any("base of the PITR window" in r for r in next(d for d in plan.decisions if d.backup_id == "L1").reasons)
    pg = [BackupFacts("L1", "logical", T0), BackupFacts("L2", "logical", T0 + timedelta(days=3))]
    assert plan_retention(pg, Retention(keep_last=1, pitr_window="2d"), T0 + timedelta(days=3, hours=1)).keep == ["L2"]


HOST = Host.model_validate(
    {"role": "primary", "connection": {"type": "local"}, "port": 3306, "data_dir": "/var/lib/mysql"}
)


def test_engine_flavours_keep_their_flags() -> None:
    maria = MariaDB().dump_argv(HOST, "/p/client.cnf", [])
    mysql = MySQL().dump_argv(HOST, "/p/client.cnf", ["shop"])
    assert maria[:2] == ["mariadb-dump", "--defaults-extra-file=/p/client.cnf"]
    assert "--master-data=2" in maria and "--gtid" in maria and maria[-1] == "--all-databases"
    assert (
        "--source-data=2" in mysql and "--set-gtid-purged=ON" in mysql and mysql[-3:] == ["--databases", "--", "shop"]
    )
    # A database named like an option stays a name: "--" ends mariadb-dump's options.
    odd = MariaDB().dump_argv(HOST, "/p/client.cnf", ["--where=1", "shop"])
    assert odd[-4:] == ["--databases", "--", "--where=1", "shop"]
    assert all(flag in maria for flag in ("--single-transaction", "--routines", "--triggers", "--events", "--hex-blob"))
    inc = MariaDB().physical_argv(HOST, "/p/c.cnf", "/t", "/l", 44420, 2)
    assert inc[1] == "--defaults-extra-file=/p/c.cnf" and "--incremental-lsn=44420" in inc
    with pytest.raises(EngineNotSupported):
        MySQL().physical_argv(HOST, "/p/c.cnf", "/t", "/l", None, 2)


def test_client_defaults_quote_what_option_files_would_cut() -> None:
    text = client_defaults("dbrunbook", 'pa#ss"w\\rd')
    assert text == '[client]\nuser="dbrunbook"\npassword="pa#ss\\"w\\\\rd"\n'


def test_replay_checks_each_binlog_against_the_digest_in_its_name(tmp_path: Path) -> None:
    """As wal-fetch does for WAL: a binlog whose content is not what its key says fails the restore (before
    the next file is replayed), and a key without a proper digest is refused before anything is read."""
    import hashlib

    from dbrunbook.engines.mariadb.binlog import BinlogName
    from dbrunbook.engines.mariadb.host import _Peek
    from dbrunbook.errors import ObjectCorruptError
    from dbrunbook.inventory.model import Repository
    from dbrunbook.inventory.secrets import SecretResolver
    from dbrunbook.repository.crypto import generate_identity
    from dbrunbook.repository.objects import store
    from dbrunbook.repository.storage import open_storage

    identity, recipient = generate_identity()
    storage = open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))
    body = b"\xfebin" + _event(15, int(T0.timestamp()), b"x" * 90) + _event(2, 0, b"BEGIN" * 1000)
    name = BinlogName(1, "mariadb-bin.000007")
    good = store(storage, "b", name.key(hashlib.sha256(body).hexdigest()), [body], [recipient]).key
    assert b"".join(_Peek(storage, good, [identity]).chunks()) == body
    other = BinlogName(1, "mariadb-bin.000008")
    wrong = store(storage, "b", other.key(hashlib.sha256(b"something else").hexdigest()), [body], [recipient]).key
    with pytest.raises(ObjectCorruptError, match=r"mariadb-bin\.000008.*does not match the digest in its name"):
        b"".join(_Peek(storage, wrong, [identity]).chunks())
    empty = store(storage, "b", f"{other.prefix()}.zst.age", [body], [recipient]).key
    with pytest.raises(ObjectCorruptError, match="not 16 lowercase hex digits"):
        _Peek(storage, empty, [identity])
