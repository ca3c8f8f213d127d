"""The pure half of shadow migrations: names, the column map, chunk sizing, phases, readiness, throttling."""

from __future__ import annotations

import pytest

from dbrunbook.engines.mariadb.shadow import split_name as my_split
from dbrunbook.engines.postgresql.shadow import split_name
from dbrunbook.engines.shadow_base import CatalogFacts, Column
from dbrunbook.errors import MigrationError, PreflightFailed
from dbrunbook.migrate.shadow.plan import (
    Phase,
    advance,
    column_map,
    cutover_readiness,
    derive_phase,
    names_for,
    next_chunk_rows,
    seconds,
)
from dbrunbook.migrate.shadow.throttle import Limits, Throttle, load_reason

OLD = (
    Column("id", "bigint", False),
    Column("qty", "integer"),
    Column("note", "text"),
    Column("total", "integer", generated=True),
)


def test_names_fit_the_engine_and_stay_apart() -> None:
    short = names_for("a1b2c3", "orders", 63)
    assert (short.shadow, short.old, short.log) == (
        "__dbr_a1b2c3_orders",
        "__dbr_a1b2c3_old_orders",
        "__dbr_a1b2c3_log",
    )
    long_a, long_b = "é" * 40 + "a", "é" * 40 + "b"
    a, b = names_for("a1b2c3", long_a, 63), names_for("a1b2c3", long_b, 63)
    assert all(len(n.encode()) <= 63 for n in (a.shadow, a.old, b.shadow, b.old))
    assert a.shadow != b.shadow and a.old != b.old
    with pytest.raises(ValueError, match="run id"):
        names_for("x; drop", "t", 63)


def test_column_map_casts_renames_and_refuses_a_silent_rename() -> None:
    new = (
        Column("id", "bigint", False),
        Column("qty", "bigint"),
        Column("note", "text"),
        Column("flag", "boolean"),
        Column("total", "integer", generated=True),
    )
    m = column_map(OLD, new, ("id",))
    assert [(x.source, x.target, x.cast) for x in m.mapped] == [
        ("id", "id", False),
        ("qty", "qty", True),
        ("note", "note", False),
    ]
    assert (m.added, m.dropped, m.generated) == (("flag",), (), ("total",))
    renamed = (Column("id", "bigint", False), Column("qty", "integer"), Column("remark", "text"))
    with pytest.raises(PreflightFailed, match="a rename"):
        column_map(OLD, renamed, ("id",))
    m = column_map(OLD, renamed, ("id",), {"note": "remark"})
    assert ("note", "remark") in [(x.source, x.target) for x in m.mapped] and m.dropped == ()
    with pytest.raises(PreflightFailed, match="key column id"):
        column_map(OLD, (Column("qty", "integer"), Column("note", "text")), ("id",))
    with pytest.raises(PreflightFailed, match="no column nope"):
        column_map(OLD, OLD, ("id",), {"nope": "x"})
    dropped = column_map(OLD, (Column("id", "bigint", False), Column("qty", "integer")), ("id",))
    assert dropped.dropped == ("note",) and "column note dropped: its data is not copied" in " ".join(dropped.explain())


@pytest.mark.parametrize(
    ("rows", "took", "expected"),
    [
        (1000, 0.1, 2000),
        (1000, 0.5, 1000),
        (1000, 2.0, 250),
        (100, 10.0, 100),
        (150_000, 0.01, 200_000),
        (1000, 0, 2000),
    ],
)
def test_chunks_grow_slowly_and_shrink_at_once(rows: int, took: float, expected: int) -> None:
    assert next_chunk_rows(rows, took, 0.5) == expected


def test_phases_move_forward_only_and_the_catalog_wins_after_a_crash() -> None:
    assert advance(Phase.READY, Phase.SWAPPED) is Phase.SWAPPED
    assert advance(Phase.COPY, Phase.FAILED) is Phase.FAILED
    with pytest.raises(MigrationError, match="cannot go"):
        advance(Phase.COPY, Phase.SWAPPED)
    with pytest.raises(MigrationError):
        advance(Phase.READY, Phase.ROLLED_BACK)
    swapped = CatalogFacts(table_is_shadow=True, old_exists=True, shadow_exists=False)
    assert derive_phase(Phase.READY, swapped) is Phase.SWAPPED
    assert derive_phase(Phase.SWAPPED, CatalogFacts(False, True, True)) is Phase.ROLLED_BACK
    assert derive_phase(Phase.COPY, CatalogFacts(False, False, True)) is Phase.COPY


def test_cutover_waits_for_a_checksum_and_a_small_backlog() -> None:
    assert cutover_readiness(Phase.READY, 10, 1000, True).ok
    assert "no passing checksum" in cutover_readiness(Phase.READY, 10, 1000, False).why
    assert "5000 captured changes" in cutover_readiness(Phase.READY, 5000, 1000, True).why
    assert not cutover_readiness(Phase.COPY, 0, 1000, True).ok


def test_durations_and_table_names() -> None:
    assert (seconds("100ms", "-x"), seconds("0.5s", "-x"), seconds("2m", "-x"), seconds("3", "-x")) == (
        0.1,
        0.5,
        120,
        3,
    )
    with pytest.raises(PreflightFailed, match="--lock-timeout"):
        seconds("soon", "--lock-timeout")
    assert split_name("orders") == ("", "orders")  # the session's current schema
    assert my_split("`shop`.`odd``name`") == ("shop", "odd`name") and my_split("t") == ("", "t")
    assert split_name('"Sales Ops"."Orders ""2026"" é"') == ("Sales Ops", 'Orders "2026" é')
    assert split_name('app."a.b"') == ("app", "a.b")
    with pytest.raises(PreflightFailed):
        split_name('"open')


def test_throttle_fails_closed_and_says_why_once() -> None:
    assert load_reason(3, [0.2], Limits(max_active=5), replicas=1) is None
    assert load_reason(6, [0.2], Limits(max_active=5), replicas=1) == "6 active sessions (limit 5)"
    assert load_reason(1, [], Limits(), replicas=1) == "0 of 1 replicas streaming"
    assert "replica lag 3.0s" in (load_reason(1, [3.0], Limits(max_lag=1), replicas=1) or "")
    with pytest.raises(MigrationError, match="critical"):
        load_reason(50, [], Limits(critical_active=40), replicas=0)
    from dbrunbook.errors import QueryFailed

    answers: list[object] = [QueryFailed("lost"), "busy", "busy", None]

    def check() -> str | None:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a  # type: ignore[return-value]

    now = [0.0]
    said: list[str] = []
    t = Throttle([check], sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    t.wait(said.append)
    assert said == ["paused: a throttle check failed: lost", "paused: busy"]
    assert t.waited == pytest.approx(0.75)


def test_disk_pauses_under_min_free_and_aborts_under_half_of_it() -> None:
    from dbrunbook.migrate.shadow.throttle import DiskGuard, DiskLow, disk_verdict, parse_size

    assert (parse_size("500M", "-x"), parse_size("20G", "-x"), parse_size("1.5k", "-x")) == (500 << 20, 20 << 30, 1536)
    with pytest.raises(MigrationError, match="--min-free"):
        parse_size("lots", "--min-free")
    assert [disk_verdict(f, 100) for f in (150, 100, 99, 50, 49)] == ["go", "go", "pause", "pause", "abort"]
    assert disk_verdict(None, 100) == "go" and disk_verdict(10, None) == "go"
    now, reads, free = [0.0], [], [200]

    def read() -> int:
        reads.append(now[0])
        return free[0]

    guard = DiskGuard(read, 100, every=5, clock=lambda: now[0])
    assert guard() is None
    free[0], now[0] = 80, 1.0
    assert guard() is None and len(reads) == 1  # read again only every 5 s
    now[0] = 6.0
    assert guard() == "80 bytes free, under --min-free (100)"
    free[0], now[0] = 40, 12.0
    with pytest.raises(DiskLow, match="under half"):
        guard()


def test_sigterm_during_a_copy_is_only_noted_and_the_handlers_come_back() -> None:
    import os
    import signal

    from dbrunbook.migrate.shadow.stop import StopRequests

    before = signal.getsignal(signal.SIGTERM)
    with StopRequests() as stop:
        assert stop.requested is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
