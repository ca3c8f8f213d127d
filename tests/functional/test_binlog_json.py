"""binlog.sync's and binlog.check's results, pinned key by key: the documents ``--json`` prints. The server is a
FakeDatabase, the hosts FakeExecutors, the repository a real file one."""

from __future__ import annotations

import json
from datetime import timedelta

from dbrunbook.execution.command import Command
from dbrunbook.execution.testing import FakeDatabase, Reply, Rows

from .world import World

LOGS = Rows(
    ("Log_name", "File_size"), (("mariadb-bin.000001", 100), ("mariadb-bin.000002", 200), ("mariadb-bin.000003", 50))
)


def server() -> FakeDatabase:
    facts = ("10.11.6-MariaDB", 1, 1, "/var/lib/mysql/mariadb-bin", "ROW", "0-1-42")
    return (
        FakeDatabase()
        .on(r"^SELECT VERSION\(\), @@server_id", Rows(("v", "s", "l", "b", "f", "g"), (facts,)))
        .on(r"^SHOW BINARY LOGS$", LOGS)
        .on(
            r"^SHOW BINLOG EVENTS IN 'mariadb-bin.000003'",
            Rows(("Event_type", "Info"), (("Format_desc", ""), ("Gtid_list", "[0-1-42]"))),
        )
    )


def pushed(cmd: Command) -> Reply:
    names = [a for a in cmd.argv if a.startswith("mariadb-bin.")]
    return Reply(stdout=json.dumps({n: "archived" for n in names}) + "\n")


def test_binlog_sync_result(world: World) -> None:
    from dbrunbook.engines.mariadb.backup import binlog_sync

    world.binlogs("orders-my", [1])
    world.fake("my1").on(r"dbrunbook-host binlog-push ", pushed)
    ctx = world.context("orders-my", server())
    result = binlog_sync(ctx).as_dict()
    assert result == {
        "cluster": "orders-my",
        "host": "my1",
        "server_id": 1,
        "rotated": False,
        "open": "mariadb-bin.000003",
        "archived": ["mariadb-bin.000002"],
        "already_archived": ["mariadb-bin.000001"],
        "gtid": "0-1-42",
    }


def test_binlog_sync_rotating_with_nothing_to_push(world: World) -> None:
    from dbrunbook.engines.mariadb.backup import binlog_sync

    world.binlogs("orders-my", [1, 2])
    database = server().on(r"'mariadb-bin.000003'", Rows(("Event_type", "Info"), (("Gtid_list", "[0-1-40]"),)))
    database.on(r"^FLUSH BINARY LOGS$", Rows())
    ctx = world.context("orders-my", database)
    result = binlog_sync(ctx).as_dict()
    # The fake server lists the same files after FLUSH: what counts is that it rotated.
    assert result == {
        "cluster": "orders-my",
        "host": "my1",
        "server_id": 1,
        "rotated": True,
        "open": "mariadb-bin.000003",
        "archived": [],
        "already_archived": ["mariadb-bin.000001", "mariadb-bin.000002"],
        "gtid": "0-1-42",
    }
    assert list(result) == ["cluster", "host", "server_id", "rotated", "open", "archived", "already_archived", "gtid"]


def test_binlog_follow_result(world: World) -> None:
    from dbrunbook.engines.mariadb.backup import binlog_follow

    world.binlogs("orders-my", [1, 2])
    streamed = {"archived": ["mariadb-bin.000003"], "streaming": "mariadb-bin.000004"}
    world.fake("my1-restore").on(r"dbrunbook-host binlog-follow ", Reply(stdout=json.dumps(streamed) + "\n"))
    ctx = world.context("orders-my", server())
    result = binlog_follow(ctx, duration=5).as_dict()
    assert result == {
        "cluster": "orders-my",
        "host": "my1",
        "server_id": 1,
        "rotated": False,
        "open": "mariadb-bin.000003",
        "archived": [],
        "already_archived": ["mariadb-bin.000001", "mariadb-bin.000002"],
        "gtid": "0-1-42",
        "follower": "my1-restore",
        "streamed": ["mariadb-bin.000003"],
        "streaming": "mariadb-bin.000004",
    }
    assert list(result)[-3:] == ["follower", "streamed", "streaming"]


def test_binlog_check_document(world: World) -> None:
    from dbrunbook.errors import WalCheckFailed
    from dbrunbook.tasks.binlog_tasks import _check_one

    world.backup("orders-my", "logical", timedelta(days=1), binlog=("mariadb-bin.000001", 4, "0-1-10"))
    world.binlogs("orders-my", [1])
    database = server().on(r"GREATEST\(@@binlog_expire_logs_seconds", Rows(("e",), ((86400,),)))
    database.on(
        r"^SHOW BINARY LOGS$", Rows(("Log_name", "File_size"), (("mariadb-bin.000003", 1), ("mariadb-bin.000004", 1)))
    )
    report = _check_one(world.context("orders-my", database))
    assert report.doc == {
        "cluster": "orders-my",
        "server_id": 1,
        "archived": 1,
        "from": "mariadb-bin.000001",
        "newest_archived": "mariadb-bin.000001",
        "gaps": [{"from": "mariadb-bin.000002", "to": "mariadb-bin.000002", "missing": 1}],
        "not_archived_yet": ["mariadb-bin.000003"],
        "expiry_seconds": 86400.0,
        "at_risk": ["mariadb-bin.000003"],
    }
    assert list(report.doc) == [
        "cluster",
        "server_id",
        "archived",
        "from",
        "newest_archived",
        "gaps",
        "not_archived_yet",
        "expiry_seconds",
        "at_risk",
    ]
    assert isinstance(report.finding, WalCheckFailed)
    assert isinstance(report.doc["expiry_seconds"], float)
