"""Commands that run as the OS user through sudo or runuser carry their environment and folder inside the
wrapper: sudo's env_reset drops variables set in front of it, and a ``cd`` in front of it runs as the login
user."""

from __future__ import annotations

from pathlib import Path

from dbrunbook.execution import AuditLog, Command, LocalExecutor, RunSettings


class LoggedInAs(LocalExecutor):
    def __init__(self, login: str, os_user: str | None, tmp: Path) -> None:
        super().__init__("db-2", RunSettings(audit=AuditLog(tmp / "audit.jsonl"), dry_run=True), os_user=os_user)
        self.login = login

    def _login_user(self) -> str:
        return self.login


def test_env_goes_inside_sudo(tmp_path: Path) -> None:
    ex = LoggedInAs("ops", "postgres", tmp_path)
    cmd = Command(("psql", "-c", "select 1"), env={"PGPASSFILE": "/tmp/d x/pgpass", "A": "1"})
    assert ex.command_line(cmd) == "sudo -n -u postgres -- env A=1 'PGPASSFILE=/tmp/d x/pgpass' psql -c 'select 1'"


def test_root_uses_runuser_and_the_folder_is_entered_as_the_os_user(tmp_path: Path) -> None:
    ex = LoggedInAs("root", "postgres", tmp_path)
    cmd = Command(("ls",), env={"K": "v"}, cwd="/var/lib/postgresql")
    assert ex.command_line(cmd) == "runuser -u postgres -- sh -c 'cd /var/lib/postgresql && env K=v ls'"


def test_no_wrapper_when_the_login_is_the_os_user_or_the_command_is_the_login_users(tmp_path: Path) -> None:
    cmd = Command(("ls",), env={"K": "v"}, cwd="/tmp")
    assert LoggedInAs("postgres", "postgres", tmp_path).command_line(cmd) == "cd /tmp && env K=v ls"
    as_login = Command(("rm", "-rf", "/tmp/staging"), as_os_user=False)
    assert LoggedInAs("ops", "postgres", tmp_path).command_line(as_login) == "rm -rf /tmp/staging"


def test_plan_and_audit_show_the_wrapped_line(tmp_path: Path) -> None:
    ex = LoggedInAs("ops", "postgres", tmp_path)
    ex.run(Command(("touch", "/tmp/x"), env={"K": "v"}))
    assert ex.settings.plan == ["[db-2] sudo -n -u postgres -- env K=v touch /tmp/x"]
    assert '"text": "sudo -n -u postgres -- env K=v touch /tmp/x"' in (tmp_path / "audit.jsonl").read_text()
