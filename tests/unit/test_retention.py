"""The retention planner: a pure function of (backups, policy, now), so every rule is checked on forged
histories, calendar edges and time zones included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dbrunbook.backup.retention import (
    BackupFacts,
    expired_wal,
    plan_retention,
    stale_incomplete,
)
from dbrunbook.engines.postgresql.lsn import segment_position
from dbrunbook.errors import ConfigError
from dbrunbook.inventory.model import Retention


def daily_history(first: date, days: int, hour: int = 3) -> list[BackupFacts]:
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        t = datetime(d.year, d.month, d.day, hour, tzinfo=UTC)
        out.append(
            BackupFacts(f"{t:%Y%m%dT%H%M%SZ}-F", "physical", t, start_wal=f"00000001{i // 256:08X}{i % 256:08X}")
        )
    return out


def kept_dates(plan_ids: list[str]) -> set[date]:
    return {datetime.strptime(i[:8], "%Y%m%d").date() for i in plan_ids}


def test_no_policy_keeps_everything() -> None:
    history = daily_history(date(2026, 1, 1), 5)
    plan = plan_retention(history, None, datetime(2026, 2, 1, tzinfo=UTC))
    assert plan.delete == [] and plan.wal_keep_from is None
    assert plan_retention(history, Retention(), datetime(2026, 2, 1, tzinfo=UTC)).delete == []


def test_keep_last() -> None:
    history = daily_history(date(2026, 1, 1), 10)
    plan = plan_retention(history, Retention(keep_last=3), datetime(2026, 2, 1, tzinfo=UTC))
    assert plan.keep == [b.backup_id for b in history[-3:]]
    assert all("outside the policy" in d.reasons for d in plan.decisions[:7])
    assert plan.wal_keep_from == history[-3].start_wal


def test_grandfather_father_son_over_400_days() -> None:
    history = daily_history(date(2025, 10, 1), 420)  # to 2026-11-24
    last = history[-1].stop_time.date()
    policy = Retention(daily=7, weekly=4, monthly=12, yearly=3)
    plan = plan_retention(history, policy, history[-1].stop_time + timedelta(hours=1))
    expected: set[date] = {last - timedelta(days=i) for i in range(7)}
    # Weekly: the newest backup of each of the 4 newest ISO weeks: this week's newest, then three Sundays.
    sundays = [d for d in (last - timedelta(days=i) for i in range(1, 30)) if d.weekday() == 6][:3]
    expected |= {last, *sundays}
    # Monthly: the newest of each of the 12 newest months: last days of the 11 previous months.
    month_ends = []
    first_of_month = last.replace(day=1)
    for _ in range(11):
        end = first_of_month - timedelta(days=1)
        month_ends.append(end)
        first_of_month = end.replace(day=1)
    expected |= {last, *month_ends}
    # Yearly: 2026's newest, 2025's last day; the history starts in 2025, so only 2 years exist.
    expected |= {last, date(2025, 12, 31)}
    assert kept_dates(plan.keep) == expected
    assert len(plan.keep) == len(expected) < len(history)
    reasons = {d.backup_id: d.reasons for d in plan.decisions}
    assert "yearly 2025" in reasons["20251231T030000Z-F"] and "monthly 2025-12" in reasons["20251231T030000Z-F"]
    assert plan.wal_keep_from == history[[b.stop_time.date() for b in history].index(date(2025, 12, 31))].start_wal


def test_days_belong_to_the_policy_time_zone() -> None:
    # 22:30 and 23:30 UTC on 1 March: one UTC day, but two Berlin days (23:30 and 00:30).
    a = BackupFacts("a", "physical", datetime(2026, 3, 1, 22, 30, tzinfo=UTC), start_wal="000000010000000000000001")
    b = BackupFacts("b", "physical", datetime(2026, 3, 1, 23, 30, tzinfo=UTC), start_wal="000000010000000000000002")
    earlier = BackupFacts("z", "physical", datetime(2026, 2, 28, 12, tzinfo=UTC), start_wal="000000010000000000000000")
    now = datetime(2026, 3, 2, 6, tzinfo=UTC)
    assert plan_retention([earlier, a, b], Retention(daily=2), now).keep == ["z", "b"]
    assert plan_retention([earlier, a, b], Retention(daily=2, timezone="Europe/Berlin"), now).keep == ["a", "b"]
    # The inventory refuses an unknown zone when it loads; the planner still defends itself.
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        plan_retention([a], Retention.model_construct(daily=1, timezone="Mars/Olympus"), now)
    with pytest.raises(ValueError, match="not a known time zone"):
        Retention(daily=1, timezone="Mars/Olympus")


def test_iso_weeks_span_the_new_year() -> None:
    # 2026-12-31 (Thu) and 2027-01-02 (Sat) are both in ISO week 2026-W53.
    dec31 = BackupFacts(
        "dec31", "physical", datetime(2026, 12, 31, 3, tzinfo=UTC), start_wal="000000010000000000000001"
    )
    jan2 = BackupFacts("jan2", "physical", datetime(2027, 1, 2, 3, tzinfo=UTC), start_wal="000000010000000000000002")
    dec24 = BackupFacts(
        "dec24", "physical", datetime(2026, 12, 24, 3, tzinfo=UTC), start_wal="000000010000000000000000"
    )
    plan = plan_retention([dec24, dec31, jan2], Retention(weekly=2), datetime(2027, 1, 3, tzinfo=UTC))
    assert plan.keep == ["dec24", "jan2"]
    assert "weekly 2026-53" in plan.decisions[2].reasons
    yearly = plan_retention([dec24, dec31, jan2], Retention(yearly=2), datetime(2027, 1, 3, tzinfo=UTC))
    assert yearly.keep == ["dec31", "jan2"]


def chain_history() -> list[BackupFacts]:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)

    def b(i: str, kind: str, h: int, parent: str | None = None) -> BackupFacts:
        return BackupFacts(i, kind, t0 + timedelta(hours=h), parent, f"00000001000000000000{h:04X}")

    return [
        b("F1", "physical", 0),
        b("I1", "incremental", 1, "F1"),
        b("I2", "incremental", 2, "I1"),
        b("F2", "physical", 3),
        b("I3", "incremental", 4, "F2"),
    ]


def test_kept_incrementals_keep_their_whole_chain() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    history = chain_history()
    plan = plan_retention(history, Retention(keep_last=1), now)
    assert plan.keep == ["F2", "I3"] and plan.delete == ["F1", "I1", "I2"]
    assert "needed by I3" in {d.backup_id: d.reasons for d in plan.decisions}["F2"]
    # Keeping I2 (by date) drags I1 and F1 along, never leaving an orphan incremental.
    only_i2 = plan_retention(history[:3], Retention(keep_last=1), now)
    assert only_i2.keep == ["F1", "I1", "I2"]
    assert only_i2.wal_keep_from == history[0].start_wal


def test_the_newest_restorable_backup_survives_any_policy() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    history = chain_history()
    plan = plan_retention(history, Retention(daily=0), now)
    assert plan.keep == ["F2", "I3"]
    assert "the newest restorable physical backup is always kept" in plan.decisions[-1].reasons
    # A broken chain (its full backup gone) is not "restorable": the newest good one is kept instead.
    broken = [b for b in history if b.backup_id != "F2"]
    plan = plan_retention(broken, Retention(daily=0), now)
    assert plan.keep == ["F1", "I1", "I2"]
    assert any("I3 cannot be restored" in n for n in plan.notes)


def test_pitr_window_keeps_its_base_and_everything_inside() -> None:
    history = daily_history(date(2026, 4, 1), 10)  # 1..10 April 03:00
    now = datetime(2026, 4, 10, 4, tzinfo=UTC)
    plan = plan_retention(history, Retention(keep_last=1, pitr_window="3d"), now)
    # Window from 7 April 04:00: backups of 8, 9, 10 April inside, 7 April 03:00 is the base.
    assert kept_dates(plan.keep) == {date(2026, 4, d) for d in (7, 8, 9, 10)}
    assert plan.wal_keep_from == history[6].start_wal
    assert plan.pitr_from == datetime(2026, 4, 7, 4, tzinfo=UTC)
    # A logical backup is not a PITR base.
    logical = BackupFacts("L", "logical", datetime(2026, 4, 7, 3, 30, tzinfo=UTC))
    plan = plan_retention([*history, logical], Retention(keep_last=1, pitr_window="3d"), now)
    assert "base of the PITR window" in " ".join({d.backup_id: d.reasons for d in plan.decisions}[history[6].backup_id])
    assert plan.wal_keep_from == history[6].start_wal


def test_logical_and_physical_backups_are_counted_apart() -> None:
    day = datetime(2026, 4, 10, tzinfo=UTC)
    base = BackupFacts("F", "physical", day.replace(hour=3), start_wal="000000010000000000000005")
    dump = BackupFacts("L", "logical", day.replace(hour=4))
    older = BackupFacts("F0", "physical", day.replace(hour=2) - timedelta(days=1), start_wal="000000010000000000000001")
    plan = plan_retention([older, base, dump], Retention(daily=1), day.replace(hour=6))
    # The 04:00 dump takes the logical slot of the day; the 03:00 base backup keeps the physical one.
    assert plan.keep == ["F", "L"] and plan.delete == ["F0"]
    # Two days of both kinds, daily 2: every one is kept. Counted together, the two dumps would take both
    # daily slots and the older base backup (not the newest, so no safety rule saves it) would go.
    dump0 = BackupFacts("L0", "logical", older.stop_time + timedelta(hours=2))
    both = plan_retention([older, dump0, base, dump], Retention(daily=2), day.replace(hour=6))
    assert both.delete == [] and "daily 2026-04-09" in dict((d.backup_id, d.reasons) for d in both.decisions)["F0"]


def test_wal_expiry_and_segment_order() -> None:
    names = [
        "000000010000000000000001",
        "0000000100000000000000FF",
        "000000010000000100000000",
        "000000010000000100000001.00000028.backup",
        "000000020000000100000002",
        "000000020000000100000002.partial",
        "00000002.history",
        "000000020000000100000005",
    ]
    assert expired_wal(names, "000000020000000100000002") == names[:4]
    assert expired_wal(names, None) == []
    assert segment_position("0000000100000000000000FF") < segment_position("000000010000000100000000")


def test_incomplete_backups_expire_only_after_a_grace_period() -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    newest = {"old": now - timedelta(days=2), "running": now - timedelta(minutes=5), "done": now - timedelta(days=9)}
    assert stale_incomplete(newest, {"done"}, now) == ["old"]
