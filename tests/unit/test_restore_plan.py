"""The pure part of restore: targets, recovery settings and the plan a dry run prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dbrunbook.engines.postgresql.restore_plan import plan_restore, recovery_settings
from dbrunbook.engines.target import RecoveryTarget
from dbrunbook.errors import RestoreError
from dbrunbook.repository.manifest import Manifest

STOP = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
MANIFEST = Manifest(
    backup_id="20261122T030000Z-F",
    kind="physical",
    engine="postgresql",
    cluster="pg",
    server_version="15.4",
    start_wal="000000010000000000000002",
    start_time=STOP - timedelta(minutes=1),
    stop_time=STOP,
    source_host="a",
    objects=[],
    recipients=[],
    tool_version="t",
)


def test_one_target_at_most_and_pause_needs_one() -> None:
    with pytest.raises(RestoreError, match="at most one"):
        RecoveryTarget.from_flags(time="2026-11-22 03:00:00+00", lsn="0/1", xid=None, name=None)
    with pytest.raises(RestoreError, match="pause needs a target"):
        RecoveryTarget.from_flags(time=None, lsn=None, xid=None, name=None, action="pause")
    assert RecoveryTarget.from_flags(time=None, lsn=None, xid=None, name=None).kind == "latest"


def test_recovery_settings_quote_values_and_disable_archiving() -> None:
    target = RecoveryTarget("name", "it's here", "pause")
    text = recovery_settings(target, "/v/bin/dbrunbook-host wal-fetch --config /c %f %p", 5499)
    assert "recovery_target_name = 'it''s here'" in text
    assert "recovery_target_action = 'pause'" in text
    assert "archive_mode = 'off'" in text and "port = 5499" in text
    assert "restore_command = '/v/bin/dbrunbook-host wal-fetch --config /c %f %p'" in text
    latest = recovery_settings(RecoveryTarget(), "x", 1)
    assert "recovery_target_action" not in latest and "recovery_target_time =" not in latest


def test_plan_refuses_time_before_backup_and_explains_itself() -> None:
    with pytest.raises(RestoreError, match="before backup"):
        plan_restore(MANIFEST, "pg", "h", "/d", 5499, RecoveryTarget("time", "2026-11-22T02:00:00+00:00"))
    plan = plan_restore(MANIFEST, "pg", "h", "/d", 5499, RecoveryTarget("time", "2026-11-22T04:00:00+00:00"))
    steps = "\n".join(plan.steps)
    assert "WAL from 000000010000000000000002" in steps and "port 5499" in steps
    assert plan.as_dict()["target"] == "time 2026-11-22T04:00:00+00:00"


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("xid", "747\nINSERT 0 1"),
        ("xid", "abc"),
        ("lsn", "0/ZZ"),
        ("name", "x" * 64),
        ("time", "yesterday"),
        ("name", "ok\nrestore_command = 'rm -rf /'"),
    ],
)
def test_malformed_targets_never_reach_the_config(flag: str, value: str) -> None:
    given = {k: (value if k == flag else None) for k in ("time", "lsn", "xid", "name")}
    with pytest.raises(RestoreError):
        RecoveryTarget.from_flags(time=given["time"], lsn=given["lsn"], xid=given["xid"], name=given["name"])


def test_tablespace_places_are_checked() -> None:
    spaces = {"16390": "/srv/fast", "16391": "/srv/slow"}
    plan = plan_restore(MANIFEST, "pg", "h", "/d", 5499, RecoveryTarget(), tablespaces=spaces, remap=["16391=/r/slow"])
    assert plan.tablespaces == {"16390": "/srv/fast", "16391": "/r/slow"} and plan.remapped == {"16391"}
    assert any("restore tablespace 16391 into /r/slow" in s for s in plan.steps)
    for remap, message in (
        (["16392=/x"], "has no tablespace 16392"),
        (["16390=relative"], "OID=/absolute/dir"),
        (["16390=/d/ts"], "overlap"),  # inside the data directory
        (["16390=/srv/slow/sub"], "overlap"),  # inside another tablespace
    ):
        with pytest.raises(RestoreError, match=message):
            plan_restore(MANIFEST, "pg", "h", "/d", 5499, RecoveryTarget(), tablespaces=spaces, remap=remap)


def test_why_recovery_stopped_is_the_servers_own_line_not_a_refused_poll() -> None:
    from dbrunbook.engines.postgresql.restore import why_stopped

    tail = (
        '2026-12-06 03:13:08.410 UTC [20701] LOG:  restored log file "000000010000000000000005" from archive\n'
        '2026-12-06 03:13:08.455 UTC [20701] FATAL:  could not restore file "000000010000000000000006" from '
        "archive: child process exited with exit code 128\n"
        "2026-12-06 03:13:08.461 UTC [20738] dbrunbook@dbrunbook FATAL:  the database system is in recovery mode\n"
        "2026-12-06 03:13:08.470 UTC [20699] LOG:  startup process (PID 20701) exited with exit code 1\n"
    )
    assert why_stopped(tail).endswith("child process exited with exit code 128")
    assert why_stopped("no fatal line at all\n") == "no fatal line at all"
