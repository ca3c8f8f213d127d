"""The fake itself keeps the seam's promises: what it records, what it refuses, dry runs and the audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbrunbook.errors import CommandFailed, HostUnreachableError
from dbrunbook.execution.audit import AuditLog
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import RunSettings
from dbrunbook.execution.testing import FakeExecutor, Reply, Unanswered


def fake(tmp_path: Path, *, dry_run: bool = False, **kwargs: object) -> FakeExecutor:
    settings = RunSettings(audit=AuditLog(tmp_path / "audit.jsonl", task="t"), dry_run=dry_run)
    return FakeExecutor("db1", settings, **kwargs)  # type: ignore[arg-type]


def test_it_records_stdin_and_env_names_but_never_their_values(tmp_path: Path) -> None:
    ex = fake(tmp_path, os_user="postgres").on(r"^pg_ctl ", Reply(stdout="started"))
    out = ex.run(Command(("pg_ctl", "start"), env={"PGDATA": "/srv/pg"}, stdin="hidden-input"))
    assert out.stdout == "started"
    (ran,) = ex.ran
    assert ran.argv == ("pg_ctl", "start") and ran.stdin is True and ran.env_names == ("PGDATA",)
    assert "hidden-input" not in repr(ran) and "/srv/pg" not in repr(ran.env_names)
    assert ran.line == "sudo -n -u postgres -- env PGDATA=/srv/pg pg_ctl start"  # wrapped like a real host


def test_an_unexpected_command_fails_loudly_with_its_argv(tmp_path: Path) -> None:
    ex = fake(tmp_path)
    with pytest.raises(Unanswered, match="no rule answers rm -rf /srv/data"):
        ex.run(Command(("rm", "-rf", "/srv/data")))
    assert ex.unanswered == ["rm -rf /srv/data"]


def test_newest_rule_wins_and_exit_codes_map_like_a_real_host(tmp_path: Path) -> None:
    ex = fake(tmp_path).on(r"^false", Reply(exit_code=0)).on(r"^false", Reply(exit_code=3, stderr="boom"), times=1)
    with pytest.raises(CommandFailed, match="false exited 3: boom"):
        ex.run(Command(("false",)))
    assert ex.run(Command(("false",))).ok  # the one-time rule is used up


def test_a_dry_run_plans_mutating_commands_and_audits_everything(tmp_path: Path) -> None:
    ex = fake(tmp_path, dry_run=True).on(r"^ls ", Reply(stdout="x"))
    ex.run(Command(("ls", "/srv"), mutating=False))
    ex.run(Command(("rm", "/srv/x")))  # no rule needed: it never reaches the host
    assert [(r.shell(), r.planned) for r in ex.ran] == [("ls /srv", False), ("rm /srv/x", True)]
    assert ex.settings.plan == ["[db1] rm /srv/x"]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["text"], a["exit"], a["dry_run"]) for a in audit] == [("ls /srv", 0, False), ("rm /srv/x", None, True)]


def test_an_unreachable_host_fails_every_use_and_the_audit_says_so(tmp_path: Path) -> None:
    ex = fake(tmp_path, unreachable=HostUnreachableError("db1: no route to host"))
    with pytest.raises(HostUnreachableError):
        ex.connect()
    with pytest.raises(HostUnreachableError), ex.tunnel("127.0.0.1", 5432):
        pass
    with pytest.raises(HostUnreachableError):
        ex.run(Command(("true",)))
    (line,) = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert json.loads(line)["exit"] == "error: HostUnreachableError"
