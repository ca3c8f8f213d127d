"""What the fake hosts answer when a restore (or a drill's restore) runs on them: small models of the
restored server's side, shared by the restore and drill tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from dbrunbook.execution.command import Command
from dbrunbook.execution.testing import FakeDatabase, FakeExecutor, Reply, Rows

from .world import NOW, PG_BIN


@dataclass
class FakePostgres:
    """The restore host's side: what recovery reports when polled, and the settings it was given."""

    reached_lsn: str
    bin_dir: str = PG_BIN
    paused: bool = False
    settings: list[str] = field(default_factory=list)

    def install(self, fake: FakeExecutor) -> None:
        fake.on(r"^sh -c 'test ! -e ", Reply())  # data directory empty
        fake.on(rf"^{self.bin_dir}/pg_isready ", Reply(exit_code=2))  # nothing listens on the port
        fake.on(r"^chmod 0700 ")
        fake.on(r"dbrunbook-host restore-files ")
        fake.on(r"postgresql\.auto\.conf", self._settings)
        fake.on(rf"^{self.bin_dir}/pg_ctl start ")
        fake.on(r"^sh -c '\"\$1\" status ", self._progress)

    def _settings(self, cmd: Command) -> Reply:
        self.settings.append(cmd.stdin or "")  # recovery settings hold no secret: a test may read them
        return Reply()

    def _progress(self, _cmd: Command) -> Reply:
        state = "t|paused" if self.paused else "f|"
        return Reply(stdout=f"status=0\n{state}|{self.reached_lsn}|{NOW.isoformat()}\n")


def restore_host(fake: FakeExecutor) -> FakeExecutor:
    fake.on(r"^sh -c 'test ! -e ", Reply())  # data directory empty
    fake.on(r"/bin/python -c 'import socket", Reply(exit_code=1))  # port free
    fake.on(r"^mariadb-install-db ")
    fake.on(r"^sh -c 'log=\$1; want=\$2")  # start the server in the background
    fake.on(r"^mariadb-admin .* ping$")
    fake.on(r"dbrunbook-host my-extract ")
    fake.on(r"^mariadb-backup --prepare ")
    # What the agent prints last (engines/mariadb/host.Replay): here, a replay that found nothing to read.
    replayed = '{"binlogs_replayed": [], "stopped_in": null, "stop_reason": "end of the archived binlogs"}'
    fake.on(r"dbrunbook-host my-replay ", Reply(stdout=replayed + "\n"))
    return fake


def restored_server(gtid: str = "0-1-35") -> FakeDatabase:
    return FakeDatabase().on(r"^SELECT @@gtid_binlog_pos$", Rows(("@@gtid_binlog_pos",), ((gtid,),)))


def drill_host(fake: FakeExecutor, bin_dir: str = PG_BIN) -> FakeExecutor:
    """What a drill adds around its restore: its marker, teardown and integrity checks."""
    fake.on(r"^sh -c 'test -e ")  # the drill's directory is a drill's (or absent)
    fake.on(r"^touch .*\.dbrunbook-drill$")
    fake.on(rf"^{bin_dir}/pg_ctl stop ")
    fake.on(rf"^{bin_dir}/pg_amcheck ")
    fake.on(r"^sh -c 'p=\$\(cat ")  # stop a restored MariaDB by its pid file
    fake.on(r"^mariadb-check ", Reply(stdout="shop.orders    OK\n"))
    return fake
